//! The etcd repository: apps, every app version, deployments, instances and the
//! framework id (layout in the crate docs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use basalt_store::{Key, Prefix, Store, Versioned};
use serde::{Deserialize, Serialize};

use crate::app::AppDefinition;
use crate::error::MarathonError;
use crate::plan::{Action, Step};
use crate::pod::Pod;

/// A deployment as stored and as served by `GET /v2/deployments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Deployment id (uuid).
    pub id: String,
    /// Version timestamp of the change.
    pub version: String,
    /// Apps it touches.
    pub affected_apps: Vec<String>,
    /// The plan.
    pub steps: Vec<Step>,
    /// Index (0-based) of the step being executed; `steps.len()` when done.
    pub step_index: usize,
    /// Apps before the change (for rollback).
    pub original: BTreeMap<String, AppDefinition>,
    /// Apps after the change.
    pub target: BTreeMap<String, AppDefinition>,
    /// Which of `affected_apps` are pods (their app-shaped views are in
    /// `original`/`target`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
}

impl Deployment {
    /// The actions of the current step.
    pub fn current_actions(&self) -> &[Action] {
        self.steps
            .get(self.step_index)
            .map(|s| s.actions.as_slice())
            .unwrap_or(&[])
    }

    /// Marathon's JSON for `GET /v2/deployments` (pod actions are named `...Pod` and
    /// carry `pod` instead of `app`).
    pub fn to_json(&self) -> serde_json::Value {
        let action = |a: &Action, readiness: bool| {
            let name = serde_json::to_value(a.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let mut j = if self.pods.contains(&a.app) {
                serde_json::json!({"action": name.replace("Application", "Pod"), "pod": a.app})
            } else {
                serde_json::json!({"action": name, "app": a.app})
            };
            if readiness {
                j["readinessCheckResults"] = serde_json::json!([]);
            }
            j
        };
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({"actions": s.actions.iter().map(|a| action(a, false)).collect::<Vec<_>>()})
            })
            .collect();
        serde_json::json!({
            "id": self.id,
            "version": self.version,
            "affectedApps": self.affected_apps.iter().filter(|a| !self.pods.contains(a)).collect::<Vec<_>>(),
            "affectedPods": self.pods,
            "steps": steps,
            "currentActions": self.current_actions().iter().map(|a| action(a, true)).collect::<Vec<_>>(),
            "currentStep": (self.step_index + 1).min(self.steps.len().max(1)),
            "totalSteps": self.steps.len(),
        })
    }
}

/// One instance (one Mesos task) of an app.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Instance id (equals the task id for apps).
    pub instance_id: String,
    /// Mesos task id.
    pub task_id: String,
    /// App id.
    pub app_id: String,
    /// App version it runs.
    pub version: String,
    /// Agent id.
    pub agent_id: String,
    /// Agent hostname.
    pub host: String,
    /// Mesos task state name (`TASK_STAGING` until the first update).
    pub state: String,
    /// Host ports.
    pub ports: Vec<u64>,
    /// When LAUNCH was sent (ms).
    pub staged_at_ms: u64,
    /// When it turned TASK_RUNNING (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// Latest health, if checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// Whether Marathon asked the master to kill it.
    #[serde(default)]
    pub killing: bool,
    /// Region and zone of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Zone of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Agent attributes as `name → formatted value` (for constraints).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Latest status message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Since when (ms) the master reports it TASK_UNREACHABLE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_since_ms: Option<u64>,
    /// Whether its readiness checks passed (apps with `readinessChecks`).
    #[serde(default)]
    pub ready: bool,
    /// Pod instances: one Mesos task per container (empty for app instances).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<crate::pod::ContainerTask>,
}

impl Instance {
    /// Whether the task is in a terminal state.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.state.as_str(),
            "TASK_FINISHED"
                | "TASK_FAILED"
                | "TASK_KILLED"
                | "TASK_ERROR"
                | "TASK_LOST"
                | "TASK_DROPPED"
                | "TASK_GONE"
                | "TASK_GONE_BY_OPERATOR"
        )
    }

    /// Unreachable for longer than the app's `inactiveAfterSeconds`: it no longer counts
    /// as one of the app's instances and a replacement may launch.
    pub fn is_inactive(&self, strategy: crate::app::UnreachableStrategy, now_ms: u64) -> bool {
        match (self.unreachable_since_ms, strategy) {
            (
                Some(since),
                crate::app::UnreachableStrategy::Enabled {
                    inactive_after_seconds,
                    ..
                },
            ) => now_ms >= since.saturating_add((inactive_after_seconds.max(0) as u64) * 1000),
            _ => false,
        }
    }

    /// Unreachable for longer than `expungeAfterSeconds`: forgotten (and killed if it
    /// ever comes back).
    pub fn is_expunged(&self, strategy: crate::app::UnreachableStrategy, now_ms: u64) -> bool {
        match (self.unreachable_since_ms, strategy) {
            (
                Some(since),
                crate::app::UnreachableStrategy::Enabled {
                    expunge_after_seconds,
                    ..
                },
            ) => now_ms >= since.saturating_add((expunge_after_seconds.max(0) as u64) * 1000),
            _ => false,
        }
    }

    /// Running and not known unhealthy.
    pub fn is_healthy_running(&self, has_health_checks: bool) -> bool {
        self.state == "TASK_RUNNING"
            && !self.killing
            && if has_health_checks {
                self.healthy == Some(true)
            } else {
                self.healthy != Some(false)
            }
    }

    /// Marathon's Task JSON.
    pub fn to_task_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": self.task_id,
            "appId": self.app_id,
            "host": self.host,
            "slaveId": self.agent_id,
            "state": self.state,
            "stagedAt": crate::time::format_millis(self.staged_at_ms),
            "version": self.version,
            "ports": self.ports,
            "servicePorts": [],
            "ipAddresses": [],
            "localVolumes": [],
        });
        if let Some(s) = self.started_at_ms {
            v["startedAt"] = crate::time::format_millis(s).into();
        }
        if let Some(h) = self.healthy {
            v["healthCheckResults"] = serde_json::json!([{"alive": h, "consecutiveFailures": if h {0} else {1}, "instanceId": self.instance_id, "taskId": self.task_id}]);
        }
        if let Some(r) = &self.region {
            v["region"] = r.clone().into();
        }
        if let Some(z) = &self.zone {
            v["zone"] = z.clone().into();
        }
        if let Some(u) = self.unreachable_since_ms {
            v["unreachableSince"] = crate::time::format_millis(u).into();
        }
        v
    }
}

/// Typed access to Marathon's keys.
///
/// The leader is the only writer of instances, so the repository keeps them in memory
/// once loaded (write-through: the cache changes only after etcd accepted the write).
/// [`Repo::invalidate`] drops the cache (on becoming leader).
#[derive(Debug, Clone)]
pub struct Repo {
    store: Store,
    cache: Arc<Mutex<InstanceCache>>,
    /// Deployments, cached like instances: `(generation, list)`; every deployment
    /// write bumps the generation and drops the list.
    deployments: Arc<Mutex<DeploymentCache>>,
}

type InstanceKey = (String, String);

/// `(generation, cached list)`.
type DeploymentCache = (u64, Option<Arc<Vec<Deployment>>>);

#[derive(Debug, Default)]
struct InstanceCache {
    loaded: bool,
    generation: u64,
    by_key: BTreeMap<InstanceKey, Arc<Instance>>,
    by_task: HashMap<String, InstanceKey>,
}

impl InstanceCache {
    fn put(&mut self, i: &Instance) {
        self.generation += 1;
        if self.loaded {
            let k = (i.app_id.clone(), i.instance_id.clone());
            self.by_task.insert(i.task_id.clone(), k.clone());
            for c in &i.containers {
                self.by_task.insert(c.task_id.clone(), k.clone());
            }
            self.by_key.insert(k, Arc::new(i.clone()));
        }
    }

    fn delete(&mut self, app_id: &str, instance_id: &str) {
        self.generation += 1;
        if self.loaded
            && let Some(i) = self
                .by_key
                .remove(&(app_id.to_string(), instance_id.to_string()))
        {
            self.by_task.remove(&i.task_id);
            for c in &i.containers {
                self.by_task.remove(&c.task_id);
            }
        }
    }
}

fn lock_cache(m: &Mutex<InstanceCache>) -> std::sync::MutexGuard<'_, InstanceCache> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn versions_prefix(app_id: &str) -> Result<Prefix, MarathonError> {
    Ok(Prefix::from_segments(["marathon", "versions", app_id])?)
}

fn version_key(app_id: &str, version: &str) -> Result<Key, MarathonError> {
    Ok(Key::from_segments([
        "marathon", "versions", app_id, version,
    ])?)
}

fn instances_prefix() -> Result<Prefix, MarathonError> {
    Ok(Prefix::from_segments(["marathon", "instances"])?)
}

fn instance_key(app_id: &str, instance_id: &str) -> Result<Key, MarathonError> {
    Ok(Key::from_segments([
        "marathon",
        "instances",
        app_id,
        instance_id,
    ])?)
}

fn pods_prefix() -> Result<Prefix, MarathonError> {
    Ok(Prefix::from_segments(["marathon", "pods"])?)
}

fn pod_key(id: &str) -> Result<Key, MarathonError> {
    Ok(Key::from_segments(["marathon", "pods", id])?)
}

fn pod_versions_prefix(id: &str) -> Result<Prefix, MarathonError> {
    Ok(Prefix::from_segments(["marathon", "pod-versions", id])?)
}

fn pod_version_key(id: &str, version: &str) -> Result<Key, MarathonError> {
    Ok(Key::from_segments([
        "marathon",
        "pod-versions",
        id,
        version,
    ])?)
}

fn framework_key() -> Result<Key, MarathonError> {
    Ok(Key::from_segments(["marathon", "framework-id"])?)
}

impl Repo {
    /// A repository over `store`.
    pub fn new(store: Store) -> Repo {
        Repo {
            store,
            cache: Arc::new(Mutex::new(InstanceCache::default())),
            deployments: Arc::new(Mutex::new((0, None))),
        }
    }

    /// Drops the instance cache (another process may have written meanwhile).
    pub fn invalidate(&self) {
        self.deployments_changed();
        let mut c = lock_cache(&self.cache);
        *c = InstanceCache {
            generation: c.generation + 1,
            ..InstanceCache::default()
        };
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Every current app, by id.
    pub async fn apps(&self) -> Result<BTreeMap<String, AppDefinition>, MarathonError> {
        let listing = self
            .store
            .list::<AppDefinition>(&Prefix::marathon_apps())
            .await?;
        Ok(listing
            .items
            .into_iter()
            .map(|(_, v)| (v.value.id.clone(), v.value))
            .collect())
    }

    /// One app with its store version.
    pub async fn app(&self, id: &str) -> Result<Option<Versioned<AppDefinition>>, MarathonError> {
        Ok(self.store.get(&Key::marathon_app(id)?).await?)
    }

    /// Writes apps (current + version history) and a deployment in one transaction;
    /// `deleted` apps are removed with their versions. `cancel` deployments are deleted.
    pub async fn commit_change(
        &self,
        upserts: &[AppDefinition],
        deleted: &[String],
        deployment: Option<&Deployment>,
        cancel: &[String],
    ) -> Result<(), MarathonError> {
        self.deployments_changed();
        let r = self
            .commit_change_inner(upserts, deleted, deployment, cancel)
            .await;
        self.deployments_changed();
        r
    }

    async fn commit_change_inner(
        &self,
        upserts: &[AppDefinition],
        deleted: &[String],
        deployment: Option<&Deployment>,
        cancel: &[String],
    ) -> Result<(), MarathonError> {
        let ops = 2 * upserts.len() + 2 * deleted.len() + cancel.len() + 1;
        if ops <= basalt_store::MAX_TXN_OPS {
            let mut txn = self.store.txn();
            for app in upserts {
                let version = app.version.clone().unwrap_or_default();
                txn = txn
                    .put(&Key::marathon_app(&app.id)?, app)
                    .put(&version_key(&app.id, &version)?, app);
            }
            for id in deleted {
                txn = txn
                    .delete(&Key::marathon_app(id)?)
                    .delete_prefix(&versions_prefix(id)?);
            }
            if let Some(d) = deployment {
                txn = txn.put(&Key::marathon_deployment(&d.id)?, d);
            }
            for id in cancel {
                txn = txn.delete(&Key::marathon_deployment(id)?);
            }
            if !txn.is_empty() {
                txn.commit().await?;
            }
            return Ok(());
        }
        // More than etcd takes in one transaction: the version history first (invisible
        // until an app points at it), then the apps, then the deployment. A failure
        // in between leaves some apps changed without their deployment; the launch
        // demand still converges them to their `instances`.
        let per = basalt_store::MAX_TXN_OPS;
        for chunk in upserts.chunks(per) {
            let mut txn = self.store.txn();
            for app in chunk {
                let version = app.version.clone().unwrap_or_default();
                txn = txn.put(&version_key(&app.id, &version)?, app);
            }
            txn.commit().await?;
        }
        for chunk in upserts.chunks(per) {
            let mut txn = self.store.txn();
            for app in chunk {
                txn = txn.put(&Key::marathon_app(&app.id)?, app);
            }
            txn.commit().await?;
        }
        for chunk in deleted.chunks(per / 2) {
            let mut txn = self.store.txn();
            for id in chunk {
                txn = txn
                    .delete(&Key::marathon_app(id)?)
                    .delete_prefix(&versions_prefix(id)?);
            }
            txn.commit().await?;
        }
        let mut txn = self.store.txn();
        if let Some(d) = deployment {
            txn = txn.put(&Key::marathon_deployment(&d.id)?, d);
        }
        for id in cancel {
            txn = txn.delete(&Key::marathon_deployment(id)?);
        }
        if !txn.is_empty() {
            txn.commit().await?;
        }
        Ok(())
    }

    /// Every pod, by id.
    pub async fn pods(&self) -> Result<BTreeMap<String, Pod>, MarathonError> {
        let listing = self.store.list::<Pod>(&pods_prefix()?).await?;
        Ok(listing
            .items
            .into_iter()
            .map(|(_, v)| (v.value.id.clone(), v.value))
            .collect())
    }

    /// One pod.
    pub async fn pod(&self, id: &str) -> Result<Option<Pod>, MarathonError> {
        Ok(self.store.get::<Pod>(&pod_key(id)?).await?.map(|v| v.value))
    }

    /// Writes pods (current + version history) and a deployment in one transaction;
    /// `deleted` pods are removed with their versions; `cancel` deployments deleted.
    pub async fn commit_pod_change(
        &self,
        upserts: &[Pod],
        deleted: &[String],
        deployment: Option<&Deployment>,
        cancel: &[String],
    ) -> Result<(), MarathonError> {
        self.deployments_changed();
        let mut txn = self.store.txn();
        for pod in upserts {
            let version = pod.version.clone().unwrap_or_default();
            txn = txn
                .put(&pod_key(&pod.id)?, pod)
                .put(&pod_version_key(&pod.id, &version)?, pod);
        }
        for id in deleted {
            txn = txn
                .delete(&pod_key(id)?)
                .delete_prefix(&pod_versions_prefix(id)?);
        }
        if let Some(d) = deployment {
            txn = txn.put(&Key::marathon_deployment(&d.id)?, d);
        }
        for id in cancel {
            txn = txn.delete(&Key::marathon_deployment(id)?);
        }
        let r = if txn.is_empty() {
            Ok(())
        } else {
            txn.commit().await.map(|_| ())
        };
        self.deployments_changed();
        r?;
        Ok(())
    }

    /// Stored versions of a pod, oldest first.
    pub async fn pod_versions(&self, id: &str) -> Result<Vec<String>, MarathonError> {
        let keys = self.store.list_keys(&pod_versions_prefix(id)?).await?;
        let mut v: Vec<String> = keys.iter().map(|k| k.name()).collect();
        v.sort();
        Ok(v)
    }

    /// One stored version of a pod.
    pub async fn pod_version(&self, id: &str, version: &str) -> Result<Option<Pod>, MarathonError> {
        Ok(self
            .store
            .get::<Pod>(&pod_version_key(id, version)?)
            .await?
            .map(|v| v.value))
    }

    /// Stored versions of an app, oldest first.
    pub async fn versions(&self, id: &str) -> Result<Vec<String>, MarathonError> {
        let keys = self.store.list_keys(&versions_prefix(id)?).await?;
        let mut v: Vec<String> = keys.iter().map(|k| k.name()).collect();
        v.sort();
        Ok(v)
    }

    /// One stored version.
    pub async fn version(
        &self,
        id: &str,
        version: &str,
    ) -> Result<Option<AppDefinition>, MarathonError> {
        Ok(self
            .store
            .get::<AppDefinition>(&version_key(id, version)?)
            .await?
            .map(|v| v.value))
    }

    /// Every deployment, oldest first (a shared snapshot: a group deployment carries
    /// every app's definition twice, too much to copy on each look).
    pub async fn deployments(&self) -> Result<Arc<Vec<Deployment>>, MarathonError> {
        let generation = {
            let c = self
                .deployments
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(list) = &c.1 {
                return Ok(list.clone());
            }
            c.0
        };
        let listing = self
            .store
            .list::<Deployment>(&Prefix::marathon_deployments())
            .await?;
        let mut v: Vec<Deployment> = listing.items.into_iter().map(|(_, d)| d.value).collect();
        v.sort_by(|a, b| a.version.cmp(&b.version).then(a.id.cmp(&b.id)));
        let mut c = self
            .deployments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let v = Arc::new(v);
        if c.0 == generation {
            c.1 = Some(v.clone());
        }
        Ok(v)
    }

    /// The apps some deployment works on.
    pub async fn deploying_apps(&self) -> Result<BTreeSet<String>, MarathonError> {
        Ok(self
            .deployments()
            .await?
            .iter()
            .flat_map(|d| d.affected_apps.iter().cloned())
            .collect())
    }

    /// Drops the deployment cache (before and after every deployment write).
    fn deployments_changed(&self) {
        let mut c = self
            .deployments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.0 += 1;
        c.1 = None;
    }

    /// Writes a deployment's progress.
    pub async fn put_deployment(&self, d: &Deployment) -> Result<(), MarathonError> {
        self.deployments_changed();
        let r = self.store.put(&Key::marathon_deployment(&d.id)?, d).await;
        self.deployments_changed();
        r?;
        Ok(())
    }

    /// Removes a finished or cancelled deployment.
    pub async fn delete_deployment(&self, id: &str) -> Result<bool, MarathonError> {
        self.deployments_changed();
        let r = self.store.delete(&Key::marathon_deployment(id)?).await;
        self.deployments_changed();
        Ok(r?)
    }

    /// Every instance of every app: shared snapshots from the cache (callers that change
    /// one clone it), so a scan of 10,000 instances copies no instance.
    pub async fn instances(&self) -> Result<Vec<Arc<Instance>>, MarathonError> {
        let generation = {
            let c = lock_cache(&self.cache);
            if c.loaded {
                return Ok(c.by_key.values().cloned().collect());
            }
            c.generation
        };
        let listing = self.store.list::<Instance>(&instances_prefix()?).await?;
        let list: Vec<Arc<Instance>> = listing
            .items
            .into_iter()
            .map(|(_, i)| Arc::new(i.value))
            .collect();
        let mut c = lock_cache(&self.cache);
        if !c.loaded && c.generation == generation {
            c.loaded = true;
            for i in &list {
                let k = (i.app_id.clone(), i.instance_id.clone());
                c.by_task.insert(i.task_id.clone(), k.clone());
                for ct in &i.containers {
                    c.by_task.insert(ct.task_id.clone(), k.clone());
                }
                c.by_key.insert(k, i.clone());
            }
        }
        Ok(list)
    }

    /// The instance running Mesos task `task_id`.
    pub async fn instance_by_task(&self, task_id: &str) -> Result<Option<Instance>, MarathonError> {
        {
            let c = lock_cache(&self.cache);
            if c.loaded {
                return Ok(c
                    .by_task
                    .get(task_id)
                    .and_then(|k| c.by_key.get(k))
                    .map(|i| (**i).clone()));
            }
        }
        Ok(self
            .instances()
            .await?
            .into_iter()
            .find(|i| i.task_id == task_id || i.containers.iter().any(|c| c.task_id == task_id))
            .map(|i| (*i).clone()))
    }

    /// Writes one instance.
    pub async fn put_instance(&self, i: &Instance) -> Result<(), MarathonError> {
        self.store
            .put(&instance_key(&i.app_id, &i.instance_id)?, i)
            .await?;
        lock_cache(&self.cache).put(i);
        Ok(())
    }

    /// Writes several instances in one transaction (before LAUNCH is sent).
    pub async fn put_instances(&self, list: &[Instance]) -> Result<(), MarathonError> {
        self.write_instances(list, &[]).await
    }

    /// Writes and deletes instances, at most [`basalt_store::MAX_TXN_OPS`] per
    /// transaction.
    pub async fn write_instances(
        &self,
        puts: &[Instance],
        deletes: &[(String, String)],
    ) -> Result<(), MarathonError> {
        enum Op<'a> {
            Put(&'a Instance),
            Delete(&'a (String, String)),
        }
        let ops: Vec<Op<'_>> = puts
            .iter()
            .map(Op::Put)
            .chain(deletes.iter().map(Op::Delete))
            .collect();
        // Callers name every instance at most once, so the chunks are independent and
        // committed concurrently (etcd folds them into few raft rounds).
        let mut txns = Vec::new();
        for chunk in ops.chunks(basalt_store::MAX_TXN_OPS) {
            let mut txn = self.store.txn();
            for op in chunk {
                txn = match op {
                    Op::Put(i) => txn.put(&instance_key(&i.app_id, &i.instance_id)?, *i),
                    Op::Delete((a, id)) => txn.delete(&instance_key(a, id)?),
                };
            }
            txns.push(txn.commit());
        }
        let results = futures::future::join_all(txns).await;
        // What committed is cached even when another chunk failed.
        let mut c = lock_cache(&self.cache);
        for (chunk, r) in ops.chunks(basalt_store::MAX_TXN_OPS).zip(&results) {
            if r.is_err() {
                continue;
            }
            for op in chunk {
                match op {
                    Op::Put(i) => c.put(i),
                    Op::Delete((a, id)) => c.delete(a, id),
                }
            }
        }
        drop(c);
        for r in results {
            r?;
        }
        Ok(())
    }

    /// Forgets one instance.
    pub async fn delete_instance(
        &self,
        app_id: &str,
        instance_id: &str,
    ) -> Result<(), MarathonError> {
        self.store
            .delete(&instance_key(app_id, instance_id)?)
            .await?;
        lock_cache(&self.cache).delete(app_id, instance_id);
        Ok(())
    }

    /// The framework id stored by the last subscription.
    pub async fn framework_id(&self) -> Result<Option<String>, MarathonError> {
        #[derive(Deserialize)]
        struct Fid {
            value: String,
        }
        Ok(self
            .store
            .get::<Fid>(&framework_key()?)
            .await?
            .map(|v| v.value.value))
    }

    /// Stores the framework id.
    pub async fn set_framework_id(&self, id: &str) -> Result<(), MarathonError> {
        self.store
            .put(&framework_key()?, &serde_json::json!({"value": id}))
            .await?;
        Ok(())
    }
}
