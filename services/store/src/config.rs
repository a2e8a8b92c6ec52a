//! How to reach etcd.

use crate::StoreError;
use crate::keys::DEFAULT_PREFIX;
use std::path::PathBuf;
use std::time::Duration;

/// PEM files for mutual TLS to etcd (the genconf certificates on a node).
///
/// etcd (Go) accepts RSA and ECDSA keys; it rejects Ed25519 certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle that signed etcd's server certificates.
    pub ca: PathBuf,
    /// Our client certificate (etcd runs with `--client-cert-auth`).
    pub cert: PathBuf,
    /// The client certificate's private key (PKCS#8 or SEC1 PEM).
    pub key: PathBuf,
}

/// Connection settings for [`crate::Store::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// etcd client URLs: `http://10.0.0.1:2379`, `https://...`, or `host:port` (the scheme
    /// then follows `tls`). At least one.
    pub endpoints: Vec<String>,
    /// Mutual TLS; when set every endpoint must be `https://` or scheme-less.
    pub tls: Option<TlsFiles>,
    /// Root of every key, starts and ends with `/`. Default `/basalt/v1/`.
    pub prefix: String,
    /// How long [`crate::Store::connect`] waits for a first answer from etcd.
    pub dial_timeout: Duration,
    /// Upper bound for each unary request (get, put, txn, lease grant...). Watches and
    /// keep-alive streams are not bounded by it.
    pub request_timeout: Duration,
}

impl StoreConfig {
    /// A plain-HTTP configuration with the default prefix and timeouts.
    pub fn new<I, S>(endpoints: I) -> StoreConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        StoreConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            tls: None,
            prefix: DEFAULT_PREFIX.to_string(),
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// Same configuration with TLS files.
    pub fn with_tls(mut self, tls: TlsFiles) -> StoreConfig {
        self.tls = Some(tls);
        self
    }

    /// Same configuration with another root prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> StoreConfig {
        self.prefix = prefix.into();
        self
    }

    /// Checks the configuration without touching the network; every problem names its
    /// field.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.endpoints.is_empty() {
            return Err(StoreError::InvalidConfig {
                field: "endpoints",
                reason: "at least one etcd endpoint is required".to_string(),
            });
        }
        for ep in &self.endpoints {
            let rest = if let Some(rest) = ep.strip_prefix("https://") {
                rest
            } else if let Some(rest) = ep.strip_prefix("http://") {
                if self.tls.is_some() {
                    return Err(StoreError::InvalidConfig {
                        field: "endpoints",
                        reason: format!("{ep:?} is http:// but tls is configured"),
                    });
                }
                rest
            } else if ep.contains("://") {
                return Err(StoreError::InvalidConfig {
                    field: "endpoints",
                    reason: format!("{ep:?}: only http:// and https:// are supported"),
                });
            } else {
                ep.as_str()
            };
            let rest = rest.trim_end_matches('/');
            let port_ok = rest
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(StoreError::InvalidConfig {
                    field: "endpoints",
                    reason: format!("{ep:?} is not host:port"),
                });
            }
        }
        if !self.prefix.starts_with('/') || !self.prefix.ends_with('/') {
            return Err(StoreError::InvalidConfig {
                field: "prefix",
                reason: format!("{:?} must start and end with '/'", self.prefix),
            });
        }
        if self.dial_timeout.is_zero() {
            return Err(StoreError::InvalidConfig {
                field: "dial_timeout",
                reason: "must be positive".to_string(),
            });
        }
        if self.request_timeout.is_zero() {
            return Err(StoreError::InvalidConfig {
                field: "request_timeout",
                reason: "must be positive".to_string(),
            });
        }
        Ok(())
    }

    /// The endpoints as the etcd client gets them: scheme-less ones get `https://` when TLS
    /// is configured and `http://` otherwise.
    pub(crate) fn client_endpoints(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|ep| {
                if ep.contains("://") {
                    ep.clone()
                } else if self.tls.is_some() {
                    format!("https://{ep}")
                } else {
                    format!("http://{ep}")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(err: StoreError) -> &'static str {
        match err {
            StoreError::InvalidConfig { field, .. } => field,
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(StoreConfig::new(["127.0.0.1:2379"]).validate().is_ok());
        assert!(
            StoreConfig::new(["http://a:1", "https://b:2/"])
                .validate()
                .is_ok()
        );
        let empty: [&str; 0] = [];
        assert_eq!(
            field(StoreConfig::new(empty).validate().unwrap_err()),
            "endpoints"
        );
        assert_eq!(
            field(StoreConfig::new(["localhost"]).validate().unwrap_err()),
            "endpoints"
        );
        assert_eq!(
            field(StoreConfig::new(["unix://x:1"]).validate().unwrap_err()),
            "endpoints"
        );
        let tls = TlsFiles {
            ca: "ca".into(),
            cert: "c".into(),
            key: "k".into(),
        };
        let err = StoreConfig::new(["http://a:1"])
            .with_tls(tls.clone())
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("http:// but tls"), "{err}");
        assert_eq!(
            field(
                StoreConfig::new(["a:1"])
                    .with_prefix("basalt")
                    .validate()
                    .unwrap_err()
            ),
            "prefix"
        );
        let mut c = StoreConfig::new(["a:1"]);
        c.dial_timeout = Duration::ZERO;
        assert_eq!(field(c.validate().unwrap_err()), "dial_timeout");
        assert_eq!(
            StoreConfig::new(["a:1"]).with_tls(tls).client_endpoints(),
            vec!["https://a:1"]
        );
        assert_eq!(
            StoreConfig::new(["a:1"]).client_endpoints(),
            vec!["http://a:1"]
        );
    }
}
