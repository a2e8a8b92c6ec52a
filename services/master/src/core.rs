//! The leading master's state and behaviour: agents, frameworks, tasks, offers, the
//! allocator, and the streams to agents and schedulers.
//!
//! One [`Core`] exists per leadership term, behind a `tokio::sync::Mutex`; every API
//! call and timer tick takes the lock, applies its change, writes etcd (fenced by the
//! leadership) and only then answers or sends events. Agent UPDATEs and scheduler
//! ACKNOWLEDGEs, the bulk of the traffic, are group-committed: a batcher takes the lock
//! once for every such call queued meanwhile, stages them all in memory and commits
//! their writes together ([`Core::apply_batch`]). If any write fails the term is
//! *poisoned*: memory may be ahead of etcd, so nothing more is acknowledged and the
//! master steps down; the next term reloads the truth from etcd ([`Core::recover`]).
//! A term ends by dropping the `Core`, which closes every stream.
//!
//! Semantics follow Mesos' master: offered = allocated until declined, used or
//! rescinded; status updates are delivered in order per task and resent with
//! exponential back-off (from `status_retry_initial`, at most 10 min) until
//! acknowledged, and survive failover (they live in the task record); the task state
//! machine of `basalt_mesos::TaskState` is enforced on agent updates (`409` otherwise);
//! frameworks without PARTITION_AWARE see TASK_LOST instead of UNREACHABLE / GONE /
//! DROPPED / UNKNOWN, and their tasks are killed when an unreachable agent comes back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use basalt_mesos::{
    AgentId, AgentInfo, CapabilityType, ExecutorId, FrameworkId, FrameworkInfo, OfferId, Resources,
    TaskId, TaskInfo, TaskState, TaskStatus, TaskStatusReason, TaskStatusSource,
};
use basalt_store::{Key, Leadership, Prefix, Store};
use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use crate::agent_api::{
    Acknowledged, AgentEvent, FrameworkMessage, KillTask, LaunchTask, LaunchTaskGroup, Registered,
    RunningTask, ShutdownExecutor, ShutdownFramework,
};
use crate::allocator::{Allocator, AllocatorConfig, refuse_filter};
use crate::api::{self, Call, Event, Offer, Subscribed};
use crate::config::MasterConfig;
use crate::error::MasterError;
use crate::recordio;
use crate::records::{AgentRecord, FrameworkRecord, PendingUpdate, TaskRecord};

/// How many statuses a task keeps in its history.
const MAX_STATUS_HISTORY: usize = 16;
/// How many completed tasks / frameworks the master remembers (in memory).
const MAX_COMPLETED: usize = 1000;
/// The longest resend delay of an unacknowledged status update (Mesos: 10 min).
const MAX_STATUS_RETRY: Duration = Duration::from_secs(600);

/// Seconds since the epoch.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A fresh status uuid (16 random bytes, base64).
pub fn new_status_uuid() -> String {
    base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes())
}

fn frame<T: Serialize>(event: &T) -> Option<Bytes> {
    match serde_json::to_vec(event) {
        Ok(v) => Some(recordio::encode(&v)),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise an event");
            None
        }
    }
}

/// An open event stream.
#[derive(Debug)]
pub struct Conn {
    /// The stream id the peer must send back.
    pub stream_id: String,
    tx: mpsc::UnboundedSender<Bytes>,
}

impl Conn {
    /// A stream and the receiving end that becomes the response body.
    pub fn new() -> (Conn, mpsc::UnboundedReceiver<Bytes>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Conn {
                stream_id: uuid::Uuid::new_v4().to_string(),
                tx,
            },
            rx,
        )
    }

    fn send<T: Serialize>(&self, event: &T) -> bool {
        frame(event).is_some_and(|b| self.tx.send(b).is_ok())
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A registered agent.
#[derive(Debug)]
pub struct Agent {
    /// What is persisted.
    pub record: AgentRecord,
    /// Its event stream, while connected.
    pub conn: Option<Conn>,
    /// When it was last heard from.
    pub last_seen: Instant,
    /// Its resources are in the allocator (registered and reachable).
    pub in_allocator: bool,
    /// Loaded from etcd by this term and not yet re-registered.
    pub recovered: bool,
}

impl Agent {
    /// The agent id.
    pub fn id(&self) -> AgentId {
        self.record.info.id.clone().unwrap_or_default()
    }

    /// Reachable (not marked unreachable).
    pub fn reachable(&self) -> bool {
        self.record.unreachable_time.is_none()
    }

    /// Connected and reachable: gets offers.
    pub fn active(&self) -> bool {
        self.reachable() && self.conn.is_some()
    }
}

/// A framework known to this term.
#[derive(Debug)]
pub struct Framework {
    /// What is persisted.
    pub record: FrameworkRecord,
    /// Its event stream, while subscribed.
    pub conn: Option<Conn>,
    /// When it will be removed if it does not re-subscribe.
    pub failover_deadline: Option<Instant>,
    /// Epoch seconds it disconnected.
    pub unregistered_time: Option<f64>,
    /// Loaded from etcd by this term and not yet re-subscribed.
    pub recovered: bool,
}

impl Framework {
    /// The framework id.
    pub fn id(&self) -> FrameworkId {
        self.record.info.id.clone().unwrap_or_default()
    }

    fn partition_aware(&self) -> bool {
        self.record
            .info
            .has_capability(&CapabilityType::PartitionAware)
    }

    fn task_killing(&self) -> bool {
        self.record
            .info
            .has_capability(&CapabilityType::TaskKillingState)
    }
}

/// A task with its resend timer.
#[derive(Debug)]
pub struct Task {
    /// What is persisted (boxed: a `TaskRecord` is ~3 KiB inline, and the tasks map
    /// would otherwise keep half-empty B-tree nodes of them).
    pub record: Box<TaskRecord>,
    next_retry: Option<Instant>,
    backoff: Duration,
}

/// An outstanding offer.
#[derive(Debug)]
pub struct OfferEntry {
    /// The offer as sent.
    pub offer: Offer,
    created: Instant,
}

/// How an API call went, for the HTTP layer.
#[derive(Debug)]
pub enum CallError {
    /// 400 with this message.
    BadRequest(String),
    /// 403 with this message.
    Forbidden(String),
    /// 404 with this message.
    NotFound(String),
    /// 409 with this message.
    Conflict(String),
    /// 503: etcd failed or leadership was lost; nothing was acknowledged.
    Unavailable(String),
}

impl From<MasterError> for CallError {
    fn from(e: MasterError) -> Self {
        CallError::Unavailable(e.to_string())
    }
}

type TaskKey = (FrameworkId, TaskId);
type ExecKey = (FrameworkId, AgentId, ExecutorId);
/// A checked task group: tasks with their resources, everything it needs, and the
/// executor to start (with its resources) if not running yet.
type GroupPlan = (
    Vec<(TaskInfo, Resources)>,
    Resources,
    Option<(ExecKey, Resources)>,
);

/// One leadership term's state; see the module docs.
pub struct Core {
    pub(crate) cfg: Arc<MasterConfig>,
    store: Store,
    leadership: Option<Arc<Leadership>>,
    /// Set when a write failed: memory may be ahead of etcd, so the term must end (the
    /// next one reloads from etcd). Nothing is acknowledged once set.
    poisoned: bool,
    abdicate: Arc<tokio::sync::Notify>,
    /// This term's master id.
    pub master_id: String,
    /// The address this master advertises.
    pub address: String,
    epoch: Instant,
    /// When this term began (epoch seconds).
    pub elected_time: f64,
    pub(crate) allocator: Allocator,
    /// Agents by id.
    pub agents: BTreeMap<AgentId, Agent>,
    /// Agents an operator marked gone (refused for ever).
    pub gone_agents: BTreeSet<AgentId>,
    /// Frameworks by id.
    pub frameworks: BTreeMap<FrameworkId, Framework>,
    /// Removed frameworks (newest last), with their tasks.
    pub completed_frameworks: VecDeque<(FrameworkRecord, Vec<TaskRecord>)>,
    /// Tasks not yet terminal-and-acknowledged.
    pub tasks: BTreeMap<TaskKey, Task>,
    /// Terminal, acknowledged tasks (newest last).
    pub completed_tasks: VecDeque<TaskRecord>,
    executors: BTreeMap<ExecKey, Resources>,
    /// Outstanding offers.
    pub offers: BTreeMap<OfferId, OfferEntry>,
    seq: u64,
    last_heartbeat: Instant,
    /// Counters for `/metrics`.
    pub counters: BTreeMap<&'static str, u64>,
    /// Operator API `SUBSCRIBE` streams (`POST /api/v1`).
    operator_subs: Vec<Conn>,
    /// Operator events of changes not yet committed to etcd (sent by the next successful
    /// [`Core::persist`], dropped if it fails: the term then ends and the streams close).
    operator_queue: Vec<Json>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("master_id", &self.master_id)
            .field("agents", &self.agents.len())
            .field("frameworks", &self.frameworks.len())
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

/// A write to etcd.
enum Write {
    Put(Key, Json),
    Delete(Key),
    DeletePrefix(Prefix),
}

/// A change applied in memory whose writes are not committed yet, with what to do once
/// they are (see [`Core::commit_staged`]).
#[derive(Default)]
pub struct Staged {
    writes: Vec<Write>,
    heads: Vec<TaskKey>,
    agent_events: Vec<(AgentId, AgentEvent)>,
}

/// A call the batcher applies together with others in one etcd transaction (group
/// commit): agent status updates and scheduler acknowledgements.
#[derive(Debug)]
pub enum BatchCall {
    /// Agent UPDATE.
    AgentUpdate(AgentId, Box<crate::agent_api::StatusUpdate>),
    /// Scheduler ACKNOWLEDGE.
    Acknowledge(FrameworkId, api::Acknowledge),
}

/// A [`BatchCall`] and where its answer goes.
#[derive(Debug)]
pub struct BatchItem {
    /// The call.
    pub call: BatchCall,
    /// Its outcome, sent once the batch committed.
    pub reply: tokio::sync::oneshot::Sender<Result<(), CallError>>,
}

fn key_err(e: basalt_store::StoreError) -> MasterError {
    MasterError::Store(e)
}

fn status_for(
    record: &TaskRecord,
    state: TaskState,
    reason: TaskStatusReason,
    message: &str,
) -> TaskStatus {
    let mut s = TaskStatus::new(record.task.task_id.clone(), state);
    s.agent_id = Some(record.agent_id.clone());
    s.source = Some(TaskStatusSource::Master);
    s.reason = Some(reason);
    s.message = Some(message.to_string());
    s.timestamp = Some(now_secs());
    if let Some(e) = record.executor() {
        s.executor_id = Some(e.executor_id.clone());
    }
    s
}

impl Core {
    /// Loads the term's state from etcd: agents (waiting to re-register), frameworks
    /// (waiting to re-subscribe, failover timers started) and tasks.
    pub async fn recover(
        cfg: Arc<MasterConfig>,
        store: Store,
        leadership: Arc<Leadership>,
        address: String,
        abdicate: Arc<tokio::sync::Notify>,
    ) -> Result<Core, MasterError> {
        let allocator = Allocator::new(AllocatorConfig {
            gpus_are_scarce: cfg.gpus_are_scarce,
            role_weights: cfg.role_weights.clone(),
            ..AllocatorConfig::default()
        })?;
        let now = Instant::now();
        let mut core = Core {
            cfg,
            store,
            leadership: Some(leadership),
            poisoned: false,
            abdicate,
            master_id: uuid::Uuid::new_v4().to_string(),
            address,
            epoch: now,
            elected_time: now_secs(),
            allocator,
            agents: BTreeMap::new(),
            gone_agents: BTreeSet::new(),
            frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            tasks: BTreeMap::new(),
            completed_tasks: VecDeque::new(),
            executors: BTreeMap::new(),
            offers: BTreeMap::new(),
            seq: 0,
            last_heartbeat: now,
            counters: BTreeMap::new(),
            operator_subs: Vec::new(),
            operator_queue: Vec::new(),
        };
        let agents = core.store.list::<AgentRecord>(&Prefix::agents()).await?;
        for (key, v) in agents.items {
            let mut record = v.value;
            let id = record
                .info
                .id
                .clone()
                .unwrap_or_else(|| AgentId::new(key.name()));
            record.info.id = Some(id.clone());
            if record.gone_time.is_some() {
                core.gone_agents.insert(id);
                continue;
            }
            core.agents.insert(
                id,
                Agent {
                    record,
                    conn: None,
                    last_seen: now,
                    in_allocator: false,
                    recovered: true,
                },
            );
        }
        let frameworks = core
            .store
            .list::<FrameworkRecord>(&Prefix::frameworks())
            .await?;
        for (key, v) in frameworks.items {
            let mut record = v.value;
            let id = record
                .info
                .id
                .clone()
                .unwrap_or_else(|| FrameworkId::new(key.name()));
            record.info.id = Some(id.clone());
            let timeout =
                Duration::from_secs_f64(record.info.failover_timeout_secs().clamp(0.0, 1e9));
            // A recovered framework gets at least the agent re-registration window to
            // come back, like Mesos starts failover timers after recovery.
            let grace = timeout.max(core.cfg.agent_unreachable_after());
            core.allocator
                .add_framework(&id, &record.info, &BTreeMap::new(), false)?;
            core.frameworks.insert(
                id,
                Framework {
                    record,
                    conn: None,
                    failover_deadline: Some(now + grace),
                    unregistered_time: Some(now_secs()),
                    recovered: true,
                },
            );
        }
        let tasks = core.store.list::<TaskRecord>(&Prefix::tasks()).await?;
        for (_, v) in tasks.items {
            let record = v.value;
            if let Some(e) = record.executor()
                && !record.state.is_terminal()
            {
                let res = api::with_allocation_role(&e.resources, &record.role);
                core.executors.insert(
                    (
                        record.framework_id.clone(),
                        record.agent_id.clone(),
                        e.executor_id.clone(),
                    ),
                    res,
                );
            }
            core.tasks.insert(
                (record.framework_id.clone(), record.task.task_id.clone()),
                Task {
                    record: Box::new(record),
                    next_retry: None,
                    backoff: Duration::ZERO,
                },
            );
        }
        tracing::info!(
            master_id = %core.master_id,
            agents = core.agents.len(),
            frameworks = core.frameworks.len(),
            tasks = core.tasks.len(),
            "recovered master state from etcd"
        );
        Ok(core)
    }

    /// Ends the term: closes every stream and lets go of the leadership.
    pub fn shutdown(&mut self) {
        for a in self.agents.values_mut() {
            a.conn = None;
        }
        for f in self.frameworks.values_mut() {
            f.conn = None;
        }
        self.operator_subs.clear();
        self.operator_queue.clear();
        self.leadership = None;
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn count(&mut self, name: &'static str) {
        *self.counters.entry(name).or_default() += 1;
    }

    /// True once a write failed: the term is ending and must not answer anything.
    pub fn poisoned(&self) -> bool {
        self.poisoned || self.leadership.as_ref().is_none_or(|l| !l.is_leader())
    }

    /// Writes to etcd, fenced by the leadership. A failure poisons the term: the
    /// in-memory state may now be ahead of etcd, so the master steps down and the next
    /// term (this master or another) reloads the truth from etcd.
    async fn persist(&mut self, writes: Vec<Write>) -> Result<(), MasterError> {
        let result = self.persist_inner(writes).await;
        if result.is_err() {
            self.operator_queue.clear();
            if !self.poisoned {
                self.poisoned = true;
                self.abdicate.notify_one();
                tracing::error!("an etcd write failed; stepping down to reload the state");
            }
        } else {
            for ev in std::mem::take(&mut self.operator_queue) {
                self.operator_event(&ev);
            }
        }
        result
    }

    // ---------------------------------------------------------------- operator API

    /// Operator `SUBSCRIBE`: `conn` gets `SUBSCRIBED` (with the GET_STATE content and
    /// the heartbeat interval) now, then every event until the term ends.
    pub fn operator_subscribe(&mut self, conn: Conn) {
        let subscribed = json!({
            "type": "SUBSCRIBED",
            "subscribed": {
                "get_state": crate::endpoints::v1_state(self),
                "heartbeat_interval_seconds": self.cfg.heartbeat_interval.as_secs_f64(),
            },
        });
        if conn.send(&subscribed) {
            self.operator_subs.push(conn);
            self.count("master/operator_subscribers");
        }
    }

    /// Sends an operator event to every subscriber, forgetting closed streams.
    fn operator_event(&mut self, event: &Json) {
        if !self.operator_subs.is_empty() {
            self.operator_subs.retain(|c| c.send(event));
        }
    }

    /// `TASK_UPDATED` for a task's latest status.
    fn task_updated_event(record: &TaskRecord, status: &TaskStatus) -> Json {
        json!({
            "type": "TASK_UPDATED",
            "task_updated": {
                "framework_id": record.framework_id,
                "status": status,
                "state": record.state,
            },
        })
    }

    fn task_added_event(record: &TaskRecord) -> Json {
        json!({"type": "TASK_ADDED", "task_added": {"task": crate::endpoints::v1_task(record)}})
    }

    fn framework_event(&mut self, kind: &str, fw: &FrameworkId) {
        let Some(f) = self.frameworks.get(fw) else {
            return;
        };
        let ev = json!({
            "type": kind,
            kind.to_ascii_lowercase(): {"framework": crate::endpoints::v1_framework(f)},
        });
        self.operator_event(&ev);
    }

    async fn persist_inner(&mut self, writes: Vec<Write>) -> Result<(), MasterError> {
        let Some(leadership) = self.leadership.clone() else {
            return Err(MasterError::NotLeader);
        };
        if self.poisoned || !leadership.is_leader() {
            return Err(MasterError::NotLeader);
        }
        // etcd allows 128 operations per transaction: larger changes go in chunks of
        // 100. Chunks of distinct keys are committed concurrently (etcd folds
        // concurrent proposals into one raft round and one fsync: 10,000 task records
        // at launch take a few round trips, not 100); a change with a prefix delete
        // or a key written twice keeps its order and goes chunk by chunk.
        let mut keys = BTreeSet::new();
        let independent = writes.iter().all(|w| match w {
            Write::Put(k, _) | Write::Delete(k) => keys.insert(k.as_str()),
            Write::DeletePrefix(_) => false,
        });
        let txns: Vec<_> = writes
            .chunks(100)
            .map(|chunk| {
                let mut txn = self.store.txn().require_leadership(&leadership);
                for w in chunk {
                    txn = match w {
                        Write::Put(k, v) => txn.put(k, v),
                        Write::Delete(k) => txn.delete(k),
                        Write::DeletePrefix(p) => txn.delete_prefix(p),
                    };
                }
                txn
            })
            .collect();
        let n = txns.len();
        let started = Instant::now();
        let map_err = |e| match e {
            basalt_store::StoreError::NotLeader { .. } => MasterError::NotLeader,
            other => MasterError::Store(other),
        };
        if independent {
            futures::future::try_join_all(txns.into_iter().map(|t| t.commit()))
                .await
                .map_err(map_err)?;
        } else {
            for t in txns {
                t.commit().await.map_err(map_err)?;
            }
        }
        *self
            .counters
            .entry("registrar/state_store_txns")
            .or_default() += n as u64;
        tracing::trace!(
            txns = n,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "etcd txns"
        );
        Ok(())
    }

    fn put<T: Serialize>(
        key: Result<Key, basalt_store::StoreError>,
        value: &T,
    ) -> Result<Write, MasterError> {
        let key = key.map_err(key_err)?;
        let v = serde_json::to_value(value).map_err(|e| MasterError::Record {
            key: key.as_str().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Write::Put(key, v))
    }

    fn task_write(record: &TaskRecord) -> Result<Write, MasterError> {
        Self::put(
            Key::task(record.framework_id.as_str(), record.task.task_id.as_str()),
            record,
        )
    }

    // ---------------------------------------------------------------- sending

    fn send_fw(&mut self, fw: &FrameworkId, event: &Event) -> bool {
        let sent = self
            .frameworks
            .get(fw)
            .and_then(|f| f.conn.as_ref())
            .is_some_and(|c| c.send(event));
        if sent {
            self.count("master/messages_sent_to_frameworks");
        }
        sent
    }

    fn send_agent(&mut self, agent: &AgentId, event: &AgentEvent) -> bool {
        let sent = self
            .agents
            .get(agent)
            .and_then(|a| a.conn.as_ref())
            .is_some_and(|c| c.send(event));
        if sent {
            self.count("master/messages_sent_to_agents");
        }
        sent
    }

    /// The status as `fw` sees it (state mapped for its capabilities), or `None` when it
    /// does not see this state at all (KILLING without TASK_KILLING_STATE).
    fn for_framework(&self, fw: &FrameworkId, status: &TaskStatus) -> Option<TaskStatus> {
        let (pa, tk) = self
            .frameworks
            .get(fw)
            .map(|f| (f.partition_aware(), f.task_killing()))
            .unwrap_or((false, false));
        let state = status.state.for_framework(pa, tk)?;
        let mut s = status.clone();
        s.state = state;
        Some(s)
    }

    /// Sends the first pending update of a task, if any, and arms its resend timer.
    fn send_pending_head(&mut self, key: &TaskKey) {
        let Some(task) = self.tasks.get(key) else {
            return;
        };
        let Some(head) = task.record.pending.first() else {
            return;
        };
        let status = head.status.clone();
        if let Some(s) = self.for_framework(&key.0, &status) {
            self.send_fw(&key.0, &Event::update(s));
        }
        let initial = self.cfg.status_retry_initial;
        if let Some(task) = self.tasks.get_mut(key) {
            task.backoff = initial;
            task.next_retry = Some(Instant::now() + initial);
        }
    }

    // ---------------------------------------------------------------- task updates

    /// Records a new status of a known task: history, pending queue, resources freed
    /// when terminal. The caller persists and sends.
    fn apply_status(&mut self, key: &TaskKey, status: TaskStatus, from_agent: bool) -> bool {
        let now = self.now();
        let Some(task) = self.tasks.get_mut(key) else {
            return false;
        };
        let was_terminal = task.record.state.is_terminal();
        task.record.state = status.state;
        // Exact growth: a status is ~370 B and most tasks keep only a few.
        task.record.statuses.reserve_exact(1);
        task.record.statuses.push(status.clone());
        if task.record.statuses.len() > MAX_STATUS_HISTORY {
            task.record.statuses.remove(0);
        }
        let first = task.record.pending.is_empty();
        if status.uuid.is_some() {
            task.record.pending.reserve_exact(1);
            task.record
                .pending
                .push(PendingUpdate { status, from_agent });
        }
        let record = task.record.clone();
        if !self.operator_subs.is_empty()
            && let Some(last) = record.statuses.last()
        {
            self.operator_queue
                .push(Self::task_updated_event(&record, last));
        }
        if record.state.is_terminal() && !was_terminal {
            self.release_task_resources(&record, now);
        }
        first
    }

    fn release_task_resources(&mut self, record: &TaskRecord, now: Duration) {
        if let Err(e) = self.allocator.recover_resources(
            &record.framework_id,
            &record.agent_id,
            &record.resources(),
            None,
            now,
        ) {
            tracing::warn!(task = %record.task.task_id, error = %e, "recovering task resources");
        }
        if let Some(e) = record.executor() {
            let ek = (
                record.framework_id.clone(),
                record.agent_id.clone(),
                e.executor_id.clone(),
            );
            let in_use = self.tasks.values().any(|t| {
                !t.record.state.is_terminal()
                    && t.record.framework_id == ek.0
                    && t.record.agent_id == ek.1
                    && t.record.executor().is_some_and(|x| x.executor_id == ek.2)
            });
            if !in_use && let Some(res) = self.executors.remove(&ek) {
                let _ = self
                    .allocator
                    .recover_resources(&ek.0, &ek.1, &res, None, now);
            }
        }
    }

    /// Moves terminal tasks with nothing left to acknowledge out of etcd.
    fn retire_if_done(&mut self, key: &TaskKey) -> Option<Write> {
        let done = self
            .tasks
            .get(key)
            .is_some_and(|t| t.record.state.is_terminal() && t.record.pending.is_empty());
        if !done {
            return None;
        }
        let task = self.tasks.remove(key)?;
        let write = Key::task(key.0.as_str(), key.1.as_str())
            .ok()
            .map(Write::Delete);
        self.completed_tasks.push_back(*task.record);
        while self.completed_tasks.len() > MAX_COMPLETED {
            self.completed_tasks.pop_front();
        }
        write
    }

    /// A master-generated update for a task: persisted, then sent (queued behind
    /// unacknowledged ones).
    async fn master_update(
        &mut self,
        key: &TaskKey,
        state: TaskState,
        reason: TaskStatusReason,
        message: &str,
    ) -> Result<(), MasterError> {
        let Some(task) = self.tasks.get(key) else {
            return Ok(());
        };
        if !task.record.state.can_transition_to(state) {
            return Ok(());
        }
        let mut status = status_for(&task.record, state, reason, message);
        status.uuid = Some(new_status_uuid());
        if state == TaskState::Unreachable {
            status.unreachable_time = Some(basalt_mesos::Nanoseconds {
                nanoseconds: (now_secs() * 1e9) as i64,
            });
        }
        let first = self.apply_status(key, status, false);
        let write = match self.tasks.get(key) {
            Some(t) => Self::task_write(&t.record)?,
            None => return Ok(()),
        };
        self.persist(vec![write]).await?;
        if first {
            self.send_pending_head(key);
        }
        Ok(())
    }

    // ---------------------------------------------------------------- offers

    /// Runs an allocation cycle and sends the offers.
    pub fn allocate(&mut self) {
        let now = self.now();
        let allocations = self.allocator.allocate(now);
        if allocations.is_empty() {
            return;
        }
        let mut by_fw: BTreeMap<FrameworkId, Vec<Offer>> = BTreeMap::new();
        for a in allocations {
            let Some(agent) = self.agents.get(&a.agent) else {
                continue;
            };
            let seq = self.seq + 1;
            self.seq = seq;
            let info = &agent.record.info;
            let offer = Offer {
                id: OfferId::new(format!("{}-O{seq}", self.master_id)),
                framework_id: a.framework.clone(),
                agent_id: a.agent.clone(),
                hostname: info.hostname.clone(),
                url: Some(api::Url {
                    scheme: "http".into(),
                    address: json!({"hostname": info.hostname, "ip": info.hostname, "port": info.port()}),
                    path: Some("/slave(1)".into()),
                }),
                domain: info.domain.clone(),
                resources: a.resources.clone(),
                attributes: info.attributes.clone(),
                executor_ids: self
                    .executors
                    .keys()
                    .filter(|(f, ag, _)| *f == a.framework && *ag == a.agent)
                    .map(|(_, _, e)| e.clone())
                    .collect(),
                allocation_info: Some(basalt_mesos::AllocationInfo::new(a.role.clone())),
            };
            by_fw.entry(a.framework.clone()).or_default().push(offer);
        }
        for (fw, offers) in by_fw {
            let ok = self
                .frameworks
                .get(&fw)
                .and_then(|f| f.conn.as_ref())
                .is_some();
            if !ok {
                for o in offers {
                    let _ =
                        self.allocator
                            .recover_resources(&fw, &o.agent_id, &o.resources, None, now);
                }
                continue;
            }
            let created = Instant::now();
            for o in &offers {
                self.offers.insert(
                    o.id.clone(),
                    OfferEntry {
                        offer: o.clone(),
                        created,
                    },
                );
            }
            self.count("master/offers_sent");
            self.send_fw(&fw, &Event::offers(offers));
        }
    }

    /// Removes an offer and gives its resources back (optionally filtered).
    fn drop_offer(&mut self, id: &OfferId, filter: Option<Duration>, rescind: bool) {
        let Some(entry) = self.offers.remove(id) else {
            return;
        };
        let o = entry.offer;
        let now = self.now();
        if let Err(e) = self.allocator.recover_resources(
            &o.framework_id,
            &o.agent_id,
            &o.resources,
            filter,
            now,
        ) {
            tracing::warn!(offer = %id, error = %e, "recovering offer resources");
        }
        if rescind {
            self.send_fw(&o.framework_id, &Event::rescind(o.id.clone()));
            self.count("master/offers_rescinded");
        }
    }

    fn offers_where(&self, pred: impl Fn(&Offer) -> bool) -> Vec<OfferId> {
        self.offers
            .values()
            .filter(|e| pred(&e.offer))
            .map(|e| e.offer.id.clone())
            .collect()
    }

    // ---------------------------------------------------------------- scheduler API

    /// SUBSCRIBE: registers or re-registers a framework on a new stream. Returns the
    /// framework id; the SUBSCRIBED event is already queued on `conn`.
    pub async fn subscribe(&mut self, call: &Call, conn: Conn) -> Result<FrameworkId, CallError> {
        let Some(sub) = &call.subscribe else {
            return Err(CallError::BadRequest(
                "field 'subscribe' is required".into(),
            ));
        };
        let mut info = sub.framework_info.clone();
        let requested = call.framework_id.clone().or_else(|| info.id.clone());
        if let Some(id) = &requested
            && self
                .completed_frameworks
                .iter()
                .any(|(r, _)| r.info.id.as_ref() == Some(id))
        {
            conn.send(&Event::error(format!("Framework {id} has been removed")));
            return Err(CallError::Forbidden(format!(
                "framework {id} has been removed"
            )));
        }
        let now_wall = now_secs();
        let (id, existing) = match requested {
            Some(id) => {
                let existing = self.frameworks.contains_key(&id);
                (id, existing)
            }
            None => {
                let n = self.next_seq();
                (
                    FrameworkId::new(format!("{}-{n:04}", self.master_id)),
                    false,
                )
            }
        };
        info.id = Some(id.clone());
        let record = match self.frameworks.get(&id) {
            Some(f) => FrameworkRecord {
                info: info.clone(),
                registered_time: f.record.registered_time,
                reregistered_time: Some(now_wall),
            },
            None => FrameworkRecord {
                info: info.clone(),
                registered_time: now_wall,
                reregistered_time: None,
            },
        };
        self.persist(vec![Self::put(Key::framework(id.as_str()), &record)?])
            .await?;
        let heartbeat = self.cfg.heartbeat_interval.as_secs_f64();
        conn.send(&Event::subscribed(Subscribed {
            framework_id: id.clone(),
            heartbeat_interval_seconds: Some(heartbeat),
            master_info: Some(self.master_info()),
        }));
        if existing {
            let old_offers = self.offers_where(|o| o.framework_id == id);
            for o in old_offers {
                self.drop_offer(&o, None, false);
            }
            if let Some(f) = self.frameworks.get_mut(&id) {
                if let Some(old) = f.conn.take() {
                    old.send(&Event::error("Framework failed over"));
                }
                f.record = record;
                f.conn = Some(conn);
                f.failover_deadline = None;
                f.unregistered_time = None;
                f.recovered = false;
            }
            self.allocator
                .update_framework(&id, &info)
                .map_err(|e| CallError::BadRequest(e.to_string()))?;
            self.allocator
                .activate_framework(&id)
                .map_err(|e| CallError::BadRequest(e.to_string()))?;
            // Resend what the framework has not acknowledged.
            let keys: Vec<TaskKey> = self
                .tasks
                .keys()
                .filter(|(f, _)| *f == id)
                .cloned()
                .collect();
            for k in keys {
                self.send_pending_head(&k);
            }
            self.framework_event("FRAMEWORK_UPDATED", &id);
            tracing::info!(framework = %id, "framework re-subscribed");
        } else {
            self.allocator
                .add_framework(&id, &info, &BTreeMap::new(), true)
                .map_err(|e| CallError::BadRequest(e.to_string()))?;
            self.frameworks.insert(
                id.clone(),
                Framework {
                    record,
                    conn: Some(conn),
                    failover_deadline: None,
                    unregistered_time: None,
                    recovered: false,
                },
            );
            self.framework_event("FRAMEWORK_ADDED", &id);
            tracing::info!(framework = %id, name = %info.name, "framework subscribed");
        }
        if !sub.suppressed_roles.is_empty() {
            self.allocator
                .suppress(&id, Some(&sub.suppressed_roles))
                .map_err(|e| CallError::BadRequest(format!("suppressed_roles: {e}")))?;
        }
        self.allocate();
        Ok(id)
    }

    /// Checks the stream id of a non-SUBSCRIBE call.
    pub fn check_stream(&self, fw: &FrameworkId, stream_id: Option<&str>) -> Result<(), CallError> {
        let Some(f) = self.frameworks.get(fw) else {
            return Err(CallError::Forbidden(format!(
                "framework {fw} is not subscribed"
            )));
        };
        let Some(conn) = &f.conn else {
            return Err(CallError::Forbidden(format!(
                "framework {fw} is not subscribed"
            )));
        };
        match stream_id {
            None => Err(CallError::BadRequest(format!(
                "all non-subscribe calls must include the '{}' header",
                api::STREAM_ID_HEADER
            ))),
            Some(s) if s != conn.stream_id => Err(CallError::BadRequest(format!(
                "the stream id '{s}' in '{}' does not match framework {fw}'s subscription",
                api::STREAM_ID_HEADER
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Any call but SUBSCRIBE (validated, stream id checked).
    pub async fn call(&mut self, call: Call) -> Result<(), CallError> {
        let Some(fw) = call.framework_id.clone() else {
            return Err(CallError::BadRequest(
                "field 'framework_id' is required".into(),
            ));
        };
        self.count("master/messages_scheduler_calls");
        match call.kind.as_str() {
            "TEARDOWN" => {
                self.remove_framework(&fw, "teardown").await?;
            }
            "ACCEPT" => {
                if let Some(a) = call.accept {
                    self.accept(&fw, a).await?;
                }
            }
            "DECLINE" => {
                if let Some(d) = call.decline {
                    let filter = refuse_filter(d.filters.and_then(|f| f.refuse_seconds));
                    for id in d.offer_ids {
                        if self
                            .offers
                            .get(&id)
                            .is_some_and(|o| o.offer.framework_id == fw)
                        {
                            self.drop_offer(&id, filter, false);
                        }
                    }
                }
            }
            "REVIVE" => {
                let roles = call.revive.map(|r| r.roles).unwrap_or_default();
                self.allocator
                    .revive(&fw, (!roles.is_empty()).then_some(roles.as_slice()))
                    .map_err(|e| CallError::BadRequest(format!("revive.roles: {e}")))?;
            }
            "SUPPRESS" => {
                let roles = call.suppress.map(|r| r.roles).unwrap_or_default();
                self.allocator
                    .suppress(&fw, (!roles.is_empty()).then_some(roles.as_slice()))
                    .map_err(|e| CallError::BadRequest(format!("suppress.roles: {e}")))?;
            }
            "KILL" => {
                if let Some(k) = call.kill {
                    self.kill(&fw, k);
                }
            }
            "SHUTDOWN" => {
                if let Some(s) = call.shutdown {
                    let ev = AgentEvent {
                        shutdown_executor: Some(ShutdownExecutor {
                            framework_id: fw.clone(),
                            executor_id: s.executor_id,
                        }),
                        ..AgentEvent::bare("SHUTDOWN_EXECUTOR")
                    };
                    self.send_agent(&s.agent_id, &ev);
                }
            }
            "ACKNOWLEDGE" => {
                if let Some(a) = call.acknowledge {
                    let staged = self.stage_acknowledge(&fw, a)?;
                    self.commit_staged(vec![staged]).await?;
                }
            }
            "RECONCILE" => {
                if let Some(r) = call.reconcile {
                    self.reconcile(&fw, r);
                }
            }
            "MESSAGE" => {
                if let Some(m) = call.message {
                    let ev = AgentEvent {
                        message: Some(FrameworkMessage {
                            framework_id: fw.clone(),
                            executor_id: m.executor_id,
                            data: m.data,
                        }),
                        ..AgentEvent::bare("MESSAGE")
                    };
                    if !self.send_agent(&m.agent_id, &ev) {
                        self.count("master/messages_dropped");
                    }
                }
            }
            "REQUEST" => {}
            other => {
                return Err(CallError::BadRequest(format!(
                    "unsupported call type {other:?}"
                )));
            }
        }
        self.allocate();
        Ok(())
    }

    fn framework_info(&self, fw: &FrameworkId) -> Option<FrameworkInfo> {
        self.frameworks.get(fw).map(|f| f.record.info.clone())
    }

    fn task_error_status(
        task: &TaskInfo,
        state: TaskState,
        reason: TaskStatusReason,
        message: String,
    ) -> TaskStatus {
        let mut s = TaskStatus::new(task.task_id.clone(), state);
        s.agent_id = Some(task.agent_id.clone());
        s.source = Some(TaskStatusSource::Master);
        s.reason = Some(reason);
        s.message = Some(message);
        s.timestamp = Some(now_secs());
        s
    }

    fn validate_task(
        &self,
        fw: &FrameworkId,
        task: &TaskInfo,
        agent: &AgentId,
        role: &str,
        seen: &BTreeSet<TaskId>,
    ) -> Result<Resources, String> {
        if task.task_id.value.is_empty() {
            return Err("Task ID must not be empty".into());
        }
        if seen.contains(&task.task_id)
            || self.tasks.contains_key(&(fw.clone(), task.task_id.clone()))
        {
            return Err(format!("Task ID '{}' is already in use", task.task_id));
        }
        if &task.agent_id != agent {
            return Err(format!(
                "Task uses agent {} but the offers are for agent {agent}",
                task.agent_id
            ));
        }
        let res = api::with_allocation_role(&task.resources, role);
        res.validate()
            .map_err(|e| format!("Task '{}' has invalid resources: {e}", task.task_id))?;
        if res.is_empty() {
            return Err(format!("Task '{}' uses no resources", task.task_id));
        }
        if let Some(e) = &task.executor {
            let er = api::with_allocation_role(&e.resources, role);
            er.validate()
                .map_err(|x| format!("Executor '{}' has invalid resources: {x}", e.executor_id))?;
        }
        Ok(res)
    }

    async fn accept(&mut self, fw: &FrameworkId, accept: api::Accept) -> Result<(), CallError> {
        // Check every operation's shape before touching anything.
        let mut resource_ops: Vec<Option<(String, Resources)>> = Vec::new();
        for (i, op) in accept.operations.iter().enumerate() {
            let mut parsed = None;
            match op.kind.as_str() {
                "LAUNCH" if op.launch.is_none() => {
                    return Err(CallError::BadRequest(format!(
                        "field 'accept.operations[{i}].launch' is required for LAUNCH"
                    )));
                }
                "LAUNCH_GROUP" if op.launch_group.is_none() => {
                    return Err(CallError::BadRequest(format!(
                        "field 'accept.operations[{i}].launch_group' is required for LAUNCH_GROUP"
                    )));
                }
                "LAUNCH" | "LAUNCH_GROUP" => {}
                kind @ ("RESERVE" | "UNRESERVE" | "CREATE" | "DESTROY") => {
                    let key = kind.to_ascii_lowercase();
                    let list = if matches!(kind, "RESERVE" | "UNRESERVE") {
                        "resources"
                    } else {
                        "volumes"
                    };
                    let field = format!("accept.operations[{i}].{key}.{list}");
                    let value = op
                        .other
                        .get(&key)
                        .and_then(|b| b.get(list))
                        .cloned()
                        .ok_or_else(|| {
                            CallError::BadRequest(format!("field '{field}' is required for {kind}"))
                        })?;
                    let res: Vec<basalt_mesos::Resource> = serde_json::from_value(value)
                        .map_err(|e| CallError::BadRequest(format!("field '{field}': {e}")))?;
                    if res.is_empty() {
                        return Err(CallError::BadRequest(format!(
                            "field '{field}' must not be empty"
                        )));
                    }
                    parsed = Some((kind.to_string(), res.into_iter().collect::<Resources>()));
                }
                other => {
                    return Err(CallError::BadRequest(format!(
                        "offer operation {other} (accept.operations[{i}]) is not supported by this master"
                    )));
                }
            }
            resource_ops.push(parsed);
        }
        let launches: Vec<TaskInfo> = accept
            .operations
            .iter()
            .flat_map(|op| {
                op.launch.iter().flat_map(|l| l.task_infos.iter()).chain(
                    op.launch_group
                        .iter()
                        .flat_map(|g| g.task_group.tasks.iter()),
                )
            })
            .cloned()
            .collect();
        // Validate the offers.
        let mut invalid: Option<String> = None;
        let mut agent: Option<AgentId> = None;
        if accept.offer_ids.is_empty() {
            invalid = Some("No offers specified".into());
        }
        let mut seen_offers = BTreeSet::new();
        for id in &accept.offer_ids {
            if !seen_offers.insert(id.clone()) {
                invalid = Some(format!("Offer {id} appears more than once"));
                continue;
            }
            match self.offers.get(id) {
                None => invalid = Some(format!("Offer {id} is no longer valid")),
                Some(e) if &e.offer.framework_id != fw => {
                    invalid = Some(format!("Offer {id} is not for framework {fw}"));
                }
                Some(e) => match &agent {
                    Some(a) if a != &e.offer.agent_id => {
                        invalid = Some("Aggregated offers must belong to one agent".into());
                    }
                    _ => agent = Some(e.offer.agent_id.clone()),
                },
            }
        }
        if let Some(reason) = invalid {
            for id in &accept.offer_ids {
                if self
                    .offers
                    .get(id)
                    .is_some_and(|o| &o.offer.framework_id == fw)
                {
                    self.drop_offer(id, None, false);
                }
            }
            for t in launches {
                let s = Self::task_error_status(
                    &t,
                    TaskState::Dropped,
                    TaskStatusReason::InvalidOffers,
                    reason.clone(),
                );
                if let Some(s) = self.for_framework(fw, &s) {
                    self.send_fw(fw, &Event::update(s));
                }
            }
            self.count("master/invalid_offer_accepts");
            return Ok(());
        }
        let Some(agent) = agent else {
            return Ok(());
        };
        let mut remaining = Resources::new();
        let mut role = String::from(basalt_mesos::DEFAULT_ROLE);
        for id in &accept.offer_ids {
            if let Some(e) = self.offers.remove(id) {
                remaining += &e.offer.resources;
                if let Some(r) = e
                    .offer
                    .allocation_info
                    .as_ref()
                    .and_then(|a| a.role.clone())
                {
                    role = r;
                }
            }
        }
        let Some(fw_info) = self.framework_info(fw) else {
            return Err(CallError::Forbidden(format!(
                "framework {fw} is not subscribed"
            )));
        };
        let mut seen = BTreeSet::new();
        let mut new_records: Vec<TaskRecord> = Vec::new();
        let mut new_execs: Vec<(ExecKey, Resources)> = Vec::new();
        let mut events: Vec<AgentEvent> = Vec::new();
        let mut errors: Vec<TaskStatus> = Vec::new();
        let mut operation_errors: Vec<Event> = Vec::new();
        // Offer operations on resources change the agent's total and the allocation.
        let mut total: Option<Resources> = None;
        let mut conversions: Vec<(Resources, Resources)> = Vec::new();
        for (i, op) in accept.operations.iter().enumerate() {
            if let Some(Some((kind, res))) = resource_ops.get(i) {
                let agent_total = self
                    .agents
                    .get(&agent)
                    .map(|a| a.record.info.resources.clone())
                    .unwrap_or_default();
                let principal = fw_info.principal.clone();
                match convert(kind, res, &role, principal.as_deref(), &remaining) {
                    Ok((from, to)) => {
                        remaining -= &from;
                        remaining += &to;
                        let t = total.get_or_insert(agent_total);
                        *t -= &from.unallocate();
                        *t += &to.unallocate();
                        conversions.push((from, to));
                    }
                    Err(msg) => {
                        // Like Mesos: the operation is dropped (its resources stay in
                        // the offer and go back with the rest); the framework hears of
                        // it only when it gave the operation an id.
                        self.count("master/operations_dropped");
                        tracing::warn!(framework = %fw, operation = %kind, reason = %msg, "dropping offer operation");
                        if let Some(op_id) = &op.id {
                            operation_errors.push(Event::operation_error(
                                op_id.clone(),
                                format!("{kind} (accept.operations[{i}]) is invalid: {msg}"),
                            ));
                        }
                    }
                }
                continue;
            }
            if let Some(l) = &op.launch {
                for t in &l.task_infos {
                    let checked = self.validate_task(fw, t, &agent, &role, &seen).and_then(|res| {
                        if !t.has_executor_xor_command() {
                            return Err(format!(
                                "Task '{}' must have exactly one of 'executor' and 'command'",
                                t.task_id
                            ));
                        }
                        let mut need = res.clone();
                        let mut exec = None;
                        if let Some(e) = &t.executor {
                            let ek = (fw.clone(), agent.clone(), e.executor_id.clone());
                            let known = self.executors.contains_key(&ek)
                                || new_execs.iter().any(|(k, _)| *k == ek);
                            if !known {
                                let er = api::with_allocation_role(&e.resources, &role);
                                need += &er;
                                exec = Some((ek, er));
                            }
                        }
                        if !remaining.contains(&need) {
                            return Err(format!(
                                "Task '{}' uses resources {need} that are not in the offered {remaining}",
                                t.task_id
                            ));
                        }
                        Ok((res, need, exec))
                    });
                    match checked {
                        Ok((res, need, exec)) => {
                            remaining -= &need;
                            seen.insert(t.task_id.clone());
                            let mut task = t.clone();
                            task.resources = res.to_vec();
                            if let Some(ex) = exec {
                                new_execs.push(ex);
                            }
                            let mut status = TaskStatus::new(t.task_id.clone(), TaskState::Staging);
                            status.agent_id = Some(agent.clone());
                            status.source = Some(TaskStatusSource::Master);
                            status.timestamp = Some(now_secs());
                            events.push(AgentEvent {
                                launch: Some(LaunchTask {
                                    framework_info: fw_info.clone(),
                                    task: task.clone(),
                                }),
                                ..AgentEvent::bare("LAUNCH")
                            });
                            new_records.push(TaskRecord {
                                framework_id: fw.clone(),
                                agent_id: agent.clone(),
                                task,
                                group_executor: None,
                                role: role.clone(),
                                state: TaskState::Staging,
                                statuses: vec![status],
                                pending: Vec::new(),
                            });
                        }
                        Err(msg) => errors.push(Self::task_error_status(
                            t,
                            TaskState::Error,
                            TaskStatusReason::TaskInvalid,
                            msg,
                        )),
                    }
                }
            }
            if let Some(g) = &op.launch_group {
                let group_check = (|| -> Result<GroupPlan, String> {
                    if g.task_group.tasks.is_empty() {
                        return Err("Task group has no tasks".into());
                    }
                    let ek = (fw.clone(), agent.clone(), g.executor.executor_id.clone());
                    let mut need = Resources::new();
                    let mut exec = None;
                    if !self.executors.contains_key(&ek) && !new_execs.iter().any(|(k, _)| *k == ek)
                    {
                        let er = api::with_allocation_role(&g.executor.resources, &role);
                        er.validate()
                            .map_err(|e| format!("Executor has invalid resources: {e}"))?;
                        need += &er;
                        exec = Some((ek, er));
                    }
                    let mut out = Vec::new();
                    let mut group_seen = seen.clone();
                    for t in &g.task_group.tasks {
                        if t.executor.is_some() {
                            return Err(format!(
                                "Task '{}' in a task group must not set 'executor'",
                                t.task_id
                            ));
                        }
                        let res = self.validate_task(fw, t, &agent, &role, &group_seen)?;
                        group_seen.insert(t.task_id.clone());
                        need += &res;
                        out.push((t.clone(), res));
                    }
                    if !remaining.contains(&need) {
                        return Err(format!(
                            "Task group uses resources {need} that are not in the offered {remaining}"
                        ));
                    }
                    Ok((out, need, exec))
                })();
                match group_check {
                    Ok((tasks, need, exec)) => {
                        remaining -= &need;
                        if let Some(ex) = exec {
                            new_execs.push(ex);
                        }
                        let mut group = g.task_group.clone();
                        group.tasks.clear();
                        for (t, res) in tasks {
                            seen.insert(t.task_id.clone());
                            let mut task = t.clone();
                            task.resources = res.to_vec();
                            group.tasks.push(task.clone());
                            let mut status = TaskStatus::new(t.task_id.clone(), TaskState::Staging);
                            status.agent_id = Some(agent.clone());
                            status.source = Some(TaskStatusSource::Master);
                            status.timestamp = Some(now_secs());
                            new_records.push(TaskRecord {
                                framework_id: fw.clone(),
                                agent_id: agent.clone(),
                                task,
                                group_executor: Some(g.executor.clone()),
                                role: role.clone(),
                                state: TaskState::Staging,
                                statuses: vec![status],
                                pending: Vec::new(),
                            });
                        }
                        events.push(AgentEvent {
                            launch_group: Some(LaunchTaskGroup {
                                framework_info: fw_info.clone(),
                                executor: g.executor.clone(),
                                task_group: group,
                            }),
                            ..AgentEvent::bare("LAUNCH_GROUP")
                        });
                    }
                    Err(msg) => {
                        for t in &g.task_group.tasks {
                            errors.push(Self::task_error_status(
                                t,
                                TaskState::Error,
                                TaskStatusReason::TaskGroupInvalid,
                                msg.clone(),
                            ));
                        }
                    }
                }
            }
        }
        // Persist the launched tasks (and the agent's new total) before anything is
        // acknowledged or sent.
        let mut writes = Vec::new();
        for r in &new_records {
            writes.push(Self::task_write(r)?);
        }
        let mut agent_record = None;
        if let Some(t) = &total
            && let Some(a) = self.agents.get(&agent)
        {
            let mut rec = a.record.clone();
            rec.info.resources = t.clone();
            rec.checkpointed = true;
            writes.push(Self::put(Key::agent(agent.as_str()), &rec)?);
            agent_record = Some(rec);
        }
        let now = self.now();
        let filter = refuse_filter(accept.filters.as_ref().and_then(|f| f.refuse_seconds));
        if let Err(e) = self.persist(writes).await {
            // Nothing was launched: give every offered resource back.
            let mut all = remaining.clone();
            for r in &new_records {
                all += &r.resources();
            }
            for (_, er) in &new_execs {
                all += er;
            }
            // Undo the conversions on what goes back (they were never applied).
            for (from, to) in conversions.iter().rev() {
                all -= to;
                all += from;
            }
            let _ = self
                .allocator
                .recover_resources(fw, &agent, &all, None, now);
            return Err(e.into());
        }
        for (from, to) in &conversions {
            if let Err(e) = self.allocator.update_allocation(fw, &agent, from, to) {
                tracing::error!(error = %e, "allocator update_allocation");
            }
        }
        if let Some(rec) = agent_record {
            let ev = AgentEvent {
                checkpoint_resources: Some(rec.info.resources.clone()),
                ..AgentEvent::bare("CHECKPOINT_RESOURCES")
            };
            if let Some(a) = self.agents.get_mut(&agent) {
                a.record = rec;
            }
            self.send_agent(&agent, &ev);
        }
        for (k, r) in new_execs {
            self.executors.insert(k, r);
        }
        for r in new_records {
            if !self.operator_subs.is_empty() {
                let ev = Self::task_added_event(&r);
                self.operator_event(&ev);
            }
            self.tasks.insert(
                (r.framework_id.clone(), r.task.task_id.clone()),
                Task {
                    record: Box::new(r),
                    next_retry: None,
                    backoff: Duration::ZERO,
                },
            );
            self.count("master/tasks_launched");
        }
        for ev in events {
            if !self.send_agent(&agent, &ev) {
                tracing::warn!(agent = %agent, "agent not connected; launch will be reconciled");
            }
        }
        for ev in operation_errors {
            self.send_fw(fw, &ev);
        }
        for s in errors {
            self.count("master/tasks_invalid");
            self.send_fw(fw, &Event::update(s));
        }
        if !remaining.is_empty()
            && let Err(e) = self
                .allocator
                .recover_resources(fw, &agent, &remaining, filter, now)
        {
            tracing::warn!(error = %e, "recovering unused offer resources");
        }
        Ok(())
    }

    fn unknown_task_status(
        &self,
        fw: &FrameworkId,
        task_id: &TaskId,
        agent: Option<&AgentId>,
    ) -> TaskStatus {
        let (state, msg) = match agent.and_then(|a| self.agents.get(a)) {
            Some(a) if !a.reachable() => {
                (TaskState::Unreachable, "Task is on an unreachable agent")
            }
            Some(_) => (TaskState::Gone, "Task is unknown to the agent"),
            None => (TaskState::Unknown, "Task is unknown"),
        };
        let mut s = TaskStatus::new(task_id.clone(), state);
        s.agent_id = agent.cloned();
        s.source = Some(TaskStatusSource::Master);
        s.reason = Some(TaskStatusReason::Reconciliation);
        s.message = Some(format!("Reconciliation: {msg}"));
        s.timestamp = Some(now_secs());
        self.for_framework(fw, &s).unwrap_or(s)
    }

    fn reconcile_status(&self, fw: &FrameworkId, record: &TaskRecord) -> Option<TaskStatus> {
        let mut s = record
            .latest_status()
            .cloned()
            .unwrap_or_else(|| TaskStatus::new(record.task.task_id.clone(), record.state));
        s.state = record.state;
        s.uuid = None;
        s.reason = Some(TaskStatusReason::Reconciliation);
        s.message = Some("Reconciliation: Latest task state".into());
        s.agent_id = Some(record.agent_id.clone());
        s.timestamp = Some(now_secs());
        self.for_framework(fw, &s)
    }

    fn reconcile(&mut self, fw: &FrameworkId, r: api::Reconcile) {
        let mut out = Vec::new();
        if r.tasks.is_empty() {
            for ((f, _), t) in &self.tasks {
                if f == fw
                    && let Some(s) = self.reconcile_status(fw, &t.record)
                {
                    out.push(s);
                }
            }
        } else {
            for rt in r.tasks {
                match self.tasks.get(&(fw.clone(), rt.task_id.clone())) {
                    Some(t) => {
                        if let Some(s) = self.reconcile_status(fw, &t.record) {
                            out.push(s);
                        }
                    }
                    None => {
                        let completed = self
                            .completed_tasks
                            .iter()
                            .rev()
                            .find(|c| &c.framework_id == fw && c.task.task_id == rt.task_id);
                        match completed.and_then(|c| self.reconcile_status(fw, c)) {
                            Some(s) => out.push(s),
                            None => out.push(self.unknown_task_status(
                                fw,
                                &rt.task_id,
                                rt.agent_id.as_ref(),
                            )),
                        }
                    }
                }
            }
        }
        for s in out {
            self.send_fw(fw, &Event::update(s));
        }
    }

    fn kill(&mut self, fw: &FrameworkId, k: api::Kill) {
        let key = (fw.clone(), k.task_id.clone());
        match self.tasks.get(&key) {
            Some(t) if !t.record.state.is_terminal() => {
                let agent = t.record.agent_id.clone();
                let ev = AgentEvent {
                    kill: Some(KillTask {
                        framework_id: fw.clone(),
                        task_id: k.task_id.clone(),
                        kill_policy: k.kill_policy,
                    }),
                    ..AgentEvent::bare("KILL")
                };
                if !self.send_agent(&agent, &ev) {
                    tracing::info!(task = %k.task_id, agent = %agent, "kill queued: agent not connected");
                }
            }
            Some(_) => {}
            None => {
                let s = self.unknown_task_status(fw, &k.task_id, k.agent_id.as_ref());
                self.send_fw(fw, &Event::update(s));
            }
        }
    }

    fn stage_acknowledge(
        &mut self,
        fw: &FrameworkId,
        a: api::Acknowledge,
    ) -> Result<Staged, CallError> {
        let mut staged = Staged::default();
        let key = (fw.clone(), a.task_id.clone());
        let Some(task) = self.tasks.get_mut(&key) else {
            return Ok(staged);
        };
        let Some(pos) = task
            .record
            .pending
            .iter()
            .position(|p| p.status.uuid.as_deref() == Some(a.uuid.as_str()))
        else {
            return Ok(staged);
        };
        // Mesos acknowledges in order; an ack of a later update implies the earlier ones.
        let acked: Vec<PendingUpdate> = task.record.pending.drain(..=pos).collect();
        if task.record.pending.is_empty() {
            task.record.pending = Vec::new(); // give the buffer back
        }
        task.next_retry = None;
        let agent = task.record.agent_id.clone();
        let write = match self.retire_if_done(&key) {
            Some(w) => w,
            None => match self.tasks.get(&key) {
                Some(t) => Self::task_write(&t.record)?,
                None => return Ok(staged),
            },
        };
        staged.writes.push(write);
        for p in acked {
            if p.from_agent
                && let Some(uuid) = p.status.uuid
            {
                let ev = AgentEvent {
                    acknowledge: Some(Acknowledged {
                        framework_id: fw.clone(),
                        task_id: a.task_id.clone(),
                        uuid,
                    }),
                    ..AgentEvent::bare("ACKNOWLEDGE")
                };
                staged.agent_events.push((agent.clone(), ev));
            }
        }
        staged.heads.push(key);
        Ok(staged)
    }

    /// Commits staged changes in as few etcd transactions as possible (one write per
    /// key: the latest snapshot), then sends what they produced.
    pub async fn commit_staged(&mut self, staged: Vec<Staged>) -> Result<(), MasterError> {
        let mut by_key: BTreeMap<String, Write> = BTreeMap::new();
        let mut heads = Vec::new();
        let mut events = Vec::new();
        for s in staged {
            for w in s.writes {
                let k = match &w {
                    Write::Put(k, _) | Write::Delete(k) => k.as_str().to_string(),
                    Write::DeletePrefix(p) => format!("{p:?}"),
                };
                by_key.insert(k, w);
            }
            heads.extend(s.heads);
            events.extend(s.agent_events);
        }
        self.persist(by_key.into_values().collect()).await?;
        for (agent, ev) in events {
            self.send_agent(&agent, &ev);
        }
        for k in heads {
            self.send_pending_head(&k);
        }
        self.allocate();
        Ok(())
    }

    /// Applies a batch: each call is staged (a refused one is answered at once), all
    /// writes are committed together, then every caller gets its answer.
    pub async fn apply_batch(&mut self, items: Vec<BatchItem>) {
        let mut staged = Vec::new();
        let mut waiting = Vec::new();
        for item in items {
            let result = match item.call {
                BatchCall::AgentUpdate(agent, update) => self.stage_agent_update(&agent, *update),
                BatchCall::Acknowledge(fw, ack) => self.stage_acknowledge(&fw, ack),
            };
            match result {
                Ok(s) => {
                    staged.push(s);
                    waiting.push(item.reply);
                }
                Err(e) => {
                    let _ = item.reply.send(Err(e));
                }
            }
        }
        let n = waiting.len();
        match self.commit_staged(staged).await {
            Ok(()) => {
                for r in waiting {
                    let _ = r.send(Ok(()));
                }
            }
            Err(e) => {
                for r in waiting {
                    let _ = r.send(Err(CallError::Unavailable(e.to_string())));
                }
            }
        }
        if n > 1 {
            *self.counters.entry("master/batched_calls").or_default() += n as u64;
        }
    }

    /// Removes a framework (TEARDOWN or failover timeout): its offers, its tasks (the
    /// agents are told to shut it down) and its records.
    pub async fn remove_framework(
        &mut self,
        fw: &FrameworkId,
        why: &str,
    ) -> Result<(), MasterError> {
        let Some(f) = self.frameworks.get(fw) else {
            return Ok(());
        };
        let record = f.record.clone();
        self.persist(vec![
            Write::Delete(Key::framework(fw.as_str()).map_err(key_err)?),
            Write::DeletePrefix(Prefix::tasks_of(fw.as_str()).map_err(key_err)?),
        ])
        .await?;
        for id in self.offers_where(|o| &o.framework_id == fw) {
            self.drop_offer(&id, None, false);
        }
        let keys: Vec<TaskKey> = self
            .tasks
            .keys()
            .filter(|(f, _)| f == fw)
            .cloned()
            .collect();
        let mut agents = BTreeSet::new();
        let mut removed = Vec::new();
        for k in keys {
            if let Some(mut t) = self.tasks.remove(&k) {
                if !t.record.state.is_terminal() {
                    agents.insert(t.record.agent_id.clone());
                    let s = status_for(
                        &t.record,
                        TaskState::Killed,
                        TaskStatusReason::FrameworkRemoved,
                        "Framework removed",
                    );
                    t.record.state = TaskState::Killed;
                    let ev = Self::task_updated_event(&t.record, &s);
                    t.record.statuses.push(s);
                    self.operator_event(&ev);
                }
                t.record.pending.clear();
                removed.push(*t.record);
            }
        }
        self.executors.retain(|(f, _, _), _| f != fw);
        for a in agents {
            let ev = AgentEvent {
                shutdown_framework: Some(ShutdownFramework {
                    framework_id: fw.clone(),
                }),
                ..AgentEvent::bare("SHUTDOWN_FRAMEWORK")
            };
            self.send_agent(&a, &ev);
        }
        if let Some(f) = self.frameworks.remove(fw)
            && let Some(c) = f.conn
        {
            c.send(&Event::error(format!("Framework removed: {why}")));
        }
        if let Err(e) = self.allocator.remove_framework(fw) {
            tracing::warn!(framework = %fw, error = %e, "allocator remove_framework");
        }
        self.operator_event(&json!({
            "type": "FRAMEWORK_REMOVED",
            "framework_removed": {"framework_info": record.info},
        }));
        self.completed_frameworks.push_back((record, removed));
        while self.completed_frameworks.len() > MAX_COMPLETED {
            self.completed_frameworks.pop_front();
        }
        self.count("master/frameworks_removed");
        tracing::info!(framework = %fw, reason = why, "framework removed");
        self.allocate();
        Ok(())
    }

    /// The `MasterInfo` JSON.
    pub fn master_info(&self) -> Json {
        let (host, port) = split_address(&self.address);
        json!({
            "id": self.master_id,
            "ip": 0,
            "port": port,
            "pid": format!("master@{}", self.address),
            "hostname": host,
            "version": crate::config::MESOS_VERSION,
            "address": {"hostname": host, "ip": host, "port": port},
        })
    }

    // ---------------------------------------------------------------- agent API

    /// Checks an agent call's agent id and stream id.
    pub fn check_agent_stream(
        &self,
        agent: &AgentId,
        stream_id: Option<&str>,
    ) -> Result<(), CallError> {
        let Some(a) = self.agents.get(agent) else {
            return Err(CallError::NotFound(format!(
                "agent {agent} is not registered"
            )));
        };
        match (stream_id, &a.conn) {
            (None, _) => Err(CallError::BadRequest(format!(
                "agent calls must include the '{}' header",
                crate::agent_api::AGENT_STREAM_ID_HEADER
            ))),
            (Some(s), Some(c)) if s == c.stream_id => Ok(()),
            (Some(s), _) => Err(CallError::BadRequest(format!(
                "stream id '{s}' does not match agent {agent}'s subscription"
            ))),
        }
    }

    /// Agent SUBSCRIBE: registers a new agent or re-admits a known one, reconciling the
    /// tasks it reports.
    pub async fn agent_subscribe(
        &mut self,
        sub: crate::agent_api::Subscribe,
        conn: Conn,
    ) -> Result<AgentId, CallError> {
        let now_wall = now_secs();
        let id = match &sub.agent_id {
            Some(id) => id.clone(),
            None => {
                let n = self.next_seq();
                AgentId::new(format!("{}-S{n}", self.master_id))
            }
        };
        if self.gone_agents.contains(&id) {
            return Err(CallError::Forbidden(format!(
                "agent {id} has been marked gone and cannot register again"
            )));
        }
        let mut info: AgentInfo = sub.agent_info.clone();
        info.id = Some(id.clone());
        let existing = self.agents.get(&id);
        let was_unreachable = existing.is_some_and(|a| !a.reachable());
        // Operator subscribers hear of agents that were not in GET_STATE's agents.
        let announce = existing.is_none_or(|a| a.recovered || !a.reachable());
        let checkpointed = existing
            .filter(|a| a.record.checkpointed)
            .map(|a| a.record.info.resources.clone());
        if let Some(total) = &checkpointed {
            info.resources = total.clone();
        }
        let record = AgentRecord {
            info: info.clone(),
            registered_time: existing.map_or(now_wall, |a| a.record.registered_time),
            reregistered_time: existing.map(|_| now_wall),
            unreachable_time: None,
            checkpointed: checkpointed.is_some(),
            gone_time: None,
        };
        self.persist(vec![Self::put(Key::agent(id.as_str()), &record)?])
            .await?;
        // Registered: take the new stream.
        let old_offers = self.offers_where(|o| o.agent_id == id);
        for o in old_offers {
            self.drop_offer(&o, None, true);
        }
        let registered = AgentEvent {
            registered: Some(Registered {
                agent_id: id.clone(),
                heartbeat_interval_seconds: self.cfg.heartbeat_interval.as_secs_f64(),
                master_id: self.master_id.clone(),
                checkpointed_resources: checkpointed,
            }),
            ..AgentEvent::bare("REGISTERED")
        };
        conn.send(&registered);
        let in_allocator = match self.agents.get_mut(&id) {
            Some(a) => {
                a.record = record;
                a.conn = Some(conn);
                a.last_seen = Instant::now();
                a.recovered = false;
                a.in_allocator
            }
            None => {
                self.agents.insert(
                    id.clone(),
                    Agent {
                        record,
                        conn: Some(conn),
                        last_seen: Instant::now(),
                        in_allocator: false,
                        recovered: false,
                    },
                );
                false
            }
        };
        if sub.agent_id.is_some() {
            self.reconcile_agent_tasks(&id, &sub.tasks, was_unreachable)
                .await?;
        }
        let now = self.now();
        if in_allocator {
            if let Err(e) = self.allocator.update_agent(&id, &info.resources) {
                tracing::warn!(agent = %id, error = %e, "allocator update_agent");
            }
            let _ = self.allocator.activate_agent(&id);
        } else {
            let mut used: BTreeMap<FrameworkId, Resources> = BTreeMap::new();
            for t in self.tasks.values() {
                if t.record.agent_id == id
                    && !t.record.state.is_terminal()
                    && self.frameworks.contains_key(&t.record.framework_id)
                {
                    *used.entry(t.record.framework_id.clone()).or_default() +=
                        &t.record.resources();
                }
            }
            for ((f, a, _), r) in &self.executors {
                if a == &id && self.frameworks.contains_key(f) {
                    *used.entry(f.clone()).or_default() += r;
                }
            }
            if let Err(e) = self.allocator.add_agent(&id, &info.resources, &used) {
                tracing::error!(agent = %id, error = %e, "allocator add_agent");
                return Err(CallError::Conflict(format!("agent {id}: {e}")));
            }
            if let Some(a) = self.agents.get_mut(&id) {
                a.in_allocator = true;
            }
        }
        let _ = now;
        if announce && let Some(a) = self.agents.get(&id) {
            let ev = json!({"type": "AGENT_ADDED", "agent_added": {"agent": crate::endpoints::v1_agent(self, a)}});
            self.operator_event(&ev);
        }
        self.count(if sub.agent_id.is_some() {
            "master/slave_reregistrations"
        } else {
            "master/slave_registrations"
        });
        tracing::info!(agent = %id, hostname = %info.hostname, reregistered = sub.agent_id.is_some(), "agent registered");
        self.allocate();
        Ok(id)
    }

    async fn reconcile_agent_tasks(
        &mut self,
        agent: &AgentId,
        reported: &[RunningTask],
        was_unreachable: bool,
    ) -> Result<(), MasterError> {
        let reported_keys: BTreeSet<TaskKey> = reported
            .iter()
            .map(|r| (r.framework_id.clone(), r.task.task_id.clone()))
            .collect();
        // Tasks the master has on this agent that the agent does not run.
        let missing: Vec<TaskKey> = self
            .tasks
            .iter()
            .filter(|(k, t)| {
                t.record.agent_id == *agent
                    && !t.record.state.is_terminal()
                    && !reported_keys.contains(*k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in missing {
            self.master_update(
                &k,
                TaskState::Gone,
                TaskStatusReason::AgentRestarted,
                "Task is not running on the re-registered agent",
            )
            .await?;
        }
        let mut shutdown = BTreeSet::new();
        for r in reported {
            let key = (r.framework_id.clone(), r.task.task_id.clone());
            let Some(fw) = self.frameworks.get(&r.framework_id) else {
                shutdown.insert(r.framework_id.clone());
                continue;
            };
            let partition_aware = fw.partition_aware();
            if !self.tasks.contains_key(&key) {
                if self
                    .completed_tasks
                    .iter()
                    .any(|c| c.framework_id == key.0 && c.task.task_id == key.1)
                {
                    continue;
                }
                // A task the master does not know (launched by a term whose write was
                // lost is impossible; this is an agent-side adoption): track it.
                let role = r
                    .task
                    .resources
                    .iter()
                    .find_map(|x| x.allocation_info.as_ref().and_then(|a| a.role.clone()))
                    .unwrap_or_else(|| basalt_mesos::DEFAULT_ROLE.to_string());
                let record = TaskRecord {
                    framework_id: r.framework_id.clone(),
                    agent_id: agent.clone(),
                    task: r.task.clone(),
                    group_executor: None,
                    role,
                    state: r.status.state,
                    statuses: vec![r.status.clone()],
                    pending: Vec::new(),
                };
                self.persist(vec![Self::task_write(&record)?]).await?;
                let ev = Self::task_added_event(&record);
                self.operator_event(&ev);
                self.tasks.insert(
                    key,
                    Task {
                        record: Box::new(record),
                        next_retry: None,
                        backoff: Duration::ZERO,
                    },
                );
                continue;
            }
            let current = self.tasks.get(&key).map(|t| t.record.state);
            if was_unreachable && !partition_aware {
                // Mesos kills the tasks of non-partition-aware frameworks on an agent
                // that comes back: they were already reported LOST.
                let ev = AgentEvent {
                    kill: Some(KillTask {
                        framework_id: r.framework_id.clone(),
                        task_id: r.task.task_id.clone(),
                        kill_policy: None,
                    }),
                    ..AgentEvent::bare("KILL")
                };
                self.send_agent(agent, &ev);
                continue;
            }
            if current == Some(r.status.state) {
                continue;
            }
            let Some(current) = current else { continue };
            if !current.can_transition_to(r.status.state) {
                continue;
            }
            let known_uuid = r.status.uuid.as_ref().is_some_and(|u| {
                self.tasks
                    .get(&key)
                    .is_some_and(|t| t.record.statuses.iter().any(|s| s.uuid.as_ref() == Some(u)))
            });
            if known_uuid {
                continue;
            }
            let (status, from_agent) = match r.status.uuid {
                Some(_) => (r.status.clone(), true),
                None => {
                    let mut s = r.status.clone();
                    s.uuid = Some(new_status_uuid());
                    s.reason = Some(TaskStatusReason::AgentReregistered);
                    (s, false)
                }
            };
            let first = self.apply_status(&key, status, from_agent);
            if let Some(t) = self.tasks.get(&key) {
                let w = Self::task_write(&t.record)?;
                self.persist(vec![w]).await?;
            }
            if first {
                self.send_pending_head(&key);
            }
        }
        for f in shutdown {
            let ev = AgentEvent {
                shutdown_framework: Some(ShutdownFramework { framework_id: f }),
                ..AgentEvent::bare("SHUTDOWN_FRAMEWORK")
            };
            self.send_agent(agent, &ev);
        }
        Ok(())
    }

    /// Agent UPDATE: a task status, persisted before the agent gets its 202.
    pub async fn agent_update(
        &mut self,
        agent: &AgentId,
        update: crate::agent_api::StatusUpdate,
    ) -> Result<(), CallError> {
        let staged = self.stage_agent_update(agent, update)?;
        self.commit_staged(vec![staged]).await?;
        Ok(())
    }

    fn stage_agent_update(
        &mut self,
        agent: &AgentId,
        update: crate::agent_api::StatusUpdate,
    ) -> Result<Staged, CallError> {
        let mut staged = Staged::default();
        self.touch_agent(agent);
        self.count("master/status_updates");
        let key = (update.framework_id.clone(), update.status.task_id.clone());
        let status = update.status;
        let Some(task) = self.tasks.get(&key) else {
            // Unknown task (framework removed, or already retired): acknowledge so the
            // agent stops resending.
            if let Some(uuid) = status.uuid.clone() {
                let ev = AgentEvent {
                    acknowledge: Some(Acknowledged {
                        framework_id: key.0.clone(),
                        task_id: key.1.clone(),
                        uuid,
                    }),
                    ..AgentEvent::bare("ACKNOWLEDGE")
                };
                staged.agent_events.push((agent.clone(), ev));
            }
            return Ok(staged);
        };
        if &task.record.agent_id != agent {
            return Err(CallError::Conflict(format!(
                "task {} of framework {} runs on agent {}, not {agent}",
                key.1, key.0, task.record.agent_id
            )));
        }
        if status.uuid.is_some() && task.record.statuses.iter().any(|s| s.uuid == status.uuid) {
            return Ok(staged); // a resend of an update the master already has
        }
        let current = task.record.state;
        if !current.can_transition_to(status.state) {
            return Err(CallError::Conflict(format!(
                "task {} cannot go from {current} to {}",
                key.1, status.state
            )));
        }
        let mut status = status;
        status.agent_id = Some(agent.clone());
        if status.timestamp.is_none() {
            status.timestamp = Some(now_secs());
        }
        let first = self.apply_status(&key, status, true);
        if let Some(t) = self.tasks.get(&key) {
            staged.writes.push(Self::task_write(&t.record)?);
        }
        if first {
            staged.heads.push(key);
        }
        Ok(staged)
    }

    /// Agent HEARTBEAT.
    pub fn touch_agent(&mut self, agent: &AgentId) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.last_seen = Instant::now();
        }
    }

    /// Agent MESSAGE: forwarded to the framework.
    pub fn agent_message(&mut self, agent: &AgentId, m: FrameworkMessage) {
        self.touch_agent(agent);
        let ev = Event::message(api::Message {
            agent_id: agent.clone(),
            executor_id: m.executor_id,
            data: m.data,
        });
        if !self.send_fw(&m.framework_id, &ev) {
            self.count("master/messages_dropped");
        }
    }

    async fn mark_unreachable(&mut self, agent: &AgentId) -> Result<(), MasterError> {
        let Some(a) = self.agents.get(agent) else {
            return Ok(());
        };
        let mut record = a.record.clone();
        record.unreachable_time = Some(now_secs());
        self.persist(vec![Self::put(Key::agent(agent.as_str()), &record)?])
            .await?;
        for id in self.offers_where(|o| &o.agent_id == agent) {
            self.drop_offer(&id, None, true);
        }
        let was_in_allocator = match self.agents.get_mut(agent) {
            Some(a) => {
                a.record = record;
                a.conn = None;
                std::mem::replace(&mut a.in_allocator, false)
            }
            None => false,
        };
        if was_in_allocator && let Err(e) = self.allocator.remove_agent(agent) {
            tracing::warn!(agent = %agent, error = %e, "allocator remove_agent");
        }
        let keys: Vec<TaskKey> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.record.agent_id == *agent && !t.record.state.is_terminal())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.master_update(
                &k,
                TaskState::Unreachable,
                TaskStatusReason::AgentRemoved,
                "Agent is unreachable",
            )
            .await?;
        }
        let fws: BTreeSet<FrameworkId> = self
            .frameworks
            .iter()
            .filter(|(_, f)| f.conn.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for f in fws {
            self.send_fw(
                &f,
                &Event::failure(api::Failure {
                    agent_id: Some(agent.clone()),
                    executor_id: None,
                    status: None,
                }),
            );
        }
        self.operator_event(
            &json!({"type": "AGENT_REMOVED", "agent_removed": {"agent_id": agent}}),
        );
        self.count("master/slave_unreachable_completed");
        tracing::warn!(agent = %agent, "agent marked unreachable");
        Ok(())
    }

    /// Operator MARK_AGENT_GONE: the agent's tasks become TASK_GONE_BY_OPERATOR, it
    /// leaves the allocator and the registry (a tombstone stays in etcd) and is told to
    /// shut down.
    pub async fn mark_agent_gone(&mut self, agent: &AgentId) -> Result<(), CallError> {
        let Some(a) = self.agents.get(agent) else {
            return Err(CallError::NotFound(format!(
                "agent {agent} is not registered"
            )));
        };
        let mut record = a.record.clone();
        record.gone_time = Some(now_secs());
        self.persist(vec![Self::put(Key::agent(agent.as_str()), &record)?])
            .await?;
        for id in self.offers_where(|o| &o.agent_id == agent) {
            self.drop_offer(&id, None, true);
        }
        let keys: Vec<TaskKey> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.record.agent_id == *agent && !t.record.state.is_terminal())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.master_update(
                &k,
                TaskState::GoneByOperator,
                TaskStatusReason::AgentRemovedByOperator,
                "Agent has been marked gone",
            )
            .await?;
        }
        self.send_agent(agent, &AgentEvent::bare("SHUTDOWN"));
        if let Some(a) = self.agents.remove(agent)
            && a.in_allocator
            && let Err(e) = self.allocator.remove_agent(agent)
        {
            tracing::warn!(agent = %agent, error = %e, "allocator remove_agent");
        }
        self.executors.retain(|(_, a, _), _| a != agent);
        self.gone_agents.insert(agent.clone());
        self.operator_event(
            &json!({"type": "AGENT_REMOVED", "agent_removed": {"agent_id": agent}}),
        );
        self.count("master/slave_removals_reason_gone");
        tracing::warn!(agent = %agent, "agent marked gone by the operator");
        Ok(())
    }

    // ---------------------------------------------------------------- timers

    /// One timer tick: liveness, failover timeouts, offer timeouts, status resends,
    /// heartbeats, allocation.
    pub async fn tick(&mut self) -> Result<(), MasterError> {
        let now = Instant::now();
        let unreachable_after = self.cfg.agent_unreachable_after();
        // Agents.
        let mut silent = Vec::new();
        let mut disconnected = Vec::new();
        for (id, a) in &self.agents {
            if !a.reachable() {
                continue;
            }
            if now.duration_since(a.last_seen) > unreachable_after {
                silent.push(id.clone());
            } else if a.conn.as_ref().is_some_and(Conn::is_closed) {
                disconnected.push(id.clone());
            }
        }
        for id in disconnected {
            for o in self.offers_where(|o| o.agent_id == id) {
                self.drop_offer(&o, None, true);
            }
            if let Some(a) = self.agents.get_mut(&id) {
                a.conn = None;
                if a.in_allocator {
                    let _ = self.allocator.deactivate_agent(&id);
                }
            }
            tracing::info!(agent = %id, "agent disconnected");
        }
        for id in silent {
            self.mark_unreachable(&id).await?;
        }
        // Frameworks.
        let mut gone = Vec::new();
        let mut expired = Vec::new();
        for (id, f) in &self.frameworks {
            if f.conn.as_ref().is_some_and(Conn::is_closed) {
                gone.push(id.clone());
            } else if f.conn.is_none() && f.failover_deadline.is_some_and(|d| now >= d) {
                expired.push(id.clone());
            }
        }
        for id in gone {
            for o in self.offers_where(|o| o.framework_id == id) {
                self.drop_offer(&o, None, false);
            }
            let _ = self.allocator.deactivate_framework(&id);
            if let Some(f) = self.frameworks.get_mut(&id) {
                f.conn = None;
                f.unregistered_time = Some(now_secs());
                let t = f.record.info.failover_timeout_secs().clamp(0.0, 1e9);
                f.failover_deadline = Some(now + Duration::from_secs_f64(t));
                tracing::info!(framework = %id, failover_timeout = t, "framework disconnected");
                if t <= 0.0 {
                    expired.push(id.clone());
                }
            }
            self.framework_event("FRAMEWORK_UPDATED", &id);
        }
        for id in expired {
            self.remove_framework(&id, "failover timeout").await?;
        }
        // Offers.
        if let Some(timeout) = self.cfg.offer_timeout {
            let old: Vec<OfferId> = self
                .offers
                .values()
                .filter(|e| now.duration_since(e.created) >= timeout)
                .map(|e| e.offer.id.clone())
                .collect();
            for id in old {
                self.drop_offer(&id, None, true);
            }
        }
        // Status update resends.
        let due: Vec<TaskKey> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.next_retry.is_some_and(|r| now >= r) && !t.record.pending.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            let status = self
                .tasks
                .get(&k)
                .and_then(|t| t.record.pending.first())
                .map(|p| p.status.clone());
            if let Some(s) = status.and_then(|s| self.for_framework(&k.0, &s)) {
                self.send_fw(&k.0, &Event::update(s));
                self.count("master/status_update_resends");
            }
            if let Some(t) = self.tasks.get_mut(&k) {
                t.backoff = (t.backoff * 2).clamp(self.cfg.status_retry_initial, MAX_STATUS_RETRY);
                t.next_retry = Some(now + t.backoff);
            }
        }
        // Heartbeats.
        if now.duration_since(self.last_heartbeat) >= self.cfg.heartbeat_interval {
            self.last_heartbeat = now;
            let hb = Event::heartbeat();
            let ping = AgentEvent::bare("PING");
            for f in self.frameworks.values() {
                if let Some(c) = &f.conn {
                    c.send(&hb);
                }
            }
            for a in self.agents.values() {
                if let Some(c) = &a.conn {
                    c.send(&ping);
                }
            }
            self.operator_event(&json!({"type": "HEARTBEAT"}));
        }
        self.allocate();
        Ok(())
    }
}

/// Checks a RESERVE / UNRESERVE / CREATE / DESTROY against what is left of the offer
/// and returns the resources it consumes (`from`) and produces (`to`), both with the
/// offer's allocation role.
fn convert(
    kind: &str,
    requested: &Resources,
    role: &str,
    principal: Option<&str>,
    remaining: &Resources,
) -> Result<(Resources, Resources), String> {
    let res = api::with_allocation_role(&requested.to_vec(), role);
    res.validate()
        .map_err(|e| format!("{kind}: invalid resources: {e}"))?;
    let (from, to) = match kind {
        "RESERVE" => {
            for r in res.iter() {
                let Some(top) = r.reservations.last() else {
                    return Err(format!("RESERVE: resource {r} has no reservation"));
                };
                if top.kind != basalt_mesos::ReservationType::Dynamic {
                    return Err(format!(
                        "RESERVE: resource {r} must be dynamically reserved"
                    ));
                }
                if top.role != role {
                    return Err(format!(
                        "RESERVE: reservation role {} differs from the offer's role {role}",
                        top.role
                    ));
                }
                if let (Some(p), Some(rp)) = (principal, top.principal.as_deref())
                    && p != rp
                {
                    return Err(format!(
                        "RESERVE: reservation principal {rp} differs from the framework's {p}"
                    ));
                }
            }
            (res.pop_reservation(), res)
        }
        "UNRESERVE" => {
            for r in res.iter() {
                if !r.is_dynamically_reserved() {
                    return Err(format!(
                        "UNRESERVE: resource {r} is not dynamically reserved"
                    ));
                }
                if r.is_persistent_volume() {
                    return Err(format!("UNRESERVE: resource {r} is a persistent volume"));
                }
            }
            let to = res.pop_reservation();
            (res, to)
        }
        "CREATE" | "DESTROY" => {
            let mut bare = Resources::new();
            for r in res.iter() {
                if !r.is_persistent_volume() {
                    return Err(format!("{kind}: resource {r} is not a persistent volume"));
                }
                if r.reservations.is_empty() {
                    return Err(format!("{kind}: volume {r} must be on reserved disk"));
                }
                let mut b = r.clone();
                if let Some(d) = b.disk.as_mut() {
                    d.persistence = None;
                    d.volume = None;
                    if d.source.is_none() {
                        b.disk = None;
                    }
                }
                bare += b;
            }
            if kind == "CREATE" {
                (bare, res)
            } else {
                (res, bare)
            }
        }
        other => return Err(format!("unsupported operation {other}")),
    };
    if !remaining.contains(&from) {
        return Err(format!("{kind}: {from} is not in the offered {remaining}"));
    }
    Ok((from, to))
}

/// `host:port` → (host, port).
pub fn split_address(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_matches(['[', ']']).to_string(),
            p.parse().unwrap_or(5050),
        ),
        None => (addr.to_string(), 5050),
    }
}
