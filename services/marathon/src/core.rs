//! The leader's core: app changes (create, update, delete, restart, rollback, task
//! kills) turned into stored versions and deployments, the deployment executor that
//! advances steps as instances change, and the launch demand the scheduler serves.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value as Json, json};
use tokio::sync::{Mutex, Notify};

use crate::app::{AppDefinition, VersionInfo};
use crate::error::{ApiError, MarathonError};
use crate::events::EventBus;
use crate::plan::{
    self, Action, ActionKind, InstanceView, RestartBudget, RestartCounts, Step, kill_order,
    next_restart_move,
};
use crate::pod::Pod;
use crate::state::{Deployment, Instance, Repo};
use crate::validation::{Features, validate_app};

/// The last failure of an app's task (`lastTaskFailure`).
#[derive(Debug, Clone)]
pub struct TaskFailure {
    /// JSON as Marathon serves it.
    pub json: Json,
}

/// Launch back-off of one app.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backoff {
    /// Consecutive failures.
    pub failures: u32,
    /// No launch before this time (ms since the epoch).
    pub not_before_ms: u64,
}

/// Bounds how many replacement instances (launches for apps no deployment is working
/// on: healing after lost/unreachable/failed instances) start per interval, so that many
/// agents vanishing at once do not turn into a launch storm. Like Marathon's launch
/// tokens: `tokens` per `interval`, refilled to the full amount each interval.
#[derive(Debug, Clone, Copy)]
pub struct RescheduleLimit {
    /// Replacements allowed per interval (0: unlimited).
    pub tokens: u32,
    /// The refill interval.
    pub interval: std::time::Duration,
}

impl Default for RescheduleLimit {
    fn default() -> Self {
        RescheduleLimit {
            tokens: 100,
            interval: std::time::Duration::from_secs(1),
        }
    }
}

/// The token bucket behind [`RescheduleLimit`].
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    limit: RescheduleLimit,
    tokens: u32,
    refilled: std::time::Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RescheduleLimit, now: std::time::Instant) -> TokenBucket {
        TokenBucket {
            limit,
            tokens: limit.tokens,
            refilled: now,
        }
    }

    /// Takes one token at `now`; `false` when none is left this interval.
    pub fn take(&mut self, now: std::time::Instant) -> bool {
        if self.limit.tokens == 0 {
            return true;
        }
        if now.duration_since(self.refilled) >= self.limit.interval {
            self.tokens = self.limit.tokens;
            self.refilled = now;
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// An app's serialized definition (open: without the closing `}`) and the version it
/// was made from.
type AppJson = (Option<String>, Arc<str>);

/// Pods by id, shared.
pub type PodMap = Arc<BTreeMap<String, Pod>>;

/// Apps by id, shared.
pub type AppMap = Arc<BTreeMap<String, AppDefinition>>;

/// Shared state of one Marathon process.
#[derive(Debug, Clone)]
pub struct Core {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    repo: Repo,
    events: EventBus,
    features: Features,
    /// Serializes changes: one leader, one writer at a time.
    write: Mutex<()>,
    /// Wakes the scheduler/executor after a change.
    wake: Notify,
    failures: std::sync::Mutex<HashMap<String, TaskFailure>>,
    backoff: std::sync::Mutex<HashMap<String, Backoff>>,
    /// The leader is the only writer of apps, so it caches them; every write bumps the
    /// generation, and a read only fills the cache if no write happened meanwhile.
    apps: std::sync::Mutex<(u64, Option<AppMap>)>,
    /// Each app's serialized definition without its closing `}`, by id, with the version
    /// it was made from (`GET /v2/apps` appends the per-request fields).
    app_json: std::sync::Mutex<HashMap<String, AppJson>>,
    /// Pods, cached like apps.
    pods: std::sync::Mutex<(u64, Option<PodMap>)>,
    /// Replacement launches ([`RescheduleLimit`]).
    reschedule: std::sync::Mutex<TokenBucket>,
    /// Latest readiness check result by task id: `(app id, result JSON)`.
    readiness: std::sync::Mutex<HashMap<String, (String, Json)>>,
    /// Offer statistics of the queued apps.
    offers: std::sync::Mutex<crate::offers::OfferStats>,
    /// Replacement launches refused by the limit (for `/metrics`).
    throttled: std::sync::atomic::AtomicU64,
}

/// The result of a change: the deployment and the new version.
#[derive(Debug, Clone)]
pub struct Change {
    /// The deployment id.
    pub deployment_id: String,
    /// The version timestamp.
    pub version: String,
    /// The app (for creates).
    pub app: Option<AppDefinition>,
}

impl Change {
    /// `{"deploymentId", "version"}`.
    pub fn to_json(&self) -> Json {
        json!({"deploymentId": self.deployment_id, "version": self.version})
    }
}

fn parse_body(body: &Json) -> Result<AppDefinition, ApiError> {
    if !body.is_object() {
        return Err(ApiError::invalid_json("expected a JSON object"));
    }
    AppDefinition::from_json(body.clone()).map_err(ApiError::invalid_json)
}

impl Core {
    /// A core over `repo`.
    pub fn new(repo: Repo, events: EventBus, features: Features) -> Core {
        Core {
            inner: Arc::new(Inner {
                repo,
                events,
                features,
                write: Mutex::new(()),
                wake: Notify::new(),
                failures: std::sync::Mutex::new(HashMap::new()),
                backoff: std::sync::Mutex::new(HashMap::new()),
                apps: std::sync::Mutex::new((0, None)),
                pods: std::sync::Mutex::new((0, None)),
                app_json: std::sync::Mutex::new(HashMap::new()),
                reschedule: std::sync::Mutex::new(TokenBucket::new(
                    RescheduleLimit::default(),
                    std::time::Instant::now(),
                )),
                throttled: std::sync::atomic::AtomicU64::new(0),
                readiness: std::sync::Mutex::new(HashMap::new()),
                offers: std::sync::Mutex::new(crate::offers::OfferStats::default()),
            }),
        }
    }

    /// Reads or updates the offer statistics of the queued apps (`GET /v2/queue`).
    pub fn offer_stats<T>(&self, f: impl FnOnce(&mut crate::offers::OfferStats) -> T) -> T {
        f(&mut self
            .inner
            .offers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Every current app (cached; see [`Core::invalidate_apps`]).
    pub async fn apps(&self) -> Result<AppMap, MarathonError> {
        let generation = match self.inner.apps.lock() {
            Ok(c) => {
                if let Some(apps) = &c.1 {
                    return Ok(apps.clone());
                }
                c.0
            }
            Err(_) => 0,
        };
        let apps = Arc::new(self.repo().apps().await?);
        if let Ok(mut c) = self.inner.apps.lock()
            && c.0 == generation
        {
            c.1 = Some(apps.clone());
        }
        Ok(apps)
    }

    /// Records the latest readiness result of a task.
    pub fn set_readiness(&self, app_id: &str, task_id: &str, result: Json) {
        if let Ok(mut r) = self.inner.readiness.lock() {
            r.insert(task_id.to_string(), (app_id.to_string(), result));
        }
    }

    /// Keeps the readiness results of the tasks `keep` accepts.
    pub fn retain_readiness(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut r) = self.inner.readiness.lock() {
            r.retain(|task, _| keep(task));
        }
    }

    /// The readiness results (`readinessCheckResults`) of an app's tasks.
    pub fn readiness_results(&self, app_id: &str) -> Vec<Json> {
        let mut v: Vec<(String, Json)> = self
            .inner
            .readiness
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|(_, (a, _))| a == app_id)
                    .map(|(t, (_, j))| (t.clone(), j.clone()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(_, j)| j).collect()
    }

    /// Sets the replacement rate limit.
    pub fn set_reschedule_limit(&self, limit: RescheduleLimit) {
        if let Ok(mut b) = self.inner.reschedule.lock() {
            *b = TokenBucket::new(limit, std::time::Instant::now());
        }
    }

    /// Takes a replacement token; `false` (and counted) when the limit is reached.
    pub fn take_reschedule_token(&self) -> bool {
        let ok = self
            .inner
            .reschedule
            .lock()
            .map(|mut b| b.take(std::time::Instant::now()))
            .unwrap_or(true);
        if !ok {
            self.inner
                .throttled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        ok
    }

    /// How many replacement launches the limit held back so far.
    pub fn throttled_replacements(&self) -> u64 {
        self.inner
            .throttled
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops the app and pod caches (after a write, or on becoming leader).
    pub fn invalidate_apps(&self) {
        if let Ok(mut c) = self.inner.apps.lock() {
            c.0 += 1;
            c.1 = None;
        }
        if let Ok(mut c) = self.inner.pods.lock() {
            c.0 += 1;
            c.1 = None;
        }
    }

    /// The app's serialized definition, open (without the closing `}`), cached per
    /// app version.
    pub fn app_json_open(&self, app: &AppDefinition) -> Arc<str> {
        if let Ok(c) = self.inner.app_json.lock()
            && let Some((v, j)) = c.get(&app.id)
            && *v == app.version
        {
            return j.clone();
        }
        let s = app.to_json().to_string();
        let open: Arc<str> = Arc::from(s.strip_suffix('}').unwrap_or(&s));
        if let Ok(mut c) = self.inner.app_json.lock() {
            c.insert(app.id.clone(), (app.version.clone(), open.clone()));
        }
        open
    }

    /// Every current pod (cached like apps).
    pub async fn pods(&self) -> Result<PodMap, MarathonError> {
        let generation = match self.inner.pods.lock() {
            Ok(c) => {
                if let Some(p) = &c.1 {
                    return Ok(p.clone());
                }
                c.0
            }
            Err(_) => 0,
        };
        let pods = Arc::new(self.repo().pods().await?);
        if let Ok(mut c) = self.inner.pods.lock()
            && c.0 == generation
        {
            c.1 = Some(pods.clone());
        }
        Ok(pods)
    }

    /// Every run spec the scheduler serves: the apps and the app-shaped views of the
    /// pods ([`Pod::as_app`]).
    pub async fn specs(&self) -> Result<AppMap, MarathonError> {
        let apps = self.apps().await?;
        let pods = self.pods().await?;
        if pods.is_empty() {
            return Ok(apps);
        }
        let mut all = (*apps).clone();
        for (id, p) in pods.iter() {
            all.insert(id.clone(), p.as_app());
        }
        Ok(Arc::new(all))
    }

    /// The repository.
    pub fn repo(&self) -> &Repo {
        &self.inner.repo
    }

    /// The event bus.
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// Wakes whoever waits in [`Core::changed`].
    pub fn notify(&self) {
        self.inner.wake.notify_waiters();
        self.inner.wake.notify_one();
    }

    /// Resolves at the next [`Core::notify`].
    pub async fn changed(&self) {
        self.inner.wake.notified().await;
    }

    /// The last task failure of an app.
    pub fn last_failure(&self, app_id: &str) -> Option<Json> {
        self.inner
            .failures
            .lock()
            .ok()
            .and_then(|f| f.get(app_id).map(|t| t.json.clone()))
    }

    /// Records a task failure (for `lastTaskFailure` and back-off).
    pub fn record_failure(&self, app: &AppDefinition, json: Json) {
        if let Ok(mut f) = self.inner.failures.lock() {
            f.insert(app.id.clone(), TaskFailure { json });
        }
        if let Ok(mut b) = self.inner.backoff.lock() {
            let e = b.entry(app.id.clone()).or_default();
            let delay = (app.backoff_seconds * app.backoff_factor.powi(e.failures as i32))
                .min(app.max_launch_delay_seconds)
                .max(0.0);
            e.failures = e.failures.saturating_add(1);
            e.not_before_ms = crate::time::now_millis() + (delay * 1000.0) as u64;
        }
    }

    /// Clears an app's back-off (a task reached TASK_RUNNING, or the app changed).
    pub fn reset_backoff(&self, app_id: &str) {
        if let Ok(mut b) = self.inner.backoff.lock() {
            b.remove(app_id);
        }
    }

    /// The back-off of an app.
    pub fn backoff(&self, app_id: &str) -> Backoff {
        self.inner
            .backoff
            .lock()
            .ok()
            .and_then(|b| b.get(app_id).copied())
            .unwrap_or_default()
    }

    async fn locks(&self, app_ids: &[String]) -> Result<Vec<Deployment>, MarathonError> {
        Ok(self
            .repo()
            .deployments()
            .await?
            .iter()
            .filter(|d| d.affected_apps.iter().any(|a| app_ids.contains(a)))
            .cloned()
            .collect())
    }

    async fn check_lock(&self, app_ids: &[String], force: bool) -> Result<Vec<String>, ApiError> {
        let locks = self.locks(app_ids).await?;
        let ids: Vec<String> = locks.into_iter().map(|d| d.id).collect();
        if !ids.is_empty() && !force {
            return Err(ApiError::locked(&ids));
        }
        Ok(ids)
    }

    async fn live_views(&self) -> Result<BTreeMap<String, Vec<InstanceView>>, MarathonError> {
        let mut m: BTreeMap<String, Vec<InstanceView>> = BTreeMap::new();
        let apps = self.specs().await?;
        let now = crate::time::now_millis();
        for i in self.repo().instances().await? {
            if i.is_terminal() || i.killing {
                continue;
            }
            if apps
                .get(&i.app_id)
                .is_some_and(|a| i.is_inactive(a.unreachable(), now))
            {
                continue;
            }
            m.entry(i.app_id.clone()).or_default().push(InstanceView {
                id: i.instance_id.clone(),
                started_at: i.started_at_ms.unwrap_or(i.staged_at_ms),
                running: i.state == "TASK_RUNNING",
            });
        }
        Ok(m)
    }

    /// Stores `upserts`/`deleted` as one deployment (planned from the current apps),
    /// cancelling `cancel`. `steps` overrides the planner (restart).
    async fn deploy(
        &self,
        upserts: Vec<AppDefinition>,
        deleted: Vec<String>,
        cancel: Vec<String>,
        version: String,
        steps: Option<Vec<Step>>,
    ) -> Result<Change, ApiError> {
        let original = (*self.apps().await?).clone();
        let mut target = original.clone();
        for id in &deleted {
            target.remove(id);
        }
        for a in &upserts {
            target.insert(a.id.clone(), a.clone());
        }
        for (id, app) in &target {
            for dep in &app.dependencies {
                let known = target
                    .keys()
                    .any(|k| k == dep || k.starts_with(&format!("{dep}/")));
                if !known {
                    return Err(ApiError::message(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("Dependency '{dep}' of '{id}' does not exist"),
                    ));
                }
            }
        }
        let steps = match steps {
            Some(s) => s,
            None => {
                let live = self.live_views().await?;
                plan::plan(&original, &target, &live)?
            }
        };
        let mut affected: Vec<String> = upserts.iter().map(|a| a.id.clone()).collect();
        affected.extend(deleted.iter().cloned());
        affected.sort();
        affected.dedup();
        let deployment = Deployment {
            id: uuid::Uuid::new_v4().to_string(),
            version: version.clone(),
            affected_apps: affected.clone(),
            steps,
            step_index: 0,
            original: original
                .into_iter()
                .filter(|(k, _)| affected.contains(k))
                .collect(),
            target: target
                .into_iter()
                .filter(|(k, _)| affected.contains(k))
                .collect(),
            pods: vec![],
        };
        self.invalidate_apps();
        let committed = self
            .repo()
            .commit_change(&upserts, &deleted, Some(&deployment), &cancel)
            .await;
        self.invalidate_apps();
        committed?;
        for id in &cancel {
            tracing::info!(deployment = %id, "deployment cancelled by a forced change");
        }
        for a in &upserts {
            self.reset_backoff(&a.id);
        }
        tracing::info!(deployment = %deployment.id, apps = ?affected, steps = deployment.steps.len(), "deployment created");
        self.events().publish(
            "deployment_info",
            json!({"plan": plan_json(&deployment), "currentStep": step_json(deployment.steps.first())}),
        );
        self.notify();
        Ok(Change {
            deployment_id: deployment.id,
            version,
            app: None,
        })
    }

    /// `POST /v2/apps`.
    pub async fn create_app(
        &self,
        body: &Json,
        force: bool,
        client: &str,
    ) -> Result<(AppDefinition, Change), ApiError> {
        let raw = parse_body(body)?;
        let mut app = validate_app(&raw, "/", &self.inner.features).map_err(ApiError::invalid)?;
        let _w = self.inner.write.lock().await;
        if self.repo().app(&app.id).await?.is_some() {
            return Err(ApiError::message(
                StatusCode::CONFLICT,
                format!("An app with id [{}] already exists.", app.id),
            ));
        }
        let cancel = self
            .check_lock(std::slice::from_ref(&app.id), force)
            .await?;
        let version = crate::time::now();
        app.version = Some(version.clone());
        app.version_info = Some(VersionInfo {
            last_scaling_at: version.clone(),
            last_config_change_at: version.clone(),
        });
        self.events().publish(
            "api_post_event",
            json!({"clientIp": client, "uri": "/v2/apps", "appDefinition": app.to_json()}),
        );
        let mut change = self
            .deploy(vec![app.clone()], vec![], cancel, version, None)
            .await?;
        change.app = Some(app.clone());
        Ok((app, change))
    }

    /// `PUT`/`PATCH /v2/apps/{id}`: returns the change and whether the app was created.
    pub async fn update_app(
        &self,
        id: &str,
        body: &Json,
        force: bool,
        partial: bool,
        client: &str,
    ) -> Result<(Change, bool), ApiError> {
        let id = crate::pathid::canonical(id, "/");
        let Some(obj) = body.as_object() else {
            return Err(ApiError::invalid_json("expected a JSON object"));
        };
        let existing = self.repo().app(&id).await?.map(|v| v.value);
        let Some(existing) = existing else {
            let mut body = body.clone();
            body["id"] = json!(id);
            let (_, change) = self.create_app(&body, force, client).await?;
            return Ok((change, true));
        };
        // Rollback: {"version": ts} (optionally with the id).
        if let Some(v) = obj.get("version").and_then(Json::as_str)
            && obj.keys().all(|k| k == "version" || k == "id")
        {
            let old = self.repo().version(&id, v).await?.ok_or_else(|| {
                ApiError::message(
                    StatusCode::NOT_FOUND,
                    format!("Version '{v}' of app '{id}' does not exist"),
                )
            })?;
            return self
                .replace(existing, old, force, client)
                .await
                .map(|c| (c, false));
        }
        let merged = if partial {
            let mut m = existing.to_json();
            if let (Some(mo), Some(bo)) = (m.as_object_mut(), body.as_object()) {
                for (k, v) in bo {
                    mo.insert(k.clone(), v.clone());
                }
                mo.remove("version");
                mo.remove("versionInfo");
            }
            m
        } else {
            body.clone()
        };
        let mut merged = merged;
        merged["id"] = json!(id);
        let raw = parse_body(&merged)?;
        let app = validate_app(&raw, "/", &self.inner.features).map_err(ApiError::invalid)?;
        self.replace(existing, app, force, client)
            .await
            .map(|c| (c, false))
    }

    async fn replace(
        &self,
        existing: AppDefinition,
        mut app: AppDefinition,
        force: bool,
        client: &str,
    ) -> Result<Change, ApiError> {
        let _w = self.inner.write.lock().await;
        let cancel = self
            .check_lock(std::slice::from_ref(&app.id), force)
            .await?;
        let version = crate::time::now();
        let config_changed = existing.needs_restart(&app);
        let prev = existing.version_info.clone();
        app.version = Some(version.clone());
        app.version_info = Some(VersionInfo {
            last_scaling_at: version.clone(),
            last_config_change_at: if config_changed {
                version.clone()
            } else {
                prev.map(|p| p.last_config_change_at)
                    .unwrap_or_else(|| version.clone())
            },
        });
        self.events().publish(
            "api_post_event",
            json!({"clientIp": client, "uri": format!("/v2/apps{}", app.id), "appDefinition": app.to_json()}),
        );
        self.deploy(vec![app], vec![], cancel, version, None).await
    }

    /// Group changes (`/v2/groups`): apps to create or replace (request bodies with
    /// ids relative to their group), apps to delete, all in one deployment.
    pub async fn group_change(
        &self,
        bodies: Vec<(Json, String)>,
        deleted: Vec<String>,
        force: bool,
    ) -> Result<Change, ApiError> {
        let mut apps = Vec::new();
        let mut violations = crate::validation::Violations::default();
        for (i, (body, base)) in bodies.iter().enumerate() {
            let raw = parse_body(body)?;
            match validate_app(&raw, base, &self.inner.features) {
                Ok(a) => apps.push(a),
                Err(v) => violations.0.extend(v.prefixed(&format!("/apps({i})")).0),
            }
        }
        if !violations.is_empty() {
            return Err(ApiError::invalid(violations));
        }
        let _w = self.inner.write.lock().await;
        let current = self.apps().await?;
        let mut ids: Vec<String> = apps.iter().map(|a| a.id.clone()).collect();
        ids.extend(deleted.iter().cloned());
        let cancel = self.check_lock(&ids, force).await?;
        let version = crate::time::now();
        let mut upserts = Vec::new();
        for mut app in apps {
            let existing = current.get(&app.id);
            if existing.is_some_and(|e| {
                let mut a = app.clone();
                a.version = e.version.clone();
                a.version_info = e.version_info.clone();
                &a == e
            }) {
                continue; // unchanged
            }
            let config_changed = existing.is_none_or(|e| e.needs_restart(&app));
            app.version = Some(version.clone());
            app.version_info = Some(VersionInfo {
                last_scaling_at: version.clone(),
                last_config_change_at: if config_changed {
                    version.clone()
                } else {
                    existing
                        .and_then(|e| e.version_info.as_ref())
                        .map(|v| v.last_config_change_at.clone())
                        .unwrap_or_else(|| version.clone())
                },
            });
            upserts.push(app);
        }
        let deleted: Vec<String> = deleted
            .into_iter()
            .filter(|d| current.contains_key(d))
            .collect();
        self.deploy(upserts, deleted, cancel, version, None).await
    }

    /// `DELETE /v2/apps/{id}`.
    pub async fn delete_app(&self, id: &str, force: bool) -> Result<Change, ApiError> {
        let id = crate::pathid::canonical(id, "/");
        let _w = self.inner.write.lock().await;
        if self.repo().app(&id).await?.is_none() {
            return Err(ApiError::unknown_app(&id));
        }
        let cancel = self.check_lock(std::slice::from_ref(&id), force).await?;
        let version = crate::time::now();
        self.deploy(vec![], vec![id], cancel, version, None).await
    }

    /// `POST /v2/apps/{id}/restart`.
    pub async fn restart_app(&self, id: &str, force: bool) -> Result<Change, ApiError> {
        let id = crate::pathid::canonical(id, "/");
        let _w = self.inner.write.lock().await;
        let Some(existing) = self.repo().app(&id).await? else {
            return Err(ApiError::unknown_app(&id));
        };
        let cancel = self.check_lock(std::slice::from_ref(&id), force).await?;
        let mut app = existing.value;
        let version = crate::time::now();
        app.version = Some(version.clone());
        app.version_info = Some(VersionInfo {
            last_scaling_at: version.clone(),
            last_config_change_at: version.clone(),
        });
        let scale_to = u32::try_from(app.instances.max(0)).unwrap_or(u32::MAX);
        let steps = vec![Step {
            actions: vec![Action {
                action: ActionKind::RestartApplication,
                app: id.clone(),
                scale_to: Some(scale_to),
                sentenced: vec![],
            }],
        }];
        self.deploy(vec![app], vec![], cancel, version, Some(steps))
            .await
    }

    /// `DELETE /v2/deployments/{id}`: `force` drops it (202); otherwise a new
    /// deployment rolls its apps back to their previous definitions.
    pub async fn cancel_deployment(
        &self,
        id: &str,
        force: bool,
    ) -> Result<Option<Change>, ApiError> {
        let _w = self.inner.write.lock().await;
        let all = self.repo().deployments().await?;
        let Some(d) = all.iter().find(|d| d.id == id).cloned() else {
            return Err(ApiError::message(
                StatusCode::NOT_FOUND,
                format!("DeploymentPlan {id} does not exist"),
            ));
        };
        if force {
            self.repo().delete_deployment(id).await?;
            self.notify();
            return Ok(None);
        }
        let version = crate::time::now();
        if let Some(pod_id) = d.pods.first() {
            // A pod deployment rolls back to the pod's previous version (or away).
            let previous = match d.original.get(pod_id).and_then(|a| a.version.clone()) {
                Some(v) => self.repo().pod_version(pod_id, &v).await?,
                None => None,
            };
            let exists = self.repo().pod(pod_id).await?.is_some();
            let upsert = previous.map(|mut p| {
                p.version = Some(version.clone());
                p
            });
            if upsert.is_none() && !exists {
                self.repo().delete_deployment(id).await?;
                self.notify();
                return Ok(None);
            }
            let change = self
                .deploy_pod(pod_id, upsert, vec![d.id.clone()], version)
                .await?;
            return Ok(Some(change));
        }
        let mut upserts = Vec::new();
        let mut deleted = Vec::new();
        for app_id in &d.affected_apps {
            match d.original.get(app_id) {
                Some(orig) => {
                    let mut a = orig.clone();
                    a.version = Some(version.clone());
                    a.version_info = Some(VersionInfo {
                        last_scaling_at: version.clone(),
                        last_config_change_at: version.clone(),
                    });
                    upserts.push(a);
                }
                None => deleted.push(app_id.clone()),
            }
        }
        // Apps the cancelled deployment created but which are gone already need no stop.
        let current = self.apps().await?;
        deleted.retain(|id| current.contains_key(id));
        let change = self
            .deploy(upserts, deleted, vec![d.id.clone()], version, None)
            .await?;
        Ok(Some(change))
    }

    /// Kills tasks. With `scale`, a deployment lowers `instances` by the number of
    /// killed tasks; otherwise they are replaced. Returns the killed instances or the
    /// change.
    pub async fn kill_tasks(
        &self,
        task_ids: &[String],
        scale: bool,
        force: bool,
    ) -> Result<(Vec<Instance>, Option<Change>), ApiError> {
        let instances = self.repo().instances().await?;
        let chosen: Vec<Instance> = instances
            .into_iter()
            .filter(|i| task_ids.contains(&i.task_id) || task_ids.contains(&i.instance_id))
            .map(|i| (*i).clone())
            .collect();
        let mut killed = Vec::new();
        for mut i in chosen.clone() {
            if !i.is_terminal() {
                i.killing = true;
                self.repo().put_instance(&i).await?;
            }
            killed.push(i);
        }
        self.notify();
        if !scale {
            return Ok((killed, None));
        }
        let mut per_app: BTreeMap<String, i64> = BTreeMap::new();
        for i in &chosen {
            *per_app.entry(i.app_id.clone()).or_default() += 1;
        }
        let mut last = None;
        for (app_id, n) in per_app {
            if let Some(existing) = self.repo().app(&app_id).await? {
                let mut body = json!({"instances": (existing.value.instances - n).max(0)});
                body["id"] = json!(app_id);
                let (c, _) = self.update_app(&app_id, &body, force, true, "").await?;
                last = Some(c);
            }
        }
        Ok((killed, last))
    }

    /// Stores a pod change as one deployment planned from the app-shaped views.
    async fn deploy_pod(
        &self,
        id: &str,
        upsert: Option<Pod>,
        cancel: Vec<String>,
        version: String,
    ) -> Result<Change, ApiError> {
        let before = self.repo().pod(id).await?;
        let original: BTreeMap<String, AppDefinition> =
            before.iter().map(|p| (p.id.clone(), p.as_app())).collect();
        let target: BTreeMap<String, AppDefinition> =
            upsert.iter().map(|p| (p.id.clone(), p.as_app())).collect();
        let live: BTreeMap<String, Vec<InstanceView>> = self
            .live_views()
            .await?
            .into_iter()
            .filter(|(k, _)| k == id)
            .collect();
        let steps = plan::plan(&original, &target, &live)?;
        let deployment = Deployment {
            id: uuid::Uuid::new_v4().to_string(),
            version: version.clone(),
            affected_apps: vec![id.to_string()],
            steps,
            step_index: 0,
            original,
            target,
            pods: vec![id.to_string()],
        };
        let deleted: Vec<String> = if upsert.is_none() {
            vec![id.to_string()]
        } else {
            vec![]
        };
        self.invalidate_apps();
        let committed = self
            .repo()
            .commit_pod_change(upsert.as_slice(), &deleted, Some(&deployment), &cancel)
            .await;
        self.invalidate_apps();
        committed?;
        self.reset_backoff(id);
        tracing::info!(deployment = %deployment.id, pod = %id, steps = deployment.steps.len(), "pod deployment created");
        self.events().publish(
            "deployment_info",
            json!({"plan": deployment.to_json(), "currentStep": deployment.to_json()["currentActions"].clone()}),
        );
        self.notify();
        Ok(Change {
            deployment_id: deployment.id,
            version,
            app: None,
        })
    }

    fn parse_pod(&self, body: &Json, id: Option<&str>) -> Result<Pod, ApiError> {
        if !body.is_object() {
            return Err(ApiError::invalid_json("expected a JSON object"));
        }
        let mut body = body.clone();
        if let Some(id) = id
            && body.get("id").is_none()
        {
            body["id"] = json!(id);
        }
        let pod = Pod::from_json(body).map_err(ApiError::invalid_json)?;
        pod.validate(&self.inner.features)
            .map_err(ApiError::invalid)
    }

    /// `POST /v2/pods` (201) and `PUT /v2/pods/{id}` (`id` given: creates or replaces).
    /// Returns the stored pod, the change and whether it was created.
    pub async fn put_pod(
        &self,
        body: &Json,
        id: Option<&str>,
        force: bool,
    ) -> Result<(Pod, Change, bool), ApiError> {
        let mut pod = self.parse_pod(body, id)?;
        if let Some(id) = id {
            let id = crate::pathid::canonical(id, "/");
            if pod.id != id {
                return Err(ApiError::message(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Pod id '{}' in the body does not match the path id '{id}'",
                        pod.id
                    ),
                ));
            }
        }
        let _w = self.inner.write.lock().await;
        let existing = self.repo().pod(&pod.id).await?;
        if id.is_none() && existing.is_some() {
            return Err(ApiError::message(
                StatusCode::CONFLICT,
                format!("Pod {} already exists.", pod.id),
            ));
        }
        if self.apps().await?.contains_key(&pod.id) {
            return Err(ApiError::message(
                StatusCode::CONFLICT,
                format!("An app with id [{}] already exists.", pod.id),
            ));
        }
        let cancel = self
            .check_lock(std::slice::from_ref(&pod.id), force)
            .await?;
        let version = crate::time::now();
        pod.version = Some(version.clone());
        let created = existing.is_none();
        let change = self
            .deploy_pod(&pod.id.clone(), Some(pod.clone()), cancel, version)
            .await?;
        Ok((pod, change, created))
    }

    /// `DELETE /v2/pods/{id}`.
    pub async fn delete_pod(&self, id: &str, force: bool) -> Result<Change, ApiError> {
        let id = crate::pathid::canonical(id, "/");
        let _w = self.inner.write.lock().await;
        if self.repo().pod(&id).await?.is_none() {
            return Err(ApiError::message(
                StatusCode::NOT_FOUND,
                format!("Pod '{id}' does not exist"),
            ));
        }
        let cancel = self.check_lock(std::slice::from_ref(&id), force).await?;
        self.deploy_pod(&id, None, cancel, crate::time::now()).await
    }

    /// How many instances each app should launch now (apps without demand omitted).
    pub async fn launch_demand(&self) -> Result<BTreeMap<String, u32>, MarathonError> {
        let apps = self.specs().await?;
        let deployments = self.repo().deployments().await?;
        let instances = self.repo().instances().await?;
        let mut by_app: HashMap<&str, Vec<&Instance>> = HashMap::new();
        for i in &instances {
            by_app.entry(i.app_id.as_str()).or_default().push(i);
        }
        // What the deployments say, per app (computed once, not per app).
        let mut restarts: HashMap<&str, u32> = HashMap::new();
        let mut waiting: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for d in deployments.iter() {
            let current: std::collections::HashSet<&str> =
                d.current_actions().iter().map(|a| a.app.as_str()).collect();
            for a in d.current_actions() {
                match a.action {
                    ActionKind::RestartApplication => {
                        restarts
                            .entry(a.app.as_str())
                            .or_insert(a.scale_to.unwrap_or(0));
                    }
                    ActionKind::StartApplication => {
                        waiting.insert(a.app.as_str());
                    }
                    _ => {}
                }
            }
            for step in d.steps.iter().skip(d.step_index) {
                for a in &step.actions {
                    if a.action != ActionKind::StopApplication
                        && !current.contains(a.app.as_str())
                        && d.affected_apps.contains(&a.app)
                    {
                        waiting.insert(a.app.as_str());
                    }
                }
            }
        }
        let mut out = BTreeMap::new();
        let now = crate::time::now_millis();
        for (id, app) in apps.iter() {
            let version = app.version.clone().unwrap_or_default();
            let strategy = app.unreachable();
            let live: Vec<&Instance> = by_app
                .get(id.as_str())
                .map(|v| {
                    v.iter()
                        .copied()
                        .filter(|i| !i.is_terminal() && !i.killing && !i.is_inactive(strategy, now))
                        .collect()
                })
                .unwrap_or_default();
            // A restart in progress bounds what may launch.
            let restart = restarts.get(id.as_str()).copied();
            // A start step in progress, or a later step waiting for this app, means
            // nothing launches yet.
            let starting_only = waiting.contains(id.as_str());
            if starting_only {
                continue;
            }
            let n = if let Some(target) = restart {
                let budget = RestartBudget::new(target, app.upgrade());
                let all: Vec<&Instance> = by_app
                    .get(id.as_str())
                    .map(|v| {
                        v.iter()
                            .copied()
                            .filter(|i| !i.is_inactive(strategy, now))
                            .collect()
                    })
                    .unwrap_or_default();
                let counts = restart_counts(app, &version, &all);
                next_restart_move(&budget, &counts).launch_new
            } else {
                let want = u32::try_from(app.instances.max(0)).unwrap_or(u32::MAX);
                want.saturating_sub(live.len() as u32)
            };
            if n > 0 {
                out.insert(id.clone(), n);
            }
        }
        Ok(out)
    }

    /// Advances every deployment as far as the instances allow; marks instances to kill.
    /// Returns the instances that must be killed now (not yet asked).
    pub async fn tick(&self) -> Result<Vec<Instance>, MarathonError> {
        let _w = self.inner.write.lock().await;
        let mut to_kill: Vec<Instance> = Vec::new();
        let apps = self.specs().await?;
        // Nothing below changes an instance before every deployment has been looked at:
        // one snapshot, grouped by app once (not once per deployment and step).
        let instances = self.repo().instances().await?;
        let mut by_app: HashMap<&str, Vec<&Instance>> = HashMap::new();
        for i in &instances {
            by_app.entry(i.app_id.as_str()).or_default().push(i);
        }
        for current in self.repo().deployments().await?.iter() {
            let mut step_index = current.step_index;
            while let Some(step) = current.steps.get(step_index) {
                let mut all_done = true;
                let now = crate::time::now_millis();
                for a in &step.actions {
                    let strategy = apps.get(&a.app).map(AppDefinition::unreachable);
                    let mine: Vec<&Instance> = by_app
                        .get(a.app.as_str())
                        .map(|v| {
                            v.iter()
                                .copied()
                                .filter(|i| !strategy.is_some_and(|s| i.is_inactive(s, now)))
                                .collect()
                        })
                        .unwrap_or_default();
                    let (done, kills) = action_progress(a, apps.get(&a.app), &mine);
                    for k in kills {
                        if !to_kill.iter().any(|x| x.instance_id == k.instance_id) {
                            to_kill.push(k);
                        }
                    }
                    all_done &= done;
                }
                if !all_done {
                    break;
                }
                step_index += 1;
                self.events().publish(
                    "deployment_step_success",
                    json!({"plan": plan_json(current), "currentStep": step_json(Some(step))}),
                );
            }
            // Unchanged and not finished (a plan without steps is finished at once).
            if step_index == current.step_index && step_index < current.steps.len() {
                continue;
            }
            let d = Deployment {
                step_index,
                ..current.clone()
            };
            if d.step_index >= d.steps.len() {
                self.repo().delete_deployment(&d.id).await?;
                tracing::info!(deployment = %d.id, "deployment finished");
                self.events().publish(
                    "deployment_success",
                    json!({"id": d.id, "plan": plan_json(&d)}),
                );
            } else {
                self.repo().put_deployment(&d).await?;
            }
        }
        // Instances of deleted apps, and marked ones, get killed too; unreachable ones
        // past `expungeAfterSeconds` are forgotten; an app no deployment works on that
        // has more active instances than wanted (an unreachable instance came back
        // after its replacement started) loses the surplus per `killSelection`.
        let now = crate::time::now_millis();
        let deploying = self.repo().deploying_apps().await?;
        let mut active: BTreeMap<String, Vec<&Instance>> = BTreeMap::new();
        for i in &instances {
            let app = apps.get(&i.app_id);
            if i.is_terminal() {
                continue;
            }
            let strategy = app.map_or(crate::app::UnreachableStrategy::DEFAULT, |a| {
                a.unreachable()
            });
            if i.state == "TASK_UNREACHABLE" && (app.is_none() || i.is_expunged(strategy, now)) {
                tracing::info!(task = %i.task_id, app = %i.app_id, "expunging unreachable instance");
                self.repo()
                    .delete_instance(&i.app_id, &i.instance_id)
                    .await?;
                self.events().publish(
                    "instance_changed_event",
                    json!({"instanceId": i.instance_id, "condition": "Unreachable", "runSpecId": i.app_id,
                        "agentId": i.agent_id, "host": i.host, "runSpecVersion": i.version, "expunged": true}),
                );
                continue;
            }
            if (app.is_none() || i.killing)
                && !to_kill.iter().any(|x| x.instance_id == i.instance_id)
            {
                to_kill.push(Instance::clone(i));
                continue;
            }
            if !i.killing && !i.is_inactive(strategy, now) && !deploying.contains(&i.app_id) {
                active.entry(i.app_id.clone()).or_default().push(i);
            }
        }
        for (app_id, list) in active {
            let Some(app) = apps.get(&app_id) else {
                continue;
            };
            let want = usize::try_from(app.instances.max(0)).unwrap_or(usize::MAX);
            if list.len() <= want {
                continue;
            }
            let views: Vec<InstanceView> = list
                .iter()
                .map(|i| InstanceView {
                    id: i.instance_id.clone(),
                    started_at: i.started_at_ms.unwrap_or(i.staged_at_ms),
                    running: i.state == "TASK_RUNNING",
                })
                .collect();
            for id in kill_order(&views, want, app.kill_selection) {
                if let Some(i) = list.iter().find(|i| i.instance_id == id) {
                    tracing::info!(task = %i.task_id, app = %app_id, "killing surplus instance");
                    to_kill.push(Instance::clone(i));
                }
            }
        }
        for k in &mut to_kill {
            if !k.killing {
                k.killing = true;
                self.repo().put_instance(k).await?;
            }
        }
        Ok(to_kill)
    }
}

/// Healthy, running and — for apps with readiness checks — ready.
fn counts_ready(app: &AppDefinition, i: &Instance) -> bool {
    i.is_healthy_running(!app.health_checks.is_empty())
        && (app.readiness_checks.is_empty() || i.ready)
}

fn restart_counts(app: &AppDefinition, version: &str, mine: &[&Instance]) -> RestartCounts {
    let mut c = RestartCounts::default();
    for i in mine {
        if i.is_terminal() {
            continue;
        }
        let new = i.version == version;
        match (new, i.killing, counts_ready(app, i)) {
            (false, true, _) => c.old_killing += 1,
            (false, false, _) => c.old_healthy += 1,
            (true, true, _) => c.old_killing += 1,
            (true, false, true) => c.new_healthy += 1,
            (true, false, false) => c.new_pending += 1,
        }
    }
    c
}

/// Whether `a` is done given the app's instances, and which instances it wants killed.
fn action_progress(
    a: &Action,
    app: Option<&AppDefinition>,
    mine: &[&Instance],
) -> (bool, Vec<Instance>) {
    let live: Vec<&Instance> = mine.iter().copied().filter(|i| !i.is_terminal()).collect();
    match a.action {
        ActionKind::StartApplication => (true, vec![]),
        ActionKind::StopApplication => (
            live.is_empty(),
            live.iter()
                .filter(|i| !i.killing)
                .map(|i| (*i).clone())
                .collect(),
        ),
        ActionKind::ScaleApplication => {
            let Some(app) = app else {
                return (true, vec![]);
            };
            let target = a.scale_to.unwrap_or(0) as usize;
            let active: Vec<&Instance> = live.iter().copied().filter(|i| !i.killing).collect();
            let mut kills: Vec<Instance> = Vec::new();
            if active.len() > target {
                let sentenced: Vec<&Instance> = active
                    .iter()
                    .copied()
                    .filter(|i| a.sentenced.contains(&i.instance_id))
                    .collect();
                kills.extend(sentenced.iter().map(|i| (*i).clone()));
                let rest: Vec<InstanceView> = active
                    .iter()
                    .filter(|i| !a.sentenced.contains(&i.instance_id))
                    .map(|i| InstanceView {
                        id: i.instance_id.clone(),
                        started_at: i.started_at_ms.unwrap_or(i.staged_at_ms),
                        running: i.state == "TASK_RUNNING",
                    })
                    .collect();
                let extra = active
                    .len()
                    .saturating_sub(target)
                    .saturating_sub(sentenced.len());
                let keep = rest.len().saturating_sub(extra);
                for id in kill_order(&rest, keep, app.kill_selection) {
                    if let Some(i) = active.iter().find(|i| i.instance_id == id) {
                        kills.push((*i).clone());
                    }
                }
            }
            let healthy = active.iter().filter(|i| counts_ready(app, i)).count();
            let killing_left = live.iter().any(|i| i.killing);
            (
                kills.is_empty() && active.len() == target && healthy == target && !killing_left,
                kills,
            )
        }
        ActionKind::RestartApplication => {
            let Some(app) = app else {
                return (true, vec![]);
            };
            let version = app.version.clone().unwrap_or_default();
            let budget = RestartBudget::new(a.scale_to.unwrap_or(0), app.upgrade());
            let counts = restart_counts(app, &version, mine);
            if counts.done(&budget) {
                return (true, vec![]);
            }
            let mv = next_restart_move(&budget, &counts);
            let old: Vec<InstanceView> = live
                .iter()
                .filter(|i| i.version != version && !i.killing)
                .map(|i| InstanceView {
                    id: i.instance_id.clone(),
                    started_at: i.started_at_ms.unwrap_or(i.staged_at_ms),
                    running: i.state == "TASK_RUNNING",
                })
                .collect();
            let keep = old.len().saturating_sub(mv.kill_old as usize);
            let kills = kill_order(&old, keep, crate::app::KillSelection::OldestFirst)
                .into_iter()
                .filter_map(|id| {
                    live.iter()
                        .find(|i| i.instance_id == id)
                        .map(|i| (*i).clone())
                })
                .collect();
            (false, kills)
        }
    }
}

fn step_json(step: Option<&Step>) -> Json {
    json!({"actions": step.map(|s| s.actions.iter().map(|a| json!({"action": a.action, "app": a.app})).collect::<Vec<_>>()).unwrap_or_default()})
}

fn plan_json(d: &Deployment) -> Json {
    json!({
        "id": d.id,
        "version": d.version,
        "original": {"apps": d.original.values().map(AppDefinition::to_json).collect::<Vec<_>>()},
        "target": {"apps": d.target.values().map(AppDefinition::to_json).collect::<Vec<_>>()},
        "steps": d.steps.iter().map(|s| step_json(Some(s))).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn reschedule_tokens_refill_per_interval() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            RescheduleLimit {
                tokens: 2,
                interval: Duration::from_secs(10),
            },
            t0,
        );
        assert!(b.take(t0));
        assert!(b.take(t0));
        assert!(!b.take(t0 + Duration::from_secs(9)), "bounded per interval");
        assert!(b.take(t0 + Duration::from_secs(10)), "refilled");
        assert!(b.take(t0 + Duration::from_secs(11)));
        assert!(!b.take(t0 + Duration::from_secs(12)));
        let mut unlimited = TokenBucket::new(
            RescheduleLimit {
                tokens: 0,
                interval: Duration::from_secs(10),
            },
            t0,
        );
        assert!((0..1000).all(|_| unlimited.take(t0)), "0 means unlimited");
    }

    #[test]
    fn unreachable_instances_turn_inactive_then_expunged() {
        use crate::app::UnreachableStrategy;
        let i = Instance {
            state: "TASK_UNREACHABLE".into(),
            unreachable_since_ms: Some(1_000),
            ..Instance::default()
        };
        let s = UnreachableStrategy::Enabled {
            inactive_after_seconds: 5,
            expunge_after_seconds: 60,
        };
        assert!(!i.is_inactive(s, 5_999));
        assert!(i.is_inactive(s, 6_000));
        assert!(!i.is_expunged(s, 60_999));
        assert!(i.is_expunged(s, 61_000));
        assert!(!i.is_inactive(UnreachableStrategy::Disabled, u64::MAX));
        assert!(!i.is_expunged(UnreachableStrategy::Disabled, u64::MAX));
        let reachable = Instance {
            state: "TASK_RUNNING".into(),
            ..Instance::default()
        };
        assert!(!reachable.is_inactive(UnreachableStrategy::DEFAULT, u64::MAX));
    }
}
