//! Local persistent volumes (Mesos `CREATE`/`DESTROY` on ROOT disk): a `disk` resource
//! with `persistence.id` lives in `<work_dir>/volumes/roles/<role>/<persistence_id>`
//! (the role of its reservation), made when the master's `CHECKPOINT_RESOURCES` brings
//! it (or at the first launch that uses it) and deleted when it leaves the agent's
//! checkpointed resources, unless a running task still uses it (then it is kept and
//! deleted once a later checkpoint finds it unused). A task whose resources carry the
//! volume gets it at `<sandbox>/<volume.container_path>` (bind mount, or a symlink
//! without a mount namespace), so data outlives the task.

use std::path::{Component, Path, PathBuf};

use basalt_mesos::{Resource, Resources, TaskInfo};

use super::{Inner, lock};
use crate::containerizer::VolumeMount;

/// `<work_dir>/volumes/roles/<role>/<id>`, or why the ids cannot be path components.
pub(super) fn volume_path(work_dir: &Path, role: &str, id: &str) -> Result<PathBuf, String> {
    let plain = |s: &str| {
        !s.is_empty()
            && Path::new(s)
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
    };
    if !plain(id) || id.contains('/') {
        return Err(format!(
            "persistence id '{id}' is not usable as a directory name"
        ));
    }
    if !plain(role) {
        return Err(format!("role '{role}' is not usable as a directory name"));
    }
    Ok(work_dir.join("volumes").join("roles").join(role).join(id))
}

/// The persistent volumes among resources: `(role, persistence id, container path, RO)`.
fn volumes_of<'a>(
    resources: impl IntoIterator<Item = &'a Resource>,
) -> Vec<(String, String, Option<String>, bool)> {
    resources
        .into_iter()
        .filter_map(|r| {
            let d = r.disk.as_ref()?;
            let p = d.persistence.as_ref()?;
            let v = d.volume.as_ref();
            Some((
                r.reservation_role().to_string(),
                p.id.clone(),
                v.map(|v| v.container_path.clone()),
                v.and_then(|v| v.mode.as_ref())
                    .is_some_and(|m| *m == basalt_mesos::VolumeMode::Ro),
            ))
        })
        .collect()
}

/// The volume mounts of a task (its directory made when missing). The error names the
/// volume.
pub(super) fn task_volumes(
    inner: &Inner,
    task: &TaskInfo,
    _framework_role: &str,
) -> Result<Vec<VolumeMount>, String> {
    let mut out = Vec::new();
    for (role, id, container_path, read_only) in volumes_of(&task.resources) {
        let Some(cp) = container_path.filter(|c| !c.is_empty()) else {
            return Err(format!(
                "persistent volume '{id}' has no 'volume.container_path'"
            ));
        };
        let host = volume_path(&inner.cfg.work_dir, &role, &id)?;
        std::fs::create_dir_all(&host)
            .map_err(|e| format!("persistent volume '{id}' at {}: {e}", host.display()))?;
        out.push(VolumeMount {
            host_path: host,
            container_path: PathBuf::from(cp),
            read_only,
        });
    }
    Ok(out)
}

/// Applies the master's new view of the agent's resources (`old` → `new`): makes the
/// directories of the volumes in `new`, deletes those of volumes that were in `old` and
/// are not in `new` (DESTROY) unless a running task uses them.
pub(super) fn sync(inner: &Inner, old: &Resources, new: &Resources) {
    let work = &inner.cfg.work_dir;
    let paths = |r: &Resources| -> Vec<PathBuf> {
        volumes_of(r.iter())
            .into_iter()
            .filter_map(|(role, id, _, _)| match volume_path(work, &role, &id) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "persistent volume ignored");
                    None
                }
            })
            .collect()
    };
    let wanted = paths(new);
    for p in &wanted {
        if let Err(e) = std::fs::create_dir_all(p) {
            tracing::error!(path = %p.display(), error = %e, "creating a persistent volume");
        }
    }
    let in_use: Vec<PathBuf> = {
        let s = lock(&inner.state);
        s.tasks
            .values()
            .filter(|t| !t.status.state.is_terminal())
            .flat_map(|t| volumes_of(&t.task.resources))
            .filter_map(|(role, id, _, _)| volume_path(work, &role, &id).ok())
            .collect()
    };
    for gone in paths(old).into_iter().filter(|p| !wanted.contains(p)) {
        if in_use.contains(&gone) {
            tracing::warn!(path = %gone.display(),
                "a destroyed persistent volume is still used by a running task; kept");
            continue;
        }
        match std::fs::remove_dir_all(&gone) {
            Ok(()) => tracing::info!(path = %gone.display(), "persistent volume destroyed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(path = %gone.display(), error = %e,
                "deleting a destroyed persistent volume"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_paths() {
        let w = Path::new("/var/lib/mesos/slave");
        assert_eq!(
            volume_path(w, "db", "v1").unwrap(),
            Path::new("/var/lib/mesos/slave/volumes/roles/db/v1")
        );
        assert!(volume_path(w, "db", "../x").unwrap_err().contains("'../x'"));
        assert!(volume_path(w, "db", "a/b").is_err());
        assert!(volume_path(w, "..", "v").unwrap_err().contains("role"));
    }
}
