//! Cluster secrets: generated once under `genconf/secrets/`, reused on every
//! later run, replaced only by an explicit [`rotate`].
//!
//! # Files (directory mode 0700, every file mode 0600)
//!
//! | file | what |
//! |---|---|
//! | `cluster-id` | stable cluster id (UUID v4 text), written once |
//! | `signing-key.pem` | Ed25519 cluster signing key (PKCS#8 `PRIVATE KEY`, ring). Signs bundle manifests; its public key is carried by the images |
//! | `ca.crt`, `ca.key` | cluster CA, ECDSA P-256 (etcd 3.4 is Go: ECDSA or RSA only, no Ed25519 TLS certs). The CA key never leaves this folder |
//! | `tls/etcd-peer-<ip>.{crt,key}` | per master: etcd peer cert (serverAuth + clientAuth), CN `etcd-peer` for all masters (etcd admits only that CN as a peer), SANs `<ip>`, `127.0.0.1`, `localhost` |
//! | `tls/etcd-server-<ip>.{crt,key}` | per master: etcd client-port cert (serverAuth + clientAuth: etcd's gRPC gateway dials itself with it), same SANs |
//! | `tls/etcd-client.{crt,key}` | etcd client cert (clientAuth) for the masters' components |
//! | `tls/gateway.{crt,key}` | masters' gateway (serverAuth), SANs every master IP, `127.0.0.1`, `master.mesos`, `leader.mesos`, `localhost` |
//! | `tls/agent.{crt,key}` | one client cert shared by all agents (clientAuth), CN `agent` |
//! | `iam-signing-key.pem` | Ed25519 IAM token signing key (PKCS#8; JWT `EdDSA`) |
//! | `join-credential` | 32 random bytes, lowercase hex + `\n`; agents present it to join |
//!
//! Leaf certs and keys are ECDSA P-256, PKCS#8 PEM. All randomness comes from
//! ring's `SystemRandom` (rcgen uses it too).
//!
//! # Rules of [`Secrets::load_or_create`]
//!
//! * A folder without `cluster-id` is a new cluster: everything is created.
//! * In an existing cluster (`cluster-id` present) a missing *root* secret
//!   (signing key, CA cert or key, IAM key, join credential) is an error
//!   ([`SecretsError::Missing`]): re-creating it would silently break every node.
//!   Restore it from a backup or [`rotate`] it deliberately.
//! * Leaf certificates are derived from the config and the CA. A missing leaf
//!   is issued; a leaf that no longer fits is **re-issued from the same CA and
//!   reported** as [`SecretEvent::Reissued`] with the reason: its SANs differ
//!   from what the config needs (e.g. master IPs changed), it is not signed by
//!   the current CA, its key does not match, its common name is not the one
//!   this version issues, or it expires within 30 days.
//!   Re-issuing a leaf breaks nothing that holds the CA certificate; nodes pick
//!   the new cert up with their next bundle. Leaf files for masters no longer in
//!   the config are left in place and reported as [`SecretEvent::Unused`].
//! * A file that exists but cannot be parsed is an error naming the file
//!   ([`SecretsError::Corrupt`]); nothing is overwritten. So is a secret file
//!   readable or writable by group/others ([`SecretsError::InsecurePermissions`]).
//! * Files are written atomically (temporary file, fsync, rename), created with
//!   mode 0600.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair as _};

use crate::config::Config;
use crate::verify::ClusterPublicKey;

/// Name of the secrets folder inside the genconf folder.
pub const SECRETS_DIR: &str = "secrets";
/// `cluster-id`
pub const CLUSTER_ID_FILE: &str = "cluster-id";
/// `signing-key.pem`
pub const SIGNING_KEY_FILE: &str = "signing-key.pem";
/// `ca.crt`
pub const CA_CERT_FILE: &str = "ca.crt";
/// `ca.key`
pub const CA_KEY_FILE: &str = "ca.key";
/// `iam-signing-key.pem`
pub const IAM_KEY_FILE: &str = "iam-signing-key.pem";
/// `join-credential`
pub const JOIN_CREDENTIAL_FILE: &str = "join-credential";
/// Sub-folder holding leaf certificates and keys.
pub const TLS_DIR: &str = "tls";

/// Common name of every etcd peer certificate.
pub const ETCD_PEER_CN: &str = "etcd-peer";

/// Leaf certificates re-issued when they expire within this many seconds.
const RENEW_BEFORE_SECS: i64 = 30 * 24 * 3600;
/// CA validity in years.
const CA_YEARS: i32 = 20;
/// Leaf validity in years.
const LEAF_YEARS: i32 = 10;

/// `<genconf dir>/secrets`.
pub fn secrets_dir(genconf_dir: &Path) -> PathBuf {
    genconf_dir.join(SECRETS_DIR)
}

/// Errors from loading, creating or rotating secrets. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A secret file exists but is not what it should be; it was left untouched.
    #[error("{}: corrupt secret: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A root secret is missing from an existing cluster's secrets.
    #[error("{}: missing, but this cluster's secrets exist ({}); re-creating it would break every node. Restore it from a backup, or replace it deliberately with `--rotate {rotate}`",
        path.display(), CLUSTER_ID_FILE)]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// The rotate target that would replace it.
        rotate: RotateTarget,
    },
    /// A secret file or the folder is accessible by group or others.
    #[error("{}: mode {mode:04o} lets group/others in; secrets must be {want:04o} (chmod {want:o} {})",
        path.display(), path.display())]
    InsecurePermissions {
        /// The file or folder.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
        /// The mode it should have.
        want: u32,
    },
    /// Key or certificate generation failed.
    #[error("generating {what}: {reason}")]
    Generate {
        /// What was being generated.
        what: String,
        /// Cause.
        reason: String,
    },
}

/// One leaf certificate issued by the cluster CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Leaf {
    /// etcd peer certificate of one master.
    EtcdPeer(Ipv4Addr),
    /// etcd client-port (server) certificate of one master.
    EtcdServer(Ipv4Addr),
    /// etcd client certificate for the masters' components.
    EtcdClient,
    /// The masters' gateway (Admin Router) server certificate.
    Gateway,
    /// The client certificate shared by every agent.
    Agent,
}

impl Leaf {
    /// Every leaf a config with these masters needs, sorted.
    pub fn all_for(masters: &[Ipv4Addr]) -> Vec<Leaf> {
        let mut v: Vec<Leaf> = masters
            .iter()
            .flat_map(|ip| [Leaf::EtcdPeer(*ip), Leaf::EtcdServer(*ip)])
            .collect();
        v.extend([Leaf::EtcdClient, Leaf::Gateway, Leaf::Agent]);
        v.sort();
        v.dedup();
        v
    }

    /// File stem under `tls/`: `etcd-peer-10.0.0.1`, `gateway`, ….
    pub fn stem(&self) -> String {
        match self {
            Leaf::EtcdPeer(ip) => format!("etcd-peer-{ip}"),
            Leaf::EtcdServer(ip) => format!("etcd-server-{ip}"),
            Leaf::EtcdClient => "etcd-client".to_owned(),
            Leaf::Gateway => "gateway".to_owned(),
            Leaf::Agent => "agent".to_owned(),
        }
    }

    /// Subject common name. Every master's peer cert has the CN
    /// [`ETCD_PEER_CN`] so etcd can admit only those as peers
    /// (`ETCD_PEER_CERT_ALLOWED_CN`); SANs tell the masters apart.
    pub fn common_name(&self) -> String {
        match self {
            Leaf::EtcdPeer(_) => ETCD_PEER_CN.to_owned(),
            Leaf::EtcdServer(_) => "etcd-server".to_owned(),
            Leaf::EtcdClient => "etcd-client".to_owned(),
            Leaf::Gateway => "gateway".to_owned(),
            Leaf::Agent => "agent".to_owned(),
        }
    }

    /// Subject alternative names this leaf must carry for `masters`, sorted.
    pub fn expected_sans(&self, masters: &[Ipv4Addr]) -> BTreeSet<San> {
        let local = [
            San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            San::Dns("localhost".to_owned()),
        ];
        match self {
            Leaf::EtcdPeer(ip) | Leaf::EtcdServer(ip) => {
                let mut s: BTreeSet<San> = local.into_iter().collect();
                s.insert(San::Ip(IpAddr::V4(*ip)));
                s
            }
            Leaf::Gateway => {
                let mut s: BTreeSet<San> = local.into_iter().collect();
                s.extend(masters.iter().map(|ip| San::Ip(IpAddr::V4(*ip))));
                s.insert(San::Dns("master.mesos".to_owned()));
                s.insert(San::Dns("leader.mesos".to_owned()));
                s
            }
            Leaf::EtcdClient | Leaf::Agent => BTreeSet::new(),
        }
    }

    fn extended_key_usages(&self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            Leaf::EtcdPeer(_) | Leaf::EtcdServer(_) => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Leaf::Gateway => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Leaf::EtcdClient | Leaf::Agent => vec![ExtendedKeyUsagePurpose::ClientAuth],
        }
    }
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.stem())
    }
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum San {
    /// IP address.
    Ip(IpAddr),
    /// DNS name.
    Dns(String),
    /// Any other kind (never expected; makes a leaf be re-issued).
    Other(String),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Ip(ip) => write!(f, "IP:{ip}"),
            San::Dns(d) => write!(f, "DNS:{d}"),
            San::Other(o) => write!(f, "other:{o}"),
        }
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    /// `CERTIFICATE` PEM.
    pub cert_pem: String,
    /// `PRIVATE KEY` (PKCS#8) PEM.
    pub key_pem: String,
}

impl fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAndKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[secret elided]")
            .finish()
    }
}

/// What [`Secrets::load_or_create`] or [`rotate`] did to one file or leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretEvent {
    /// A secret that did not exist was created.
    Created {
        /// What (file name relative to the secrets folder).
        name: String,
    },
    /// A leaf certificate was re-issued from the same CA.
    Reissued {
        /// The leaf.
        leaf: Leaf,
        /// Why.
        reason: String,
    },
    /// A secret was replaced by [`rotate`].
    Rotated {
        /// What (file name relative to the secrets folder).
        name: String,
    },
    /// A file in `tls/` that the current config does not use (left in place).
    Unused {
        /// The file.
        path: PathBuf,
    },
}

impl fmt::Display for SecretEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretEvent::Created { name } => write!(f, "created {name}"),
            SecretEvent::Reissued { leaf, reason } => {
                write!(
                    f,
                    "re-issued {TLS_DIR}/{leaf}.crt from the cluster CA: {reason}"
                )
            }
            SecretEvent::Rotated { name } => write!(f, "rotated {name}"),
            SecretEvent::Unused { path } => {
                write!(
                    f,
                    "{} is not used by this config (left in place)",
                    path.display()
                )
            }
        }
    }
}

/// The loaded cluster secrets.
pub struct Secrets {
    dir: PathBuf,
    cluster_id: String,
    signing_key: Ed25519KeyPair,
    ca: CertAndKey,
    leaves: BTreeMap<Leaf, CertAndKey>,
    iam_key_pem: String,
    iam_public: [u8; 32],
    join_credential: String,
    events: Vec<SecretEvent>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("dir", &self.dir)
            .field("cluster_id", &self.cluster_id)
            .field("public_key", &self.public_key().fingerprint())
            .field("leaves", &self.leaves.keys().collect::<Vec<_>>())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// Loads the secrets in `dir` (the `secrets/` folder itself), creating what
    /// is missing and re-issuing leaf certificates that no longer fit `config`;
    /// see the module docs for the exact rules. [`Secrets::events`] tells what
    /// was created or re-issued.
    pub fn load_or_create(dir: &Path, config: &Config) -> Result<Secrets, SecretsError> {
        load_or_create_for(dir, &config.masters)
    }

    /// The secrets folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stable cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The cluster signing key's public half.
    pub fn public_key(&self) -> ClusterPublicKey {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.signing_key.public_key().as_ref());
        ClusterPublicKey::from_raw(raw)
    }

    /// Ed25519 signature of `msg` with the cluster signing key.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.signing_key.sign(msg).as_ref());
        out
    }

    /// CA certificate PEM (public).
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// CA private key PEM. Never put into a bundle.
    pub fn ca_key_pem(&self) -> &str {
        &self.ca.key_pem
    }

    /// A leaf certificate and key, if the config this was loaded for needs it.
    pub fn leaf(&self, leaf: Leaf) -> Option<&CertAndKey> {
        self.leaves.get(&leaf)
    }

    /// Every loaded leaf.
    pub fn leaves(&self) -> &BTreeMap<Leaf, CertAndKey> {
        &self.leaves
    }

    /// IAM token signing key, PKCS#8 PEM.
    pub fn iam_key_pem(&self) -> &str {
        &self.iam_key_pem
    }

    /// IAM token verification key, `PUBLIC KEY` (SPKI) PEM.
    pub fn iam_public_key_pem(&self) -> String {
        ed25519_spki_pem(&self.iam_public)
    }

    /// Agent join credential (64 lowercase hex characters).
    pub fn join_credential(&self) -> &str {
        &self.join_credential
    }

    /// What loading created or re-issued, in order.
    pub fn events(&self) -> &[SecretEvent] {
        &self.events
    }
}

/// What a rotation replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RotateTarget {
    /// `signing-key`: the Ed25519 cluster signing key.
    SigningKey,
    /// `ca`: the cluster CA (and therefore every leaf certificate).
    Ca,
    /// `iam-key`: the IAM token signing key.
    IamKey,
    /// `join-credential`: the agent join credential.
    JoinCredential,
    /// `certs`: every leaf certificate (same CA).
    Certs,
}

impl RotateTarget {
    /// Every target, in CLI order.
    pub const ALL: [RotateTarget; 5] = [
        RotateTarget::SigningKey,
        RotateTarget::Ca,
        RotateTarget::IamKey,
        RotateTarget::JoinCredential,
        RotateTarget::Certs,
    ];

    /// CLI name.
    pub fn name(&self) -> &'static str {
        match self {
            RotateTarget::SigningKey => "signing-key",
            RotateTarget::Ca => "ca",
            RotateTarget::IamKey => "iam-key",
            RotateTarget::JoinCredential => "join-credential",
            RotateTarget::Certs => "certs",
        }
    }

    /// What replacing this secret breaks; print it before rotating.
    pub fn breaks(&self) -> &'static str {
        match self {
            RotateTarget::SigningKey => {
                "Rotating the cluster signing key: every bundle and image manifest signed \
                 so far stops verifying. Every node must get a new image carrying the new \
                 public key (serve/cluster.pub) before it can accept a bundle again; nodes \
                 still running the old image reject all new bundles."
            }
            RotateTarget::Ca => {
                "Rotating the cluster CA: every leaf certificate (etcd peer/server/client, \
                 gateway, agent) is re-issued from the new CA. Every node needs its new \
                 bundle; until a node has it, TLS between it and updated nodes fails \
                 (etcd peers cannot talk across old and new CA, agents cannot reach \
                 masters). Roll all masters together, then all agents. Clients that pinned \
                 the old CA (CLI, browsers) must trust the new ca.crt."
            }
            RotateTarget::IamKey => {
                "Rotating the IAM token signing key: every login and service-account token \
                 issued so far becomes invalid; users log in again, services fetch new \
                 tokens. Masters and agents need their new bundles (agents verify tokens \
                 with the IAM public key)."
            }
            RotateTarget::JoinCredential => {
                "Rotating the agent join credential: masters with the new bundle refuse \
                 agents that present the old credential. Agents already joined keep \
                 running, but every agent needs its new bundle before it can (re)join."
            }
            RotateTarget::Certs => {
                "Re-issuing every leaf certificate from the same CA: nothing that trusts the \
                 CA breaks. Nodes pick the new certificates up with their next bundle; \
                 roll masters one at a time so etcd keeps quorum."
            }
        }
    }
}

impl fmt::Display for RotateTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RotateTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RotateTarget::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = RotateTarget::ALL.iter().map(|t| t.name()).collect();
                format!("unknown secret `{s}`; one of: {}", names.join(", "))
            })
    }
}

impl RotateTarget {
    /// Files (relative to the secrets folder; `tls/` = everything in it) this
    /// target replaces.
    fn files(&self) -> &'static [&'static str] {
        match self {
            RotateTarget::SigningKey => &[SIGNING_KEY_FILE],
            RotateTarget::Ca => &[CA_CERT_FILE, CA_KEY_FILE, "tls/"],
            RotateTarget::IamKey => &[IAM_KEY_FILE],
            RotateTarget::JoinCredential => &[JOIN_CREDENTIAL_FILE],
            RotateTarget::Certs => &["tls/"],
        }
    }
}

impl SecretsError {
    /// The file or folder the error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            SecretsError::Io { path, .. }
            | SecretsError::Corrupt { path, .. }
            | SecretsError::Missing { path, .. }
            | SecretsError::InsecurePermissions { path, .. } => Some(path),
            SecretsError::Generate { .. } => None,
        }
    }
}

/// Result of [`rotate`].
#[derive(Debug)]
pub struct Rotation {
    /// What was rotated.
    pub target: RotateTarget,
    /// What this breaks ([`RotateTarget::breaks`]).
    pub breaks: &'static str,
    /// Files replaced (relative to the secrets folder), sorted.
    pub replaced: Vec<String>,
    /// The secrets after rotation.
    pub secrets: Secrets,
}

/// Replaces one secret in `dir` (the `secrets/` folder, which must already hold a
/// cluster's secrets, i.e. `cluster-id`) and returns the reloaded secrets.
/// Rotating `ca` also re-issues every leaf. Other secrets are left
/// byte-for-byte as they were. Every other secret is checked first (a corrupt or
/// missing one is an error and nothing is replaced); the target itself may be
/// missing or corrupt, so rotating is also how such a secret is replaced. Loading
/// may re-issue leaves that no longer fit the config, reported in
/// [`Secrets::events`].
pub fn rotate(dir: &Path, config: &Config, target: RotateTarget) -> Result<Rotation, SecretsError> {
    rotate_for(dir, &config.masters, target)
}

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

pub(crate) fn load_or_create_for(
    dir: &Path,
    masters: &[Ipv4Addr],
) -> Result<Secrets, SecretsError> {
    let rng = SystemRandom::new();
    let mut events = Vec::new();
    ensure_dir(dir)?;
    ensure_dir(&dir.join(TLS_DIR))?;

    let id_path = dir.join(CLUSTER_ID_FILE);
    let existing = exists(&id_path)?;

    // Root secrets: created only for a new cluster.
    let root = |name: &str, target: RotateTarget| -> Result<Option<Vec<u8>>, SecretsError> {
        let path = dir.join(name);
        match read_secret(&path)? {
            Some(b) => Ok(Some(b)),
            None if existing => Err(SecretsError::Missing {
                path,
                rotate: target,
            }),
            None => Ok(None),
        }
    };

    let signing_key = match root(SIGNING_KEY_FILE, RotateTarget::SigningKey)? {
        Some(b) => parse_ed25519_pem(&dir.join(SIGNING_KEY_FILE), &b)?,
        None => {
            let pem = new_ed25519_pem(&rng, "cluster signing key")?;
            write_secret(&dir.join(SIGNING_KEY_FILE), pem.as_bytes())?;
            events.push(SecretEvent::Created {
                name: SIGNING_KEY_FILE.to_owned(),
            });
            parse_ed25519_pem(&dir.join(SIGNING_KEY_FILE), pem.as_bytes())?
        }
    };

    let ca_cert = root(CA_CERT_FILE, RotateTarget::Ca)?;
    let ca_key = root(CA_KEY_FILE, RotateTarget::Ca)?;
    let ca = match (ca_cert, ca_key) {
        (Some(c), Some(k)) => {
            let ca = CertAndKey {
                cert_pem: utf8(&dir.join(CA_CERT_FILE), c)?,
                key_pem: utf8(&dir.join(CA_KEY_FILE), k)?,
            };
            check_ca(dir, &ca)?;
            ca
        }
        (None, None) => {
            let ca = new_ca(&rng)?;
            write_secret(&dir.join(CA_KEY_FILE), ca.key_pem.as_bytes())?;
            write_secret(&dir.join(CA_CERT_FILE), ca.cert_pem.as_bytes())?;
            events.push(SecretEvent::Created {
                name: CA_CERT_FILE.to_owned(),
            });
            events.push(SecretEvent::Created {
                name: CA_KEY_FILE.to_owned(),
            });
            ca
        }
        (Some(_), None) => {
            return Err(SecretsError::Missing {
                path: dir.join(CA_KEY_FILE),
                rotate: RotateTarget::Ca,
            });
        }
        (None, Some(_)) => {
            return Err(SecretsError::Missing {
                path: dir.join(CA_CERT_FILE),
                rotate: RotateTarget::Ca,
            });
        }
    };

    let iam_path = dir.join(IAM_KEY_FILE);
    let iam_key_pem = match root(IAM_KEY_FILE, RotateTarget::IamKey)? {
        Some(b) => utf8(&iam_path, b)?,
        None => {
            let pem = new_ed25519_pem(&rng, "IAM signing key")?;
            write_secret(&iam_path, pem.as_bytes())?;
            events.push(SecretEvent::Created {
                name: IAM_KEY_FILE.to_owned(),
            });
            pem
        }
    };
    let iam_pair = parse_ed25519_pem(&iam_path, iam_key_pem.as_bytes())?;
    let mut iam_public = [0u8; 32];
    iam_public.copy_from_slice(iam_pair.public_key().as_ref());

    let join_path = dir.join(JOIN_CREDENTIAL_FILE);
    let join_credential = match root(JOIN_CREDENTIAL_FILE, RotateTarget::JoinCredential)? {
        Some(b) => parse_join_credential(&join_path, &b)?,
        None => {
            let cred = new_join_credential(&rng)?;
            write_secret(&join_path, format!("{cred}\n").as_bytes())?;
            events.push(SecretEvent::Created {
                name: JOIN_CREDENTIAL_FILE.to_owned(),
            });
            cred
        }
    };

    // Written last: its presence marks a complete set of root secrets.
    let cluster_id = if existing {
        let b = read_secret(&id_path)?.unwrap_or_default();
        parse_cluster_id(&id_path, &b)?
    } else {
        let id = new_cluster_id(&rng)?;
        write_secret(&id_path, format!("{id}\n").as_bytes())?;
        events.push(SecretEvent::Created {
            name: CLUSTER_ID_FILE.to_owned(),
        });
        id
    };

    let leaves = load_leaves(dir, masters, &ca, &rng, false, &mut events)?;

    Ok(Secrets {
        dir: dir.to_path_buf(),
        cluster_id,
        signing_key,
        ca,
        leaves,
        iam_key_pem,
        iam_public,
        join_credential,
        events,
    })
}

fn rotate_for(
    dir: &Path,
    masters: &[Ipv4Addr],
    target: RotateTarget,
) -> Result<Rotation, SecretsError> {
    // Rotation replaces a secret of an existing cluster; it never creates one.
    let id_path = dir.join(CLUSTER_ID_FILE);
    if !exists(&id_path)? {
        return Err(SecretsError::Missing {
            path: id_path,
            rotate: target,
        });
    }
    // Everything else must be sound before anything is replaced; the target
    // itself may be missing or corrupt (rotating is how it gets repaired).
    if let Err(e) = load_or_create_for(dir, masters) {
        let target_files = target.files();
        let is_target = e.path().is_some_and(|p| {
            p.strip_prefix(dir).is_ok_and(|rel| {
                let rel = rel.to_string_lossy();
                target_files
                    .iter()
                    .any(|f| rel == *f || (f.ends_with('/') && rel.starts_with(f)))
            })
        });
        if !is_target {
            return Err(e);
        }
    }
    let rng = SystemRandom::new();
    let mut replaced = Vec::new();
    let mut events = Vec::new();
    match target {
        RotateTarget::SigningKey => {
            let pem = new_ed25519_pem(&rng, "cluster signing key")?;
            write_secret(&dir.join(SIGNING_KEY_FILE), pem.as_bytes())?;
            replaced.push(SIGNING_KEY_FILE.to_owned());
        }
        RotateTarget::IamKey => {
            let pem = new_ed25519_pem(&rng, "IAM signing key")?;
            write_secret(&dir.join(IAM_KEY_FILE), pem.as_bytes())?;
            replaced.push(IAM_KEY_FILE.to_owned());
        }
        RotateTarget::JoinCredential => {
            let cred = new_join_credential(&rng)?;
            write_secret(
                &dir.join(JOIN_CREDENTIAL_FILE),
                format!("{cred}\n").as_bytes(),
            )?;
            replaced.push(JOIN_CREDENTIAL_FILE.to_owned());
        }
        RotateTarget::Ca => {
            let ca = new_ca(&rng)?;
            write_secret(&dir.join(CA_KEY_FILE), ca.key_pem.as_bytes())?;
            write_secret(&dir.join(CA_CERT_FILE), ca.cert_pem.as_bytes())?;
            replaced.push(CA_CERT_FILE.to_owned());
            replaced.push(CA_KEY_FILE.to_owned());
            load_leaves(dir, masters, &ca, &rng, true, &mut Vec::new())?;
            replaced.extend(leaf_file_names(masters));
        }
        RotateTarget::Certs => {
            let read = |name: &str| -> Result<String, SecretsError> {
                let path = dir.join(name);
                match read_secret(&path)? {
                    Some(b) => utf8(&path, b),
                    None => Err(SecretsError::Missing {
                        path,
                        rotate: RotateTarget::Ca,
                    }),
                }
            };
            let ca = CertAndKey {
                cert_pem: read(CA_CERT_FILE)?,
                key_pem: read(CA_KEY_FILE)?,
            };
            check_ca(dir, &ca)?;
            load_leaves(dir, masters, &ca, &rng, true, &mut Vec::new())?;
            replaced.extend(leaf_file_names(masters));
        }
    }
    replaced.sort();
    events.extend(
        replaced
            .iter()
            .map(|n| SecretEvent::Rotated { name: n.clone() }),
    );
    let mut secrets = load_or_create_for(dir, masters)?;
    events.append(&mut secrets.events);
    secrets.events = events;
    tracing::warn!(secret = target.name(), dir = %dir.display(), "secret rotated");
    Ok(Rotation {
        target,
        breaks: target.breaks(),
        replaced,
        secrets,
    })
}

fn leaf_file_names(masters: &[Ipv4Addr]) -> Vec<String> {
    Leaf::all_for(masters)
        .iter()
        .flat_map(|l| {
            [
                format!("{TLS_DIR}/{}.crt", l.stem()),
                format!("{TLS_DIR}/{}.key", l.stem()),
            ]
        })
        .collect()
}

fn load_leaves(
    dir: &Path,
    masters: &[Ipv4Addr],
    ca: &CertAndKey,
    rng: &SystemRandom,
    force: bool,
    events: &mut Vec<SecretEvent>,
) -> Result<BTreeMap<Leaf, CertAndKey>, SecretsError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|e| SecretsError::Corrupt {
        path: dir.join(CA_KEY_FILE),
        reason: e.to_string(),
    })?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(|e| SecretsError::Corrupt {
            path: dir.join(CA_CERT_FILE),
            reason: e.to_string(),
        })?;
    let ca_der = pem_decode(
        &dir.join(CA_CERT_FILE),
        ca.cert_pem.as_bytes(),
        "CERTIFICATE",
    )?;

    let wanted = Leaf::all_for(masters);
    let mut out = BTreeMap::new();
    for leaf in &wanted {
        let crt_path = dir.join(TLS_DIR).join(format!("{}.crt", leaf.stem()));
        let key_path = dir.join(TLS_DIR).join(format!("{}.key", leaf.stem()));
        let crt = read_secret(&crt_path)?;
        let key = read_secret(&key_path)?;
        let expected_sans = leaf.expected_sans(masters);
        let reason: Option<String> = if force {
            Some("rotated".to_owned())
        } else {
            match (crt, key) {
                (None, None) => None,
                (Some(_), None) => Some(format!("{} is missing", key_path.display())),
                (None, Some(_)) => Some(format!("{} is missing", crt_path.display())),
                (Some(c), Some(k)) => {
                    let pair = CertAndKey {
                        cert_pem: utf8(&crt_path, c)?,
                        key_pem: utf8(&key_path, k)?,
                    };
                    let checked = check_leaf(
                        &crt_path,
                        &key_path,
                        &pair,
                        &ca_der,
                        &dir.join(CA_CERT_FILE),
                        &leaf.common_name(),
                        &expected_sans,
                    )?;
                    match checked {
                        None => {
                            out.insert(*leaf, pair);
                            continue;
                        }
                        Some(r) => Some(r),
                    }
                }
            }
        };
        let pair = issue_leaf(*leaf, &expected_sans, &issuer, rng)?;
        write_secret(&key_path, pair.key_pem.as_bytes())?;
        write_secret(&crt_path, pair.cert_pem.as_bytes())?;
        events.push(match reason {
            None => SecretEvent::Created {
                name: format!("{TLS_DIR}/{}.crt", leaf.stem()),
            },
            Some(reason) => SecretEvent::Reissued {
                leaf: *leaf,
                reason,
            },
        });
        out.insert(*leaf, pair);
    }

    // Report leftovers (e.g. certs of a master no longer in the config).
    let known: BTreeSet<String> = wanted
        .iter()
        .flat_map(|l| [format!("{}.crt", l.stem()), format!("{}.key", l.stem())])
        .collect();
    let tls = dir.join(TLS_DIR);
    let mut unused = Vec::new();
    for entry in fs::read_dir(&tls).map_err(|source| SecretsError::Io {
        path: tls.clone(),
        source,
    })? {
        let entry = entry.map_err(|source| SecretsError::Io {
            path: tls.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && !known.contains(&name) {
            unused.push(entry.path());
        }
    }
    unused.sort();
    events.extend(unused.into_iter().map(|path| SecretEvent::Unused { path }));
    Ok(out)
}

/// `Ok(None)`: the leaf fits. `Ok(Some(reason))`: re-issue it. `Err`: corrupt file.
fn check_leaf(
    crt_path: &Path,
    key_path: &Path,
    pair: &CertAndKey,
    ca_der: &[u8],
    ca_path: &Path,
    expected_cn: &str,
    expected_sans: &BTreeSet<San>,
) -> Result<Option<String>, SecretsError> {
    let key = KeyPair::from_pem(&pair.key_pem).map_err(|e| SecretsError::Corrupt {
        path: key_path.to_path_buf(),
        reason: format!("not a PKCS#8 private key: {e}"),
    })?;
    let der = pem_decode(crt_path, pair.cert_pem.as_bytes(), "CERTIFICATE")?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| SecretsError::Corrupt {
            path: crt_path.to_path_buf(),
            reason: format!("not an X.509 certificate: {e}"),
        })?;
    let (_, ca) =
        x509_parser::parse_x509_certificate(ca_der).map_err(|e| SecretsError::Corrupt {
            path: ca_path.to_path_buf(),
            reason: format!("not an X.509 certificate: {e}"),
        })?;

    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Ok(Some(format!(
            "it does not belong to the key in {}",
            key_path.display()
        )));
    }
    if cert.verify_signature(Some(ca.public_key())).is_err() {
        return Ok(Some(
            "it is not signed by the current cluster CA".to_owned(),
        ));
    }
    let cn: Vec<&str> = cert
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .collect();
    if cn != [expected_cn] {
        return Ok(Some(format!(
            "its common name {cn:?} is not `{expected_cn}`"
        )));
    }
    let found = cert_sans(&cert).map_err(|reason| SecretsError::Corrupt {
        path: crt_path.to_path_buf(),
        reason,
    })?;
    if &found != expected_sans {
        let fmt_set = |s: &BTreeSet<San>| {
            s.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Ok(Some(format!(
            "its names [{}] differ from what the config needs [{}]",
            fmt_set(&found),
            fmt_set(expected_sans)
        )));
    }
    let now = unix_now();
    let not_after = cert.validity().not_after.timestamp();
    if not_after - now < RENEW_BEFORE_SECS {
        return Ok(Some(format!(
            "it expires within 30 days (not after {})",
            cert.validity().not_after
        )));
    }
    Ok(None)
}

fn cert_sans(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<BTreeSet<San>, String> {
    use x509_parser::extensions::GeneralName;
    let mut out = BTreeSet::new();
    let ext = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?;
    if let Some(ext) = ext {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    out.insert(San::Dns((*d).to_owned()));
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => {
                            let mut a = [0u8; 4];
                            a.copy_from_slice(b);
                            IpAddr::from(a)
                        }
                        16 => {
                            let mut a = [0u8; 16];
                            a.copy_from_slice(b);
                            IpAddr::from(a)
                        }
                        n => return Err(format!("subjectAltName IP of {n} bytes")),
                    };
                    out.insert(San::Ip(ip));
                }
                other => {
                    out.insert(San::Other(format!("{other:?}")));
                }
            }
        }
    }
    Ok(out)
}

fn check_ca(dir: &Path, ca: &CertAndKey) -> Result<(), SecretsError> {
    let key_path = dir.join(CA_KEY_FILE);
    let crt_path = dir.join(CA_CERT_FILE);
    let key = KeyPair::from_pem(&ca.key_pem).map_err(|e| SecretsError::Corrupt {
        path: key_path.clone(),
        reason: format!("not a PKCS#8 private key: {e}"),
    })?;
    let der = pem_decode(&crt_path, ca.cert_pem.as_bytes(), "CERTIFICATE")?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| SecretsError::Corrupt {
            path: crt_path.clone(),
            reason: format!("not an X.509 certificate: {e}"),
        })?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(SecretsError::Corrupt {
            path: crt_path,
            reason: format!("the CA certificate does not match {}", key_path.display()),
        });
    }
    if !cert.is_ca() {
        return Err(SecretsError::Corrupt {
            path: crt_path,
            reason: "not a CA certificate (basicConstraints CA:FALSE)".to_owned(),
        });
    }
    Ok(())
}

fn new_ca(rng: &SystemRandom) -> Result<CertAndKey, SecretsError> {
    let gen_err = |e: rcgen::Error| SecretsError::Generate {
        what: "cluster CA".to_owned(),
        reason: e.to_string(),
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Basalt cluster CA");
    dn.push(DnType::OrganizationName, "Basalt");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_YEARS);
    params.serial_number = Some(random_serial(rng, "cluster CA")?);
    let cert = params.self_signed(&key).map_err(gen_err)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn issue_leaf(
    leaf: Leaf,
    sans: &BTreeSet<San>,
    issuer: &Issuer<'_, KeyPair>,
    rng: &SystemRandom,
) -> Result<CertAndKey, SecretsError> {
    let what = format!("certificate {leaf}");
    let gen_err = |e: rcgen::Error| SecretsError::Generate {
        what: what.clone(),
        reason: e.to_string(),
    };
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, leaf.common_name());
    dn.push(DnType::OrganizationName, "Basalt");
    params.distinguished_name = dn;
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s {
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            San::Dns(d) => d.clone().try_into().map(SanType::DnsName),
            San::Other(o) => Err(rcgen::Error::InvalidAsn1String(
                rcgen::InvalidAsn1String::Ia5String(o.clone()),
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(gen_err)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = leaf.extended_key_usages();
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, LEAF_YEARS);
    params.serial_number = Some(random_serial(rng, &what)?);
    let cert = params.signed_by(&key, issuer).map_err(gen_err)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn random_serial(rng: &SystemRandom, what: &str) -> Result<SerialNumber, SecretsError> {
    let mut b = [0u8; 16];
    fill(rng, &mut b, what)?;
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // no leading zero byte to strip
    Ok(SerialNumber::from_slice(&b))
}

fn fill(rng: &SystemRandom, buf: &mut [u8], what: &str) -> Result<(), SecretsError> {
    rng.fill(buf).map_err(|_| SecretsError::Generate {
        what: what.to_owned(),
        reason: "the system random number generator failed".to_owned(),
    })
}

fn new_ed25519_pem(rng: &SystemRandom, what: &str) -> Result<String, SecretsError> {
    let doc = Ed25519KeyPair::generate_pkcs8(rng).map_err(|_| SecretsError::Generate {
        what: what.to_owned(),
        reason: "ring could not generate an Ed25519 key".to_owned(),
    })?;
    Ok(pem_encode("PRIVATE KEY", doc.as_ref()))
}

fn parse_ed25519_pem(path: &Path, bytes: &[u8]) -> Result<Ed25519KeyPair, SecretsError> {
    let der = pem_decode(path, bytes, "PRIVATE KEY")?;
    Ed25519KeyPair::from_pkcs8(&der)
        .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der))
        .map_err(|e| SecretsError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("not an Ed25519 PKCS#8 key: {e}"),
        })
}

fn new_join_credential(rng: &SystemRandom) -> Result<String, SecretsError> {
    let mut b = [0u8; 32];
    fill(rng, &mut b, "join credential")?;
    Ok(hex::encode(b))
}

fn parse_join_credential(path: &Path, bytes: &[u8]) -> Result<String, SecretsError> {
    let s = std::str::from_utf8(bytes)
        .unwrap_or("")
        .trim_end_matches('\n');
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(s.to_owned())
    } else {
        Err(SecretsError::Corrupt {
            path: path.to_path_buf(),
            reason: "expected 64 lowercase hex characters".to_owned(),
        })
    }
}

fn new_cluster_id(rng: &SystemRandom) -> Result<String, SecretsError> {
    let mut b = [0u8; 16];
    fill(rng, &mut b, "cluster id")?;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Whether `s` has the form of a cluster id (lowercase UUID text).
pub fn is_cluster_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
        })
}

fn parse_cluster_id(path: &Path, bytes: &[u8]) -> Result<String, SecretsError> {
    let s = std::str::from_utf8(bytes)
        .unwrap_or("")
        .trim_end_matches('\n');
    if is_cluster_id(s) {
        Ok(s.to_owned())
    } else {
        Err(SecretsError::Corrupt {
            path: path.to_path_buf(),
            reason: "expected a lowercase UUID like 0f8fad5b-d9cb-469f-a165-70867728950e"
                .to_owned(),
        })
    }
}

fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, SecretsError> {
    String::from_utf8(bytes).map_err(|_| SecretsError::Corrupt {
        path: path.to_path_buf(),
        reason: "not UTF-8 text (expected PEM)".to_owned(),
    })
}

// --- PEM -------------------------------------------------------------------

/// PEM-encodes `der` with 64-character lines and a trailing newline.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes the single PEM block labelled `label` in `bytes`.
pub(crate) fn pem_decode(path: &Path, bytes: &[u8], label: &str) -> Result<Vec<u8>, SecretsError> {
    pem_decode_str(bytes, label).map_err(|reason| SecretsError::Corrupt {
        path: path.to_path_buf(),
        reason,
    })
}

pub(crate) fn pem_decode_str(bytes: &[u8], label: &str) -> Result<Vec<u8>, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text (expected PEM)".to_owned())?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| format!("no `{begin}` line"))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| format!("no `{end}` line"))?
        + start;
    let body: String = text[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| format!("bad base64 in PEM body: {e}"))
}

/// `PUBLIC KEY` PEM (SubjectPublicKeyInfo) of a raw Ed25519 public key.
pub(crate) fn ed25519_spki_pem(raw: &[u8; 32]) -> String {
    pem_encode("PUBLIC KEY", &ed25519_spki_der(raw))
}

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410).
pub(crate) const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

pub(crate) fn ed25519_spki_der(raw: &[u8; 32]) -> Vec<u8> {
    let mut v = ED25519_SPKI_PREFIX.to_vec();
    v.extend_from_slice(raw);
    v
}

// --- files -----------------------------------------------------------------

fn exists(path: &Path) -> Result<bool, SecretsError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(SecretsError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn ensure_dir(dir: &Path) -> Result<(), SecretsError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mode = m.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(SecretsError::InsecurePermissions {
                    path: dir.to_path_buf(),
                    mode,
                    want: 0o700,
                });
            }
            Ok(())
        }
        Ok(_) => Err(SecretsError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::other("not a directory"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| SecretsError::Io {
                path: dir.to_path_buf(),
                source,
            }),
        Err(source) => Err(SecretsError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Reads a secret file; `None` if it does not exist. Refuses group/other access.
fn read_secret(path: &Path) -> Result<Option<Vec<u8>>, SecretsError> {
    let io = |source| SecretsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if !meta.is_file() {
        return Err(SecretsError::Corrupt {
            path: path.to_path_buf(),
            reason: "not a regular file".to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretsError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
            want: 0o600,
        });
    }
    fs::read(path).map(Some).map_err(io)
}

/// Writes `bytes` to `path` atomically with mode 0600.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), SecretsError> {
    let io = |p: &Path, source| SecretsError::Io {
        path: p.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    drop(f);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

// --- time ------------------------------------------------------------------

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Sets the validity of `params` to (yesterday, yesterday + `years`), UTC dates.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let days = unix_now().div_euclid(86_400) - 1;
    let (y, m, d) = civil_from_days(days);
    let end_d = if m == 2 && d == 29 { 28 } else { d };
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = rcgen::date_time_ymd(y + years, m, end_d);
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        i32::try_from(y).unwrap_or(9999),
        u8::try_from(m).unwrap_or(1),
        u8::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn pem_round_trip() {
        let der: Vec<u8> = (0..=200u8).collect();
        let pem = pem_encode("THING", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(pem_decode_str(pem.as_bytes(), "THING").unwrap(), der);
        assert!(pem_decode_str(pem.as_bytes(), "OTHER").is_err());
    }

    #[test]
    fn cluster_ids() {
        let id = new_cluster_id(&SystemRandom::new()).unwrap();
        assert!(is_cluster_id(&id), "{id}");
        assert_eq!(&id[14..15], "4");
        assert!(!is_cluster_id("0F8FAD5B-D9CB-469F-A165-70867728950E"));
        assert!(!is_cluster_id("0f8fad5bd9cb469fa16570867728950e"));
    }

    #[test]
    fn rotate_target_names() {
        for t in RotateTarget::ALL {
            assert_eq!(t.name().parse::<RotateTarget>().unwrap(), t);
            assert!(!t.breaks().is_empty());
        }
        let e = "cert".parse::<RotateTarget>().unwrap_err();
        assert!(
            e.contains("signing-key, ca, iam-key, join-credential, certs"),
            "{e}"
        );
    }
}
