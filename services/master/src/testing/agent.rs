//! [`EmulatedAgent`]: an in-process agent speaking the internal protocol over HTTP.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_mesos::{
    AgentId, AgentInfo, ExecutorId, FrameworkId, FrameworkInfo, Resources, TaskId, TaskInfo,
    TaskState, TaskStatus, TaskStatusSource,
};
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::{Faults, HarnessError, http_client, resolve_location, wait_until};
use crate::agent_api::{
    AGENT_API_PATH, AGENT_STREAM_ID_HEADER, AgentCall, AgentEvent, RunningTask, StatusUpdate,
    Subscribe,
};
use crate::recordio::Decoder;

/// How an emulated agent behaves.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Host name reported.
    pub hostname: String,
    /// Total resources.
    pub resources: Resources,
    /// Masters' `host:port` (any of them; followers redirect).
    pub masters: Vec<String>,
    /// The join credential presented (`None`: no Authorization header).
    pub credential: Option<String>,
    /// Report TASK_RUNNING as soon as a task is launched.
    pub auto_run: bool,
}

impl AgentOptions {
    /// An agent with `resources` (Mesos text form, e.g. `cpus:4;mem:4096`), the test
    /// credential and auto-run on.
    pub fn new(
        hostname: &str,
        resources: &str,
        masters: Vec<String>,
    ) -> Result<Self, HarnessError> {
        let resources = Resources::parse(resources).map_err(|e| HarnessError::Http {
            what: "agent resources".into(),
            message: e.to_string(),
        })?;
        Ok(AgentOptions {
            hostname: hostname.to_string(),
            resources,
            masters,
            credential: Some(super::TEST_CREDENTIAL.to_string()),
            auto_run: true,
        })
    }
}

#[derive(Debug, Default)]
struct State {
    agent_id: Option<AgentId>,
    stream_id: Option<String>,
    master: Option<String>,
    heartbeat: Option<Duration>,
    tasks: BTreeMap<(FrameworkId, TaskId), RunningTask>,
    frameworks: BTreeMap<FrameworkId, FrameworkInfo>,
    events: Vec<AgentEvent>,
    registrations: u32,
    last_error: Option<String>,
}

struct Inner {
    opts: AgentOptions,
    client: reqwest::Client,
    state: Mutex<State>,
    faults: Mutex<Faults>,
}

/// An emulated agent; see the module docs of [`crate::testing`].
pub struct EmulatedAgent {
    inner: Arc<Inner>,
    run: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmulatedAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatedAgent")
            .field("hostname", &self.inner.opts.hostname)
            .finish_non_exhaustive()
    }
}

impl Drop for EmulatedAgent {
    fn drop(&mut self) {
        if let Some(r) = self.run.take() {
            r.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl EmulatedAgent {
    /// Starts the agent: it registers with the leading master and keeps re-registering
    /// whenever its stream ends.
    pub fn start(opts: AgentOptions) -> EmulatedAgent {
        let inner = Arc::new(Inner {
            opts,
            client: http_client(),
            state: Mutex::new(State::default()),
            faults: Mutex::new(Faults::default()),
        });
        let run = Some(tokio::spawn(run(inner.clone())));
        EmulatedAgent { inner, run }
    }

    /// Emulates a process restart with checkpointed state: the connection is dropped and
    /// the agent re-registers with its agent id and running tasks.
    pub fn restart(&mut self) {
        if let Some(r) = self.run.take() {
            r.abort();
        }
        {
            let mut s = lock(&self.inner.state);
            s.stream_id = None;
            s.master = None;
        }
        self.run = Some(tokio::spawn(run(self.inner.clone())));
    }

    /// The agent id, once registered.
    pub fn agent_id(&self) -> Option<AgentId> {
        lock(&self.inner.state).agent_id.clone()
    }

    /// How many REGISTERED events it got.
    pub fn registrations(&self) -> u32 {
        lock(&self.inner.state).registrations
    }

    /// The last connection error, if any.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.inner.state).last_error.clone()
    }

    /// Waits until the agent has registered `n` times in all; returns its id.
    pub async fn wait_registered(
        &self,
        n: u32,
        timeout: Duration,
    ) -> Result<AgentId, HarnessError> {
        wait_until("agent registration", timeout, || async {
            let s = lock(&self.inner.state);
            if s.registrations >= n && s.stream_id.is_some() {
                s.agent_id.clone()
            } else {
                None
            }
        })
        .await
    }

    /// The tasks it runs.
    pub fn tasks(&self) -> Vec<RunningTask> {
        lock(&self.inner.state).tasks.values().cloned().collect()
    }

    /// Each task's id and state, without copying the tasks (benches poll this).
    pub fn task_states(&self) -> Vec<(TaskId, TaskState)> {
        lock(&self.inner.state)
            .tasks
            .values()
            .map(|t| (t.task.task_id.clone(), t.status.state))
            .collect()
    }

    /// The state of one task.
    pub fn task_state(&self, fw: &FrameworkId, task: &TaskId) -> Option<TaskState> {
        lock(&self.inner.state)
            .tasks
            .get(&(fw.clone(), task.clone()))
            .map(|t| t.status.state)
    }

    /// Every event received.
    pub fn events(&self) -> Vec<AgentEvent> {
        lock(&self.inner.state).events.clone()
    }

    /// Replaces the fault rules.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.inner.faults) = faults;
    }

    /// Clears the fault rules.
    pub fn heal(&self) {
        self.set_faults(Faults::default());
    }

    /// Sends an executor → framework MESSAGE; returns the HTTP status (0: dropped).
    pub async fn message(
        &self,
        fw: &FrameworkId,
        executor: &ExecutorId,
        data: &str,
    ) -> Result<u16, HarnessError> {
        let mut call = AgentCall::new("MESSAGE", self.agent_id());
        call.message = Some(crate::agent_api::FrameworkMessage {
            framework_id: fw.clone(),
            executor_id: executor.clone(),
            data: data.to_string(),
        });
        Ok(agent_call(&self.inner, &call).await?.unwrap_or(0))
    }

    /// Reports a new state of a task (as its executor would), with a fresh uuid.
    pub async fn update(
        &self,
        fw: &FrameworkId,
        task: &TaskId,
        state: TaskState,
    ) -> Result<u16, HarnessError> {
        send_update(&self.inner, fw, task, state).await
    }
}

async fn post(
    inner: &Inner,
    url: &str,
    call: &AgentCall,
    stream_id: Option<&str>,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut req = inner.client.post(url).json(call);
    if let Some(c) = &inner.opts.credential {
        req = req.bearer_auth(c);
    }
    if let Some(s) = stream_id {
        req = req.header(AGENT_STREAM_ID_HEADER, s);
    }
    req.send().await
}

/// Sends a call on the current subscription, honouring the faults. `Ok(None)` when the
/// fault layer dropped it.
async fn agent_call(inner: &Inner, call: &AgentCall) -> Result<Option<u16>, HarnessError> {
    let faults = lock(&inner.faults).clone();
    if faults.partitioned || faults.drop_calls.contains(&call.kind) {
        return Ok(None);
    }
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    let (master, stream) = {
        let s = lock(&inner.state);
        (s.master.clone(), s.stream_id.clone())
    };
    let Some(master) = master else {
        return Err(HarnessError::Http {
            what: format!("agent {} call", call.kind),
            message: "not connected".into(),
        });
    };
    let url = format!("{master}{AGENT_API_PATH}");
    let resp = post(inner, &url, call, stream.as_deref())
        .await
        .map_err(|e| HarnessError::Http {
            what: format!("agent {} call", call.kind),
            message: e.to_string(),
        })?;
    Ok(Some(resp.status().as_u16()))
}

async fn send_update(
    inner: &Inner,
    fw: &FrameworkId,
    task: &TaskId,
    state: TaskState,
) -> Result<u16, HarnessError> {
    let agent_id = lock(&inner.state).agent_id.clone();
    let mut status = TaskStatus::new(task.clone(), state);
    status.uuid = Some(crate::core::new_status_uuid());
    status.source = Some(TaskStatusSource::Executor);
    status.agent_id = agent_id.clone();
    status.timestamp = Some(crate::core::now_secs());
    {
        let mut s = lock(&inner.state);
        if let Some(t) = s.tasks.get_mut(&(fw.clone(), task.clone())) {
            status.executor_id = Some(
                t.task
                    .executor
                    .as_ref()
                    .map(|e| e.executor_id.clone())
                    .unwrap_or_else(|| ExecutorId::new(task.as_str())),
            );
            t.status = status.clone();
        }
    }
    let mut call = AgentCall::new("UPDATE", agent_id);
    call.update = Some(StatusUpdate {
        framework_id: fw.clone(),
        status,
    });
    // Retry until the master has it durably (202) or refuses it (4xx).
    let mut delay = Duration::from_millis(50);
    for _ in 0..100 {
        match agent_call(inner, &call).await {
            Ok(Some(code)) if code == 202 || (400..500).contains(&code) => return Ok(code),
            Ok(None) => return Ok(0),
            _ => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
        call.agent_id = lock(&inner.state).agent_id.clone();
    }
    Err(HarnessError::Http {
        what: "agent UPDATE".into(),
        message: "no master accepted the update".into(),
    })
}

/// Opens the subscription stream with the leader (following redirects).
async fn connect(inner: &Inner) -> Option<(String, reqwest::Response)> {
    let sub = {
        let s = lock(&inner.state);
        let mut info = AgentInfo::new(inner.opts.hostname.clone(), inner.opts.resources.clone());
        info.port = Some(5051);
        Subscribe {
            agent_info: info,
            agent_id: s.agent_id.clone(),
            tasks: s
                .tasks
                .values()
                .filter(|t| !t.status.state.is_terminal())
                .cloned()
                .collect(),
            frameworks: s.frameworks.values().cloned().collect(),
        }
    };
    let mut call = AgentCall::new("SUBSCRIBE", None);
    call.subscribe = Some(sub);
    for m in &inner.opts.masters {
        let mut url = format!("http://{m}{AGENT_API_PATH}");
        for _ in 0..3 {
            match post(inner, &url, &call, None).await {
                Ok(r) if r.status().as_u16() == 307 => {
                    match r.headers().get("location").and_then(|v| v.to_str().ok()) {
                        Some(loc) => url = resolve_location(loc),
                        None => break,
                    }
                }
                Ok(r) if r.status().is_success() => {
                    let base = url.trim_end_matches(AGENT_API_PATH).to_string();
                    return Some((base, r));
                }
                Ok(r) => {
                    let code = r.status();
                    let body = r.text().await.unwrap_or_default();
                    lock(&inner.state).last_error = Some(format!("{code}: {body}"));
                    break;
                }
                Err(e) => {
                    lock(&inner.state).last_error = Some(e.to_string());
                    break;
                }
            }
        }
    }
    None
}

async fn run(inner: Arc<Inner>) {
    loop {
        if lock(&inner.faults).partitioned {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let Some((base, resp)) = connect(&inner).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let stream_id = resp
            .headers()
            .get(AGENT_STREAM_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        {
            let mut s = lock(&inner.state);
            s.master = Some(base);
            s.stream_id = stream_id;
        }
        let hb = tokio::spawn(heartbeats(inner.clone()));
        let mut body = resp.bytes_stream();
        let mut decoder = Decoder::new();
        let mut check = tokio::time::interval(Duration::from_millis(20));
        'stream: loop {
            tokio::select! {
                chunk = body.next() => {
                    let Some(Ok(chunk)) = chunk else { break 'stream };
                    decoder.feed(&chunk);
                    loop {
                        match decoder.next_record() {
                            Ok(Some(rec)) => {
                                if let Ok(ev) = serde_json::from_slice::<AgentEvent>(&rec) {
                                    handle(&inner, ev).await;
                                }
                            }
                            Ok(None) => break,
                            Err(_) => break 'stream,
                        }
                    }
                }
                _ = check.tick() => {
                    if lock(&inner.faults).partitioned {
                        break 'stream;
                    }
                }
            }
        }
        hb.abort();
        {
            let mut s = lock(&inner.state);
            s.stream_id = None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn heartbeats(inner: Arc<Inner>) {
    loop {
        let (interval, agent_id) = {
            let s = lock(&inner.state);
            (
                s.heartbeat.unwrap_or(Duration::from_millis(200)),
                s.agent_id.clone(),
            )
        };
        tokio::time::sleep(interval / 2).await;
        if agent_id.is_some() {
            let _ = agent_call(&inner, &AgentCall::new("HEARTBEAT", agent_id)).await;
        }
    }
}

fn add_task(inner: &Inner, fw: &FrameworkInfo, task: &TaskInfo) -> Option<(FrameworkId, TaskId)> {
    let fw_id = fw.id.clone()?;
    let mut s = lock(&inner.state);
    s.frameworks.insert(fw_id.clone(), fw.clone());
    let mut status = TaskStatus::new(task.task_id.clone(), TaskState::Staging);
    status.agent_id = s.agent_id.clone();
    s.tasks.insert(
        (fw_id.clone(), task.task_id.clone()),
        RunningTask {
            framework_id: fw_id.clone(),
            task: task.clone(),
            status,
        },
    );
    Some((fw_id, task.task_id.clone()))
}

async fn handle(inner: &Arc<Inner>, ev: AgentEvent) {
    lock(&inner.state).events.push(ev.clone());
    match ev.kind.as_str() {
        "REGISTERED" => {
            if let Some(r) = ev.registered {
                let mut s = lock(&inner.state);
                s.agent_id = Some(r.agent_id);
                s.heartbeat = Some(Duration::from_secs_f64(
                    r.heartbeat_interval_seconds.max(0.01),
                ));
                s.registrations += 1;
            }
        }
        "LAUNCH" => {
            if let Some(l) = ev.launch
                && let Some((fw, task)) = add_task(inner, &l.framework_info, &l.task)
                && inner.opts.auto_run
            {
                let inner = inner.clone();
                tokio::spawn(async move {
                    let _ = send_update(&inner, &fw, &task, TaskState::Running).await;
                });
            }
        }
        "LAUNCH_GROUP" => {
            if let Some(g) = ev.launch_group {
                for t in &g.task_group.tasks {
                    let mut t = t.clone();
                    t.executor = None;
                    if let Some((fw, task)) = add_task(inner, &g.framework_info, &t)
                        && inner.opts.auto_run
                    {
                        let inner = inner.clone();
                        tokio::spawn(async move {
                            let _ = send_update(&inner, &fw, &task, TaskState::Running).await;
                        });
                    }
                }
            }
        }
        "KILL" => {
            if let Some(k) = ev.kill {
                let running = lock(&inner.state)
                    .tasks
                    .get(&(k.framework_id.clone(), k.task_id.clone()))
                    .is_some_and(|t| !t.status.state.is_terminal());
                if running {
                    let inner = inner.clone();
                    tokio::spawn(async move {
                        let _ = send_update(&inner, &k.framework_id, &k.task_id, TaskState::Killed)
                            .await;
                    });
                }
            }
        }
        "ACKNOWLEDGE" => {
            if let Some(a) = ev.acknowledge {
                let mut s = lock(&inner.state);
                if let Some(t) = s.tasks.get_mut(&(a.framework_id, a.task_id))
                    && t.status.uuid.as_deref() == Some(a.uuid.as_str())
                {
                    t.status.uuid = None;
                }
            }
        }
        "SHUTDOWN" => {
            let mut s = lock(&inner.state);
            s.tasks.clear();
            s.frameworks.clear();
        }
        "SHUTDOWN_FRAMEWORK" => {
            if let Some(sf) = ev.shutdown_framework {
                let mut s = lock(&inner.state);
                s.tasks.retain(|(f, _), _| *f != sf.framework_id);
                s.frameworks.remove(&sf.framework_id);
            }
        }
        _ => {}
    }
}
