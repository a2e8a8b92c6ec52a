//! [`TestScheduler`]: a framework speaking the v1 scheduler API over HTTP, the way
//! real clients do (JSON calls, RecordIO stream, `Mesos-Stream-Id`, 307 handling).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_mesos::{FrameworkId, FrameworkInfo, OfferId, TaskId, TaskInfo, TaskStatus};
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::{Faults, HarnessError, http_client, resolve_location, wait_until};
use crate::api::{
    Accept, Acknowledge, Call, Decline, Event, Filters, Kill, Launch, Offer, Operation, Reconcile,
    ReconcileTask, Roles, SCHEDULER_PATH, STREAM_ID_HEADER, Subscribe,
};
use crate::recordio::Decoder;

#[derive(Debug, Default)]
struct State {
    framework_id: Option<FrameworkId>,
    stream_id: Option<String>,
    master: Option<String>,
    events: Vec<Event>,
    connected: bool,
    subscriptions: u32,
    used_offers: std::collections::BTreeSet<OfferId>,
}

struct Inner {
    client: reqwest::Client,
    masters: Vec<String>,
    info: Mutex<FrameworkInfo>,
    state: Mutex<State>,
    faults: Mutex<Faults>,
}

/// A test framework; see [`crate::testing`].
pub struct TestScheduler {
    inner: Arc<Inner>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestScheduler").finish_non_exhaustive()
    }
}

impl Drop for TestScheduler {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn http_err(what: &str, e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Http {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// An HTTP answer: status and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: String,
}

impl TestScheduler {
    /// Subscribes a new framework through any of `masters` (following redirects) and
    /// waits for SUBSCRIBED.
    pub async fn subscribe(
        masters: Vec<String>,
        info: FrameworkInfo,
    ) -> Result<TestScheduler, HarnessError> {
        let inner = Arc::new(Inner {
            client: http_client(),
            masters,
            info: Mutex::new(info),
            state: Mutex::new(State::default()),
            faults: Mutex::new(Faults::default()),
        });
        let mut s = TestScheduler {
            inner,
            reader: None,
        };
        s.resubscribe(Duration::from_secs(10)).await?;
        Ok(s)
    }

    /// Opens a new subscription (with the framework id once known), trying every master
    /// until one leads; waits for SUBSCRIBED.
    pub async fn resubscribe(&mut self, timeout: Duration) -> Result<FrameworkId, HarnessError> {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        let (before, first_event) = {
            let s = lock(&self.inner.state);
            (s.subscriptions, s.events.len())
        };
        let inner = self.inner.clone();
        let resp = wait_until("a master accepting SUBSCRIBE", timeout, || {
            let inner = inner.clone();
            async move { try_subscribe(&inner).await }
        })
        .await?;
        let (base, resp) = resp;
        let stream_id = resp
            .headers()
            .get(STREAM_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        {
            let mut s = lock(&self.inner.state);
            s.stream_id = stream_id;
            s.master = Some(base);
            s.connected = true;
        }
        self.reader = Some(tokio::spawn(read_stream(self.inner.clone(), resp)));
        let inner = self.inner.clone();
        let outcome = wait_until("SUBSCRIBED", timeout, || {
            let inner = inner.clone();
            async move {
                let s = lock(&inner.state);
                if s.subscriptions > before {
                    return s.framework_id.clone().map(Ok);
                }
                // Refused: an ERROR instead of SUBSCRIBED.
                s.events
                    .iter()
                    .skip(first_event)
                    .find_map(|e| e.error.as_ref())
                    .map(|e| Err(e.message.clone()))
            }
        })
        .await?;
        outcome.map_err(|m| http_err("SUBSCRIBE refused", m))
    }

    /// Drops the event stream (the master sees the framework disconnect).
    pub fn disconnect(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        lock(&self.inner.state).connected = false;
    }

    /// Replaces the fault rules (partitioned: calls are dropped and the stream closed).
    pub fn set_faults(&mut self, faults: Faults) {
        if faults.partitioned {
            self.disconnect();
        }
        *lock(&self.inner.faults) = faults;
    }

    /// The framework id.
    pub fn framework_id(&self) -> Option<FrameworkId> {
        lock(&self.inner.state).framework_id.clone()
    }

    /// The current stream id.
    pub fn stream_id(&self) -> Option<String> {
        lock(&self.inner.state).stream_id.clone()
    }

    /// The master the subscription is with (`http://host:port`).
    pub fn master(&self) -> Option<String> {
        lock(&self.inner.state).master.clone()
    }

    /// True while the stream is open.
    pub fn connected(&self) -> bool {
        lock(&self.inner.state).connected
    }

    /// Every event received, in order.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.inner.state).events.clone()
    }

    /// How many events were received.
    pub fn event_count(&self) -> usize {
        lock(&self.inner.state).events.len()
    }

    /// Waits for an event at index ≥ `from` matching `pred`.
    pub async fn wait_event(
        &self,
        what: &str,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Result<Event, HarnessError> {
        wait_until(what, timeout, || async {
            let s = lock(&self.inner.state);
            s.events.iter().skip(from).find(|e| pred(e)).cloned()
        })
        .await
    }

    /// Offers received and neither rescinded nor used by this scheduler (ACCEPT or
    /// DECLINE), on the current subscription.
    pub fn outstanding_offers(&self) -> Vec<Offer> {
        let s = lock(&self.inner.state);
        let start = s
            .events
            .iter()
            .rposition(|e| e.kind == "SUBSCRIBED")
            .unwrap_or(0);
        let rescinded: std::collections::BTreeSet<OfferId> = s.events[start..]
            .iter()
            .filter_map(|e| e.rescind.as_ref().map(|r| r.offer_id.clone()))
            .collect();
        s.events[start..]
            .iter()
            .filter_map(|e| e.offers.as_ref())
            .flat_map(|o| o.offers.iter())
            .filter(|o| !rescinded.contains(&o.id) && !s.used_offers.contains(&o.id))
            .cloned()
            .collect()
    }

    /// Waits for an outstanding offer matching `pred`.
    pub async fn wait_outstanding_offer(
        &self,
        timeout: Duration,
        pred: impl Fn(&Offer) -> bool,
    ) -> Result<Offer, HarnessError> {
        wait_until("an outstanding offer", timeout, || async {
            self.outstanding_offers().into_iter().find(|o| pred(o))
        })
        .await
    }

    /// Waits for an OFFERS event at index ≥ `from`; returns its offers.
    pub async fn wait_offers(
        &self,
        from: usize,
        timeout: Duration,
    ) -> Result<Vec<Offer>, HarnessError> {
        let ev = self
            .wait_event("OFFERS", from, timeout, |e| e.kind == "OFFERS")
            .await?;
        Ok(ev.offers.map(|o| o.offers).unwrap_or_default())
    }

    /// Waits for an UPDATE of `task` at index ≥ `from` matching `pred`.
    pub async fn wait_update(
        &self,
        task: &str,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&TaskStatus) -> bool,
    ) -> Result<TaskStatus, HarnessError> {
        let ev = self
            .wait_event(&format!("UPDATE of {task}"), from, timeout, |e| {
                e.update
                    .as_ref()
                    .is_some_and(|u| u.status.task_id.as_str() == task && pred(&u.status))
            })
            .await?;
        ev.update
            .map(|u| u.status)
            .ok_or_else(|| http_err("UPDATE", "event without status"))
    }

    /// Posts raw bytes with an optional stream id header (for bad-input tests).
    pub async fn post_raw(
        &self,
        body: &str,
        stream_id: Option<&str>,
        content_type: &str,
    ) -> Result<Reply, HarnessError> {
        let master = self
            .master()
            .ok_or_else(|| http_err("scheduler call", "not subscribed"))?;
        let mut req = self
            .inner
            .client
            .post(format!("{master}{SCHEDULER_PATH}"))
            .header("content-type", content_type)
            .body(body.to_string());
        if let Some(s) = stream_id {
            req = req.header(STREAM_ID_HEADER, s);
        }
        let r = req
            .send()
            .await
            .map_err(|e| http_err("scheduler call", e))?;
        let status = r.status().as_u16();
        Ok(Reply {
            status,
            body: r.text().await.unwrap_or_default(),
        })
    }

    /// Sends a call with the subscription's stream id (`Ok(None)` if the fault layer
    /// dropped it). Follows one 307 by re-sending to the leader.
    pub async fn call(&self, call: &Call) -> Result<Option<Reply>, HarnessError> {
        let faults = lock(&self.inner.faults).clone();
        if faults.partitioned || faults.drop_calls.contains(&call.kind) {
            return Ok(None);
        }
        if !faults.delay.is_zero() {
            tokio::time::sleep(faults.delay).await;
        }
        let (master, stream) = {
            let s = lock(&self.inner.state);
            (s.master.clone(), s.stream_id.clone())
        };
        let master = master.ok_or_else(|| http_err("scheduler call", "not subscribed"))?;
        let mut url = format!("{master}{SCHEDULER_PATH}");
        for _ in 0..3 {
            let mut req = self.inner.client.post(&url).json(call);
            if let Some(s) = &stream {
                req = req.header(STREAM_ID_HEADER, s);
            }
            let r = req
                .send()
                .await
                .map_err(|e| http_err("scheduler call", e))?;
            if r.status().as_u16() == 307
                && let Some(loc) = r.headers().get("location").and_then(|v| v.to_str().ok())
            {
                url = resolve_location(loc);
                continue;
            }
            let status = r.status().as_u16();
            return Ok(Some(Reply {
                status,
                body: r.text().await.unwrap_or_default(),
            }));
        }
        Err(http_err("scheduler call", "too many redirects"))
    }

    fn new_call(&self, kind: &str) -> Call {
        Call::new(kind, self.framework_id())
    }

    /// ACCEPT `offers` with one LAUNCH of `tasks`.
    pub async fn launch(
        &self,
        offers: &[OfferId],
        tasks: Vec<TaskInfo>,
        refuse_seconds: Option<f64>,
    ) -> Result<Option<Reply>, HarnessError> {
        lock(&self.inner.state)
            .used_offers
            .extend(offers.iter().cloned());
        let mut c = self.new_call("ACCEPT");
        c.accept = Some(Accept {
            offer_ids: offers.to_vec(),
            operations: vec![Operation {
                kind: "LAUNCH".into(),
                id: None,
                launch: Some(Launch { task_infos: tasks }),
                launch_group: None,
                other: Default::default(),
            }],
            filters: refuse_seconds.map(|r| Filters {
                refuse_seconds: Some(r),
            }),
        });
        self.call(&c).await
    }

    /// DECLINE with `refuse_seconds`.
    pub async fn decline(
        &self,
        offers: &[OfferId],
        refuse_seconds: Option<f64>,
    ) -> Result<Option<Reply>, HarnessError> {
        lock(&self.inner.state)
            .used_offers
            .extend(offers.iter().cloned());
        let mut c = self.new_call("DECLINE");
        c.decline = Some(Decline {
            offer_ids: offers.to_vec(),
            filters: refuse_seconds.map(|r| Filters {
                refuse_seconds: Some(r),
            }),
        });
        self.call(&c).await
    }

    /// REVIVE (all roles).
    pub async fn revive(&self) -> Result<Option<Reply>, HarnessError> {
        let mut c = self.new_call("REVIVE");
        c.revive = Some(Roles::default());
        self.call(&c).await
    }

    /// SUPPRESS (all roles).
    pub async fn suppress(&self) -> Result<Option<Reply>, HarnessError> {
        let mut c = self.new_call("SUPPRESS");
        c.suppress = Some(Roles::default());
        self.call(&c).await
    }

    /// KILL.
    pub async fn kill(&self, task: &TaskId) -> Result<Option<Reply>, HarnessError> {
        let mut c = self.new_call("KILL");
        c.kill = Some(Kill {
            task_id: task.clone(),
            agent_id: None,
            kill_policy: None,
        });
        self.call(&c).await
    }

    /// ACKNOWLEDGE a status (must carry a uuid and an agent id).
    pub async fn acknowledge(&self, status: &TaskStatus) -> Result<Option<Reply>, HarnessError> {
        let (Some(uuid), Some(agent)) = (&status.uuid, &status.agent_id) else {
            return Err(http_err("ACKNOWLEDGE", "status without uuid or agent_id"));
        };
        let mut c = self.new_call("ACKNOWLEDGE");
        c.acknowledge = Some(Acknowledge {
            agent_id: agent.clone(),
            task_id: status.task_id.clone(),
            uuid: uuid.clone(),
        });
        self.call(&c).await
    }

    /// RECONCILE `tasks` (empty: implicit).
    pub async fn reconcile(&self, tasks: &[TaskId]) -> Result<Option<Reply>, HarnessError> {
        let mut c = self.new_call("RECONCILE");
        c.reconcile = Some(Reconcile {
            tasks: tasks
                .iter()
                .map(|t| ReconcileTask {
                    task_id: t.clone(),
                    agent_id: None,
                })
                .collect(),
        });
        self.call(&c).await
    }

    /// TEARDOWN.
    pub async fn teardown(&self) -> Result<Option<Reply>, HarnessError> {
        self.call(&self.new_call("TEARDOWN")).await
    }
}

/// One SUBSCRIBE attempt through every master (following up to 3 redirects each).
async fn try_subscribe(inner: &Inner) -> Option<(String, reqwest::Response)> {
    if lock(&inner.faults).partitioned {
        return None;
    }
    let mut info = lock(&inner.info).clone();
    let fw_id = lock(&inner.state).framework_id.clone().or(info.id.clone());
    info.id = fw_id.clone();
    let mut call = Call::new("SUBSCRIBE", fw_id);
    call.subscribe = Some(Subscribe {
        framework_info: info,
        suppressed_roles: Vec::new(),
    });
    let remembered = lock(&inner.state).master.clone();
    let mut candidates: Vec<String> = remembered.into_iter().collect();
    candidates.extend(inner.masters.iter().map(|m| format!("http://{m}")));
    for base in candidates {
        let mut url = format!("{base}{SCHEDULER_PATH}");
        for _ in 0..3 {
            let Ok(r) = inner.client.post(&url).json(&call).send().await else {
                break;
            };
            match r.status().as_u16() {
                307 => match r.headers().get("location").and_then(|v| v.to_str().ok()) {
                    Some(loc) => url = resolve_location(loc),
                    None => break,
                },
                200 => {
                    let base = url.trim_end_matches(SCHEDULER_PATH).to_string();
                    return Some((base, r));
                }
                _ => break,
            }
        }
    }
    None
}

async fn read_stream(inner: Arc<Inner>, resp: reqwest::Response) {
    let mut body = resp.bytes_stream();
    let mut decoder = Decoder::new();
    'outer: while let Some(Ok(chunk)) = body.next().await {
        decoder.feed(&chunk);
        loop {
            match decoder.next_record() {
                Ok(Some(rec)) => {
                    let Ok(ev) = serde_json::from_slice::<Event>(&rec) else {
                        continue;
                    };
                    let mut s = lock(&inner.state);
                    if let Some(sub) = &ev.subscribed {
                        s.framework_id = Some(sub.framework_id.clone());
                        s.subscriptions += 1;
                    }
                    s.events.push(ev);
                }
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
    }
    lock(&inner.state).connected = false;
}
