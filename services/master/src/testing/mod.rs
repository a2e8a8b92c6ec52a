//! In-process cluster harness (feature `testing`): real etcd (the store harness),
//! 1..3 [`Master`]s on loopback ports, [`EmulatedAgent`]s speaking the internal agent
//! protocol over real HTTP, and a [`TestScheduler`] speaking the v1 scheduler API over
//! HTTP (reqwest, streaming RecordIO). Both clients have a fault-injection layer
//! ([`Faults`]): drop calls of some types, delay every call, or partition the link
//! (stream closed, calls dropped) until healed. Masters can be killed (no resignation,
//! like SIGKILL) for failover tests.
//!
//! Tests never sleep fixed times: they poll with [`wait_until`].

mod agent;
mod scheduler;

use std::future::Future;
use std::time::{Duration, Instant};

use basalt_store::testing::EtcdCluster;

pub use agent::{AgentOptions, EmulatedAgent};
pub use scheduler::{Reply, TestScheduler};

use crate::{Master, MasterConfig, MasterHandle};

/// Harness failures.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A condition did not hold in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// The condition.
        what: String,
        /// The deadline.
        after: Duration,
    },
    /// etcd harness.
    #[error(transparent)]
    Etcd(#[from] basalt_store::testing::HarnessError),
    /// Starting a master.
    #[error(transparent)]
    Master(#[from] crate::MasterError),
    /// An HTTP exchange failed.
    #[error("{what}: {message}")]
    Http {
        /// What was being done.
        what: String,
        /// The error.
        message: String,
    },
    /// No master with this index is running.
    #[error("no running master {0}")]
    NoMaster(usize),
}

/// Polls `check` every 20 ms until it returns `Some`, failing after `timeout`.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, HarnessError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_string(),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fault injection on one client link.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Cut: the event stream is closed and every call is dropped until healed.
    pub partitioned: bool,
    /// Call types whose requests are dropped (never sent), e.g. `HEARTBEAT`.
    pub drop_calls: Vec<String>,
    /// Delay before every call is sent.
    pub delay: Duration,
}

/// The join credential the harness configures.
pub const TEST_CREDENTIAL: &str = "0123456789abcdef0123456789abcdef";

/// A small-timeout config for tests (ping 400 ms × 5: an agent is unreachable after 2 s
/// without pings, long enough for a loaded 2-core CI machine; heartbeats 200 ms, tick
/// 20 ms).
pub fn test_config(etcd: &EtcdCluster) -> MasterConfig {
    let mut cfg = MasterConfig::new(etcd.config());
    cfg.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.election_ttl = Duration::from_secs(1);
    cfg.agent_ping_timeout = Duration::from_millis(400);
    cfg.max_agent_ping_timeouts = 5;
    cfg.heartbeat_interval = Duration::from_millis(200);
    cfg.tick = Duration::from_millis(20);
    cfg.status_retry_initial = Duration::from_millis(300);
    cfg.join_credential = Some(TEST_CREDENTIAL.to_string());
    cfg
}

/// etcd + masters.
pub struct Cluster {
    /// The etcd cluster.
    pub etcd: EtcdCluster,
    masters: Vec<Option<MasterHandle>>,
    addresses: Vec<String>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("masters", &self.addresses)
            .finish()
    }
}

impl Cluster {
    /// Starts `etcd_members` etcd processes and `masters` masters configured with
    /// [`test_config`] adjusted by `tweak`; waits for a leader. `Ok(None)` when etcd is
    /// not installed (the test is skipped).
    pub async fn start(
        etcd_members: usize,
        masters: usize,
        tweak: impl Fn(&mut MasterConfig),
    ) -> Result<Option<Cluster>, HarnessError> {
        let Some(etcd) = EtcdCluster::start(etcd_members).await? else {
            return Ok(None);
        };
        let mut handles = Vec::new();
        let mut addresses = Vec::new();
        for _ in 0..masters {
            let mut cfg = test_config(&etcd);
            tweak(&mut cfg);
            let h = Master::start(cfg).await?;
            addresses.push(h.address().to_string());
            handles.push(Some(h));
        }
        let c = Cluster {
            etcd,
            masters: handles,
            addresses,
        };
        c.wait_leader(Duration::from_secs(20)).await?;
        Ok(Some(c))
    }

    /// Every master's `host:port` (dead ones included).
    pub fn addresses(&self) -> Vec<String> {
        self.addresses.clone()
    }

    /// The index of the leading master, if one leads.
    pub fn leader(&self) -> Option<usize> {
        self.masters
            .iter()
            .position(|m| m.as_ref().is_some_and(MasterHandle::is_leader))
    }

    /// Waits until some master leads; returns its index.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<usize, HarnessError> {
        wait_until("a leading master", timeout, || async { self.leader() }).await
    }

    /// The base URL (`http://host:port`) of master `i`.
    pub fn url(&self, i: usize) -> String {
        format!(
            "http://{}",
            self.addresses.get(i).cloned().unwrap_or_default()
        )
    }

    /// Kills master `i` like SIGKILL (no resignation).
    pub async fn kill(&mut self, i: usize) -> Result<(), HarnessError> {
        let h = self
            .masters
            .get_mut(i)
            .and_then(Option::take)
            .ok_or(HarnessError::NoMaster(i))?;
        h.kill().await;
        Ok(())
    }

    /// Stops every master.
    pub async fn shutdown(mut self) {
        for m in self.masters.iter_mut().filter_map(Option::take) {
            m.kill().await;
        }
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Resolves a `Location` header (`//host:port/path`, Mesos form) to an absolute URL.
pub fn resolve_location(location: &str) -> String {
    if location.starts_with("//") {
        format!("http:{location}")
    } else {
        location.to_string()
    }
}
