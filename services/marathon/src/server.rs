//! Running one Marathon: the HTTP API, leader election on service `marathon`, and
//! while leading, the deployment executor and the scheduler driver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use basalt_store::{Election, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{ApiState, router};
use crate::core::{Core, RescheduleLimit};
use crate::error::MarathonError;
use crate::events::EventBus;
use crate::state::Repo;
use crate::validation::Features;

/// How often the leader re-checks deployments without being woken.
pub const TICK: Duration = Duration::from_millis(500);

/// Configuration of one Marathon process.
#[derive(Debug, Clone)]
pub struct MarathonConfig {
    /// Where to listen (default `0.0.0.0:8080`).
    pub listen: SocketAddr,
    /// The `host:port` others reach this process at (default: the bound address).
    pub advertise: Option<String>,
    /// The master's base URL (`http://host:5050`), or several separated by commas (the
    /// scheduler follows the leading one: redirects, and the next one on failure); empty:
    /// run without a master.
    pub master: String,
    /// Election lease TTL.
    pub election_ttl: Duration,
    /// Enabled features.
    pub features: Features,
    /// Rate limit of replacement launches (healing), see [`RescheduleLimit`].
    pub reschedule_limit: RescheduleLimit,
}

impl MarathonConfig {
    /// Defaults for `master`.
    pub fn new(master: impl Into<String>) -> MarathonConfig {
        MarathonConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            advertise: None,
            master: master.into(),
            election_ttl: Duration::from_secs(5),
            features: Features::default(),
            reschedule_limit: RescheduleLimit::default(),
        }
    }
}

/// A running Marathon.
#[derive(Debug)]
pub struct MarathonHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// The advertised address.
    pub address: String,
    /// The core.
    pub core: Core,
    leader: watch::Receiver<Option<String>>,
    tasks: Vec<JoinHandle<()>>,
}

impl MarathonHandle {
    /// The current leader's address.
    pub fn leader(&self) -> Option<String> {
        self.leader.borrow().clone()
    }

    /// Whether this process leads.
    pub fn is_leader(&self) -> bool {
        self.leader().as_deref() == Some(self.address.as_str())
    }

    /// Stops everything at once (like SIGKILL: no resignation; the lease expires).
    pub fn kill(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for MarathonHandle {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the API, the election and the leader duties.
pub async fn start(config: MarathonConfig, store: Store) -> Result<MarathonHandle, MarathonError> {
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| MarathonError::Http {
                addr: config.listen.to_string(),
                source,
            })?;
    let addr = listener
        .local_addr()
        .map_err(|source| MarathonError::Http {
            addr: config.listen.to_string(),
            source,
        })?;
    let address = config.advertise.clone().unwrap_or_else(|| addr.to_string());
    let core = Core::new(
        Repo::new(store.clone()),
        EventBus::new(),
        config.features.clone(),
    );
    core.set_reschedule_limit(config.reschedule_limit);
    let observer = Election::observe(&store, "marathon").await?;
    let (leader_tx, leader_rx) = watch::channel(observer.current().map(|l| l.address));
    let (fid_tx, fid_rx) = watch::channel(None::<String>);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(async move {
        let mut observer = observer;
        loop {
            let _ = leader_tx.send(observer.current().map(|l| l.address));
            observer.changed().await;
            if leader_tx.is_closed() {
                return;
            }
        }
    }));
    let state = ApiState {
        core: core.clone(),
        address: address.clone(),
        leader: leader_rx.clone(),
        framework_id: fid_rx,
        master: config.master.clone(),
        client: reqwest::Client::new(),
        requests: Arc::new(AtomicU64::new(0)),
    };
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "marathon http server stopped");
        }
    }));
    let duty_core = core.clone();
    let duty_address = address.clone();
    let master = config.master.clone();
    let ttl = config.election_ttl;
    tasks.push(tokio::spawn(async move {
        loop {
            let leadership = match Election::campaign(&store, "marathon", &duty_address, ttl).await
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "marathon campaign failed, retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            tracing::info!(address = %duty_address, "leading marathon");
            let mut watcher = leadership.watcher();
            let duties = lead(duty_core.clone(), master.clone(), fid_tx.clone());
            tokio::select! {
                reason = watcher.lost() => tracing::warn!(%reason, "marathon leadership lost"),
                () = duties => {}
            }
            drop(leadership);
        }
    }));
    tracing::info!(%addr, %address, "marathon started");
    Ok(MarathonHandle {
        addr,
        address,
        core,
        leader: leader_rx,
        tasks,
    })
}

/// The leader's duties: the deployment executor and, with a master, the scheduler.
async fn lead(core: Core, master: String, fid: watch::Sender<Option<String>>) {
    // Another leader may have written since this process last cached anything.
    core.invalidate_apps();
    core.repo().invalidate();
    let health = tokio::spawn(crate::health::run(core.clone()));
    let _health = AbortOnDrop(health);
    let _readiness = AbortOnDrop(tokio::spawn(crate::readiness::run(core.clone())));
    let driver = if master.is_empty() {
        None
    } else {
        Some(crate::scheduler::Driver::start(core.clone(), master, fid))
    };
    loop {
        match core.tick().await {
            Ok(kills) => {
                if let Some(d) = &driver {
                    d.kill(kills);
                }
            }
            Err(e) => tracing::warn!(error = %e, "deployment tick failed"),
        }
        if let Some(d) = &driver {
            d.wake();
        }
        tokio::select! {
            () = core.changed() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Aborts a task when dropped (leader duties end with the leadership).
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
