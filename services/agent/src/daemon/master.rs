//! The subscription to the leading master: SUBSCRIBE (following redirects), the event
//! stream, heartbeats and re-subscription with back-off.

use std::sync::Arc;
use std::time::Duration;

use basalt_master::agent_api::{
    AGENT_API_PATH, AGENT_STREAM_ID_HEADER, AgentCall, AgentEvent, RunningTask, Subscribe,
};
use basalt_master::recordio::Decoder;
use basalt_mesos::{AgentInfo, TaskState, TaskStatus};
use futures::StreamExt;

use super::{Inner, TaskEntry, kill_policy_grace, kill_task, lock, run_task, status};

/// `http://host:port` for a configured master (`host:port` or a URL).
fn base_url(master: &str) -> String {
    let m = master.trim_end_matches('/');
    if m.starts_with("http://") || m.starts_with("https://") {
        m.to_string()
    } else {
        format!("http://{m}")
    }
}

/// Resolves a `Location` header (`//host:port/path` in Mesos' form) to an absolute URL.
fn resolve_location(current: &str, location: &str) -> String {
    if location.starts_with("//") {
        let scheme = if current.starts_with("https:") {
            "https:"
        } else {
            "http:"
        };
        format!("{scheme}{location}")
    } else {
        location.to_string()
    }
}

pub(super) async fn post(
    inner: &Inner,
    url: &str,
    call: &AgentCall,
    stream_id: Option<&str>,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut req = inner.client.post(url).json(call);
    if let Some(c) = &inner.cfg.join_credential {
        req = req.bearer_auth(c);
    }
    if let Some(s) = stream_id {
        req = req.header(AGENT_STREAM_ID_HEADER, s);
    }
    req.send().await
}

fn subscribe_call(inner: &Inner) -> AgentCall {
    let s = lock(&inner.state);
    let mut info = AgentInfo::new(inner.cfg.hostname.clone(), s.resources.clone());
    info.port = Some(inner.http_address.port());
    info.attributes = s.attributes.clone();
    let tasks: Vec<RunningTask> = s
        .tasks
        .values()
        .filter(|t| !t.status.state.is_terminal())
        .map(|t| RunningTask {
            framework_id: t.framework_id.clone(),
            task: t.task.clone(),
            status: t.status.clone(),
        })
        .collect();
    let frameworks = s
        .frameworks
        .iter()
        .filter(|(id, _)| tasks.iter().any(|t| &t.framework_id == *id))
        .map(|(_, f)| f.clone())
        .collect();
    let mut call = AgentCall::new("SUBSCRIBE", None);
    call.subscribe = Some(Subscribe {
        agent_info: info,
        agent_id: s.agent_id.clone(),
        tasks,
        frameworks,
    });
    call
}

/// Opens the event stream with the leader: tries every master, follows `307`s.
async fn connect(inner: &Inner) -> Result<(String, reqwest::Response), String> {
    let call = subscribe_call(inner);
    let mut errors = Vec::new();
    for m in &inner.cfg.masters {
        let mut url = format!("{}{AGENT_API_PATH}", base_url(m));
        for _ in 0..4 {
            match post(inner, &url, &call, None).await {
                Ok(r) if r.status().as_u16() == 307 => {
                    match r.headers().get("location").and_then(|v| v.to_str().ok()) {
                        Some(loc) => url = resolve_location(&url, loc),
                        None => {
                            errors.push(format!("{url}: 307 without Location"));
                            break;
                        }
                    }
                }
                Ok(r) if r.status().is_success() => {
                    let base = url.trim_end_matches(AGENT_API_PATH).to_string();
                    return Ok((base, r));
                }
                Ok(r) => {
                    let code = r.status();
                    let body = r.text().await.unwrap_or_default();
                    errors.push(format!("{url}: {code}: {}", body.trim()));
                    break;
                }
                Err(e) => {
                    errors.push(format!("{url}: {e}"));
                    break;
                }
            }
        }
    }
    Err(errors.join("; "))
}

/// The subscription loop: runs until the daemon stops.
pub(super) async fn run(inner: Arc<Inner>) {
    let mut backoff = inner.cfg.reconnect_initial;
    let mut stop = inner.stop.subscribe();
    loop {
        if *stop.borrow() || lock(&inner.state).stopping {
            return;
        }
        let (base, resp) = match connect(&inner).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "agent SUBSCRIBE failed");
                lock(&inner.state).last_error = Some(e);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(inner.cfg.reconnect_max);
                continue;
            }
        };
        let stream_id = resp
            .headers()
            .get(AGENT_STREAM_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        tracing::info!(master = %base, "subscribed to the master");
        {
            let mut s = lock(&inner.state);
            s.master = Some(base);
            s.stream_id = stream_id;
            s.last_error = None;
        }
        let hb = tokio::spawn(heartbeats(inner.clone()));
        let ended = read_stream(&inner, resp).await;
        hb.abort();
        lock(&inner.state).stream_id = None;
        tracing::warn!(reason = %ended, "the master's event stream ended; re-subscribing");
        if lock(&inner.state).registrations > 0 {
            backoff = inner.cfg.reconnect_initial;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {}
        }
        backoff = (backoff * 2).min(inner.cfg.reconnect_max);
    }
}

/// Reads events until the stream ends or stays silent for five heartbeat intervals
/// (the master pings every interval); returns why it ended.
async fn read_stream(inner: &Arc<Inner>, resp: reqwest::Response) -> String {
    let mut body = resp.bytes_stream();
    let mut decoder = Decoder::new();
    loop {
        let idle = lock(&inner.state)
            .heartbeat
            .map_or(Duration::from_secs(30), |h| {
                (h * 5).max(Duration::from_secs(2))
            });
        let chunk = match tokio::time::timeout(idle, body.next()).await {
            Err(_) => return format!("no event for {idle:?}"),
            Ok(None) => return "closed by the master".into(),
            Ok(Some(Err(e))) => return format!("read error: {e}"),
            Ok(Some(Ok(c))) => c,
        };
        decoder.feed(&chunk);
        loop {
            match decoder.next_record() {
                Ok(Some(rec)) => match serde_json::from_slice::<AgentEvent>(&rec) {
                    Ok(ev) => handle(inner, ev),
                    Err(e) => tracing::warn!(error = %e, "undecodable agent event ignored"),
                },
                Ok(None) => break,
                Err(e) => return format!("bad RecordIO framing: {e}"),
            }
        }
        if lock(&inner.state).stopping {
            return "the master shut this agent down".into();
        }
    }
}

async fn heartbeats(inner: Arc<Inner>) {
    loop {
        let interval = lock(&inner.state)
            .heartbeat
            .unwrap_or(Duration::from_secs(5));
        tokio::time::sleep(interval).await;
        let (agent_id, master, stream) = {
            let s = lock(&inner.state);
            (s.agent_id.clone(), s.master.clone(), s.stream_id.clone())
        };
        let (Some(agent_id), Some(master)) = (agent_id, master) else {
            continue;
        };
        let call = AgentCall::new("HEARTBEAT", Some(agent_id));
        let url = format!("{master}{AGENT_API_PATH}");
        match post(&inner, &url, &call, stream.as_deref()).await {
            Ok(r) if r.status().as_u16() == 202 => {}
            Ok(r) => tracing::debug!(status = %r.status(), "HEARTBEAT refused"),
            Err(e) => tracing::debug!(error = %e, "HEARTBEAT failed"),
        }
    }
}

fn handle(inner: &Arc<Inner>, ev: AgentEvent) {
    tracing::debug!(kind = %ev.kind, "agent event");
    match ev.kind.as_str() {
        "REGISTERED" => {
            let Some(r) = ev.registered else { return };
            tracing::info!(agent_id = %r.agent_id.as_str(), master_id = %r.master_id, "registered");
            let mut volumes_changed = None;
            {
                let mut s = lock(&inner.state);
                s.agent_id = Some(r.agent_id.clone());
                s.master_id = Some(r.master_id);
                s.heartbeat = Some(Duration::from_secs_f64(
                    r.heartbeat_interval_seconds.clamp(0.01, 3600.0),
                ));
                s.registrations += 1;
                if let Some(c) = r.checkpointed_resources {
                    let old = std::mem::replace(&mut s.resources, c.clone());
                    volumes_changed = Some((old, c));
                }
                for p in &mut s.pending {
                    p.accepted = false;
                }
            }
            if let Err(e) = status::write_latest(&inner.cfg.work_dir, &r.agent_id) {
                tracing::error!(error = %e, "checkpointing the agent id failed");
            }
            if let Some((old, new)) = volumes_changed {
                super::volumes::sync(inner, &old, &new);
            }
            super::ensure_containerizer(inner);
            status::checkpoint(inner);
            inner.updates_wake.notify_one();
        }
        "LAUNCH" => {
            let Some(l) = ev.launch else { return };
            launch(inner, l.framework_info, l.task);
        }
        "LAUNCH_GROUP" => {
            let Some(g) = ev.launch_group else { return };
            super::pods::launch_group(inner, g);
        }
        "KILL" => {
            let Some(k) = ev.kill else { return };
            let grace = k.kill_policy.as_ref().and_then(kill_policy_grace);
            kill_task(inner, &k.framework_id, &k.task_id, grace);
        }
        "ACKNOWLEDGE" => {
            let Some(a) = ev.acknowledge else { return };
            status::acknowledge(inner, &a.framework_id, &a.task_id, &a.uuid);
        }
        "SHUTDOWN_FRAMEWORK" => {
            let Some(sf) = ev.shutdown_framework else {
                return;
            };
            let ids: Vec<_> = lock(&inner.state)
                .tasks
                .keys()
                .filter(|(f, _)| *f == sf.framework_id)
                .map(|(_, t)| t.clone())
                .collect();
            for t in ids {
                kill_task(inner, &sf.framework_id, &t, None);
            }
        }
        "SHUTDOWN_EXECUTOR" => {
            let Some(se) = ev.shutdown_executor else {
                return;
            };
            let ids: Vec<_> = lock(&inner.state)
                .tasks
                .iter()
                .filter(|((f, _), t)| *f == se.framework_id && t.executor_id == se.executor_id)
                .map(|((_, t), _)| t.clone())
                .collect();
            for t in ids {
                kill_task(inner, &se.framework_id, &t, None);
            }
        }
        "SHUTDOWN" => {
            tracing::warn!("the master shut this agent down: killing every task");
            let ids: Vec<_> = {
                let mut s = lock(&inner.state);
                s.stopping = true;
                s.tasks.keys().cloned().collect()
            };
            for (f, t) in ids {
                kill_task(inner, &f, &t, None);
            }
        }
        "CHECKPOINT_RESOURCES" => {
            if let Some(r) = ev.checkpoint_resources {
                let old = std::mem::replace(&mut lock(&inner.state).resources, r.clone());
                super::volumes::sync(inner, &old, &r);
            }
        }
        "MESSAGE" => {
            if let Some(m) = ev.message {
                tracing::info!(framework = %m.framework_id.as_str(), executor = %m.executor_id.as_str(),
                    "framework message dropped: command tasks have no executor to receive it");
            }
        }
        "PING" => {}
        other => tracing::debug!(kind = %other, "unknown agent event ignored"),
    }
}

/// Records a task as STAGING (of `executor` and `group` for a task group); false when
/// it is already known and not terminal.
pub(super) fn add_task(
    inner: &Arc<Inner>,
    framework: &basalt_mesos::FrameworkInfo,
    task: &basalt_mesos::TaskInfo,
    executor: Option<&basalt_mesos::ExecutorId>,
    group: Option<&str>,
) -> bool {
    let Some(fw_id) = framework.id.clone() else {
        tracing::warn!(task = %task.task_id.as_str(), "LAUNCH without a framework id ignored");
        return false;
    };
    let mut s = lock(&inner.state);
    let key = (fw_id.clone(), task.task_id.clone());
    if s.tasks
        .get(&key)
        .is_some_and(|t| !t.status.state.is_terminal())
    {
        tracing::warn!(task = %task.task_id.as_str(), "LAUNCH of a task already running ignored");
        return false;
    }
    s.frameworks.insert(fw_id.clone(), framework.clone());
    let mut st = TaskStatus::new(task.task_id.clone(), TaskState::Staging);
    st.agent_id = s.agent_id.clone();
    st.timestamp = Some(super::now_secs());
    let executor_id = executor.cloned().unwrap_or_else(|| {
        task.executor
            .as_ref()
            .map(|e| e.executor_id.clone())
            .unwrap_or_else(|| basalt_mesos::ExecutorId::new(task.task_id.as_str()))
    });
    s.tasks.insert(
        key,
        TaskEntry {
            framework_id: fw_id,
            task: task.clone(),
            executor_id,
            status: st.clone(),
            statuses: vec![st],
            container_id: None,
            sandbox: None,
            meta_dir: None,
            pid: None,
            kill_requested: None,
            container: None,
            group: group.map(str::to_owned),
            oom: None,
        },
    );
    true
}

fn launch(
    inner: &Arc<Inner>,
    framework: basalt_mesos::FrameworkInfo,
    task: basalt_mesos::TaskInfo,
) {
    if !add_task(inner, &framework, &task, None, None) {
        return;
    }
    let Some(fw_id) = framework.id.clone() else {
        return;
    };
    status::checkpoint(inner);
    tokio::spawn(run_task(inner.clone(), framework, fw_id, task));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_addresses_and_redirects_resolve() {
        assert_eq!(base_url("10.0.0.1:5050"), "http://10.0.0.1:5050");
        assert_eq!(
            base_url("https://m.example:5050/"),
            "https://m.example:5050"
        );
        assert_eq!(
            resolve_location("http://a:1/api", "//b:2/api/basalt/agent/v1"),
            "http://b:2/api/basalt/agent/v1"
        );
        assert_eq!(
            resolve_location("https://a:1/api", "//b:2/x"),
            "https://b:2/x"
        );
        assert_eq!(
            resolve_location("http://a:1", "http://c:3/y"),
            "http://c:3/y"
        );
    }
}
