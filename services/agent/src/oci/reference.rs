//! Image references: `[registry/]repository[:tag][@sha256:<hex>]`, Docker's rules.

use std::fmt;

use super::error::OciError;

/// Docker Hub's registry name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API host.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// `host[:port]` of the registry (Docker Hub: [`DOCKER_HUB_API`]).
    pub registry: String,
    /// The repository (`library/busybox`, `team/app`).
    pub repository: String,
    /// The tag (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// `sha256:<hex>` when the reference pins a digest.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses `reference`; a name without a registry part goes to `default_registry`
    /// (Docker Hub names get `library/` when they have one component).
    pub fn parse(reference: &str, default_registry: &str) -> Result<Self, OciError> {
        let bad = |reason: &str| OciError::InvalidReference {
            image: reference.to_owned(),
            reason: reason.to_owned(),
        };
        let r = reference.trim();
        if r.is_empty() {
            return Err(bad("it is empty"));
        }
        let (rest, digest) = match r.split_once('@') {
            Some((rest, d)) => {
                validate_digest(d).map_err(|e| bad(&e))?;
                (rest, Some(d.to_owned()))
            }
            None => (r, None),
        };
        let (rest, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => {
                let tag = &rest[i + 1..];
                if tag.is_empty()
                    || tag.len() > 128
                    || !tag
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                {
                    return Err(bad(&format!("tag '{tag}' is not a valid tag")));
                }
                (&rest[..i], Some(tag.to_owned()))
            }
            _ => (rest, None),
        };
        let (registry, repository) = match rest.split_once('/') {
            Some((first, repo))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), repo.to_owned())
            }
            _ => (default_registry.to_owned(), rest.to_owned()),
        };
        let registry = if registry == DOCKER_HUB || registry == "index.docker.io" {
            DOCKER_HUB_API.to_owned()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB_API && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.is_empty()
            || repository.split('/').any(|c| {
                c.is_empty()
                    || c == "."
                    || c == ".."
                    || !c.chars().all(|ch| {
                        ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch)
                    })
            })
        {
            return Err(bad(&format!(
                "repository '{repository}' must be lower-case components of [a-z0-9._-] separated by '/'"
            )));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_owned())
        } else {
            tag
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What the manifest is fetched by: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Checks `sha256:<64 lower-case hex>`; returns the hex part.
pub fn validate_digest(d: &str) -> Result<&str, String> {
    let Some(hex) = d.strip_prefix("sha256:") else {
        return Err(format!("digest '{d}' is not a sha256 digest"));
    };
    if hex.len() != 64
        || !hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        return Err(format!(
            "digest '{d}' must be sha256: and 64 lower-case hex digits"
        ));
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_forms() {
        let r = ImageReference::parse("busybox", DOCKER_HUB).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            (DOCKER_HUB_API, "library/busybox", Some("latest"))
        );
        let r = ImageReference::parse("127.0.0.1:5000/team/app:1.2", DOCKER_HUB).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/app", Some("1.2"))
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageReference::parse(&format!("localhost/app@{d}"), DOCKER_HUB).unwrap();
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), d);
        let r = ImageReference::parse("team/app", "reg.example:443").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("reg.example:443", "team/app")
        );
        assert_eq!(r.to_string(), "reg.example:443/team/app:latest");
    }

    #[test]
    fn refuses_bad_references_naming_the_part() {
        for (r, want) in [
            ("", "empty"),
            ("App", "repository 'library/App'"),
            ("x/../y", "repository"),
            ("app:", "tag ''"),
            ("app@sha256:12", "digest 'sha256:12'"),
            ("app@md5:00", "not a sha256 digest"),
        ] {
            let e = ImageReference::parse(r, DOCKER_HUB)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{r}: {e}");
            assert!(e.contains(&format!("image '{r}'")), "{e}");
        }
    }
}
