//! Marathon path ids (`/group/app`): canonical form, segment syntax, and the names
//! derived from them (Mesos task names, task ids).

use std::sync::OnceLock;

use regex::Regex;

/// The segment pattern Marathon validates every path element against (PathId.scala).
pub const ID_SEGMENT_PATTERN: &str = r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|(\.|\.\.)$";

/// Path elements an id may not end with.
pub const RESERVED_KEYWORDS: [&str; 5] = ["restart", "tasks", "versions", ".", ".."];

/// Whether one path element matches Marathon's segment syntax. Java's `matches()`
/// needs the whole element to match one side of the alternation, which is what this
/// checks (`.` and `..` are the other side; canonical ids no longer contain them).
pub fn segment_is_valid(segment: &str) -> bool {
    static LEFT: OnceLock<Option<Regex>> = OnceLock::new();
    segment == "."
        || segment == ".."
        || LEFT
            .get_or_init(|| {
                Regex::new(
                    r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$",
                )
                .ok()
            })
            .as_ref()
            .is_some_and(|re| re.is_match(segment))
}

/// The raw elements of an id (`"/a/b/"` → `["a", "b"]`).
pub fn elements(id: &str) -> Vec<&str> {
    id.split('/').filter(|s| !s.is_empty()).collect()
}

/// Resolves `id` against `base` (absolute, e.g. `/` or `/group`) and folds `.`/`..`:
/// `app` → `/app`, `../b` from `/g/a` → `/b`. Returns the canonical absolute id
/// (`/` for the root).
pub fn canonical(id: &str, base: &str) -> String {
    let mut out: Vec<&str> = if id.starts_with('/') {
        Vec::new()
    } else {
        elements(base)
    };
    for e in elements(id) {
        match e {
            "." => {}
            ".." => {
                out.pop();
            }
            e => out.push(e),
        }
    }
    format!("/{}", out.join("/"))
}

/// The parent of an absolute id (`/a/b` → `/a`, `/a` → `/`).
pub fn parent(id: &str) -> String {
    let mut e = elements(id);
    e.pop();
    format!("/{}", e.join("/"))
}

/// The Mesos task name Marathon uses: the path elements reversed and dot-joined, so
/// Mesos-DNS names work (`/group/app` → `app.group`).
pub fn task_name(app_id: &str) -> String {
    let mut e = elements(app_id);
    e.reverse();
    e.join(".")
}

/// The task-id prefix of an app: the path with `/` replaced by `_`, leading one dropped
/// (`/group/app` → `group_app`), like Marathon's legacy `<app>.<uuid>` task ids.
pub fn task_id_prefix(app_id: &str) -> String {
    elements(app_id).join("_")
}

/// A new Marathon-style task id: `<app-path-with-underscores>.<uuid>`.
pub fn new_task_id(app_id: &str) -> String {
    format!("{}.{}", task_id_prefix(app_id), uuid::Uuid::new_v4())
}

/// The app id encoded in a task id made by [`new_task_id`] (`group_app.<uuid>` →
/// `/group/app`). `None` if the id has no `.`.
pub fn app_id_of_task(task_id: &str) -> Option<String> {
    let (prefix, _) = task_id.rsplit_once('.')?;
    Some(format!("/{}", prefix.replace('_', "/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_syntax() {
        for ok in ["a", "my-app", "a.b", "a1", "0", "..", "."] {
            assert!(segment_is_valid(ok), "{ok}");
        }
        for bad in ["A", "a b", "-a", "a-", "a_b", "a..b", "", "a#b", "my.-app"] {
            assert!(!segment_is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn canonical_paths() {
        assert_eq!(canonical("app", "/"), "/app");
        assert_eq!(canonical("/a/b/", "/"), "/a/b");
        assert_eq!(canonical("../b", "/g/a"), "/g/b");
        assert_eq!(canonical("./x", "/g"), "/g/x");
        assert_eq!(canonical("/", "/"), "/");
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
    }

    #[test]
    fn task_names_and_ids() {
        assert_eq!(task_name("/group/app"), "app.group");
        assert_eq!(task_name("/app"), "app");
        let id = new_task_id("/group/app");
        assert!(id.starts_with("group_app."));
        assert_eq!(app_id_of_task(&id).as_deref(), Some("/group/app"));
    }
}
