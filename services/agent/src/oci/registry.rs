//! A small client of the OCI distribution API (Docker registry v2): manifests
//! (OCI and Docker schema 2, image indexes and manifest lists resolved to this
//! platform) and blobs, anonymous bearer tokens, plain HTTP only for the registries the
//! agent's configuration names as insecure.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::error::OciError;
use super::reference::ImageReference;

/// `application/vnd.oci.image.manifest.v1+json`
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.docker.distribution.manifest.v2+json`
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// `application/vnd.docker.distribution.manifest.list.v2+json`
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

const MAX_MANIFEST: usize = 4 << 20;

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Platform (index entries).
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// `platform` of an index entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, ...
    #[serde(default)]
    pub architecture: String,
    /// `linux`.
    #[serde(default)]
    pub os: String,
}

/// An image manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The media type, when the document carries it.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The image configuration blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Probe {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default, rename = "schemaVersion")]
    schema_version: Option<u32>,
}

/// The platform's architecture in OCI terms.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Registry access with the agent's settings.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    insecure: Vec<String>,
    /// `registry/repository` → bearer token.
    tokens: Mutex<HashMap<String, String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

impl RegistryClient {
    /// A client; `insecure` lists the `host[:port]` registries spoken to over plain HTTP.
    pub fn new(insecure: Vec<String>, timeout: Duration) -> Result<Self, OciError> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| OciError::Runtime {
                reason: format!("building the registry HTTP client: {}", error_chain(&e)),
            })?;
        Ok(Self {
            http,
            insecure,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn base(&self, r: &ImageReference) -> String {
        let scheme = if self.insecure.iter().any(|i| i == &r.registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/{}", r.registry, r.repository)
    }

    async fn send(
        &self,
        image: &str,
        r: &ImageReference,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, OciError> {
        let key = format!("{}/{}", r.registry, r.repository);
        let mut retried = false;
        loop {
            let mut req = self.http.get(url);
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            let token = lock(&self.tokens).get(&key).cloned();
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| OciError::Unreachable {
                image: image.to_owned(),
                url: url.to_owned(),
                reason: error_chain(&e),
            })?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && !retried {
                let challenge = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                if let Some(c) = challenge
                    && let Some(token) = self.fetch_token(image, &c).await?
                {
                    lock(&self.tokens).insert(key.clone(), token);
                    retried = true;
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// An anonymous token for a `Bearer realm=..,service=..,scope=..` challenge.
    async fn fetch_token(&self, image: &str, challenge: &str) -> Result<Option<String>, OciError> {
        let Some(params) = challenge.strip_prefix("Bearer ") else {
            return Ok(None);
        };
        let mut realm = None;
        let mut query = Vec::new();
        for part in split_params(params) {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_owned();
            match k.trim() {
                "realm" => realm = Some(v),
                k @ ("service" | "scope") => query.push((k.to_owned(), v)),
                _ => {}
            }
        }
        let Some(realm) = realm else {
            return Ok(None);
        };
        let resp = self
            .http
            .get(&realm)
            .query(&query)
            .send()
            .await
            .map_err(|e| OciError::Unreachable {
                image: image.to_owned(),
                url: realm.clone(),
                reason: error_chain(&e),
            })?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        #[derive(Deserialize)]
        struct Token {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let t: Token = resp.json().await.map_err(|e| OciError::Manifest {
            image: image.to_owned(),
            reason: format!("token from {realm}: {}", error_chain(&e)),
        })?;
        Ok(t.token.or(t.access_token))
    }

    async fn check(
        image: &str,
        url: &str,
        resp: reqwest::Response,
    ) -> Result<reqwest::Response, OciError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(OciError::NotFound {
                image: image.to_owned(),
                url: url.to_owned(),
            });
        }
        let body = resp.text().await.unwrap_or_default();
        Err(OciError::Http {
            image: image.to_owned(),
            url: url.to_owned(),
            status: status.as_u16(),
            body: body.chars().take(300).collect(),
        })
    }

    async fn manifest_bytes(
        &self,
        image: &str,
        r: &ImageReference,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>), OciError> {
        let url = format!("{}/manifests/{reference}", self.base(r));
        let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ");
        let resp = self.send(image, r, &url, Some(&accept)).await?;
        let resp = Self::check(image, &url, resp).await?;
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
        let announced = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| d.starts_with("sha256:"))
            .map(str::to_owned);
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| OciError::Unreachable {
                image: image.to_owned(),
                url: url.clone(),
                reason: error_chain(&e),
            })?;
            body.extend_from_slice(&chunk);
            if body.len() > MAX_MANIFEST {
                return Err(OciError::Manifest {
                    image: image.to_owned(),
                    reason: format!("manifest at {url} is larger than {MAX_MANIFEST} bytes"),
                });
            }
        }
        // By digest: the digest asked for; by tag: the one the registry announces.
        let expected = if reference.starts_with("sha256:") {
            Some(reference.to_owned())
        } else {
            announced
        };
        if let Some(expected) = expected {
            let actual = sha256_digest(&body);
            if actual != expected {
                return Err(OciError::DigestMismatch {
                    image: image.to_owned(),
                    what: "manifest",
                    expected,
                    actual,
                });
            }
        }
        Ok((body, ctype))
    }

    /// The image manifest of `r` for this platform (an index or manifest list is
    /// resolved to its `linux`/[`host_architecture`] entry). Manifests fetched by
    /// digest are verified.
    pub async fn manifest(&self, image: &str, r: &ImageReference) -> Result<Manifest, OciError> {
        let bad = |reason: String| OciError::Manifest {
            image: image.to_owned(),
            reason,
        };
        let (body, ctype) = self
            .manifest_bytes(image, r, r.manifest_reference())
            .await?;
        let probe: Probe = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("the manifest is not JSON: {e}")))?;
        let media = probe.media_type.clone().or(ctype).unwrap_or_default();
        let is_index = media == OCI_INDEX || media == DOCKER_LIST || probe.manifests.is_some();
        let body = if is_index {
            let index: Index = serde_json::from_slice(&body)
                .map_err(|e| bad(format!("the image index is invalid: {e}")))?;
            let arch = host_architecture();
            let pick = index
                .manifests
                .iter()
                .find(|d| {
                    d.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == arch)
                })
                .ok_or_else(|| {
                    bad(format!(
                        "the image index has no manifest for platform linux/{arch}"
                    ))
                })?;
            super::reference::validate_digest(&pick.digest).map_err(bad)?;
            self.manifest_bytes(image, r, &pick.digest).await?.0
        } else {
            if probe.schema_version == Some(1) {
                return Err(bad(
                    "Docker image manifest schema 1 is not supported (push the image with schema 2 or OCI)".to_owned(),
                ));
            }
            body
        };
        let m: Manifest = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("the image manifest is invalid: {e}")))?;
        if let Some(mt) = &m.media_type
            && mt != OCI_MANIFEST
            && mt != DOCKER_MANIFEST
        {
            return Err(bad(format!("unsupported manifest media type '{mt}'")));
        }
        Ok(m)
    }

    /// Downloads blob `digest` of `r` into `dest` (through `tmp`, renamed once its
    /// sha256 matches). A mismatch leaves nothing behind.
    pub async fn fetch_blob(
        &self,
        image: &str,
        r: &ImageReference,
        digest: &str,
        tmp: &std::path::Path,
        dest: &std::path::Path,
    ) -> Result<(), OciError> {
        let url = format!("{}/blobs/{digest}", self.base(r));
        let resp = self.send(image, r, &url, None).await?;
        let resp = Self::check(image, &url, resp).await?;
        let mut file = tokio::fs::File::create(tmp)
            .await
            .map_err(OciError::io(tmp))?;
        let mut hasher = Sha256::new();
        let mut stream = resp.bytes_stream();
        let result = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| OciError::Unreachable {
                    image: image.to_owned(),
                    url: url.clone(),
                    reason: error_chain(&e),
                })?;
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(OciError::io(tmp))?;
            }
            file.sync_all().await.map_err(OciError::io(tmp))?;
            let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
            if actual != digest {
                return Err(OciError::DigestMismatch {
                    image: image.to_owned(),
                    what: "blob",
                    expected: digest.to_owned(),
                    actual,
                });
            }
            tokio::fs::rename(tmp, dest)
                .await
                .map_err(OciError::io(dest))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(tmp).await;
        }
        result
    }
}

/// Splits `a="x,y",b=z` at the commas outside quotes.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_params_split_outside_quotes() {
        let p = split_params(
            r#"realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(p.len(), 3);
        assert_eq!(p[2], r#"scope="repository:a/b:pull,push""#);
    }

    #[test]
    fn digest_of_bytes() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
