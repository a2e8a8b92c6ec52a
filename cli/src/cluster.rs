//! `basalt cluster setup | list | attach | remove`.
//!
//! `setup <url>`:
//! 1. fetches the cluster CA from `/ca/dcos-ca.crt` (the one request made without
//!    verification), prints its SHA-256 fingerprint and pins it when it equals
//!    `--ca-fingerprint`, or when confirmed on a terminal, or with `--no-check`; a
//!    different fingerprint is refused and nothing is written;
//! 2. checks that the gateway's certificate verifies against that CA (host name
//!    included) by reading `/dcos-metadata/dcos-version.json`;
//! 3. logs in (see [`crate::auth`]);
//! 4. names the folder by `CLUSTER_ID` from `/metadata` and attaches the cluster.
//!
//! `--insecure` skips 1–2 (no TLS verification at all, stored as `ssl_verify = "false"`).

use crate::auth::{self, Credentials};
use crate::client::{self, Client, Trust};
use crate::config::{BasaltDir, ClusterConfig, ClusterSection, Core};
use crate::error::{CliError, Result};
use crate::output::{self, Table};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::IsTerminal;

/// Where the gateway serves the cluster CA (DC/OS's path).
pub const CA_PATH: &str = "/ca/dcos-ca.crt";

/// `basalt cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Set up a cluster: pin its CA, log in, attach it.
    Setup {
        /// The cluster URL, e.g. `https://master.example.com`.
        url: String,
        /// The CA fingerprint you expect (`sha256:<hex>`); anything else is refused.
        #[arg(long, value_name = "sha256:HEX")]
        ca_fingerprint: Option<String>,
        /// Pin the served CA without asking (only on a network you trust).
        #[arg(long, conflicts_with = "ca_fingerprint")]
        no_check: bool,
        /// Do not verify TLS at all (not recommended).
        #[arg(long, conflicts_with_all = ["ca_fingerprint", "no_check"])]
        insecure: bool,
        /// The name for `cluster list` / `cluster attach` (default: the cluster's name).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        creds: Credentials,
    },
    /// List the configured clusters.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Only the attached cluster.
        #[arg(long)]
        attached: bool,
    },
    /// Make a configured cluster the one commands talk to.
    Attach {
        /// Name or id.
        name: String,
    },
    /// Forget a cluster (its token and pinned CA).
    Remove {
        /// Name or id (default: the attached cluster).
        name: Option<String>,
        /// Forget every cluster.
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
}

/// Fetches the CA without verification; returns (PEM, fingerprint).
pub async fn fetch_ca(url: &str) -> Result<(String, String)> {
    let c = Client::new(url, &Trust::Insecure, None)?;
    let a = c.raw(Method::GET, CA_PATH, &[], None).await?;
    if a.status != 200 {
        return Err(CliError::MissingEndpoint {
            what: "fetching the cluster CA".into(),
            path: CA_PATH.into(),
            detail: format!(
                "answered {}: {}; pass --insecure to skip TLS verification (not recommended)",
                a.status,
                a.message()
            ),
        });
    }
    let pem = String::from_utf8_lossy(&a.body).into_owned();
    let der = client::pem_certificate_der(&pem).ok_or_else(|| CliError::BadResponse {
        url: a.url.clone(),
        detail: "the cluster CA is not a PEM certificate".into(),
    })?;
    Ok((pem, client::fingerprint(&der)))
}

fn confirm(question: &str) -> Result<bool> {
    use std::io::Write;
    eprint!("{question} [yes/no] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("reading the answer: {e}")))?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// A folder name from a cluster id (or URL): only `[A-Za-z0-9._-]`.
fn folder_id(raw: &str) -> String {
    let id: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.chars().all(|c| c == '.') {
        format!("cluster-{}", id.len())
    } else {
        id
    }
}

struct SetupArgs {
    url: String,
    ca_fingerprint: Option<String>,
    no_check: bool,
    insecure: bool,
    name: Option<String>,
    creds: Credentials,
}

async fn setup(dirs: &BasaltDir, a: SetupArgs) -> Result<()> {
    let url = client::normalize_url(&a.url)?;
    let expected = a
        .ca_fingerprint
        .as_deref()
        .map(client::normalize_fingerprint)
        .transpose()?;
    if url.starts_with("http://") && !a.insecure {
        return Err(CliError::Usage(format!(
            "{url}: the gateway serves the API on https (port 80 only redirects): use https://…, or --insecure for a plain-HTTP gateway"
        )));
    }
    let (trust, ca) = if a.insecure {
        eprintln!("warning: TLS verification is off for {url}");
        (Trust::Insecure, None)
    } else {
        let (pem, actual) = fetch_ca(&url).await?;
        eprintln!("SHA256 fingerprint of the cluster CA: {actual}");
        match &expected {
            Some(e) if *e != actual => {
                return Err(CliError::FingerprintMismatch {
                    url,
                    expected: e.clone(),
                    actual,
                });
            }
            Some(_) => {}
            None if a.no_check => {}
            None if std::io::stdin().is_terminal() => {
                if !confirm("Is this the correct fingerprint?")? {
                    return Err(CliError::Aborted(
                        "setup aborted: the CA was not confirmed".into(),
                    ));
                }
            }
            None => {
                return Err(CliError::Usage(format!(
                    "cannot confirm the CA fingerprint without a terminal: pass --ca-fingerprint {actual} after checking it with your cluster administrator (or --no-check)"
                )));
            }
        }
        (Trust::Pinned(pem.clone()), Some((pem, actual)))
    };
    let client = Client::new(&url, &trust, None)?;
    // The served certificate must verify against the pinned CA.
    let version = client.get("/dcos-metadata/dcos-version.json").await?;
    let token = auth::obtain_token(&client, &a.creds).await?;
    let client = client.with_token(Some(token.clone()));
    let cluster_id = match client.get("/metadata").await {
        Ok(v) => output::s(&v, "CLUSTER_ID").to_owned(),
        Err(e) => {
            tracing::debug!(error = %e, "no /metadata");
            String::new()
        }
    };
    let id = if cluster_id.is_empty() {
        folder_id(
            url.trim_start_matches("https://")
                .trim_start_matches("http://"),
        )
    } else {
        folder_id(&cluster_id)
    };
    let name = match a.name {
        Some(n) => n,
        None => match client.get("/mesos/master/flags").await {
            Ok(v) => {
                let n = v
                    .pointer("/flags/cluster")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if n.is_empty() {
                    id.clone()
                } else {
                    n.to_owned()
                }
            }
            Err(_) => id.clone(),
        },
    };
    let config = ClusterConfig {
        core: Core {
            dcos_url: url.clone(),
            dcos_acs_token: Some(token),
            ssl_verify: if ca.is_some() { "true" } else { "false" }.to_owned(),
            ca_fingerprint: ca.as_ref().map(|(_, f)| f.clone()),
            timeout: None,
        },
        cluster: ClusterSection { name: name.clone() },
    };
    let stored = dirs.store(&id, config, ca.as_ref().map(|(p, _)| p.as_str()))?;
    dirs.attach(&stored.id)?;
    eprintln!(
        "Cluster {name} ({id}, version {}) is set up and attached; logged in.",
        output::s(&version, "version")
    );
    Ok(())
}

/// Runs `basalt cluster …`.
pub async fn run(dirs: &BasaltDir, cmd: ClusterCmd) -> Result<()> {
    match cmd {
        ClusterCmd::Setup {
            url,
            ca_fingerprint,
            no_check,
            insecure,
            name,
            creds,
        } => {
            setup(
                dirs,
                SetupArgs {
                    url,
                    ca_fingerprint,
                    no_check,
                    insecure,
                    name,
                    creds,
                },
            )
            .await
        }
        ClusterCmd::List { json, attached } => {
            let all = dirs.list()?;
            if all.is_empty() {
                return Err(CliError::NoCluster);
            }
            let implicit = all.len() == 1;
            let rows: Vec<Value> = all
                .iter()
                .filter(|c| !attached || c.attached || implicit)
                .map(|c| {
                    json!({
                        "name": c.name(),
                        "cluster_id": c.id,
                        "url": c.config.core.dcos_url,
                        "attached": c.attached || implicit,
                        "ca_fingerprint": c.config.core.ca_fingerprint,
                        "logged_in": c.config.core.dcos_acs_token.is_some(),
                    })
                })
                .collect();
            if json {
                return output::print_json(&rows);
            }
            let mut t = Table::new(&["NAME", "ID", "STATUS", "URL"]);
            for r in &rows {
                let name = if r["attached"] == true {
                    format!("{}*", output::s(r, "name"))
                } else {
                    output::s(r, "name").to_owned()
                };
                let status = if r["logged_in"] == true {
                    "AVAILABLE"
                } else {
                    "UNAUTHENTICATED"
                };
                t.row(vec![
                    name,
                    output::s(r, "cluster_id").to_owned(),
                    status.to_owned(),
                    output::s(r, "url").to_owned(),
                ]);
            }
            t.print();
            Ok(())
        }
        ClusterCmd::Attach { name } => {
            let c = dirs.find(&name)?;
            dirs.attach(&c.id)?;
            eprintln!("Attached to cluster {} ({})", c.name(), c.id);
            Ok(())
        }
        ClusterCmd::Remove { name, all } => {
            let doomed = if all {
                dirs.list()?
            } else {
                match name {
                    Some(n) => vec![dirs.find(&n)?],
                    None => vec![dirs.attached()?],
                }
            };
            for c in doomed {
                dirs.remove(&c)?;
                eprintln!("Removed cluster {} ({})", c.name(), c.id);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_ids_are_safe() {
        assert_eq!(folder_id("abc-123"), "abc-123");
        assert_eq!(folder_id("host:443/x"), "host-443-x");
        assert_eq!(folder_id("../x"), "..-x");
        assert_eq!(folder_id(".."), "cluster-2");
    }
}
