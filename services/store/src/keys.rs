//! Typed keys and the etcd key layout.
//!
//! Every Basalt key lives under one root prefix, `/basalt/v1/` by default
//! ([`crate::StoreConfig::prefix`]). A [`Key`] is a path *relative* to that root, built
//! from segments; a [`Prefix`] is a directory of keys (always ending in `/`) used for
//! listing, watching and deleting. Components never format key strings themselves: they
//! use the constructors below, so this table stays the whole truth.
//!
//! ## Layout
//!
//! | key (default root)                                   | value (JSON)                          | written by |
//! |------------------------------------------------------|---------------------------------------|------------|
//! | `/basalt/v1/cluster/id`                              | cluster id (string)                   | first master to start (create-if-absent) |
//! | `/basalt/v1/leader/<service>/<candidate>`            | `{"address": "host:port"}`, leased    | [`crate::Election`]; `<service>` is `master`, `marathon`, `dns`, ... and `<candidate>` the campaigner's lease id in 16 hex digits. The leader is the live candidate with the lowest create revision. |
//! | `/basalt/v1/master/agents/<agent_id>`                | registered agent (info, resources, state) | leading master |
//! | `/basalt/v1/master/frameworks/<framework_id>`        | framework info, failover deadline     | leading master |
//! | `/basalt/v1/master/tasks/<framework_id>/<task_id>`   | task (state, agent, resources, status) | leading master |
//! | `/basalt/v1/master/maintenance/<agent_id>`           | maintenance window of one agent       | leading master |
//! | `/basalt/v1/marathon/apps/<app_id>`                  | Marathon app definition               | leading Marathon |
//! | `/basalt/v1/marathon/deployments/<deployment_id>`    | a running deployment plan             | leading Marathon |
//! | `/basalt/v1/dns/<name>`                              | records that Mesos-DNS state does not carry (future) | DNS leader |
//!
//! Components that are not in the table yet use [`Key::from_segments`] /
//! [`Prefix::from_segments`] under their own top-level segment and add a row here.
//!
//! ## Segments
//!
//! A segment is any non-empty string up to [`MAX_SEGMENT_LEN`] bytes. Ids from the outside
//! (Mesos task ids, Marathon app ids like `/group/app`) may contain `/`, so segments are
//! escaped: `%` becomes `%25`, `/` becomes `%2F`, and control characters become `%XX`.
//! Everything else, UTF-8 included, is kept as is, so keys stay readable in `etcdctl`.
//! Escaping is reversible: [`Key::segments`] gives the original ids back, which is how a
//! watcher learns the agent id of an event's key.

use crate::StoreError;
use std::fmt;

/// The default root prefix of every Basalt key.
pub const DEFAULT_PREFIX: &str = "/basalt/v1/";

/// The longest segment accepted, in bytes before escaping.
pub const MAX_SEGMENT_LEN: usize = 1024;

/// A key relative to the store root, e.g. `master/agents/a1`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    path: String,
}

/// A directory of keys relative to the store root, e.g. `master/agents/`. Always ends
/// with `/`, except the root itself which is empty.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    path: String,
}

fn escape_segment(segment: &str) -> Result<String, StoreError> {
    if segment.is_empty() {
        return Err(StoreError::InvalidKey {
            key: String::new(),
            reason: "empty segment".to_string(),
        });
    }
    if segment.len() > MAX_SEGMENT_LEN {
        return Err(StoreError::InvalidKey {
            key: segment.chars().take(64).collect::<String>() + "...",
            reason: format!(
                "segment is {} bytes, the limit is {MAX_SEGMENT_LEN}",
                segment.len()
            ),
        });
    }
    let mut out = String::with_capacity(segment.len());
    for c in segment.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c if c.is_ascii_control() => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn unescape_segment(raw: &str, whole: &str) -> Result<String, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidKey {
        key: whole.to_string(),
        reason: reason.to_string(),
    };
    if raw.is_empty() {
        return Err(invalid("empty segment"));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .ok_or_else(|| invalid("truncated %-escape"))?;
                let byte = u8::from_str_radix(hex, 16).map_err(|_| invalid("bad %-escape"))?;
                out.push(byte);
                i += 3;
            }
            b => {
                if b.is_ascii_control() {
                    return Err(invalid("unescaped control character"));
                }
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| invalid("escape decodes to invalid UTF-8"))
}

fn join_segments<I, S>(segments: I) -> Result<String, StoreError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut path = String::new();
    for (i, seg) in segments.into_iter().enumerate() {
        if i > 0 {
            path.push('/');
        }
        path.push_str(&escape_segment(seg.as_ref())?);
    }
    Ok(path)
}

impl Key {
    /// Builds a key from unescaped segments: `["master", "agents", id]`.
    pub fn from_segments<I, S>(segments: I) -> Result<Key, StoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let path = join_segments(segments)?;
        if path.is_empty() {
            return Err(StoreError::InvalidKey {
                key: path,
                reason: "a key needs at least one segment".to_string(),
            });
        }
        Ok(Key { path })
    }

    /// Parses an escaped relative path (as stored in etcd after the root prefix).
    pub fn parse(path: &str) -> Result<Key, StoreError> {
        if path.is_empty() || path.ends_with('/') {
            return Err(StoreError::InvalidKey {
                key: path.to_string(),
                reason: "a key is non-empty and does not end with '/'".to_string(),
            });
        }
        // Validate every segment round-trips.
        for raw in path.split('/') {
            unescape_segment(raw, path)?;
        }
        Ok(Key {
            path: path.to_string(),
        })
    }

    /// `cluster/id`: the cluster's id, written once.
    pub fn cluster_id() -> Key {
        Key {
            path: "cluster/id".to_string(),
        }
    }

    /// `master/agents/<agent_id>`.
    pub fn agent(agent_id: &str) -> Result<Key, StoreError> {
        Prefix::agents().key(agent_id)
    }

    /// `master/frameworks/<framework_id>`.
    pub fn framework(framework_id: &str) -> Result<Key, StoreError> {
        Prefix::frameworks().key(framework_id)
    }

    /// `master/tasks/<framework_id>/<task_id>`.
    pub fn task(framework_id: &str, task_id: &str) -> Result<Key, StoreError> {
        Prefix::tasks_of(framework_id)?.key(task_id)
    }

    /// `master/maintenance/<agent_id>`.
    pub fn maintenance(agent_id: &str) -> Result<Key, StoreError> {
        Prefix::maintenance().key(agent_id)
    }

    /// `marathon/apps/<app_id>` (the app id may contain `/`; it is escaped).
    pub fn marathon_app(app_id: &str) -> Result<Key, StoreError> {
        Prefix::marathon_apps().key(app_id)
    }

    /// `marathon/deployments/<deployment_id>`.
    pub fn marathon_deployment(deployment_id: &str) -> Result<Key, StoreError> {
        Prefix::marathon_deployments().key(deployment_id)
    }

    /// `leader/<service>/<candidate>`: one candidate's election key.
    pub fn leader_candidate(service: &str, candidate: &str) -> Result<Key, StoreError> {
        Prefix::leader(service)?.key(candidate)
    }

    /// The escaped relative path, e.g. `marathon/apps/%2Fgroup%2Fapp`.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The unescaped segments, e.g. `["marathon", "apps", "/group/app"]`.
    pub fn segments(&self) -> Vec<String> {
        self.path
            .split('/')
            // Keys are validated on construction, so decoding cannot fail; fall back to
            // the raw text rather than panic if that invariant were ever broken.
            .map(|raw| unescape_segment(raw, &self.path).unwrap_or_else(|_| raw.to_string()))
            .collect()
    }

    /// The last unescaped segment (the id in `master/agents/<id>`).
    pub fn name(&self) -> String {
        let raw = self.path.rsplit('/').next().unwrap_or(&self.path);
        unescape_segment(raw, &self.path).unwrap_or_else(|_| raw.to_string())
    }

    /// The directory this key is in (`master/agents/` for `master/agents/a1`).
    pub fn parent(&self) -> Prefix {
        match self.path.rfind('/') {
            Some(i) => Prefix {
                path: self.path[..=i].to_string(),
            },
            None => Prefix::root(),
        }
    }

    /// The unescaped segments after `prefix`, or `None` if the key is not under it.
    pub fn strip_prefix(&self, prefix: &Prefix) -> Option<Vec<String>> {
        let rest = self.path.strip_prefix(&prefix.path)?;
        Some(
            rest.split('/')
                .map(|raw| unescape_segment(raw, &self.path).unwrap_or_else(|_| raw.to_string()))
                .collect(),
        )
    }
}

impl Prefix {
    /// The store root (every Basalt key).
    pub fn root() -> Prefix {
        Prefix {
            path: String::new(),
        }
    }

    /// Builds a prefix from unescaped segments: `["master", "tasks", fw]` is
    /// `master/tasks/<fw>/`.
    pub fn from_segments<I, S>(segments: I) -> Result<Prefix, StoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let path = join_segments(segments)?;
        if path.is_empty() {
            return Ok(Prefix::root());
        }
        Ok(Prefix { path: path + "/" })
    }

    fn fixed(path: &str) -> Prefix {
        Prefix {
            path: path.to_string(),
        }
    }

    /// `master/agents/`.
    pub fn agents() -> Prefix {
        Self::fixed("master/agents/")
    }

    /// `master/frameworks/`.
    pub fn frameworks() -> Prefix {
        Self::fixed("master/frameworks/")
    }

    /// `master/tasks/` (every framework's tasks).
    pub fn tasks() -> Prefix {
        Self::fixed("master/tasks/")
    }

    /// `master/tasks/<framework_id>/`.
    pub fn tasks_of(framework_id: &str) -> Result<Prefix, StoreError> {
        Self::tasks().child(framework_id)
    }

    /// `master/maintenance/`.
    pub fn maintenance() -> Prefix {
        Self::fixed("master/maintenance/")
    }

    /// `marathon/apps/`.
    pub fn marathon_apps() -> Prefix {
        Self::fixed("marathon/apps/")
    }

    /// `marathon/deployments/`.
    pub fn marathon_deployments() -> Prefix {
        Self::fixed("marathon/deployments/")
    }

    /// `leader/<service>/`: the candidates of one election.
    pub fn leader(service: &str) -> Result<Prefix, StoreError> {
        Self::fixed("leader/").child(service)
    }

    /// A key directly in this directory.
    pub fn key(&self, segment: &str) -> Result<Key, StoreError> {
        Ok(Key {
            path: format!("{}{}", self.path, escape_segment(segment)?),
        })
    }

    /// A sub-directory.
    pub fn child(&self, segment: &str) -> Result<Prefix, StoreError> {
        Ok(Prefix {
            path: format!("{}{}/", self.path, escape_segment(segment)?),
        })
    }

    /// The escaped relative path, e.g. `master/agents/` (empty for the root).
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// True if `key` is inside this directory (at any depth).
    pub fn contains(&self, key: &Key) -> bool {
        key.path.starts_with(&self.path)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.path)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prefix({:?})", self.path)
    }
}

/// The first key after every key that starts with `prefix` (etcd's `range_end` for a
/// prefix). An empty or all-`0xff` prefix gives `[0]`, meaning "to the end".
pub(crate) fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_paths() {
        assert_eq!(Key::cluster_id().as_str(), "cluster/id");
        assert_eq!(Key::agent("a1").unwrap().as_str(), "master/agents/a1");
        assert_eq!(
            Key::framework("fw-0001").unwrap().as_str(),
            "master/frameworks/fw-0001"
        );
        assert_eq!(
            Key::task("fw", "t.1").unwrap().as_str(),
            "master/tasks/fw/t.1"
        );
        assert_eq!(
            Key::marathon_app("/prod/web").unwrap().as_str(),
            "marathon/apps/%2Fprod%2Fweb"
        );
        assert_eq!(
            Key::leader_candidate("master", "00000000000000ab")
                .unwrap()
                .as_str(),
            "leader/master/00000000000000ab"
        );
        assert_eq!(Prefix::tasks_of("fw").unwrap().as_str(), "master/tasks/fw/");
        assert_eq!(Prefix::leader("dns").unwrap().as_str(), "leader/dns/");
    }

    #[test]
    fn escaping_round_trips() {
        for id in ["/a/b", "100%", "x\ny", "ünï/cødé", "a%2Fb", "."] {
            let key = Key::marathon_app(id).unwrap();
            assert!(
                !key.as_str()["marathon/apps/".len()..].contains('/'),
                "{key}"
            );
            assert_eq!(key.name(), id);
            assert_eq!(key.segments(), vec!["marathon", "apps", id]);
            let reparsed = Key::parse(key.as_str()).unwrap();
            assert_eq!(reparsed, key);
            assert_eq!(
                key.strip_prefix(&Prefix::marathon_apps()).unwrap(),
                vec![id.to_string()]
            );
        }
    }

    #[test]
    fn sibling_ids_do_not_share_a_prefix() {
        // Tasks of framework "a" must not include those of framework "ab".
        let a = Prefix::tasks_of("a").unwrap();
        assert!(a.contains(&Key::task("a", "t").unwrap()));
        assert!(!a.contains(&Key::task("ab", "t").unwrap()));
        assert!(Prefix::tasks().contains(&Key::task("ab", "t").unwrap()));
    }

    #[test]
    fn bad_segments_are_rejected_and_named() {
        let err = Key::agent("").unwrap_err();
        assert!(err.to_string().contains("empty segment"), "{err}");
        let long = "x".repeat(MAX_SEGMENT_LEN + 1);
        let err = Key::task("fw", &long).unwrap_err();
        assert!(err.to_string().contains("1025 bytes"), "{err}");
        assert!(Key::from_segments(Vec::<String>::new()).is_err());
        assert!(Key::parse("master/agents/").is_err());
        assert!(Key::parse("master//a").is_err());
        let err = Key::parse("master/agents/%G1").unwrap_err();
        assert!(err.to_string().contains("master/agents/%G1"), "{err}");
        assert!(Key::parse("a/%2").is_err());
        assert!(Key::parse("a/%FF").is_err(), "invalid UTF-8 after unescape");
    }

    #[test]
    fn parent_and_range_end() {
        let k = Key::task("fw", "t").unwrap();
        assert_eq!(k.parent(), Prefix::tasks_of("fw").unwrap());
        assert_eq!(Key::parse("top").unwrap().parent(), Prefix::root());
        assert_eq!(prefix_range_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_range_end(b""), vec![0]);
    }
}
