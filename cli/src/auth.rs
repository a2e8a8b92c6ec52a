//! `basalt auth login | logout | list-providers`, and the login flow `cluster setup`
//! shares.
//!
//! A user logs in with a password: `--username`/`--password`, the password from the
//! environment variable named by `--password-env`, or prompts on a terminal. A service
//! account logs in with `--username <uid> --private-key <pem>`: the CLI signs a
//! short-lived login token `{"uid","exp"}` (RS256, ES256 or EdDSA by key type) and the
//! IAM answers `POST /acs/api/v1/auth/login` with the cluster token, stored as
//! `core.dcos_acs_token`.

use crate::client::{Client, now_unix};
use crate::config::{BasaltDir, StoredCluster};
use crate::error::{CliError, Result};
use crate::output::{self, Table};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::PathBuf;

/// The login path (open route of the gateway).
pub const LOGIN_PATH: &str = "/acs/api/v1/auth/login";
/// The logout path.
pub const LOGOUT_PATH: &str = "/acs/api/v1/auth/logout";
/// How long a service account's login token is valid.
const LOGIN_TOKEN_LIFETIME_S: u64 = 300;

/// How to log in.
#[derive(Debug, Clone, Default, Args)]
pub struct Credentials {
    /// User name (uid), or the service account's uid with `--private-key`.
    #[arg(long, alias = "uid")]
    pub username: Option<String>,
    /// Password (visible in the process list: prefer `--password-env` or the prompt).
    #[arg(long, conflicts_with_all = ["password_env", "private_key"])]
    pub password: Option<String>,
    /// Name of an environment variable holding the password.
    #[arg(long, value_name = "VAR", conflicts_with = "private_key")]
    pub password_env: Option<String>,
    /// Service account private key (PEM: PKCS#8, or PKCS#1 RSA).
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<PathBuf>,
}

/// `basalt auth …`.
#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    /// Log in to the attached cluster and store the token.
    Login(Credentials),
    /// Log out: revoke the token at the cluster and forget it.
    Logout,
    /// Show the login methods the cluster accepts.
    ListProviders {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn prompt(text: &str) -> Result<String> {
    use std::io::Write;
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("reading {text}: {e}")))?;
    Ok(line.trim().to_owned())
}

fn username(creds: &Credentials) -> Result<String> {
    if let Some(u) = &creds.username {
        return Ok(u.clone());
    }
    if std::io::stdin().is_terminal() {
        return prompt("Username: ");
    }
    Err(CliError::Usage(
        "no username: pass --username (or run on a terminal to be asked)".into(),
    ))
}

fn password(creds: &Credentials) -> Result<String> {
    if let Some(p) = &creds.password {
        return Ok(p.clone());
    }
    if let Some(var) = &creds.password_env {
        return std::env::var(var).map_err(|_| {
            CliError::Usage(format!(
                "--password-env {var}: the environment variable {var} is not set"
            ))
        });
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("Password: ")
            .map_err(|e| CliError::Usage(format!("reading the password: {e}")));
    }
    Err(CliError::Usage(
        "no password: pass --password-env <VAR> or --password (or run on a terminal to be asked)"
            .into(),
    ))
}

fn pem_body(pem: &str, path: &std::path::Path) -> Result<(String, Vec<u8>)> {
    let bad = |why: &str| CliError::Usage(format!("--private-key {}: {why}", path.display()));
    let begin = pem
        .find("-----BEGIN ")
        .ok_or_else(|| bad("not a PEM file"))?;
    let rest = &pem[begin + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or_else(|| bad("not a PEM file"))?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end = rest
        .find("-----END ")
        .ok_or_else(|| bad("PEM without an END line"))?;
    let b64: String = rest[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(&format!("bad base64 in the PEM: {e}")))?;
    Ok((label, der))
}

/// Signs a service account login token `{"uid","exp"}` with the key in `pem`.
pub fn service_login_token(uid: &str, pem: &str, path: &std::path::Path) -> Result<String> {
    use ring::signature::{self, KeyPair as _};
    let (label, der) = pem_body(pem, path)?;
    let rng = ring::rand::SystemRandom::new();
    let claims = json!({"uid": uid, "exp": now_unix() + LOGIN_TOKEN_LIFETIME_S});
    let encode = |alg: &str| {
        let header = json!({"alg": alg, "typ": "JWT"});
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    };
    let finish = |input: String, sig: &[u8]| format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    let sign_failed = || {
        CliError::Usage(format!(
            "--private-key {}: signing the login token failed",
            path.display()
        ))
    };
    match label.as_str() {
        "PRIVATE KEY" => {
            if let Ok(k) = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
                let _ = k.public_key();
                let input = encode("EdDSA");
                let sig = k.sign(input.as_bytes());
                return Ok(finish(input, sig.as_ref()));
            }
            if let Ok(k) = signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &der,
                &rng,
            ) {
                let input = encode("ES256");
                let sig = k.sign(&rng, input.as_bytes()).map_err(|_| sign_failed())?;
                return Ok(finish(input, sig.as_ref()));
            }
            if let Ok(k) = signature::RsaKeyPair::from_pkcs8(&der) {
                return rsa_sign(&k, &encode("RS256"), &rng).ok_or_else(sign_failed);
            }
            Err(CliError::Usage(format!(
                "--private-key {}: not an RSA, EC P-256 or Ed25519 PKCS#8 key",
                path.display()
            )))
        }
        "RSA PRIVATE KEY" => {
            let k = signature::RsaKeyPair::from_der(&der).map_err(|e| {
                CliError::Usage(format!(
                    "--private-key {}: bad RSA key: {e}",
                    path.display()
                ))
            })?;
            rsa_sign(&k, &encode("RS256"), &rng).ok_or_else(sign_failed)
        }
        other => Err(CliError::Usage(format!(
            "--private-key {}: a {other:?} PEM is not supported; convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt`",
            path.display()
        ))),
    }
}

fn rsa_sign(
    k: &ring::signature::RsaKeyPair,
    input: &str,
    rng: &ring::rand::SystemRandom,
) -> Option<String> {
    let mut sig = vec![0u8; k.public().modulus_len()];
    k.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        rng,
        input.as_bytes(),
        &mut sig,
    )
    .ok()?;
    Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// Logs in at `client`'s cluster with `creds`; returns the token.
pub async fn obtain_token(client: &Client, creds: &Credentials) -> Result<String> {
    let uid = username(creds)?;
    let body = match &creds.private_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|source| CliError::Io {
                what: "reading the private key",
                path: path.clone(),
                source,
            })?;
            json!({"uid": uid, "token": service_login_token(&uid, &pem, path)?})
        }
        None => json!({"uid": uid, "password": password(creds)?}),
    };
    let anon = client.clone().with_token(None);
    let a = anon.raw(Method::POST, LOGIN_PATH, &[], Some(&body)).await?;
    match a.status {
        200 => {}
        400 | 401 | 403 | 429 => {
            return Err(CliError::LoginFailed {
                url: client.base().to_owned(),
                detail: a.message(),
            });
        }
        404 => {
            return Err(CliError::MissingEndpoint {
                what: "login".into(),
                path: LOGIN_PATH.into(),
                detail: a.message(),
            });
        }
        status => {
            return Err(match a.check() {
                Err(e) => e,
                Ok(a) => CliError::BadResponse {
                    url: a.url,
                    detail: format!("the login answered {status}"),
                },
            });
        }
    }
    let v = a.json()?;
    v.get("token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| CliError::BadResponse {
            url: a.url.clone(),
            detail: "no \"token\" in the login answer".into(),
        })
}

/// Logs in to `c` and stores the token.
pub async fn login(c: &mut StoredCluster, creds: &Credentials) -> Result<()> {
    // An expired stored token must not stop a new login.
    let mut fresh = c.clone();
    fresh.config.core.dcos_acs_token = None;
    let client = Client::for_cluster(&fresh)?;
    let token = obtain_token(&client, creds).await?;
    c.config.core.dcos_acs_token = Some(token);
    c.save()
}

/// Runs `basalt auth …`.
pub async fn run(dirs: &BasaltDir, cmd: AuthCmd) -> Result<()> {
    let mut c = dirs.attached()?;
    match cmd {
        AuthCmd::Login(creds) => {
            login(&mut c, &creds).await?;
            eprintln!("Login successful!");
            Ok(())
        }
        AuthCmd::Logout => {
            if let Some(token) = c.config.core.dcos_acs_token.clone() {
                let mut fresh = c.clone();
                fresh.config.core.dcos_acs_token = None;
                let client = Client::for_cluster(&fresh)?.with_token(Some(token));
                // Revoke at the cluster; an already invalid token is fine to forget.
                match client.raw(Method::POST, LOGOUT_PATH, &[], None).await {
                    Ok(a) if a.status < 300 || a.status == 401 => {}
                    Ok(a) => eprintln!(
                        "warning: the cluster did not revoke the token ({}: {}); it is forgotten here",
                        a.status,
                        a.message()
                    ),
                    Err(e) => eprintln!("warning: {e}; the token is forgotten here"),
                }
            }
            c.config.core.dcos_acs_token = None;
            c.save()?;
            eprintln!("Logged out of cluster {}", c.name());
            Ok(())
        }
        AuthCmd::ListProviders { json } => {
            let client = Client::for_cluster(&c)?.with_token(None);
            let a = client
                .raw(Method::GET, "/acs/api/v1/auth/providers", &[], None)
                .await?;
            let providers = if a.status == 200 {
                a.json()?
            } else {
                // Basalt's IAM has exactly these two login methods and no providers
                // endpoint (DC/OS's third-party OIDC/SAML providers do not exist here).
                json!({
                    "dcos-users": {
                        "authentication-type": "dcos-uid-password",
                        "description": "Log in using a standard user account (username and password)",
                        "client-method": "dcos-credential-post-receive-authtoken",
                    },
                    "dcos-services": {
                        "authentication-type": "dcos-uid-servicekey",
                        "description": "Log in using a service account (username and private key)",
                        "client-method": "dcos-servicecredential-post-receive-authtoken",
                    },
                })
            };
            if json {
                return output::print_json(&providers);
            }
            let mut t = Table::new(&["PROVIDER ID", "AUTHENTICATION TYPE"]);
            if let Some(m) = providers.as_object() {
                for (id, p) in m {
                    t.row(vec![id.clone(), output::s(p, "description").to_owned()]);
                }
            }
            t.print();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pem(label: &str, der: &[u8]) -> String {
        let b = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<String> = b
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn service_tokens_by_key_type() {
        let rng = ring::rand::SystemRandom::new();
        let p = std::path::Path::new("k.pem");
        let ed = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let t = service_login_token("svc", &pem("PRIVATE KEY", ed.as_ref()), p).unwrap();
        let header = URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap();
        assert!(String::from_utf8_lossy(&header).contains("EdDSA"));
        let ec = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let t = service_login_token("svc", &pem("PRIVATE KEY", ec.as_ref()), p).unwrap();
        let header = URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap();
        assert!(String::from_utf8_lossy(&header).contains("ES256"));
        let e = service_login_token("svc", "junk", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("k.pem") && e.contains("PEM"), "{e}");
        let e = service_login_token("svc", &pem("EC PRIVATE KEY", b"x"), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("openssl pkcs8"), "{e}");
    }
}
