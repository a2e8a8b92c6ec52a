//! Real etcd for tests (feature `testing`).
//!
//! [`EtcdCluster`] starts 1 or 3 real `etcd` processes (Debian's etcd-server,
//! `/usr/bin/etcd`, or `$BASALT_ETCD_BIN`) on loopback ports chosen by binding port 0,
//! each with a temporary data directory, and waits until every member reports a leader
//! (polling with a deadline). Members can be killed (SIGKILL) and restarted with their
//! data for failover tests; dropping the cluster kills every process and removes the
//! directory. With [`EtcdClusterBuilder::tls`] the client port requires mutual TLS with
//! certificates generated in the test (ECDSA P-256: etcd's Go TLS stack refuses
//! Ed25519); peers talk plain HTTP on loopback.
//!
//! ```no_run
//! # async fn t() -> Result<(), basalt_store::testing::HarnessError> {
//! use basalt_store::testing::EtcdCluster;
//! let Some(etcd) = EtcdCluster::start(1).await? else { return Ok(()) }; // prints "skipped: ..."
//! let store = etcd.store();
//! # let _ = store; Ok(()) }
//! ```
//!
//! When etcd is not installed, `start` prints [`SKIP_MESSAGE`] to stderr and returns
//! `Ok(None)`; the test then returns early, visibly skipped.
//!
//! Member logs (etcd's zap logger at `warn`) go to `<tempdir>/m<i>.log`; errors quote
//! their tail.

use crate::{Store, StoreConfig, StoreError, TlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Where Debian's etcd-server installs etcd.
pub const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";

/// What a test prints when it cannot run for lack of etcd.
pub const SKIP_MESSAGE: &str = "skipped: etcd-server not installed (run scripts/setup.sh)";

/// How long a cluster may take to become healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(50);

/// Harness failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An etcd member exited during start-up.
    #[error("etcd member {member} exited ({status}); log tail:\n{log_tail}")]
    Exited {
        /// Member name (`m0`...).
        member: String,
        /// Exit status.
        status: String,
        /// The end of its log.
        log_tail: String,
    },
    /// A condition did not hold before its deadline.
    #[error("timed out after {after:?} waiting for {what}{}", if log_tail.is_empty() { String::new() } else { format!("; log tail:\n{log_tail}") })]
    Timeout {
        /// The condition.
        what: String,
        /// The deadline.
        after: Duration,
        /// Member logs, when relevant.
        log_tail: String,
    },
    /// Certificate generation failed.
    #[error("generating test certificate {what}: {message}")]
    Cert {
        /// Which certificate.
        what: String,
        /// rcgen's message.
        message: String,
    },
    /// A member index out of range.
    #[error("no etcd member {index}: the cluster has {members}")]
    NoSuchMember {
        /// Asked for.
        index: usize,
        /// Cluster size.
        members: usize,
    },
    /// Connecting the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// The etcd binary to use, if installed.
pub fn etcd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("BASALT_ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCD_BIN));
    path.is_file().then_some(path)
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn wait_for<T, F, Fut>(
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
                log_tail: String::new(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Ports handed out by this process, so that two clusters in one test binary never get
/// the same one even if the kernel reuses it.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn free_ports(n: usize) -> Result<Vec<u16>, HarnessError> {
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    let mut guard = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let handed = guard.get_or_insert_with(HashSet::new);
    while ports.len() < n {
        let l = TcpListener::bind("127.0.0.1:0").map_err(io("binding a free loopback port"))?;
        let port = l.local_addr().map_err(io("reading a bound port"))?.port();
        if handed.insert(port) {
            ports.push(port);
        }
        // Keep every listener open until all ports are chosen so none repeats.
        listeners.push(l);
    }
    Ok(ports)
}

/// A throwaway certificate authority (ECDSA P-256) for TLS tests.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> HarnessError + '_ {
    move |e| HarnessError::Cert {
        what: what.to_string(),
        message: e.to_string(),
    }
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Result<TestCa, HarnessError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err(name))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err(name))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key).map_err(cert_err(name))?.pem();
        Ok(TestCa { params, key, pem })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// Issues a certificate for `127.0.0.1` and `localhost`, good for both server and
    /// client authentication. Returns `(cert_pem, key_pem)`.
    pub fn issue(&self, common_name: &str) -> Result<(String, String), HarnessError> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(cert_err(common_name))?;
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .map_err(cert_err(common_name))?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(cert_err(common_name))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues a certificate and writes `<name>.crt`, `<name>.key` and `ca.crt` into
    /// `dir`, returning the paths as [`TlsFiles`].
    pub fn write_files(&self, dir: &Path, name: &str) -> Result<TlsFiles, HarnessError> {
        let (cert, key) = self.issue(name)?;
        let files = TlsFiles {
            ca: dir.join(format!("{name}-ca.crt")),
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.ca, &self.pem)
            .map_err(io(format!("writing {}", files.ca.display())))?;
        std::fs::write(&files.cert, cert)
            .map_err(io(format!("writing {}", files.cert.display())))?;
        std::fs::write(&files.key, key).map_err(io(format!("writing {}", files.key.display())))?;
        Ok(files)
    }
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Which members and how; see [`EtcdCluster::builder`].
#[derive(Debug, Clone)]
pub struct EtcdClusterBuilder {
    members: usize,
    tls: bool,
    prefix: String,
}

impl EtcdClusterBuilder {
    /// Number of members (1 or 3 are the useful sizes).
    pub fn members(mut self, n: usize) -> Self {
        self.members = n.max(1);
        self
    }

    /// Require mutual TLS on the client port.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Root prefix of the connected [`Store`] (default `/basalt/v1/`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Starts the cluster; `Ok(None)` (after printing [`SKIP_MESSAGE`]) if etcd is not
    /// installed.
    pub async fn start(self) -> Result<Option<EtcdCluster>, HarnessError> {
        let Some(binary) = etcd_binary() else {
            eprintln!("{SKIP_MESSAGE}");
            return Ok(None);
        };
        // A port picked by binding 0 can be taken by someone else before etcd binds it;
        // that shows up as an early exit with "address already in use": try again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match EtcdCluster::try_start(&binary, &self).await {
                Ok(c) => return Ok(Some(c)),
                Err(HarnessError::Exited { log_tail, .. })
                    if attempt < 3 && log_tail.contains("address already in use") =>
                {
                    tracing::warn!(attempt, "etcd port collision, retrying with new ports");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A running etcd cluster on loopback; see the module docs.
pub struct EtcdCluster {
    // Field order matters for Drop: processes are killed in `drop`, then the directory
    // is removed.
    members: Vec<Member>,
    binary: PathBuf,
    initial_cluster: String,
    token: String,
    tls: Option<TlsFiles>,
    ca: Option<TestCa>,
    store: Store,
    prefix: String,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCluster")
            .field("endpoints", &self.endpoints())
            .field("tls", &self.tls.is_some())
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

static CLUSTER_SEQ: AtomicU64 = AtomicU64::new(0);

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(20);
    lines[start..].join("\n")
}

impl EtcdCluster {
    /// A builder: 1 member, no TLS, default prefix.
    pub fn builder() -> EtcdClusterBuilder {
        EtcdClusterBuilder {
            members: 1,
            tls: false,
            prefix: crate::DEFAULT_PREFIX.to_string(),
        }
    }

    /// Starts `members` plain-HTTP members; `Ok(None)` if etcd is not installed.
    pub async fn start(members: usize) -> Result<Option<EtcdCluster>, HarnessError> {
        Self::builder().members(members).start().await
    }

    /// Starts `members` members that require client certificates.
    pub async fn start_tls(members: usize) -> Result<Option<EtcdCluster>, HarnessError> {
        Self::builder().members(members).tls(true).start().await
    }

    async fn try_start(
        binary: &Path,
        opts: &EtcdClusterBuilder,
    ) -> Result<EtcdCluster, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("basalt-etcd-")
            .tempdir()
            .map_err(io("creating the etcd temp dir"))?;
        let n = opts.members;
        let ports = free_ports(2 * n)?;
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "basalt-test-{}-{}",
            std::process::id(),
            CLUSTER_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let (ca, tls) = if opts.tls {
            let ca = TestCa::new("basalt test etcd CA")?;
            // `spawn` finds the server files by name: server.crt, server.key, server-ca.crt.
            ca.write_files(dir.path(), "server")?;
            let client = ca.write_files(dir.path(), "client")?;
            (Some(ca), Some(client))
        } else {
            (None, None)
        };
        // Members live in a guard until the cluster is complete, so that every error
        // path below kills the processes started so far.
        let dir_path = dir.path().to_path_buf();
        let mut cluster = PartialCluster {
            members,
            dir: Some(dir),
        };
        for m in &mut cluster.members {
            spawn(binary, m, &dir_path, &initial_cluster, &token, opts.tls)?;
        }
        let endpoints: Vec<String> = cluster
            .members
            .iter()
            .map(|m| endpoint(m.client_port, opts.tls))
            .collect();
        for i in 0..n {
            wait_member(
                &mut cluster.members,
                i,
                tls.as_ref(),
                &opts.prefix,
                START_TIMEOUT,
            )
            .await?;
        }
        let mut config = StoreConfig::new(endpoints).with_prefix(opts.prefix.clone());
        config.tls = tls.clone();
        let store = Store::connect(config).await?;
        let members = std::mem::take(&mut cluster.members);
        let dir = cluster.dir.take().ok_or_else(|| HarnessError::Io {
            what: "temp dir vanished".to_string(),
            source: std::io::Error::other("internal"),
        })?;
        tracing::info!(members = n, tls = opts.tls, dir = %dir.path().display(), "etcd cluster up");
        Ok(EtcdCluster {
            members,
            binary: binary.to_path_buf(),
            initial_cluster,
            token,
            tls,
            ca,
            store,
            prefix: opts.prefix.clone(),
            dir,
        })
    }

    /// A connected store over every member (shares one connection; clone freely).
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// A store configuration for every member (TLS files included).
    pub fn config(&self) -> StoreConfig {
        let mut config = StoreConfig::new(self.endpoints()).with_prefix(self.prefix.clone());
        config.tls = self.tls.clone();
        config
    }

    /// A new, separately connected store (a second "process" in a test).
    pub async fn connect(&self) -> Result<Store, StoreError> {
        Store::connect(self.config()).await
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| endpoint(m.client_port, self.tls.is_some()))
            .collect()
    }

    /// Client URL of member `index`.
    pub fn endpoint(&self, index: usize) -> Result<String, HarnessError> {
        let m = self.member(index)?;
        Ok(endpoint(m.client_port, self.tls.is_some()))
    }

    /// The client TLS files (TLS clusters only).
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The CA that signed the server and client certificates (TLS clusters only).
    pub fn ca(&self) -> Option<&TestCa> {
        self.ca.as_ref()
    }

    /// The temporary directory holding data dirs, logs and certificates.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a cluster has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// True if member `index`'s process is running.
    pub fn is_running(&mut self, index: usize) -> bool {
        match self.members.get_mut(index).and_then(|m| m.child.as_mut()) {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn member(&self, index: usize) -> Result<&Member, HarnessError> {
        self.members.get(index).ok_or(HarnessError::NoSuchMember {
            index,
            members: self.members.len(),
        })
    }

    /// SIGKILLs member `index` and reaps it. Its data directory is kept for
    /// [`EtcdCluster::restart`].
    pub fn kill(&mut self, index: usize) -> Result<(), HarnessError> {
        let members = self.members.len();
        let m = self
            .members
            .get_mut(index)
            .ok_or(HarnessError::NoSuchMember { index, members })?;
        if let Some(mut child) = m.child.take() {
            child
                .kill()
                .map_err(io(format!("killing etcd member {}", m.name)))?;
            child
                .wait()
                .map_err(io(format!("reaping etcd member {}", m.name)))?;
            tracing::info!(member = %m.name, "etcd member killed");
        }
        Ok(())
    }

    /// Starts member `index` again on the same ports with its old data, and waits until
    /// it reports a leader.
    pub async fn restart(&mut self, index: usize) -> Result<(), HarnessError> {
        self.member(index)?;
        self.kill(index)?;
        let tls = self.tls.is_some();
        spawn(
            &self.binary,
            &mut self.members[index],
            self.dir.path(),
            &self.initial_cluster,
            &self.token,
            tls,
        )?;
        wait_member(
            &mut self.members,
            index,
            self.tls.as_ref(),
            &self.prefix,
            START_TIMEOUT,
        )
        .await?;
        tracing::info!(member = %self.members[index].name, "etcd member restarted");
        Ok(())
    }

    /// The tail of member `index`'s log.
    pub fn log_tail(&self, index: usize) -> Result<String, HarnessError> {
        Ok(log_tail(&self.member(index)?.log))
    }
}

/// Owns members while the cluster is being started, so an error kills them.
struct PartialCluster {
    members: Vec<Member>,
    dir: Option<tempfile::TempDir>,
}

impl Drop for PartialCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn endpoint(port: u16, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://127.0.0.1:{port}")
}

fn spawn(
    binary: &Path,
    m: &mut Member,
    dir: &Path,
    initial_cluster: &str,
    token: &str,
    tls: bool,
) -> Result<(), HarnessError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&m.log)
        .map_err(io(format!("opening {}", m.log.display())))?;
    let log_err = log
        .try_clone()
        .map_err(io(format!("opening {}", m.log.display())))?;
    let client_url = endpoint(m.client_port, tls);
    let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
    let mut cmd = Command::new(binary);
    cmd.arg("--name")
        .arg(&m.name)
        .arg("--data-dir")
        .arg(&m.data_dir)
        .arg("--listen-client-urls")
        .arg(&client_url)
        .arg("--advertise-client-urls")
        .arg(&client_url)
        .arg("--listen-peer-urls")
        .arg(&peer_url)
        .arg("--initial-advertise-peer-urls")
        .arg(&peer_url)
        .arg("--initial-cluster")
        .arg(initial_cluster)
        .arg("--initial-cluster-token")
        .arg(token)
        .arg("--initial-cluster-state")
        .arg("new")
        // Fast elections on loopback; leases can then be as short as 1 s.
        .arg("--heartbeat-interval")
        .arg("50")
        .arg("--election-timeout")
        .arg("500")
        .arg("--logger")
        .arg("zap")
        .arg("--log-outputs")
        .arg("stderr")
        .arg("--log-level")
        .arg("warn")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    if tls {
        cmd.arg("--cert-file")
            .arg(dir.join("server.crt"))
            .arg("--key-file")
            .arg(dir.join("server.key"))
            .arg("--trusted-ca-file")
            .arg(dir.join("server-ca.crt"))
            .arg("--client-cert-auth");
    }
    let child = cmd.spawn().map_err(io(format!(
        "starting {} for member {}",
        binary.display(),
        m.name
    )))?;
    m.child = Some(child);
    Ok(())
}

/// Polls member `index` until it answers a linearizable read (which needs a leader), or
/// fails early if its process exits.
async fn wait_member(
    members: &mut [Member],
    index: usize,
    tls: Option<&TlsFiles>,
    prefix: &str,
    timeout: Duration,
) -> Result<(), HarnessError> {
    let deadline = Instant::now() + timeout;
    let m = &mut members[index];
    let mut config = StoreConfig::new([endpoint(m.client_port, tls.is_some())]).with_prefix(prefix);
    config.tls = tls.cloned();
    config.dial_timeout = Duration::from_secs(1);
    config.request_timeout = Duration::from_secs(1);
    loop {
        if let Some(child) = m.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            m.child = None;
            return Err(HarnessError::Exited {
                member: m.name.clone(),
                status: status.to_string(),
                log_tail: log_tail(&m.log),
            });
        }
        match Store::connect(config.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) => {
                if Instant::now() >= deadline {
                    return Err(HarnessError::Timeout {
                        what: format!("etcd member {} to become healthy (last error: {e})", m.name),
                        after: timeout,
                        log_tail: log_tail(&m.log),
                    });
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
