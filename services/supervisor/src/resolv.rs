//! `/etc/resolv.conf` follows the node-local DNS: it points at 198.51.100.1–3 (served by
//! `basalt-dns.service`) only while that server answers, and back at the cluster's upstream
//! resolvers (`etc/resolvers` in the bundle) when it stops answering — so a node whose DNS
//! component is down still resolves outside names. DC/OS did the same with its `spartan`
//! addresses.
//!
//! A probe is one real DNS query over UDP (`leader.mesos A`): an answer with our id, the
//! response bit and NOERROR or NXDOMAIN counts as answering; a timeout, SERVFAIL, REFUSED
//! or garbage does not. The file is written in place (one write), because the unit's
//! sandbox makes only that file writable (`ReadWritePaths=/etc/resolv.conf`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Result, SupervisorError};

/// The node-local DNS addresses (`units/network/50-basalt-dns.network`).
pub const NODE_LOCAL_DNS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 51, 100, 1),
    Ipv4Addr::new(198, 51, 100, 2),
    Ipv4Addr::new(198, 51, 100, 3),
];
/// The resolver file.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The name probed: always inside the zone basalt-dns is authoritative for.
pub const PROBE_NAME: &str = "leader.mesos";

/// What the file currently points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The node-local DNS.
    Local,
    /// The upstream resolvers from the bundle.
    Upstream,
}

/// How the follower probes and what it writes.
#[derive(Debug, Clone)]
pub struct ResolvSettings {
    /// Where the probe goes (default 198.51.100.1:53).
    pub probe: SocketAddr,
    /// Nameservers while the local DNS answers.
    pub local: Vec<IpAddr>,
    /// Nameservers otherwise (the bundle's `etc/resolvers`).
    pub upstream: Vec<IpAddr>,
    /// `search` domains (the bundle's `etc/dns_search`).
    pub search: Vec<String>,
    /// The file to write.
    pub path: PathBuf,
    /// Pause between probes.
    pub interval: Duration,
    /// How long one probe waits for its answer.
    pub timeout: Duration,
    /// Failed probes in a row before falling back to the upstream resolvers.
    pub failures_to_fall_back: u32,
}

impl ResolvSettings {
    /// Settings from an installed node view (`<node_root>/etc/resolvers`, `etc/dns_search`),
    /// writing `resolv_conf`.
    pub fn from_node_root(node_root: &Path, resolv_conf: PathBuf) -> Result<ResolvSettings> {
        let read = |rel: &str| -> Result<Vec<String>> {
            let p = node_root.join("etc").join(rel);
            let text = std::fs::read_to_string(&p).map_err(SupervisorError::io(&p))?;
            Ok(text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect())
        };
        let resolvers_path = node_root.join("etc/resolvers");
        let upstream = read("resolvers")?
            .iter()
            .map(|l| {
                // `<ip>` or `<ip>:<port>`: resolv.conf takes addresses only (port 53)
                let host = l.rsplit_once(':').map_or(l.as_str(), |(h, _)| h);
                host.parse::<IpAddr>().map_err(|_| SupervisorError::Source {
                    source_name: resolvers_path.display().to_string(),
                    reason: format!("{l:?} is not an IP address"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let search = match read("dns_search") {
            Ok(s) => s,
            Err(SupervisorError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        Ok(ResolvSettings {
            probe: SocketAddr::from((NODE_LOCAL_DNS[0], 53)),
            local: NODE_LOCAL_DNS.iter().map(|a| IpAddr::V4(*a)).collect(),
            upstream,
            search,
            path: resolv_conf,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            failures_to_fall_back: 3,
        })
    }
}

/// The file's text for `nameservers` and `search`.
pub fn render(target: Target, nameservers: &[IpAddr], search: &[String]) -> String {
    let mut s = format!(
        "# written by basalt-supervisor: {}\n",
        match target {
            Target::Local => "the node-local DNS answers",
            Target::Upstream => "upstream resolvers (the node-local DNS does not answer)",
        }
    );
    for ns in nameservers {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    s
}

/// A DNS query for `name` (type A, class IN, recursion desired).
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(12 + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Whether `reply` answers query `id` with NOERROR or NXDOMAIN.
pub fn answers(id: u16, reply: &[u8]) -> bool {
    reply.len() >= 12
        && reply[..2] == id.to_be_bytes()
        && reply[2] & 0x80 != 0
        && matches!(reply[3] & 0x0f, 0 | 3)
}

/// One probe of the DNS server at `addr`.
pub async fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    let bind: SocketAddr = match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else {
        return false;
    };
    let id = (std::process::id() as u16) ^ 0x5a5a;
    if sock.send_to(&query(id, PROBE_NAME), addr).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if from == addr => return answers(id, &buf[..n]),
            Ok(Ok(_)) => continue,
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

/// Probes and rewrites the file when the answer changes what it should point at.
#[derive(Debug)]
pub struct ResolvFollower {
    pub settings: ResolvSettings,
    target: Option<Target>,
    failures: u32,
}

impl ResolvFollower {
    pub fn new(settings: ResolvSettings) -> ResolvFollower {
        ResolvFollower {
            settings,
            target: None,
            failures: 0,
        }
    }

    /// What the file points at (`None` before the first step).
    pub fn target(&self) -> Option<Target> {
        self.target
    }

    /// One probe; returns the new target when the file was rewritten.
    pub async fn step(&mut self) -> Result<Option<Target>> {
        let ok = probe(self.settings.probe, self.settings.timeout).await;
        let want = if ok {
            self.failures = 0;
            Target::Local
        } else {
            self.failures = self.failures.saturating_add(1);
            match self.target {
                Some(Target::Local) if self.failures < self.settings.failures_to_fall_back => {
                    Target::Local
                }
                _ => Target::Upstream,
            }
        };
        if self.target == Some(want) {
            return Ok(None);
        }
        let servers = match want {
            Target::Local => &self.settings.local,
            Target::Upstream => &self.settings.upstream,
        };
        let text = render(want, servers, &self.settings.search);
        let path = &self.settings.path;
        // in place: the sandbox allows writing this file, not replacing it
        std::fs::write(path, text).map_err(SupervisorError::io(path))?;
        self.target = Some(want);
        Ok(Some(want))
    }

    /// Steps forever, pausing `interval` between probes; changes go to the console.
    pub async fn run(mut self, clock: std::sync::Arc<dyn crate::Clock>) {
        loop {
            match self.step().await {
                Ok(Some(Target::Local)) => eprintln!(
                    "basalt-supervisor: node-local DNS answers: {} points at it",
                    self.settings.path.display()
                ),
                Ok(Some(Target::Upstream)) => eprintln!(
                    "basalt-supervisor: node-local DNS does not answer: {} points at the upstream resolvers",
                    self.settings.path.display()
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot write resolv.conf"),
            }
            clock.sleep(self.settings.interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU8, Ordering};

    /// A real UDP DNS responder on loopback answering every query with `rcode` (or not at
    /// all while `rcode` is 255).
    async fn responder(rcode: Arc<AtomicU8>) -> SocketAddr {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let code = rcode.load(Ordering::SeqCst);
                if code == 255 || n < 12 {
                    continue;
                }
                let mut reply = buf[..n].to_vec();
                reply[2] |= 0x80;
                reply[3] = (reply[3] & 0xf0) | code;
                let _ = sock.send_to(&reply, from).await;
            }
        });
        addr
    }

    fn settings(dir: &Path, probe: SocketAddr) -> ResolvSettings {
        let node = dir.join("node");
        std::fs::create_dir_all(node.join("etc")).unwrap();
        std::fs::write(
            node.join("etc/resolvers"),
            "203.0.113.53\n# two\n203.0.113.54:53\n",
        )
        .unwrap();
        std::fs::write(node.join("etc/dns_search"), "example.internal\n").unwrap();
        let mut s = ResolvSettings::from_node_root(&node, dir.join("resolv.conf")).unwrap();
        s.probe = probe;
        s.timeout = Duration::from_millis(200);
        s.failures_to_fall_back = 2;
        s
    }

    #[test]
    fn query_and_answer_bytes() {
        let q = query(0x1234, "leader.mesos");
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x06leader\x05mesos\x00\x00\x01\x00\x01");
        let mut r = q.clone();
        assert!(!answers(0x1234, &r), "a query is not an answer");
        r[2] |= 0x80;
        assert!(answers(0x1234, &r));
        r[3] = 3;
        assert!(
            answers(0x1234, &r),
            "NXDOMAIN still means the server answers"
        );
        r[3] = 2;
        assert!(!answers(0x1234, &r), "SERVFAIL");
        r[3] = 5;
        assert!(!answers(0x1234, &r), "REFUSED");
        r[3] = 0;
        assert!(!answers(0x4321, &r), "another id");
        assert!(!answers(0x1234, &r[..11]), "truncated");
    }

    #[tokio::test]
    async fn follows_the_local_dns_and_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let rcode = Arc::new(AtomicU8::new(255));
        let addr = responder(rcode.clone()).await;
        let mut f = ResolvFollower::new(settings(dir.path(), addr));
        let file = dir.path().join("resolv.conf");

        // silent server: upstream from the first step
        assert_eq!(f.step().await.unwrap(), Some(Target::Upstream));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains("nameserver 203.0.113.53\nnameserver 203.0.113.54\n"),
            "{text}"
        );
        assert!(text.contains("search example.internal\n"), "{text}");
        assert!(!text.contains("198.51.100"), "{text}");

        // it answers (NXDOMAIN counts): local
        rcode.store(3, Ordering::SeqCst);
        assert_eq!(f.step().await.unwrap(), Some(Target::Local));
        let text = std::fs::read_to_string(&file).unwrap();
        for ns in NODE_LOCAL_DNS {
            assert!(text.contains(&format!("nameserver {ns}\n")), "{text}");
        }
        assert_eq!(f.step().await.unwrap(), None, "unchanged: not rewritten");

        // SERVFAIL once: still local (one failure is not enough), twice: upstream
        rcode.store(2, Ordering::SeqCst);
        assert_eq!(f.step().await.unwrap(), None);
        assert_eq!(f.target(), Some(Target::Local));
        assert_eq!(f.step().await.unwrap(), Some(Target::Upstream));
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .contains("203.0.113.53")
        );

        // back again as soon as it answers
        rcode.store(0, Ordering::SeqCst);
        assert_eq!(f.step().await.unwrap(), Some(Target::Local));
    }

    #[test]
    fn bad_resolvers_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/resolvers"), "dns.example\n").unwrap();
        let e = ResolvSettings::from_node_root(dir.path(), dir.path().join("r"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("etc/resolvers") && e.contains("dns.example"),
            "{e}"
        );
        // no dns_search is fine; no resolvers file is not
        std::fs::write(dir.path().join("etc/resolvers"), "192.0.2.53\n").unwrap();
        let s = ResolvSettings::from_node_root(dir.path(), dir.path().join("r")).unwrap();
        assert!(s.search.is_empty());
        std::fs::remove_file(dir.path().join("etc/resolvers")).unwrap();
        assert!(ResolvSettings::from_node_root(dir.path(), dir.path().join("r")).is_err());
    }
}
