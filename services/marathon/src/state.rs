//! The etcd repository: apps, every app version, deployments, instances and the
//! framework id (layout in the crate docs).

use std::collections::BTreeMap;

use basalt_store::{Key, Prefix, Store, Versioned};
use serde::{Deserialize, Serialize};

use crate::app::AppDefinition;
use crate::error::MarathonError;
use crate::plan::{Action, Step};

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
}

impl Deployment {
    /// The actions of the current step.
    pub fn current_actions(&self) -> &[Action] {
        self.steps
            .get(self.step_index)
            .map(|s| s.actions.as_slice())
            .unwrap_or(&[])
    }

    /// Marathon's JSON for `GET /v2/deployments`.
    pub fn to_json(&self) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({"actions": s.actions.iter().map(|a| serde_json::json!({"action": a.action, "app": a.app})).collect::<Vec<_>>()})
            })
            .collect();
        serde_json::json!({
            "id": self.id,
            "version": self.version,
            "affectedApps": self.affected_apps,
            "affectedPods": [],
            "steps": steps,
            "currentActions": self.current_actions().iter().map(|a| serde_json::json!({"action": a.action, "app": a.app, "readinessCheckResults": []})).collect::<Vec<_>>(),
            "currentStep": (self.step_index + 1).min(self.steps.len().max(1)),
            "totalSteps": self.steps.len(),
        })
    }
}

/// One instance (one Mesos task) of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        v
    }
}

/// Typed access to Marathon's keys.
#[derive(Debug, Clone)]
pub struct Repo {
    store: Store,
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

fn framework_key() -> Result<Key, MarathonError> {
    Ok(Key::from_segments(["marathon", "framework-id"])?)
}

impl Repo {
    /// A repository over `store`.
    pub fn new(store: Store) -> Repo {
        Repo { store }
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
        Ok(())
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

    /// Every deployment.
    pub async fn deployments(&self) -> Result<Vec<Deployment>, MarathonError> {
        let listing = self
            .store
            .list::<Deployment>(&Prefix::marathon_deployments())
            .await?;
        let mut v: Vec<Deployment> = listing.items.into_iter().map(|(_, d)| d.value).collect();
        v.sort_by(|a, b| a.version.cmp(&b.version).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// Writes a deployment's progress.
    pub async fn put_deployment(&self, d: &Deployment) -> Result<(), MarathonError> {
        self.store.put(&Key::marathon_deployment(&d.id)?, d).await?;
        Ok(())
    }

    /// Removes a finished or cancelled deployment.
    pub async fn delete_deployment(&self, id: &str) -> Result<bool, MarathonError> {
        Ok(self.store.delete(&Key::marathon_deployment(id)?).await?)
    }

    /// Every instance of every app.
    pub async fn instances(&self) -> Result<Vec<Instance>, MarathonError> {
        let listing = self.store.list::<Instance>(&instances_prefix()?).await?;
        Ok(listing.items.into_iter().map(|(_, i)| i.value).collect())
    }

    /// Writes one instance.
    pub async fn put_instance(&self, i: &Instance) -> Result<(), MarathonError> {
        self.store
            .put(&instance_key(&i.app_id, &i.instance_id)?, i)
            .await?;
        Ok(())
    }

    /// Writes several instances in one transaction (before LAUNCH is sent).
    pub async fn put_instances(&self, list: &[Instance]) -> Result<(), MarathonError> {
        let mut txn = self.store.txn();
        for i in list {
            txn = txn.put(&instance_key(&i.app_id, &i.instance_id)?, i);
        }
        if !txn.is_empty() {
            txn.commit().await?;
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
