//! `basalt node [list] | log | diagnostics`.
//!
//! - `list`: the agents from `/mesos/master/slaves` (id, host name, IP, type — `agent`
//!   or `agent (public)` when it carries the `public_ip:true` attribute or `slave_public`
//!   reservations —, fault-domain region/zone, resources); `--json` prints the master's
//!   agent objects with `type` added.
//! - `log --leader | --mesos-id <id>`: the node's journal through DC/OS's logs API
//!   (`/system/v1/logs/v1/range/` on the leading master,
//!   `/system/v1/agent/<id>/logs/v1/range/` on an agent, `…/stream/` with `--follow`).
//!   A cluster that does not serve it gets a clear "not served" error, never made-up
//!   lines.
//! - `diagnostics`: unit health from `/system/health/v1` (the master's node health).

use crate::client::{Answer, Client};
use crate::config::BasaltDir;
use crate::error::{CliError, Result};
use crate::output::{self, Table};
use clap::{ArgGroup, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Write;

/// `basalt node …` (no subcommand: `list`).
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List the agents.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a node's journal.
    #[command(group(ArgGroup::new("node").required(true).args(["leader", "mesos_id"])))]
    Log {
        /// The leading master.
        #[arg(long)]
        leader: bool,
        /// The agent with this id.
        #[arg(long, value_name = "ID")]
        mesos_id: Option<String>,
        /// Print the last N lines.
        #[arg(long, default_value_t = 10)]
        lines: u32,
        /// Keep printing new lines.
        #[arg(long)]
        follow: bool,
    },
    /// Show the health of the master's units.
    Diagnostics {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `agent` or `agent (public)`.
pub fn agent_type(agent: &Value) -> &'static str {
    let attr = agent.pointer("/attributes/public_ip");
    let public_attr =
        attr.and_then(Value::as_str) == Some("true") || attr.and_then(Value::as_bool) == Some(true);
    let public_reserved = agent
        .pointer("/reserved_resources/slave_public")
        .is_some_and(|r| r.as_object().is_some_and(|m| !m.is_empty()));
    if public_attr || public_reserved {
        "agent (public)"
    } else {
        "agent"
    }
}

/// The IP of an agent from its `pid` (`slave(1)@ip:port`), else its host name.
pub fn agent_ip(agent: &Value) -> String {
    let pid = output::s(agent, "pid");
    pid.split_once('@')
        .and_then(|(_, hp)| hp.rsplit_once(':'))
        .map(|(h, _)| h.to_owned())
        .unwrap_or_else(|| output::s(agent, "hostname").to_owned())
}

async fn list(client: &Client, json: bool) -> Result<()> {
    let v = client.get("/mesos/master/slaves").await?;
    let mut agents: Vec<Value> = v
        .get("slaves")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for a in &mut agents {
        let t = agent_type(a);
        if let Some(m) = a.as_object_mut() {
            m.insert("type".into(), json!(t));
        }
    }
    agents.sort_by(|a, b| output::s(a, "hostname").cmp(output::s(b, "hostname")));
    if json {
        return output::print_json(&agents);
    }
    let mut t = Table::new(&[
        "HOSTNAME", "IP", "ID", "TYPE", "REGION", "ZONE", "CPUS", "MEM", "DISK",
    ]);
    for a in &agents {
        let region = a
            .pointer("/domain/fault_domain/region/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let zone = a
            .pointer("/domain/fault_domain/zone/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        t.row(vec![
            output::s(a, "hostname").to_owned(),
            agent_ip(a),
            output::s(a, "id").to_owned(),
            output::s(a, "type").to_owned(),
            output::or_dashes(region),
            output::or_dashes(zone),
            output::num_field(a, "/resources/cpus"),
            output::num_field(a, "/resources/mem"),
            output::num_field(a, "/resources/disk"),
        ]);
    }
    t.print();
    Ok(())
}

/// A "not served" error for an answer that is a 404 from the gateway's route table or a
/// 5xx because nothing listens behind the route.
fn missing(what: &str, path: &str, e: CliError) -> CliError {
    match e {
        CliError::Api {
            status, message, ..
        } if status == 404 || status >= 500 => CliError::MissingEndpoint {
            what: what.to_owned(),
            path: path.to_owned(),
            detail: format!(
                "the gateway answered {status}: {message}; this cluster has no service behind that route yet"
            ),
        },
        other => other,
    }
}

async fn log(client: &Client, mesos_id: Option<String>, lines: u32, follow: bool) -> Result<()> {
    let base = match &mesos_id {
        None => "/system/v1/logs/v1".to_owned(),
        Some(id) => format!("/system/v1/agent/{id}/logs/v1"),
    };
    let path = format!("{base}/{}/", if follow { "stream" } else { "range" });
    let query = [("skip_prev", lines.to_string())];
    if follow {
        let mut resp = client
            .stream(&path, &query, "text/plain")
            .await
            .map_err(|e| missing("node log", &path, e))?;
        let mut out = std::io::stdout();
        while let Some(chunk) = resp.chunk().await.map_err(|e| CliError::Unreachable {
            url: client.url(&path),
            detail: e.to_string(),
        })? {
            let _ = out.write_all(&chunk);
            let _ = out.flush();
        }
        return Ok(());
    }
    let a: Answer = client
        .call(Method::GET, &path, &query, None)
        .await
        .map_err(|e| missing("node log", &path, e))?;
    let _ = std::io::stdout().write_all(&a.body);
    Ok(())
}

async fn diagnostics(client: &Client, json: bool) -> Result<()> {
    let path = "/system/health/v1";
    let v = client
        .get(path)
        .await
        .map_err(|e| missing("node diagnostics", path, e))?;
    if json {
        return output::print_json(&v);
    }
    let mut t = Table::new(&["UNIT", "HEALTH", "DESCRIPTION"]);
    for u in v
        .get("units")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let health = match u.get("health").and_then(Value::as_i64) {
            Some(0) => "Healthy",
            Some(_) => "Unhealthy",
            None => "Unknown",
        };
        t.row(vec![
            output::s(u, "id").to_owned(),
            health.to_owned(),
            output::s(u, "description").to_owned(),
        ]);
    }
    t.print();
    Ok(())
}

/// Runs `basalt node …`.
pub async fn run(dirs: &BasaltDir, cmd: Option<NodeCmd>, json: bool) -> Result<()> {
    let client = Client::for_cluster(&dirs.attached()?)?;
    match cmd.unwrap_or(NodeCmd::List { json }) {
        NodeCmd::List { json: j } => list(&client, j || json).await,
        NodeCmd::Log {
            mesos_id,
            lines,
            follow,
            ..
        } => log(&client, mesos_id, lines, follow).await,
        NodeCmd::Diagnostics { json: j } => diagnostics(&client, j || json).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_ips() {
        let private = json!({"pid": "slave(1)@10.0.0.5:5051", "hostname": "a"});
        assert_eq!(agent_type(&private), "agent");
        assert_eq!(agent_ip(&private), "10.0.0.5");
        let public = json!({"attributes": {"public_ip": "true"}, "hostname": "b"});
        assert_eq!(agent_type(&public), "agent (public)");
        assert_eq!(agent_ip(&public), "b");
        let reserved = json!({"reserved_resources": {"slave_public": {"cpus": 1.0}}});
        assert_eq!(agent_type(&reserved), "agent (public)");
    }
}
