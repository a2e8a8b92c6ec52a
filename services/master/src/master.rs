//! [`Master::start`]: the master process as a library — HTTP server, leader election,
//! state recovery and the timer.
//!
//! Every master campaigns on the `master` election service. The winner loads the state
//! from etcd ([`crate::core::Core::recover`]), serves the APIs and runs the timer; the
//! others answer with redirects to the leader. When the leadership is lost (lease
//! expired, etcd unreachable) the leader stops at once: the timer stops, the state is
//! dropped (closing every stream), and it campaigns again as a follower.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use basalt_store::{Election, LeaderInfo, LeaderObserver, LeadershipWatcher, Store};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::config::MasterConfig;
use crate::core::Core;
use crate::error::MasterError;

/// The election service name.
pub const ELECTION_SERVICE: &str = "master";

/// One leadership term as the HTTP handlers see it.
pub struct LeaderCtx {
    /// The term's state.
    pub core: Mutex<Core>,
    /// Ends with the leadership.
    pub watcher: LeadershipWatcher,
    /// Group commit of agent UPDATEs and scheduler ACKNOWLEDGEs.
    pub batch: tokio::sync::mpsc::UnboundedSender<crate::core::BatchItem>,
}

/// State shared by the handlers and the background tasks.
pub struct Shared {
    /// Settings.
    pub cfg: Arc<MasterConfig>,
    /// The advertised `host:port`.
    pub address: String,
    /// The current term, while leading.
    pub leader: StdMutex<Option<Arc<LeaderCtx>>>,
    /// Who leads (followers redirect there).
    pub observer: StdMutex<Option<LeaderObserver>>,
    /// Epoch seconds this process started.
    pub start_time: f64,
    /// Set by [`MasterHandle::kill`]: answer nothing useful any more.
    pub killed: std::sync::atomic::AtomicBool,
    /// The store (for leader look-ups when the observer has no answer yet).
    pub store: Store,
}

impl Shared {
    /// The current term, if this master leads.
    pub fn leading(&self) -> Option<Arc<LeaderCtx>> {
        if self.killed.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let guard = self.leader.lock().ok()?;
        guard.as_ref().filter(|l| l.watcher.is_leader()).cloned()
    }

    /// The leader's address as followers know it: from the election observer, or read
    /// from etcd when the observer has nothing (yet).
    pub async fn leader_address(&self) -> Option<String> {
        let observed = self.observer.lock().ok().and_then(|g| {
            g.as_ref()
                .and_then(LeaderObserver::current)
                .map(|l: LeaderInfo| l.address)
        });
        match observed {
            Some(a) => Some(a),
            None => Election::leader(&self.store, ELECTION_SERVICE)
                .await
                .ok()
                .flatten()
                .map(|l| l.address),
        }
    }
}

/// Entry point.
#[derive(Debug)]
pub struct Master;

/// A running master; dropping it does not stop it (call [`MasterHandle::shutdown`] or
/// [`MasterHandle::kill`]).
pub struct MasterHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    stop_server: Option<tokio::sync::oneshot::Sender<()>>,
    resign: watch::Sender<bool>,
}

impl std::fmt::Debug for MasterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterHandle")
            .field("address", &self.shared.address)
            .finish_non_exhaustive()
    }
}

impl Master {
    /// Binds the listen address, connects to etcd and starts campaigning. Returns once
    /// the server is listening (not necessarily leading).
    pub async fn start(config: MasterConfig) -> Result<MasterHandle, MasterError> {
        config.validate()?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| MasterError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| MasterError::Bind {
            addr: config.listen,
            source,
        })?;
        let address = config
            .advertised_address
            .clone()
            .unwrap_or_else(|| local_addr.to_string());
        let store = Store::connect(config.store.clone()).await?;
        let shared = Arc::new(Shared {
            cfg: Arc::new(config),
            address: address.clone(),
            leader: StdMutex::new(None),
            observer: StdMutex::new(None),
            start_time: crate::core::now_secs(),
            killed: std::sync::atomic::AtomicBool::new(false),
            store: store.clone(),
        });
        let app = crate::http::router(shared.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "master HTTP server failed");
            }
        });
        let observer = tokio::spawn(observe_loop(store.clone(), shared.clone()));
        let (resign_tx, resign_rx) = watch::channel(false);
        let election = tokio::spawn(election_loop(store, shared.clone(), resign_rx));
        tracing::info!(%local_addr, %address, "master started");
        Ok(MasterHandle {
            shared,
            local_addr,
            tasks: vec![election, observer, server],
            stop_server: Some(stop_tx),
            resign: resign_tx,
        })
    }
}

impl MasterHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The advertised `host:port`.
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// True while this master leads.
    pub fn is_leader(&self) -> bool {
        self.shared.leading().is_some()
    }

    /// Stops as if the process were SIGKILLed: no resignation (the successor waits for
    /// the lease to expire), streams cut, server closed.
    pub async fn kill(mut self) {
        self.shared
            .killed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
        let ctx = self.shared.leader.lock().ok().and_then(|mut g| g.take());
        if let Some(ctx) = ctx {
            ctx.core.lock().await.shutdown();
        }
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
    }

    /// Stops cleanly: resigns the leadership (the successor takes over at once), closes
    /// streams and the server.
    pub async fn shutdown(mut self) {
        let _ = self.resign.send(true);
        // Give the election loop a moment to resign before everything is aborted.
        for _ in 0..50 {
            if self.shared.leading().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.shared
            .killed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
    }
}

async fn observe_loop(store: Store, shared: Arc<Shared>) {
    loop {
        match Election::observe(&store, ELECTION_SERVICE).await {
            Ok(obs) => {
                let mut rx = obs.receiver();
                if let Ok(mut g) = shared.observer.lock() {
                    *g = Some(obs);
                }
                // The observer keeps itself up to date; wait until its watch ends.
                while rx.changed().await.is_ok() {}
            }
            Err(e) => tracing::warn!(error = %e, "observing the master leader failed; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn election_loop(store: Store, shared: Arc<Shared>, mut resign: watch::Receiver<bool>) {
    loop {
        if *resign.borrow() {
            return;
        }
        let campaign = Election::campaign(
            &store,
            ELECTION_SERVICE,
            &shared.address,
            shared.cfg.election_ttl,
        );
        let leadership = tokio::select! {
            r = campaign => r,
            _ = resign.changed() => return,
        };
        let leadership = match leadership {
            Ok(l) => Arc::new(l),
            Err(e) => {
                tracing::warn!(error = %e, "campaign failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let elected = std::time::Instant::now();
        let abdicate = Arc::new(tokio::sync::Notify::new());
        let core = match Core::recover(
            shared.cfg.clone(),
            store.clone(),
            leadership.clone(),
            shared.address.clone(),
            abdicate.clone(),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "recovering state failed; resigning");
                drop(leadership);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut watcher = leadership.watcher();
        let (batch_tx, batch_rx) = tokio::sync::mpsc::unbounded_channel();
        let ctx = Arc::new(LeaderCtx {
            core: Mutex::new(core),
            watcher: watcher.clone(),
            batch: batch_tx,
        });
        if let Ok(mut g) = shared.leader.lock() {
            *g = Some(ctx.clone());
        }
        tracing::info!(
            address = %shared.address,
            recovery_ms = elected.elapsed().as_millis() as u64,
            "elected leading master"
        );
        let ticker = tokio::spawn(tick_loop(ctx.clone(), shared.cfg.tick));
        let batcher = tokio::spawn(batch_loop(ctx.clone(), batch_rx));
        // `stop`: this process ends; `step_down`: give the leadership up (revoking the
        // lease) and campaign again.
        let (stop, step_down) = tokio::select! {
            why = watcher.lost() => {
                tracing::warn!(reason = %why, "leadership lost; stepping down");
                (false, false)
            }
            _ = abdicate.notified() => (false, true),
            _ = resign.changed() => (true, true),
        };
        ticker.abort();
        batcher.abort();
        if let Ok(mut g) = shared.leader.lock() {
            *g = None;
        }
        ctx.core.lock().await.shutdown();
        drop(ctx);
        match Arc::try_unwrap(leadership) {
            Ok(l) if step_down => {
                if let Err(e) = l.resign().await {
                    tracing::warn!(error = %e, "resigning failed");
                }
            }
            _ => {}
        }
        if stop {
            return;
        }
    }
}

/// The most calls applied in one group commit.
const MAX_BATCH: usize = 1000;

/// Group commit: takes the core lock once for every call queued meanwhile and commits
/// their writes together (see [`Core::apply_batch`]).
async fn batch_loop(
    ctx: Arc<LeaderCtx>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<crate::core::BatchItem>,
) {
    while let Some(first) = rx.recv().await {
        let mut core = ctx.core.lock().await;
        let mut items = vec![first];
        while items.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(i) => items.push(i),
                Err(_) => break,
            }
        }
        if core.poisoned() || !ctx.watcher.is_leader() {
            for i in items {
                let _ = i.reply.send(Err(crate::core::CallError::Unavailable(
                    "the master is stepping down".into(),
                )));
            }
            continue;
        }
        core.apply_batch(items).await;
    }
}

async fn tick_loop(ctx: Arc<LeaderCtx>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if !ctx.watcher.is_leader() {
            return;
        }
        let mut core = ctx.core.lock().await;
        if core.poisoned() {
            return;
        }
        if let Err(e) = core.tick().await {
            tracing::warn!(error = %e, "master timer tick failed");
        }
    }
}
