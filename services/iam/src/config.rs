//! Service configuration, and its construction from genconf's `[auth]` table.

use crate::store::Threshold;
use basalt_genconf::config::AuthConfig;
use std::net::SocketAddr;
use std::time::Duration;

/// The default listen address (DC/OS IAM's port, loopback: the gateway fronts it).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8101";

/// How the first superuser logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedCredential {
    /// Argon2 PHC string (`auth.superuser_password_hash`).
    PasswordHash(String),
    /// SPKI PEM (`auth.superuser_public_key`).
    PublicKey(String),
}

/// The first superuser, created at start if absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperuserSeed {
    /// `auth.superuser_uid`.
    pub uid: String,
    /// Its credential.
    pub credential: SeedCredential,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Everything the service needs besides its store and signing key.
#[derive(Debug, Clone)]
pub struct IamConfig {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// Lifetime of issued tokens (genconf `auth.token_lifetime`, 5 days by default).
    pub token_lifetime: Duration,
    /// Clock leeway on `exp`/`iat`.
    pub leeway: Duration,
    /// The longest a service login token may live (10 minutes).
    pub service_login_max_lifetime: Duration,
    /// Failed logins per uid before a lockout.
    pub uid_lockout: Threshold,
    /// Failed logins per client address before a lockout.
    pub addr_lockout: Threshold,
    /// Mark cookies `Secure` (browsers reach the IAM through the TLS gateway).
    pub secure_cookies: bool,
    /// Take the client address from the last `X-Forwarded-For` entry when the peer is a
    /// loopback address (the local gateway).
    pub trust_forwarded_for: bool,
    /// The first superuser.
    pub superuser: Option<SuperuserSeed>,
}

impl Default for IamConfig {
    fn default() -> Self {
        IamConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8101)),
            issuer: "basalt-iam".to_owned(),
            token_lifetime: Duration::from_secs(5 * 24 * 3600),
            leeway: crate::jwt::DEFAULT_LEEWAY,
            service_login_max_lifetime: Duration::from_secs(600),
            uid_lockout: Threshold {
                max_failures: 5,
                window: Duration::from_secs(300),
                lockout: Duration::from_secs(900),
            },
            addr_lockout: Threshold {
                max_failures: 20,
                window: Duration::from_secs(300),
                lockout: Duration::from_secs(900),
            },
            secure_cookies: true,
            trust_forwarded_for: true,
            superuser: None,
        }
    }
}

impl IamConfig {
    /// Defaults, with the token lifetime and first superuser from genconf's `[auth]`.
    pub fn from_auth(auth: &AuthConfig) -> Result<IamConfig, ConfigError> {
        let mut c = IamConfig {
            token_lifetime: auth.token_lifetime.as_duration(),
            ..IamConfig::default()
        };
        if c.token_lifetime.is_zero() {
            return Err(ConfigError {
                field: "auth.token_lifetime",
                reason: "must be longer than 0s".to_owned(),
            });
        }
        c.superuser = match (
            &auth.superuser_uid,
            &auth.superuser_password_hash,
            &auth.superuser_public_key,
        ) {
            (None, None, None) => None,
            (None, _, _) => {
                return Err(ConfigError {
                    field: "auth.superuser_uid",
                    reason: "required with a superuser credential".to_owned(),
                });
            }
            (Some(uid), Some(hash), None) => Some(SuperuserSeed {
                uid: uid.clone(),
                credential: SeedCredential::PasswordHash(hash.clone()),
            }),
            (Some(uid), None, Some(key)) => Some(SuperuserSeed {
                uid: uid.clone(),
                credential: SeedCredential::PublicKey(key.clone()),
            }),
            (Some(_), Some(_), Some(_)) => {
                return Err(ConfigError {
                    field: "auth.superuser_password_hash",
                    reason: "give it or auth.superuser_public_key, not both".to_owned(),
                });
            }
            (Some(_), None, None) => {
                return Err(ConfigError {
                    field: "auth.superuser_password_hash",
                    reason: "required (or auth.superuser_public_key) with auth.superuser_uid"
                        .to_owned(),
                });
            }
        };
        if let Some(seed) = &c.superuser {
            crate::ids::validate_uid(&seed.uid).map_err(|e| ConfigError {
                field: "auth.superuser_uid",
                reason: e.reason,
            })?;
            if let SeedCredential::PublicKey(pem) = &seed.credential {
                crate::keys::PublicKey::from_spki_pem("auth.superuser_public_key", pem).map_err(
                    |e| ConfigError {
                        field: "auth.superuser_public_key",
                        reason: e.to_string(),
                    },
                )?;
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_genconf::config::DurationSpec;

    fn auth() -> AuthConfig {
        AuthConfig {
            enabled: true,
            superuser_uid: Some("admin".to_owned()),
            superuser_password_hash: Some(
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".to_owned(),
            ),
            superuser_public_key: None,
            token_lifetime: DurationSpec::from_secs(3600),
        }
    }

    #[test]
    fn from_auth_takes_lifetime_and_superuser() {
        let c = IamConfig::from_auth(&auth()).unwrap();
        assert_eq!(c.token_lifetime, Duration::from_secs(3600));
        let seed = c.superuser.unwrap();
        assert_eq!(seed.uid, "admin");
        assert!(matches!(seed.credential, SeedCredential::PasswordHash(_)));
    }

    #[test]
    fn from_auth_names_bad_settings() {
        let mut a = auth();
        a.superuser_public_key = Some("x".to_owned());
        assert_eq!(
            IamConfig::from_auth(&a).unwrap_err().field,
            "auth.superuser_password_hash"
        );
        a.superuser_password_hash = None;
        assert_eq!(
            IamConfig::from_auth(&a).unwrap_err().field,
            "auth.superuser_public_key"
        );
        let mut a = auth();
        a.superuser_uid = Some("bad uid".to_owned());
        assert_eq!(
            IamConfig::from_auth(&a).unwrap_err().field,
            "auth.superuser_uid"
        );
        let mut a = auth();
        a.superuser_uid = None;
        assert_eq!(
            IamConfig::from_auth(&a).unwrap_err().field,
            "auth.superuser_uid"
        );
        let none = AuthConfig {
            superuser_uid: None,
            superuser_password_hash: None,
            ..auth()
        };
        assert!(IamConfig::from_auth(&none).unwrap().superuser.is_none());
    }
}
