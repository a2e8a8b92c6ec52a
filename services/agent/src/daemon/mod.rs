//! The agent daemon: connects detection, the containerizer and the master.
//!
//! [`AgentDaemon::start`] advertises the machine's resources (detected and cached, or
//! given), serves the agent HTTP API (`/state`, `/metrics/snapshot`, `/files/*`,
//! `/health`; see the `http` module) and subscribes to a master over the internal
//! protocol ([`basalt_master::agent_api`]): it tries each configured master, follows
//! `307` redirects to the leader and re-subscribes with back-off whenever the stream
//! breaks (master failover, network) — with its agent id and every running task.
//!
//! # Events
//!
//! * `REGISTERED`: the agent id is checkpointed as `<work_dir>/meta/slaves/latest`
//!   (a symlink to `<agent_id>`, as Mesos), so a restarted daemon re-registers with the
//!   same id; the containerizer is created (its sandbox paths need the id).
//! * `LAUNCH`: the task's health check is validated (TASK_ERROR naming the field), its
//!   URIs fetched into the sandbox ([`crate::fetcher`]; a failure is TASK_FAILED
//!   `REASON_CONTAINER_LAUNCH_FAILED` naming the URI), its persistent volumes attached
//!   (`volumes` module), then it is launched by the [`Containerizer`]; TASK_RUNNING once
//!   its process exec'd, health updates (TASK_RUNNING with `healthy`, [`crate::health`];
//!   a kill after `consecutive_failures`), then the terminal status from
//!   [`Container::wait`]. A launch error becomes its TASK_FAILED/TASK_ERROR status; the
//!   agent stays up.
//! * `LAUNCH_GROUP`: each task of the group runs as its own container in the DEFAULT
//!   executor's network namespace and sandbox (`pods` module); one failing or killed
//!   task kills its group.
//! * `CHECKPOINT_RESOURCES`: the new total; persistent volumes created or destroyed
//!   on disk.
//! * `KILL`: SIGTERM, SIGKILL after the grace period (the KILL's kill policy, else the
//!   task's, else the configured default) → TASK_KILLED.
//! * `SHUTDOWN_FRAMEWORK` / `SHUTDOWN_EXECUTOR`: kills the framework's (executor's)
//!   tasks. `SHUTDOWN`: kills everything and stops the daemon.
//! * `ACKNOWLEDGE`: drops the acknowledged status update.
//!
//! # Status updates
//!
//! Every status gets a fresh uuid and goes to a queue that is checkpointed in
//! `<work_dir>/meta/slaves/<agent_id>/agent_state.json` (with the tasks and frameworks)
//! before it is sent. A sender posts the queue in order as `UPDATE` calls, retrying
//! with back-off until the master answers `202` (durable); an update stays queued until
//! the framework's `ACKNOWLEDGE` arrives, and is sent again after every
//! re-registration. A restarted daemon loads the queue and resends it.
//!
//! # Limits
//!
//! * Command tasks and task groups; no custom executors.
//! * Recovery after a daemon restart re-registers with the same id and reports the
//!   checkpointed tasks whose process still lives (pid + start time from the
//!   containerizer's checkpoint); they keep running, are watched by polling (exit, and
//!   OOM kills in their memory cgroup) and killed by signal. Their usage and health
//!   checks are not re-attached; a task group's network namespace is not recovered.
//! * Finished sandboxes are deleted `gc_delay` after the task ended (`gc` module), by
//!   timers of the daemon that saw the task end.
//! * Framework messages to executors are logged and dropped (no custom executors).

mod gc;
mod http;
mod master;
mod pods;
mod recover;
mod status;
mod volumes;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_mesos::{
    AgentId, Attributes, ContainerId, ExecutorId, FrameworkId, FrameworkInfo, Resources, TaskId,
    TaskInfo, TaskState, TaskStatus,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::containerizer::{
    Container, Containerizer, ContainerizerConfig, DEFAULT_GRACE_PERIOD, DEFAULT_PATH, Isolation,
};
use crate::detect::{DetectConfig, DetectError, Detector, ResourceCache};
use crate::fetcher::{Fetcher, FetcherConfig, Owner};
use crate::health;

pub use status::PendingUpdate;

/// Daemon failures (start-up only: at run time errors become task statuses and logs).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A configuration field is unusable.
    #[error("agent config field '{field}': {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Resource detection failed.
    #[error("resource detection: {0}")]
    Detect(#[from] DetectError),
    /// The detected resources did not parse as Mesos resources.
    #[error("detected {what} {text:?} do not parse: {reason}")]
    DetectedText {
        /// `resources` or `attributes`.
        what: &'static str,
        /// The text.
        text: String,
        /// The parse error.
        reason: String,
    },
    /// The HTTP endpoint could not be bound.
    #[error("binding the agent HTTP endpoint {addr}: {source}")]
    Bind {
        /// The listen address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Reading or writing a checkpoint failed.
    #[error("agent checkpoint {path}: {source}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A checkpoint is not valid JSON of the expected shape.
    #[error("agent checkpoint {path} is corrupt: {reason}")]
    CorruptCheckpoint {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("agent HTTP client: {0}")]
    Client(String),
}

/// Where the advertised resources come from.
#[derive(Debug, Clone)]
pub enum ResourceSource {
    /// Detect (cached in the work dir, see [`crate::detect`]).
    Detect(DetectConfig),
    /// Exactly these (tests, operator overrides).
    Given {
        /// Total resources.
        resources: Resources,
        /// Attributes.
        attributes: Attributes,
    },
}

/// Containerizer settings that do not depend on the agent id.
#[derive(Debug, Clone)]
pub struct ContainerSettings {
    /// Namespaces and cgroups (default: both).
    pub isolation: Isolation,
    /// Run tasks as their user.
    pub switch_user: bool,
    /// Kill grace period without a kill policy.
    pub default_grace_period: Duration,
    /// Variables every task starts with.
    pub environment: BTreeMap<String, String>,
    /// How often memory cgroups are checked for OOM kills.
    pub oom_check_interval: Duration,
    /// Image tasks: default and insecure (plain HTTP) registries, OCI runtime.
    pub images: crate::oci::ImageSettings,
}

impl Default for ContainerSettings {
    fn default() -> Self {
        Self {
            isolation: Isolation::full(),
            switch_user: true,
            default_grace_period: DEFAULT_GRACE_PERIOD,
            environment: BTreeMap::from([("PATH".to_owned(), DEFAULT_PATH.to_owned())]),
            oom_check_interval: Duration::from_millis(250),
            images: crate::oci::ImageSettings::default(),
        }
    }
}

/// The daemon's settings (Mesos agent flags).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Masters as `host:port` or `http://host:port` (any of them; followers redirect).
    pub masters: Vec<String>,
    /// The join credential presented as `Authorization: Bearer`.
    pub join_credential: Option<String>,
    /// `--work_dir`: sandboxes, checkpoints, the resource cache.
    pub work_dir: PathBuf,
    /// What the agent offers.
    pub resources: ResourceSource,
    /// Host name reported to the master and given to tasks as `HOST`.
    pub hostname: String,
    /// The IP others reach this agent at (`pid`, `MESOS_AGENT_ENDPOINT`); default: the
    /// listen address' IP, or 127.0.0.1 when that is unspecified.
    pub advertise_ip: Option<IpAddr>,
    /// The HTTP listen address (default `0.0.0.0:5051`; port 0 picks one).
    pub listen: SocketAddr,
    /// The containerizer.
    pub containers: ContainerSettings,
    /// First re-subscription delay (doubles up to `reconnect_max`).
    pub reconnect_initial: Duration,
    /// Longest re-subscription delay.
    pub reconnect_max: Duration,
    /// First UPDATE retry delay (doubles up to `update_retry_max`).
    pub update_retry_initial: Duration,
    /// Longest UPDATE retry delay.
    pub update_retry_max: Duration,
    /// How many completed tasks `/state` keeps.
    pub max_completed_tasks: usize,
    /// The fetcher's cache (Mesos `--fetcher_cache_dir`; default `<work_dir>/fetch`).
    pub fetcher_cache_dir: PathBuf,
    /// How long a finished task's sandbox is kept (Mesos `--gc_delay`, one week).
    pub gc_delay: Duration,
}

impl AgentConfig {
    /// Defaults: detected resources, listen on `0.0.0.0:5051`, full isolation.
    pub fn new(
        masters: Vec<String>,
        join_credential: Option<String>,
        work_dir: impl Into<PathBuf>,
        hostname: impl Into<String>,
    ) -> Self {
        let work_dir = work_dir.into();
        Self {
            masters,
            join_credential,
            resources: ResourceSource::Detect(DetectConfig::new(work_dir.clone())),
            hostname: hostname.into(),
            advertise_ip: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 5051)),
            containers: ContainerSettings::default(),
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            update_retry_initial: Duration::from_millis(100),
            update_retry_max: Duration::from_secs(10),
            max_completed_tasks: 1000,
            fetcher_cache_dir: work_dir.join("fetch"),
            gc_delay: Duration::from_secs(7 * 24 * 3600),
            work_dir,
        }
    }
}

/// One task the agent knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskEntry {
    /// Its framework.
    pub framework_id: FrameworkId,
    /// The task as launched.
    pub task: TaskInfo,
    /// Its executor (the task id for command tasks).
    pub executor_id: ExecutorId,
    /// Its latest status.
    pub status: TaskStatus,
    /// Every status, oldest first.
    pub statuses: Vec<TaskStatus>,
    /// The container, once launched.
    #[serde(default)]
    pub container_id: Option<ContainerId>,
    /// The sandbox, once launched.
    #[serde(default)]
    pub sandbox: Option<PathBuf>,
    /// The run's meta directory, once launched.
    #[serde(default)]
    pub meta_dir: Option<PathBuf>,
    /// Process id of the task (recovery), once launched.
    #[serde(default)]
    pub pid: Option<i32>,
    /// A KILL arrived (with its grace period override) before the launch finished.
    #[serde(skip)]
    kill_requested: Option<Option<Duration>>,
    /// The live container (not checkpointed).
    #[serde(skip)]
    container: Option<Container>,
    /// The task group (one `LAUNCH_GROUP`) it belongs to, if any.
    #[serde(default)]
    pub group: Option<String>,
    /// A recovered task was OOM-killed: the memory limitation message.
    #[serde(skip)]
    oom: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    agent_id: Option<AgentId>,
    master: Option<String>,
    master_id: Option<String>,
    stream_id: Option<String>,
    heartbeat: Option<Duration>,
    registrations: u32,
    resources: Resources,
    attributes: Attributes,
    frameworks: BTreeMap<FrameworkId, FrameworkInfo>,
    tasks: BTreeMap<(FrameworkId, TaskId), TaskEntry>,
    completed: Vec<TaskEntry>,
    pending: Vec<PendingUpdate>,
    terminal_counts: BTreeMap<TaskState, u64>,
    updates_sent: u64,
    last_error: Option<String>,
    containerizer: Option<Arc<Containerizer>>,
    containerizer_error: Option<String>,
    stopping: bool,
    /// Default executors of task groups.
    executors: BTreeMap<(FrameworkId, ExecutorId), pods::GroupExecutor>,
}

struct Inner {
    cfg: AgentConfig,
    client: reqwest::Client,
    fetcher: Fetcher,
    /// Serialises the creation of task groups' executors.
    group_lock: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    updates_wake: Notify,
    stop: watch::Sender<bool>,
    /// Set by [`AgentDaemon::stop`]: leftover task watchers of a stopped daemon must not
    /// overwrite the checkpoints a successor on the same work dir writes.
    stopped: std::sync::atomic::AtomicBool,
    http_address: SocketAddr,
    endpoint: String,
    start_time: f64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A running agent daemon. Dropping it stops its loops (not its tasks), like a SIGKILL
/// of the agent process.
pub struct AgentDaemon {
    inner: Arc<Inner>,
    loops: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for AgentDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentDaemon")
            .field("hostname", &self.inner.cfg.hostname)
            .field("http", &self.inner.http_address)
            .finish_non_exhaustive()
    }
}

impl Drop for AgentDaemon {
    fn drop(&mut self) {
        for l in self.loops.drain(..) {
            l.abort();
        }
    }
}

/// `<work_dir>/meta/slaves`.
fn slaves_meta(work_dir: &Path) -> PathBuf {
    work_dir.join("meta").join("slaves")
}

fn advertised(cfg: &AgentConfig) -> Result<(Resources, Attributes), AgentError> {
    match &cfg.resources {
        ResourceSource::Given {
            resources,
            attributes,
        } => Ok((resources.clone(), attributes.clone())),
        ResourceSource::Detect(dc) => {
            let cache = ResourceCache::in_work_dir(&cfg.work_dir);
            let adv = Detector::host().detect_cached(dc, &cache)?;
            if let Some(d) = &adv.drift {
                tracing::warn!(drift = ?d, "the machine differs from the cached detection; advertising the cache");
            }
            let text = adv.resources.to_mesos_resources_text();
            let resources = Resources::parse(&text).map_err(|e| AgentError::DetectedText {
                what: "resources",
                text: text.clone(),
                reason: e.to_string(),
            })?;
            let text = adv.resources.to_mesos_attributes_text();
            let attributes = if text.is_empty() {
                Attributes::default()
            } else {
                Attributes::parse(&text).map_err(|e| AgentError::DetectedText {
                    what: "attributes",
                    text: text.clone(),
                    reason: e.to_string(),
                })?
            };
            Ok((resources, attributes))
        }
    }
}

impl AgentDaemon {
    /// Detects (or takes) the resources, loads the checkpointed agent id and state,
    /// binds the HTTP endpoint and starts subscribing to the masters.
    pub async fn start(cfg: AgentConfig) -> Result<AgentDaemon, AgentError> {
        if cfg.masters.is_empty() {
            return Err(AgentError::Config {
                field: "masters",
                reason: "at least one master is required".into(),
            });
        }
        if cfg.hostname.is_empty() {
            return Err(AgentError::Config {
                field: "hostname",
                reason: "must not be empty".into(),
            });
        }
        std::fs::create_dir_all(&cfg.work_dir).map_err(|source| AgentError::Checkpoint {
            path: cfg.work_dir.clone(),
            source,
        })?;
        let (resources, attributes) = advertised(&cfg)?;
        let mut state = State {
            resources,
            attributes,
            ..State::default()
        };
        if let Some(id) = status::read_latest(&cfg.work_dir)? {
            tracing::info!(agent_id = %id.as_str(), "recovering the checkpointed agent");
            if let Some(cp) = status::load_state(&cfg.work_dir, &id)? {
                recover::restore(&mut state, cp, &id);
            }
            state.agent_id = Some(id);
        }
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| AgentError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let http_address = listener.local_addr().map_err(|source| AgentError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let ip = cfg.advertise_ip.unwrap_or_else(|| {
            if http_address.ip().is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                http_address.ip()
            }
        });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| AgentError::Client(e.to_string()))?;
        let fetcher = Fetcher::new(FetcherConfig::new(cfg.fetcher_cache_dir.clone()))
            .map_err(|e| AgentError::Client(e.to_string()))?;
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            endpoint: SocketAddr::new(ip, http_address.port()).to_string(),
            cfg,
            client,
            fetcher,
            group_lock: tokio::sync::Mutex::new(()),
            state: Mutex::new(state),
            updates_wake: Notify::new(),
            stop,
            stopped: std::sync::atomic::AtomicBool::new(false),
            http_address,
            start_time: now_secs(),
        });
        if lock(&inner.state).agent_id.is_some() {
            ensure_containerizer(&inner);
        }
        let router = http::router(inner.clone());
        let mut stop_rx = inner.stop.subscribe();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "agent HTTP server failed");
            }
        });
        let loops = vec![
            server,
            tokio::spawn(master::run(inner.clone())),
            tokio::spawn(status::sender(inner.clone())),
            tokio::spawn(recover::watch(inner.clone())),
        ];
        tracing::info!(http = %http_address, "agent daemon started");
        Ok(AgentDaemon { inner, loops })
    }

    /// The HTTP endpoint's address.
    pub fn http_address(&self) -> SocketAddr {
        self.inner.http_address
    }

    /// `http://<ip>:<port>` of the HTTP endpoint (loopback when listening everywhere).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.inner.endpoint)
    }

    /// The agent id, once registered (or recovered).
    pub fn agent_id(&self) -> Option<AgentId> {
        lock(&self.inner.state).agent_id.clone()
    }

    /// How many REGISTERED events this daemon got.
    pub fn registrations(&self) -> u32 {
        lock(&self.inner.state).registrations
    }

    /// Whether a subscription stream is open.
    pub fn connected(&self) -> bool {
        lock(&self.inner.state).stream_id.is_some()
    }

    /// The last connection error.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.inner.state).last_error.clone()
    }

    /// The advertised total resources.
    pub fn resources(&self) -> Resources {
        lock(&self.inner.state).resources.clone()
    }

    /// A task's entry (running or completed).
    pub fn task(&self, framework_id: &FrameworkId, task_id: &TaskId) -> Option<TaskEntry> {
        let s = lock(&self.inner.state);
        s.tasks
            .get(&(framework_id.clone(), task_id.clone()))
            .cloned()
            .or_else(|| {
                s.completed
                    .iter()
                    .rev()
                    .find(|t| &t.framework_id == framework_id && &t.task.task_id == task_id)
                    .cloned()
            })
    }

    /// The live container of a task.
    pub fn container(&self, framework_id: &FrameworkId, task_id: &TaskId) -> Option<Container> {
        lock(&self.inner.state)
            .tasks
            .get(&(framework_id.clone(), task_id.clone()))
            .and_then(|t| t.container.clone())
    }

    /// Status updates not yet acknowledged.
    pub fn pending_updates(&self) -> Vec<PendingUpdate> {
        lock(&self.inner.state).pending.clone()
    }

    /// Stops the daemon's loops and HTTP endpoint, leaving tasks running (as a killed
    /// agent process would); waits for the loops to end.
    pub async fn stop(mut self) {
        self.inner
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.inner.stop.send(true);
        for l in self.loops.drain(..) {
            l.abort();
            let _ = l.await;
        }
    }
}

/// Creates the containerizer once the agent id is known.
fn ensure_containerizer(inner: &Arc<Inner>) -> Option<Arc<Containerizer>> {
    let mut s = lock(&inner.state);
    if let Some(c) = &s.containerizer {
        return Some(c.clone());
    }
    let agent_id = s.agent_id.clone()?;
    let set = &inner.cfg.containers;
    let mut cc = ContainerizerConfig::new(
        &inner.cfg.work_dir,
        agent_id,
        inner.cfg.hostname.clone(),
        inner.endpoint.clone(),
    );
    cc.isolation = set.isolation.clone();
    cc.switch_user = set.switch_user;
    cc.default_grace_period = set.default_grace_period;
    cc.environment = set.environment.clone();
    cc.oom_check_interval = set.oom_check_interval;
    cc.images = set.images.clone();
    match Containerizer::new(cc) {
        Ok(c) => {
            let c = Arc::new(c);
            s.containerizer = Some(c.clone());
            s.containerizer_error = None;
            Some(c)
        }
        Err(e) => {
            tracing::error!(error = %e, "the containerizer could not be created");
            s.containerizer_error = Some(e.to_string());
            None
        }
    }
}

/// Where a task runs besides the command executor's defaults (tasks of a group).
#[derive(Debug, Clone, Default)]
struct Placement {
    /// The executor (a group's default executor); else the task id.
    executor_id: Option<ExecutorId>,
    /// The sandbox (`<executor sandbox>/tasks/<task_id>`); else the run directory.
    pub sandbox: Option<PathBuf>,
    /// The network namespace to join.
    pub netns: Option<PathBuf>,
}

fn failed_status(
    task_id: &TaskId,
    state: TaskState,
    reason: basalt_mesos::TaskStatusReason,
    message: String,
) -> TaskStatus {
    let mut st = TaskStatus::new(task_id.clone(), state);
    st.message = Some(message);
    st.reason = Some(reason);
    st.source = Some(basalt_mesos::TaskStatusSource::Agent);
    st
}

/// Launches one task and reports its statuses until it ends.
async fn run_task(inner: Arc<Inner>, framework: FrameworkInfo, fw_id: FrameworkId, task: TaskInfo) {
    run_placed_task(inner, framework, fw_id, task, Placement::default()).await;
}

/// Launches one task (fetch, volumes, health checks) and reports its statuses until it
/// ends.
async fn run_placed_task(
    inner: Arc<Inner>,
    framework: FrameworkInfo,
    fw_id: FrameworkId,
    task: TaskInfo,
    placement: Placement,
) {
    let task_id = task.task_id.clone();
    let Some(cz) = ensure_containerizer(&inner) else {
        let why = lock(&inner.state)
            .containerizer_error
            .clone()
            .unwrap_or_else(|| "the agent is not registered".into());
        let st = failed_status(
            &task_id,
            TaskState::Failed,
            basalt_mesos::TaskStatusReason::ContainerLaunchFailed,
            format!("the containerizer is unavailable: {why}"),
        );
        status::enqueue(&inner, &fw_id, st);
        return;
    };
    if let Some(hc) = &task.health_check
        && let Err(e) = health::validate(hc)
    {
        let st = failed_status(
            &task_id,
            TaskState::Error,
            basalt_mesos::TaskStatusReason::TaskInvalid,
            format!("task '{}': {e}", task_id.as_str()),
        );
        status::enqueue(&inner, &fw_id, st);
        return;
    }
    let cid = ContainerId::new(uuid::Uuid::new_v4().to_string());
    let mut spec = crate::containerizer::LaunchSpec::new(cid.clone(), fw_id.clone(), task);
    if !framework.user.is_empty() {
        spec = spec.with_framework_user(framework.user.clone());
    }
    spec.executor_id = placement.executor_id.clone();
    spec.netns = placement.netns.clone();
    spec.sandbox = placement.sandbox.clone();
    let role = framework.role.clone().unwrap_or_else(|| "*".into());
    match volumes::task_volumes(&inner, &spec.task, &role) {
        Ok(v) => spec.volumes = v,
        Err(msg) => {
            let st = failed_status(
                &task_id,
                TaskState::Failed,
                basalt_mesos::TaskStatusReason::ContainerLaunchFailed,
                msg,
            );
            status::enqueue(&inner, &fw_id, st);
            return;
        }
    }
    let sandbox = spec.sandbox.clone().unwrap_or_else(|| {
        crate::containerizer::RunPaths::new(
            &inner.cfg.work_dir,
            cz.config().agent_id.as_str(),
            fw_id.as_str(),
            spec.executor_id().as_str(),
            &cid.value,
        )
        .sandbox
    });
    if let Some(t) = lock(&inner.state)
        .tasks
        .get_mut(&(fw_id.clone(), task_id.clone()))
    {
        t.sandbox = Some(sandbox.clone());
    }
    if let Err(st) = fetch_uris(&inner, &spec, &sandbox).await {
        status::enqueue(&inner, &fw_id, *st);
        return;
    }
    let launched_spec = spec.clone();
    let container = match cz.launch(spec).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(task = %task_id.as_str(), error = %e, "launch failed");
            status::enqueue(&inner, &fw_id, e.task_status(task_id));
            return;
        }
    };
    let key = (fw_id.clone(), task_id.clone());
    let kill = {
        let mut s = lock(&inner.state);
        match s.tasks.get_mut(&key) {
            Some(t) => {
                t.container_id = Some(cid);
                t.sandbox = Some(container.sandbox().to_path_buf());
                t.meta_dir = Some(container.meta_dir().to_path_buf());
                t.pid = Some(container.pid());
                t.container = Some(container.clone());
                t.kill_requested.take()
            }
            None => Some(None),
        }
    };
    let mut running = TaskStatus::new(task_id.clone(), TaskState::Running);
    running.source = Some(basalt_mesos::TaskStatusSource::Executor);
    status::enqueue(&inner, &fw_id, running);
    if let Some(grace) = kill {
        if let Some(t) = lock(&inner.state).tasks.get_mut(&key) {
            t.kill_requested = Some(grace);
        }
        container.kill(grace);
    }
    // Health checks: TASK_RUNNING updates with `healthy`, a kill after too many failures.
    let (htx, mut hrx) = tokio::sync::mpsc::unbounded_channel();
    let checker = match launched_spec.task.health_check.clone() {
        Some(hc) => {
            let ctx = health_context(&inner, &cz, &launched_spec, &container);
            match health::HealthChecker::spawn(hc, ctx, htx) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(task = %task_id.as_str(), error = %e, "health checker");
                    None
                }
            }
        }
        None => None,
    };
    let mut killed_by_health = false;
    let term = loop {
        tokio::select! {
            t = container.wait() => break t,
            Some(u) = hrx.recv() => {
                let stopping = lock(&inner.state)
                    .tasks
                    .get(&key)
                    .is_none_or(|t| t.kill_requested.is_some() || t.status.state.is_terminal());
                if stopping || killed_by_health {
                    continue;
                }
                let mut st = TaskStatus::new(task_id.clone(), TaskState::Running);
                st.healthy = Some(u.healthy);
                st.reason = Some(basalt_mesos::TaskStatusReason::TaskHealthCheckStatusUpdated);
                st.source = Some(basalt_mesos::TaskStatusSource::Executor);
                st.message = u.message;
                status::enqueue(&inner, &fw_id, st);
                if u.kill_task {
                    tracing::warn!(task = %task_id.as_str(), "killing the task: its health check failed too often");
                    killed_by_health = true;
                    container.kill(None);
                }
            }
        }
    };
    drop(checker);
    tracing::info!(task = %task_id.as_str(), state = ?term.state, message = %term.message, "task ended");
    let mut st = term.task_status(task_id);
    if killed_by_health {
        st.healthy = Some(false);
    }
    status::enqueue(&inner, &fw_id, st);
}

/// What COMMAND, HTTP and TCP checks of a launched task need.
fn health_context(
    inner: &Inner,
    cz: &Containerizer,
    spec: &crate::containerizer::LaunchSpec,
    container: &Container,
) -> health::CheckContext {
    let c = cz.config();
    let ctx = crate::containerizer::EnvContext {
        base: &c.environment,
        hostname: &c.hostname,
        agent_endpoint: &c.agent_endpoint,
        agent_id: c.agent_id.as_str(),
    };
    let env = crate::containerizer::task_environment(&ctx, spec, container.sandbox())
        .unwrap_or_else(|_| c.environment.clone());
    let user = match spec.user() {
        Some(name) if inner.cfg.containers.switch_user => nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .filter(|u| u.uid != nix::unistd::Uid::effective())
            .map(|u| (u.uid.as_raw(), u.gid.as_raw())),
        _ => None,
    };
    health::CheckContext {
        env,
        sandbox: container.sandbox().to_path_buf(),
        mount_ns: container
            .has_namespaces()
            .then(|| PathBuf::from(format!("/proc/{}/ns/mnt", container.pid()))),
        net_ns: spec.netns.clone(),
        user,
    }
}

/// Fetches the task's `CommandInfo.uris` into its sandbox (owned by the task's user);
/// a failure is the task's TASK_FAILED status (`REASON_CONTAINER_LAUNCH_FAILED`, as a
/// Mesos agent whose fetcher failed).
async fn fetch_uris(
    inner: &Inner,
    spec: &crate::containerizer::LaunchSpec,
    sandbox: &Path,
) -> Result<(), Box<TaskStatus>> {
    let uris = spec
        .task
        .command
        .as_ref()
        .map_or(&[][..], |c| c.uris.as_slice());
    if uris.is_empty() {
        return Ok(());
    }
    // An invalid id or an unknown user: the launch reports it (TASK_ERROR/TASK_FAILED).
    for (field, id) in [
        ("framework_id", spec.framework_id.as_str()),
        ("executor_id", &spec.executor_id().value),
        ("container_id", &spec.container_id.value),
    ] {
        if crate::containerizer::validate_id(field, id).is_err() {
            return Ok(());
        }
    }
    let owner = match spec.user() {
        Some(name) if inner.cfg.containers.switch_user => {
            match nix::unistd::User::from_name(name) {
                Ok(Some(u)) => Some(Owner {
                    uid: u.uid.as_raw(),
                    gid: u.gid.as_raw(),
                }),
                _ => return Ok(()),
            }
        }
        _ => None,
    };
    match inner.fetcher.fetch(uris, sandbox, owner).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(task = %spec.task.task_id.as_str(), error = %e, "fetch failed");
            let mut st = TaskStatus::new(spec.task.task_id.clone(), TaskState::Failed);
            st.message = Some(format!(
                "Failed to launch container: Failed to fetch URIs for container '{}': {e}",
                spec.container_id.value
            ));
            st.reason = Some(basalt_mesos::TaskStatusReason::ContainerLaunchFailed);
            st.source = Some(basalt_mesos::TaskStatusSource::Agent);
            Err(Box::new(st))
        }
    }
}

/// Kills a task: its container, a recovered process, or (still launching) on launch.
fn kill_task(inner: &Arc<Inner>, fw: &FrameworkId, task_id: &TaskId, grace: Option<Duration>) {
    let mut s = lock(&inner.state);
    let Some(t) = s.tasks.get_mut(&(fw.clone(), task_id.clone())) else {
        tracing::warn!(task = %task_id.as_str(), "KILL of a task this agent does not run");
        return;
    };
    if t.status.state.is_terminal() {
        return;
    }
    if let Some(c) = &t.container {
        t.kill_requested = Some(grace);
        c.kill(grace);
    } else if let Some(pid) = t.pid {
        let grace = grace.unwrap_or_else(|| {
            crate::containerizer::LaunchSpec::new(ContainerId::new("x"), fw.clone(), t.task.clone())
                .grace_period(inner.cfg.containers.default_grace_period)
        });
        recover::kill_recovered(pid, grace);
        t.kill_requested = Some(Some(grace));
    } else {
        t.kill_requested = Some(grace);
    }
}

fn kill_policy_grace(p: &basalt_mesos::KillPolicy) -> Option<Duration> {
    p.grace_period
        .map(|g| Duration::from_nanos(u64::try_from(g.nanoseconds).unwrap_or(0)))
}
