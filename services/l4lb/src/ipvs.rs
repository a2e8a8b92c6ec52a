//! Kernel IPVS over generic netlink: the [`Ipvs`] data path.
//!
//! Messages follow the kernel's uapi `linux/ip_vs.h` (family `"IPVS"`, version 1):
//! a `nlmsghdr` (16 bytes: len u32, type u16 = family id, flags u16, seq u32, pid u32),
//! a `genlmsghdr` (4 bytes: cmd u8, version u8, reserved u16), then attributes
//! (`nlattr`: len u16 including its 4-byte header, type u16, payload padded to 4 bytes;
//! nested attributes carry `NLA_F_NESTED`). All integers are host order except ports,
//! which are network order (`__be16`). A service is `IPVS_CMD_ATTR_SERVICE` with AF,
//! protocol, address (`union nf_inet_addr`, 16 bytes), port, scheduler name, flags
//! (`struct ip_vs_flags`, 8 bytes), timeout and netmask; a destination is
//! `IPVS_CMD_ATTR_DEST` with address, port, forwarding method (masquerade), weight and
//! thresholds (plus the address family, which kernels ≥ 4.5 read).
//!
//! [`Ipvs::apply`] reconciles the kernel with the table: it dumps the virtual services
//! and their destinations (`IPVS_CMD_GET_SERVICE` / `GET_DEST` with `NLM_F_DUMP`) and
//! sends only the difference (`NEW_SERVICE`, `DEL_SERVICE`, `NEW_DEST`, `DEL_DEST`).
//! Every IPVS service of the network namespace is Basalt's: one not in the table is
//! removed (dcos-net behaved the same). Scheduler: `wlc` (dcos-net's default).
//!
//! [`Ipvs::probe`] tells whether this kernel has IPVS (the generic-netlink family
//! resolves; needs `ip_vs` loaded or loadable and `CAP_NET_ADMIN`).

use crate::backends::Protocol;
use crate::datapath::{DataPath, DataPathError, ServiceTable, VipEndpoint};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;

/// Generic netlink controller family id.
pub const GENL_ID_CTRL: u16 = 0x10;
/// `CTRL_CMD_GETFAMILY`.
pub const CTRL_CMD_GETFAMILY: u8 = 3;
/// `CTRL_ATTR_FAMILY_ID`.
pub const CTRL_ATTR_FAMILY_ID: u16 = 1;
/// `CTRL_ATTR_FAMILY_NAME`.
pub const CTRL_ATTR_FAMILY_NAME: u16 = 2;

/// `IPVS_GENL_NAME`.
pub const IPVS_GENL_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
pub const IPVS_GENL_VERSION: u8 = 1;

/// `IPVS_CMD_*`.
pub mod cmd {
    /// `IPVS_CMD_NEW_SERVICE`.
    pub const NEW_SERVICE: u8 = 1;
    /// `IPVS_CMD_DEL_SERVICE`.
    pub const DEL_SERVICE: u8 = 3;
    /// `IPVS_CMD_GET_SERVICE`.
    pub const GET_SERVICE: u8 = 4;
    /// `IPVS_CMD_NEW_DEST`.
    pub const NEW_DEST: u8 = 5;
    /// `IPVS_CMD_DEL_DEST`.
    pub const DEL_DEST: u8 = 7;
    /// `IPVS_CMD_GET_DEST`.
    pub const GET_DEST: u8 = 8;
}

/// `IPVS_CMD_ATTR_SERVICE`.
pub const CMD_ATTR_SERVICE: u16 = 1;
/// `IPVS_CMD_ATTR_DEST`.
pub const CMD_ATTR_DEST: u16 = 2;

/// `IPVS_SVC_ATTR_*`.
pub mod svc {
    /// `IPVS_SVC_ATTR_AF` (u16).
    pub const AF: u16 = 1;
    /// `IPVS_SVC_ATTR_PROTOCOL` (u16).
    pub const PROTOCOL: u16 = 2;
    /// `IPVS_SVC_ATTR_ADDR` (16 bytes).
    pub const ADDR: u16 = 3;
    /// `IPVS_SVC_ATTR_PORT` (be16).
    pub const PORT: u16 = 4;
    /// `IPVS_SVC_ATTR_SCHED_NAME` (string).
    pub const SCHED_NAME: u16 = 6;
    /// `IPVS_SVC_ATTR_FLAGS` (`struct ip_vs_flags`).
    pub const FLAGS: u16 = 7;
    /// `IPVS_SVC_ATTR_TIMEOUT` (u32).
    pub const TIMEOUT: u16 = 8;
    /// `IPVS_SVC_ATTR_NETMASK` (u32).
    pub const NETMASK: u16 = 9;
}

/// `IPVS_DEST_ATTR_*`.
pub mod dest {
    /// `IPVS_DEST_ATTR_ADDR` (16 bytes).
    pub const ADDR: u16 = 1;
    /// `IPVS_DEST_ATTR_PORT` (be16).
    pub const PORT: u16 = 2;
    /// `IPVS_DEST_ATTR_FWD_METHOD` (u32).
    pub const FWD_METHOD: u16 = 3;
    /// `IPVS_DEST_ATTR_WEIGHT` (u32).
    pub const WEIGHT: u16 = 4;
    /// `IPVS_DEST_ATTR_U_THRESH` (u32).
    pub const U_THRESH: u16 = 5;
    /// `IPVS_DEST_ATTR_L_THRESH` (u32).
    pub const L_THRESH: u16 = 6;
    /// `IPVS_DEST_ATTR_ADDR_FAMILY` (u16).
    pub const ADDR_FAMILY: u16 = 11;
}

/// `IP_VS_CONN_F_MASQ`.
pub const CONN_F_MASQ: u32 = 0;
/// `NLA_F_NESTED`.
pub const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;

/// IPVS failures.
#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    /// The netlink socket failed.
    #[error("netlink socket: {0}")]
    Socket(String),
    /// The kernel has no `IPVS` generic-netlink family (no `ip_vs` module).
    #[error("the kernel has no IPVS generic-netlink family (ip_vs not loaded?)")]
    NoFamily,
    /// The kernel refused a request.
    #[error("{what}: kernel error {errno} ({})", errno_text(.errno))]
    Kernel {
        /// What was asked.
        what: String,
        /// The errno.
        errno: i32,
    },
    /// A reply could not be decoded.
    #[error("malformed netlink reply: {0}")]
    Malformed(String),
}

fn errno_text(e: &i32) -> String {
    std::io::Error::from_raw_os_error(*e).to_string()
}

/// Appends one attribute.
pub fn put_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len() + (4 - len % 4) % 4, 0);
}

/// Appends a nested attribute built by `f`.
pub fn put_nested(buf: &mut Vec<u8>, kind: u16, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    put_attr(buf, kind | NLA_F_NESTED, &inner);
}

/// A full message: `nlmsghdr` + `genlmsghdr` + `attrs`.
pub fn message(family: u16, flags: u16, seq: u32, cmd: u8, version: u8, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&family.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[cmd, version, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

/// Parses attributes: `(type without flags, payload)`.
pub fn parse_attrs(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>, IpvsError> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return Err(IpvsError::Malformed(format!(
                "attribute {kind} claims {len} bytes, {} left",
                buf.len()
            )));
        }
        out.push((kind, &buf[4..len]));
        let padded = (len + 3) & !3;
        buf = &buf[padded.min(buf.len())..];
    }
    Ok(out)
}

fn addr16(ip: IpAddr) -> [u8; 16] {
    let mut a = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => a[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => a = v6.octets(),
    }
    a
}

fn af(ip: IpAddr) -> u16 {
    if ip.is_ipv4() { AF_INET } else { AF_INET6 }
}

fn proto(p: Protocol) -> u16 {
    match p {
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
    }
}

/// The identifying attributes of a service (enough for DEL_SERVICE and as the
/// service selector of destination commands).
fn service_key_attrs(b: &mut Vec<u8>, ep: &VipEndpoint) {
    put_attr(b, svc::AF, &af(ep.addr.ip()).to_ne_bytes());
    put_attr(b, svc::PROTOCOL, &proto(ep.protocol).to_ne_bytes());
    put_attr(b, svc::ADDR, &addr16(ep.addr.ip()));
    put_attr(b, svc::PORT, &ep.addr.port().to_be_bytes());
}

/// The attributes of `IPVS_CMD_NEW_SERVICE` for `ep` (scheduler `sched`).
pub fn new_service_attrs(ep: &VipEndpoint, sched: &str) -> Vec<u8> {
    let mut b = Vec::new();
    put_nested(&mut b, CMD_ATTR_SERVICE, |s| {
        service_key_attrs(s, ep);
        let mut name = sched.as_bytes().to_vec();
        name.push(0);
        put_attr(s, svc::SCHED_NAME, &name);
        // struct ip_vs_flags { __u32 flags; __u32 mask; }
        put_attr(s, svc::FLAGS, &[0u8; 8]);
        put_attr(s, svc::TIMEOUT, &0u32.to_ne_bytes());
        let mask: u32 = if ep.addr.is_ipv4() { u32::MAX } else { 128 };
        put_attr(s, svc::NETMASK, &mask.to_ne_bytes());
    });
    b
}

/// The attributes of `IPVS_CMD_DEL_SERVICE` (and of `GET_DEST`) for `ep`.
pub fn service_attrs(ep: &VipEndpoint) -> Vec<u8> {
    let mut b = Vec::new();
    put_nested(&mut b, CMD_ATTR_SERVICE, |s| service_key_attrs(s, ep));
    b
}

/// The attributes of `IPVS_CMD_NEW_DEST` / `DEL_DEST`: the service plus the
/// destination `backend` (masquerade, weight 1, no thresholds).
pub fn dest_attrs(ep: &VipEndpoint, backend: SocketAddr) -> Vec<u8> {
    let mut b = service_attrs(ep);
    put_nested(&mut b, CMD_ATTR_DEST, |d| {
        put_attr(d, dest::ADDR, &addr16(backend.ip()));
        put_attr(d, dest::PORT, &backend.port().to_be_bytes());
        put_attr(d, dest::FWD_METHOD, &CONN_F_MASQ.to_ne_bytes());
        put_attr(d, dest::WEIGHT, &1u32.to_ne_bytes());
        put_attr(d, dest::U_THRESH, &0u32.to_ne_bytes());
        put_attr(d, dest::L_THRESH, &0u32.to_ne_bytes());
        put_attr(d, dest::ADDR_FAMILY, &af(backend.ip()).to_ne_bytes());
    });
    b
}

fn u16_of(p: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(p.get(..2)?.try_into().ok()?))
}

fn ip_of(family: u16, p: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => {
            let o: [u8; 4] = p.get(..4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(o)))
        }
        AF_INET6 => {
            let o: [u8; 16] = p.get(..16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
}

fn port_of(p: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(p.get(..2)?.try_into().ok()?))
}

/// Decodes the nested `IPVS_CMD_ATTR_SERVICE` of a `GET_SERVICE` reply's attributes.
/// `None` for services Basalt does not make (fwmark, other protocols).
pub fn decode_service(attrs: &[u8]) -> Result<Option<VipEndpoint>, IpvsError> {
    for (k, v) in parse_attrs(attrs)? {
        if k != CMD_ATTR_SERVICE {
            continue;
        }
        let (mut family, mut protocol, mut addr, mut port) = (None, None, None, None);
        for (k, v) in parse_attrs(v)? {
            match k {
                svc::AF => family = u16_of(v),
                svc::PROTOCOL => protocol = u16_of(v),
                svc::ADDR => addr = Some(v),
                svc::PORT => port = port_of(v),
                _ => {}
            }
        }
        let protocol = match protocol {
            Some(IPPROTO_TCP) => Protocol::Tcp,
            Some(IPPROTO_UDP) => Protocol::Udp,
            _ => return Ok(None),
        };
        let (Some(family), Some(addr), Some(port)) = (family, addr, port) else {
            return Ok(None);
        };
        let Some(ip) = ip_of(family, addr) else {
            return Ok(None);
        };
        return Ok(Some(VipEndpoint {
            addr: SocketAddr::new(ip, port),
            protocol,
        }));
    }
    Err(IpvsError::Malformed("no service attribute".into()))
}

/// Decodes the nested `IPVS_CMD_ATTR_DEST` of a `GET_DEST` reply's attributes;
/// `service_family` is used when the reply carries no `ADDR_FAMILY`.
pub fn decode_dest(attrs: &[u8], service_family: u16) -> Result<Option<SocketAddr>, IpvsError> {
    for (k, v) in parse_attrs(attrs)? {
        if k != CMD_ATTR_DEST {
            continue;
        }
        let (mut family, mut addr, mut port) = (service_family, None, None);
        for (k, v) in parse_attrs(v)? {
            match k {
                dest::ADDR => addr = Some(v),
                dest::PORT => port = port_of(v),
                dest::ADDR_FAMILY => family = u16_of(v).unwrap_or(family),
                _ => {}
            }
        }
        let (Some(addr), Some(port)) = (addr, port) else {
            return Ok(None);
        };
        return Ok(ip_of(family, addr).map(|ip| SocketAddr::new(ip, port)));
    }
    Err(IpvsError::Malformed("no destination attribute".into()))
}

/// One decoded netlink message.
#[derive(Debug)]
pub enum Reply<'a> {
    /// A generic-netlink payload: command and attributes.
    Genl {
        /// `genlmsghdr.cmd`.
        cmd: u8,
        /// The attributes.
        attrs: &'a [u8],
    },
    /// `NLMSG_ERROR` with errno 0 (an ACK).
    Ack,
    /// `NLMSG_ERROR` with a (positive) errno.
    Error(i32),
    /// `NLMSG_DONE`: the end of a dump.
    Done,
}

/// Splits a received datagram into messages.
pub fn parse_messages(mut buf: &[u8]) -> Result<Vec<Reply<'_>>, IpvsError> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < 16 || len > buf.len() {
            return Err(IpvsError::Malformed(format!(
                "message claims {len} bytes, {} left",
                buf.len()
            )));
        }
        let body = &buf[16..len];
        out.push(match kind {
            NLMSG_DONE => Reply::Done,
            NLMSG_ERROR => {
                let e = body
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map(i32::from_ne_bytes)
                    .ok_or_else(|| IpvsError::Malformed("short error message".into()))?;
                if e == 0 { Reply::Ack } else { Reply::Error(-e) }
            }
            _ => {
                if body.len() < 4 {
                    return Err(IpvsError::Malformed("short generic-netlink header".into()));
                }
                Reply::Genl {
                    cmd: body[0],
                    attrs: &body[4..],
                }
            }
        });
        let padded = (len + 3) & !3;
        buf = &buf[padded.min(buf.len())..];
    }
    Ok(out)
}

/// A generic-netlink socket (blocking; used from `spawn_blocking`).
struct Socket {
    fd: std::os::fd::OwnedFd,
    seq: u32,
}

impl Socket {
    fn open() -> Result<Socket, IpvsError> {
        use nix::sys::socket::{
            AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, socket,
        };
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkGeneric,
        )
        .map_err(|e| IpvsError::Socket(e.to_string()))?;
        use std::os::fd::AsRawFd;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
            .map_err(|e| IpvsError::Socket(format!("bind: {e}")))?;
        Ok(Socket { fd, seq: 1 })
    }

    /// Sends one request and collects every generic-netlink payload of the answer
    /// (until the ACK, an error, or the end of the dump).
    fn request(
        &mut self,
        what: &str,
        family: u16,
        flags: u16,
        cmd: u8,
        version: u8,
        attrs: &[u8],
    ) -> Result<Vec<Vec<u8>>, IpvsError> {
        use nix::sys::socket::{MsgFlags, NetlinkAddr, recv, sendto};
        use std::os::fd::AsRawFd;
        self.seq = self.seq.wrapping_add(1);
        let msg = message(
            family,
            flags | NLM_F_REQUEST | NLM_F_ACK,
            self.seq,
            cmd,
            version,
            attrs,
        );
        sendto(
            self.fd.as_raw_fd(),
            &msg,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map_err(|e| IpvsError::Socket(format!("send: {e}")))?;
        let mut payloads = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
                .map_err(|e| IpvsError::Socket(format!("recv: {e}")))?;
            for r in parse_messages(&buf[..n])? {
                match r {
                    Reply::Genl { attrs, .. } => payloads.push(attrs.to_vec()),
                    Reply::Ack | Reply::Done => return Ok(payloads),
                    Reply::Error(errno) => {
                        return Err(IpvsError::Kernel {
                            what: what.to_string(),
                            errno,
                        });
                    }
                }
            }
        }
    }

    fn family_id(&mut self, name: &str) -> Result<u16, IpvsError> {
        let mut attrs = Vec::new();
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        put_attr(&mut attrs, CTRL_ATTR_FAMILY_NAME, &n);
        let replies = match self.request(
            "resolving IPVS",
            GENL_ID_CTRL,
            0,
            CTRL_CMD_GETFAMILY,
            1,
            &attrs,
        ) {
            Err(IpvsError::Kernel { errno, .. }) if errno == libc_enoent() => {
                return Err(IpvsError::NoFamily);
            }
            r => r?,
        };
        for p in replies {
            for (k, v) in parse_attrs(&p)? {
                if k == CTRL_ATTR_FAMILY_ID
                    && let Some(id) = u16_of(v)
                {
                    return Ok(id);
                }
            }
        }
        Err(IpvsError::NoFamily)
    }
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

/// What the kernel serves: service → destinations.
pub type KernelTable = BTreeMap<VipEndpoint, BTreeSet<SocketAddr>>;

struct Conn {
    sock: Socket,
    family: u16,
}

impl Conn {
    fn open() -> Result<Conn, IpvsError> {
        let mut sock = Socket::open()?;
        let family = sock.family_id(IPVS_GENL_NAME)?;
        Ok(Conn { sock, family })
    }

    fn call(
        &mut self,
        what: &str,
        cmd: u8,
        flags: u16,
        attrs: &[u8],
    ) -> Result<Vec<Vec<u8>>, IpvsError> {
        self.sock
            .request(what, self.family, flags, cmd, IPVS_GENL_VERSION, attrs)
    }

    fn dump(&mut self) -> Result<KernelTable, IpvsError> {
        let mut out = KernelTable::new();
        for p in self.call("listing services", cmd::GET_SERVICE, NLM_F_DUMP, &[])? {
            if let Some(ep) = decode_service(&p)? {
                out.insert(ep, BTreeSet::new());
            }
        }
        let services: Vec<VipEndpoint> = out.keys().copied().collect();
        for ep in services {
            let fam = af(ep.addr.ip());
            let dests = self.call(
                &format!("listing destinations of {}", ep.addr),
                cmd::GET_DEST,
                NLM_F_DUMP,
                &service_attrs(&ep),
            )?;
            let set = out.entry(ep).or_default();
            for p in dests {
                if let Some(d) = decode_dest(&p, fam)? {
                    set.insert(d);
                }
            }
        }
        Ok(out)
    }

    fn reconcile(&mut self, want: &ServiceTable, sched: &str) -> Result<(), IpvsError> {
        let have = self.dump()?;
        for ep in have.keys().filter(|ep| !want.contains_key(ep)) {
            self.call(
                &format!("removing {}", ep.addr),
                cmd::DEL_SERVICE,
                0,
                &service_attrs(ep),
            )?;
        }
        for (ep, backends) in want {
            let want_set: BTreeSet<SocketAddr> = backends.iter().copied().collect();
            let cur = match have.get(ep) {
                Some(c) => c.clone(),
                None => {
                    self.call(
                        &format!("adding {}", ep.addr),
                        cmd::NEW_SERVICE,
                        0,
                        &new_service_attrs(ep, sched),
                    )?;
                    BTreeSet::new()
                }
            };
            for d in want_set.difference(&cur) {
                self.call(
                    &format!("adding {d} to {}", ep.addr),
                    cmd::NEW_DEST,
                    0,
                    &dest_attrs(ep, *d),
                )?;
            }
            for d in cur.difference(&want_set) {
                self.call(
                    &format!("removing {d} from {}", ep.addr),
                    cmd::DEL_DEST,
                    0,
                    &dest_attrs(ep, *d),
                )?;
            }
        }
        Ok(())
    }
}

/// The kernel IPVS data path (module docs).
pub struct Ipvs {
    conn: std::sync::Arc<Mutex<Conn>>,
    sched: String,
}

impl Ipvs {
    /// Whether this kernel serves IPVS over generic netlink (`Err` says why not).
    pub fn probe() -> Result<(), IpvsError> {
        Conn::open().map(|_| ())
    }

    /// Connects to the kernel's IPVS (scheduler `wlc`).
    pub fn new() -> Result<Ipvs, IpvsError> {
        Ok(Ipvs {
            conn: std::sync::Arc::new(Mutex::new(Conn::open()?)),
            sched: "wlc".to_string(),
        })
    }

    /// What the kernel serves now.
    pub async fn dump(&self) -> Result<KernelTable, IpvsError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            conn.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .dump()
        })
        .await
        .map_err(|e| IpvsError::Socket(e.to_string()))?
    }
}

#[async_trait::async_trait]
impl DataPath for Ipvs {
    async fn apply(&self, table: &ServiceTable) -> Result<(), DataPathError> {
        let conn = self.conn.clone();
        let (want, sched) = (table.clone(), self.sched.clone());
        tokio::task::spawn_blocking(move || {
            conn.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .reconcile(&want, &sched)
        })
        .await
        .map_err(|e| DataPathError::Ipvs(IpvsError::Socket(e.to_string())))?
        .map_err(DataPathError::Ipvs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str, p: Protocol) -> VipEndpoint {
        VipEndpoint {
            addr: s.parse().unwrap(),
            protocol: p,
        }
    }

    /// Little-endian hosts only (the layouts below spell host-order integers as LE).
    #[cfg(target_endian = "little")]
    #[test]
    fn new_service_matches_the_uapi_layout() {
        let m = message(
            0x1d,
            NLM_F_REQUEST | NLM_F_ACK,
            7,
            cmd::NEW_SERVICE,
            IPVS_GENL_VERSION,
            &new_service_attrs(&ep("11.1.2.3:80", Protocol::Tcp), "wlc"),
        );
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            // nlmsghdr: len 104, type 0x1d, flags REQUEST|ACK, seq 7, pid 0
            104, 0, 0, 0,  0x1d, 0,  5, 0,  7, 0, 0, 0,  0, 0, 0, 0,
            // genlmsghdr: cmd NEW_SERVICE, version 1
            1, 1, 0, 0,
            // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, len 84
            84, 0, 1, 0x80,
              // AF = AF_INET (u16, padded)
              6, 0, 1, 0,  2, 0, 0, 0,
              // PROTOCOL = IPPROTO_TCP
              6, 0, 2, 0,  6, 0, 0, 0,
              // ADDR = union nf_inet_addr (16 bytes)
              20, 0, 3, 0,  11, 1, 2, 3,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,
              // PORT = 80 big-endian
              6, 0, 4, 0,  0, 80, 0, 0,
              // SCHED_NAME = "wlc\0"
              8, 0, 6, 0,  b'w', b'l', b'c', 0,
              // FLAGS = struct ip_vs_flags { 0, 0 }
              12, 0, 7, 0,  0, 0, 0, 0,  0, 0, 0, 0,
              // TIMEOUT = 0
              8, 0, 8, 0,  0, 0, 0, 0,
              // NETMASK = 0xffffffff
              8, 0, 9, 0,  0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(m, want);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn new_dest_matches_the_uapi_layout() {
        let a = dest_attrs(
            &ep("11.1.2.3:53", Protocol::Udp),
            "10.0.0.2:31000".parse().unwrap(),
        );
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            // service selector: AF, PROTOCOL = UDP (17), ADDR, PORT 53
            48, 0, 1, 0x80,
              6, 0, 1, 0,  2, 0, 0, 0,
              6, 0, 2, 0,  17, 0, 0, 0,
              20, 0, 3, 0,  11, 1, 2, 3,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,
              6, 0, 4, 0,  0, 53, 0, 0,
            // IPVS_CMD_ATTR_DEST | NLA_F_NESTED
            72, 0, 2, 0x80,
              20, 0, 1, 0,  10, 0, 0, 2,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,
              // PORT 31000 = 0x7918 big-endian
              6, 0, 2, 0,  0x79, 0x18, 0, 0,
              // FWD_METHOD = MASQ, WEIGHT = 1, U_THRESH, L_THRESH
              8, 0, 3, 0,  0, 0, 0, 0,
              8, 0, 4, 0,  1, 0, 0, 0,
              8, 0, 5, 0,  0, 0, 0, 0,
              8, 0, 6, 0,  0, 0, 0, 0,
              // ADDR_FAMILY = AF_INET
              6, 0, 11, 0,  2, 0, 0, 0,
        ];
        assert_eq!(a, want);
    }

    #[test]
    fn replies_decode_back() {
        let e = ep("[fd01:c::5]:8080", Protocol::Tcp);
        assert_eq!(
            decode_service(&new_service_attrs(&e, "wlc")).unwrap(),
            Some(e)
        );
        let b: SocketAddr = "[fd01:b::9]:31000".parse().unwrap();
        assert_eq!(decode_dest(&dest_attrs(&e, b), AF_INET6).unwrap(), Some(b));
        // A dump message of the kernel: NEW_SERVICE payload, then DONE, then an error.
        let mut buf = message(0x1d, 2, 1, cmd::NEW_SERVICE, 1, &service_attrs(&e));
        let mut done = vec![20, 0, 0, 0, 3, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        done[..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        buf.extend_from_slice(&done);
        let mut err = vec![0u8; 20];
        err[..4].copy_from_slice(&20u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-17i32).to_ne_bytes());
        buf.extend_from_slice(&err);
        let msgs = parse_messages(&buf).unwrap();
        assert_eq!(msgs.len(), 3);
        match &msgs[0] {
            Reply::Genl { cmd: c, attrs } => {
                assert_eq!(*c, cmd::NEW_SERVICE);
                assert_eq!(decode_service(attrs).unwrap(), Some(e));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(msgs[1], Reply::Done));
        assert!(matches!(msgs[2], Reply::Error(17)));
    }

    #[test]
    fn truncated_and_lying_lengths_are_errors_not_panics() {
        let good = new_service_attrs(&ep("11.1.2.3:80", Protocol::Tcp), "wlc");
        for cut in 0..good.len() {
            let _ = decode_service(&good[..cut]);
        }
        let mut lying = good.clone();
        lying[0] = 0xff;
        assert!(decode_service(&lying).is_err());
        let m = message(0x1d, 0, 1, 1, 1, &good);
        for cut in 0..m.len() {
            let _ = parse_messages(&m[..cut]);
        }
        let mut bad = m.clone();
        bad[..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(parse_messages(&bad).is_err());
    }
}
