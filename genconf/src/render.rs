//! Per-role rendering: config + secrets + role → the files that role's nodes need.
//!
//! Paths are relative to the node's config root [`NODE_ROOT`] (`/run/basalt`);
//! the supervisor installs a verified bundle's [node view] there on every boot,
//! and the env files below refer to the installed paths.
//!
//! [node view]: crate::verify::VerifiedBundle::node_files
//!
//! # Every role
//!
//! | path | mode | content |
//! |---|---|---|
//! | `bin/ip-detect` | 0755 | the configured ip-detect script |
//! | `bin/ip-detect-public` | 0755 | `ip_detect_public`, or a copy of ip-detect |
//! | `bin/fault-domain-detect` | 0755 | only when `fault_domain_detect` is configured |
//! | `etc/cluster.toml` | 0644 | `Config::canonical_toml()` (agents: `auth.superuser_password_hash` masked) |
//! | `etc/cluster-id` | 0644 | cluster id |
//! | `etc/role` | 0644 | `master`, `agent` or `agent-public` |
//! | `etc/master_list` | 0644 | JSON array of master IPs (DC/OS format) |
//! | `etc/resolvers` | 0644 | upstream resolvers, one per line |
//! | `etc/dns_search` | 0644 | search domains, one per line |
//! | `etc/proxy.env` | 0644 | `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` (and lowercase) when set |
//! | `etc/cluster.pub` | 0644 | cluster signing public key (PEM) |
//! | `etc/iam-public-key.pem` | 0644 | IAM token verification key (gateways on all nodes check tokens) |
//! | `etc/join-credential` | 0600 | agent join credential (agents present it, masters check it) |
//! | `etc/tls/ca.crt` | 0644 | cluster CA certificate |
//!
//! # Master bundle (one bundle serves every master)
//!
//! | path | mode | content |
//! |---|---|---|
//! | `etc/etcd-client.env` | 0644 | `ETCDCTL_*`: endpoints of all masters, client cert paths |
//! | `etc/tls/etcd-client.{crt,key}` | 0644/0600 | etcd client cert for the masters' components |
//! | `etc/tls/gateway.{crt,key}` | 0644/0600 | gateway server cert |
//! | `etc/iam-signing-key.pem` | 0600 | IAM token signing key |
//! | `masters/<ip>/etc/etcd.env` | 0644 | this master's etcd settings: name, URLs, `ETCD_INITIAL_CLUSTER=master-<ip>=https://<ip>:2380,…`, heartbeat, election timeout, TLS file paths, client and peer cert auth, peers limited to CN `etcd-peer` |
//! | `masters/<ip>/etc/tls/etcd-{peer,server}.{crt,key}` | 0644/0600 | this master's etcd certs |
//!
//! A master's node view maps `masters/<its ip>/X` to `X` (its ip is what
//! ip-detect prints); every master bundle thus carries every master's etcd keys.
//!
//! # Agent bundles (`agent`, `agent-public`)
//!
//! | path | mode | content |
//! |---|---|---|
//! | `etc/tls/agent.{crt,key}` | 0644/0600 | the shared agent client cert |
//! | `etc/port_ranges` | 0644 | the role's port resources, Mesos syntax `[1025-2180,…]` |
//! | `etc/attributes` | 0644 | Mesos attributes `k:v;…`; agent-public adds `public_ip:true` |
//! | `etc/agent.env` | 0644 | default role (`*` or the public role), reserved memory, GPU isolation |
//!
//! Never in any bundle: the CA key, the cluster signing key. Never in an agent
//! bundle: the IAM signing key, etcd keys, the gateway key.

use std::net::Ipv4Addr;

use crate::bundle::{Bundle, BundleError, BundleFile, BundleMeta, Role, build_bundle};
use crate::config::{Config, LoadedConfig, MASK};
use crate::secrets::{CertAndKey, ETCD_PEER_CN, Leaf, Secrets};

/// Where a node installs its bundle's files.
pub const NODE_ROOT: &str = "/run/basalt";
/// Folder holding each master's own files in the master bundle.
pub const MASTERS_DIR: &str = "masters";
/// etcd data directory on masters.
pub const ETCD_DATA_DIR: &str = "/var/lib/basalt/etcd";
/// etcd client port.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd peer port.
pub const ETCD_PEER_PORT: u16 = 2380;

const PUBLIC: u32 = 0o644;
const SECRET: u32 = 0o600;
const EXEC: u32 = 0o755;

/// Errors from rendering.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The secrets were loaded for another config and lack a certificate.
    #[error(
        "secrets have no certificate {leaf}; load them with this config (Secrets::load_or_create)"
    )]
    MissingCert {
        /// The leaf.
        leaf: Leaf,
    },
    /// Building the bundle failed.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// etcd member name of a master.
pub fn etcd_name(ip: Ipv4Addr) -> String {
    format!("master-{ip}")
}

/// `ETCD_INITIAL_CLUSTER` value: `master-<ip>=https://<ip>:2380,…` in config order.
pub fn etcd_initial_cluster(masters: &[Ipv4Addr]) -> String {
    masters
        .iter()
        .map(|ip| format!("{}=https://{ip}:{ETCD_PEER_PORT}", etcd_name(*ip)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The files `role` needs, sorted by path.
pub fn render(
    loaded: &LoadedConfig,
    secrets: &Secrets,
    role: Role,
) -> Result<Vec<BundleFile>, RenderError> {
    let config = &loaded.config;
    let mut files = Vec::new();
    let mut add =
        |path: &str, mode: u32, data: Vec<u8>| files.push(BundleFile::new(path, mode, data));

    // Scripts.
    let scripts = &loaded.scripts;
    add("bin/ip-detect", EXEC, scripts.ip_detect.contents.clone());
    let public = scripts
        .ip_detect_public
        .as_ref()
        .unwrap_or(&scripts.ip_detect);
    add("bin/ip-detect-public", EXEC, public.contents.clone());
    if let Some(fd) = &scripts.fault_domain_detect {
        add("bin/fault-domain-detect", EXEC, fd.contents.clone());
    }

    // Plain config.
    let cluster_toml = if role.is_agent() {
        masked_for_agents(config).canonical_toml()
    } else {
        config.canonical_toml()
    };
    add("etc/cluster.toml", PUBLIC, cluster_toml.into_bytes());
    add("etc/cluster-id", PUBLIC, line(secrets.cluster_id()));
    add("etc/role", PUBLIC, line(role.as_str()));
    add("etc/master_list", PUBLIC, master_list_json(&config.masters));
    add(
        "etc/resolvers",
        PUBLIC,
        lines(config.resolvers.iter().map(ToString::to_string)),
    );
    add(
        "etc/dns_search",
        PUBLIC,
        lines(config.dns_search.iter().cloned()),
    );
    add("etc/proxy.env", PUBLIC, proxy_env(config));

    // Public keys, CA, join credential.
    add(
        "etc/cluster.pub",
        PUBLIC,
        secrets.public_key().to_pem().into_bytes(),
    );
    add(
        "etc/iam-public-key.pem",
        PUBLIC,
        secrets.iam_public_key_pem().into_bytes(),
    );
    add(
        "etc/tls/ca.crt",
        PUBLIC,
        secrets.ca_cert_pem().as_bytes().to_vec(),
    );
    add(
        "etc/join-credential",
        SECRET,
        line(secrets.join_credential()),
    );

    let cert = |leaf: Leaf| -> Result<&CertAndKey, RenderError> {
        secrets.leaf(leaf).ok_or(RenderError::MissingCert { leaf })
    };
    let mut pair = |dir: &str, name: &str, ck: &CertAndKey| {
        files.push(BundleFile::new(
            format!("{dir}/{name}.crt"),
            PUBLIC,
            ck.cert_pem.as_bytes().to_vec(),
        ));
        files.push(BundleFile::new(
            format!("{dir}/{name}.key"),
            SECRET,
            ck.key_pem.as_bytes().to_vec(),
        ));
    };

    match role {
        Role::Master => {
            pair("etc/tls", "etcd-client", cert(Leaf::EtcdClient)?);
            pair("etc/tls", "gateway", cert(Leaf::Gateway)?);
            for ip in &config.masters {
                let dir = format!("{MASTERS_DIR}/{ip}/etc/tls");
                pair(&dir, "etcd-peer", cert(Leaf::EtcdPeer(*ip))?);
                pair(&dir, "etcd-server", cert(Leaf::EtcdServer(*ip))?);
            }
            files.push(BundleFile::new(
                "etc/iam-signing-key.pem",
                SECRET,
                secrets.iam_key_pem().as_bytes().to_vec(),
            ));
            files.push(BundleFile::new(
                "etc/etcd-client.env",
                PUBLIC,
                etcd_client_env(&config.masters),
            ));
            for ip in &config.masters {
                files.push(BundleFile::new(
                    format!("{MASTERS_DIR}/{ip}/etc/etcd.env"),
                    PUBLIC,
                    etcd_env(config, secrets.cluster_id(), *ip),
                ));
            }
        }
        Role::Agent | Role::AgentPublic => {
            pair("etc/tls", "agent", cert(Leaf::Agent)?);
            let public = role == Role::AgentPublic;
            let ports = if public {
                &config.agent.public_ports
            } else {
                &config.agent.private_ports
            };
            files.push(BundleFile::new(
                "etc/port_ranges",
                PUBLIC,
                line(&ports.to_mesos()),
            ));
            files.push(BundleFile::new(
                "etc/attributes",
                PUBLIC,
                attributes(config, public),
            ));
            files.push(BundleFile::new(
                "etc/agent.env",
                PUBLIC,
                agent_env(config, public),
            ));
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Renders `role` and builds its signed bundle.
pub fn render_bundle(
    loaded: &LoadedConfig,
    secrets: &Secrets,
    role: Role,
) -> Result<Bundle, RenderError> {
    let files = render(loaded, secrets, role)?;
    let meta = BundleMeta {
        cluster_id: secrets.cluster_id().to_owned(),
        config_id: loaded.config.config_id(),
        role,
    };
    Ok(build_bundle(&meta, &files, secrets)?)
}

/// The config as agents see it: the superuser's password hash masked.
fn masked_for_agents(config: &Config) -> Config {
    let mut c = config.clone();
    if c.auth.superuser_password_hash.is_some() {
        c.auth.superuser_password_hash = Some(MASK.to_owned());
    }
    c
}

fn line(s: &str) -> Vec<u8> {
    format!("{s}\n").into_bytes()
}

fn lines(items: impl Iterator<Item = String>) -> Vec<u8> {
    let mut out = String::new();
    for i in items {
        out.push_str(&i);
        out.push('\n');
    }
    out.into_bytes()
}

fn master_list_json(masters: &[Ipv4Addr]) -> Vec<u8> {
    let list: Vec<String> = masters.iter().map(ToString::to_string).collect();
    let mut s = serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned());
    s.push('\n');
    s.into_bytes()
}

fn proxy_env(config: &Config) -> Vec<u8> {
    let mut s =
        String::from("# Outbound proxy for cluster components (written by basalt genconf).\n");
    let p = &config.proxy;
    if let Some(h) = &p.http_proxy {
        s.push_str(&format!("HTTP_PROXY={h}\nhttp_proxy={h}\n"));
    }
    if let Some(h) = &p.https_proxy {
        s.push_str(&format!("HTTPS_PROXY={h}\nhttps_proxy={h}\n"));
    }
    if p.http_proxy.is_some() || p.https_proxy.is_some() {
        let n = p.no_proxy.join(",");
        s.push_str(&format!("NO_PROXY={n}\nno_proxy={n}\n"));
    }
    s.into_bytes()
}

fn etcd_env(config: &Config, cluster_id: &str, ip: Ipv4Addr) -> Vec<u8> {
    let tls = format!("{NODE_ROOT}/etc/tls");
    let mut s = format!("# etcd settings of master {ip} (written by basalt genconf).\n");
    let mut kv = |k: &str, v: String| s.push_str(&format!("{k}={v}\n"));
    kv("ETCD_NAME", etcd_name(ip));
    kv("ETCD_DATA_DIR", ETCD_DATA_DIR.to_owned());
    kv(
        "ETCD_LISTEN_PEER_URLS",
        format!("https://{ip}:{ETCD_PEER_PORT}"),
    );
    kv(
        "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        format!("https://{ip}:{ETCD_PEER_PORT}"),
    );
    kv(
        "ETCD_LISTEN_CLIENT_URLS",
        format!("https://{ip}:{ETCD_CLIENT_PORT},https://127.0.0.1:{ETCD_CLIENT_PORT}"),
    );
    kv(
        "ETCD_ADVERTISE_CLIENT_URLS",
        format!("https://{ip}:{ETCD_CLIENT_PORT}"),
    );
    kv(
        "ETCD_INITIAL_CLUSTER",
        etcd_initial_cluster(&config.masters),
    );
    kv("ETCD_INITIAL_CLUSTER_STATE", "new".to_owned());
    kv("ETCD_INITIAL_CLUSTER_TOKEN", format!("basalt-{cluster_id}"));
    kv(
        "ETCD_HEARTBEAT_INTERVAL",
        config.etcd.heartbeat_interval_ms.to_string(),
    );
    kv(
        "ETCD_ELECTION_TIMEOUT",
        config.etcd.election_timeout_ms.to_string(),
    );
    kv("ETCD_CERT_FILE", format!("{tls}/etcd-server.crt"));
    kv("ETCD_KEY_FILE", format!("{tls}/etcd-server.key"));
    kv("ETCD_CLIENT_CERT_AUTH", "true".to_owned());
    kv("ETCD_TRUSTED_CA_FILE", format!("{tls}/ca.crt"));
    kv("ETCD_PEER_CERT_FILE", format!("{tls}/etcd-peer.crt"));
    kv("ETCD_PEER_KEY_FILE", format!("{tls}/etcd-peer.key"));
    kv("ETCD_PEER_CLIENT_CERT_AUTH", "true".to_owned());
    kv("ETCD_PEER_CERT_ALLOWED_CN", ETCD_PEER_CN.to_owned());
    kv("ETCD_PEER_TRUSTED_CA_FILE", format!("{tls}/ca.crt"));
    s.into_bytes()
}

fn etcd_client_env(masters: &[Ipv4Addr]) -> Vec<u8> {
    let tls = format!("{NODE_ROOT}/etc/tls");
    let endpoints: Vec<String> = masters
        .iter()
        .map(|ip| format!("https://{ip}:{ETCD_CLIENT_PORT}"))
        .collect();
    format!(
        "# etcd client settings for the masters' components (written by basalt genconf).\n\
         ETCDCTL_API=3\n\
         ETCDCTL_ENDPOINTS={}\n\
         ETCDCTL_CACERT={tls}/ca.crt\n\
         ETCDCTL_CERT={tls}/etcd-client.crt\n\
         ETCDCTL_KEY={tls}/etcd-client.key\n",
        endpoints.join(",")
    )
    .into_bytes()
}

fn attributes(config: &Config, public: bool) -> Vec<u8> {
    let mut attrs = config.agent.attributes.clone();
    if public {
        attrs.insert("public_ip".to_owned(), "true".to_owned());
    }
    let s: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    line(&s.join(";"))
}

fn agent_env(config: &Config, public: bool) -> Vec<u8> {
    let a = &config.agent;
    let role = if public { a.public_role.as_str() } else { "*" };
    format!(
        "# Agent settings (written by basalt genconf).\n\
         BASALT_AGENT_DEFAULT_ROLE={role}\n\
         BASALT_AGENT_RESERVED_MEMORY_MB={}\n\
         BASALT_AGENT_GPU_ISOLATION={}\n",
        a.reserved_memory_mb, a.gpu_isolation
    )
    .into_bytes()
}
