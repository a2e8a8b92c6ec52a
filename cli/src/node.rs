//! `basalt node [list] | log | diagnostics`.
//!
//! - `list`: the agents from `/mesos/master/slaves` (id, host name, IP, type — `agent`
//!   or `agent (public)` when it carries the `public_ip:true` attribute or `slave_public`
//!   reservations —, fault-domain region/zone, resources); `--json` prints the master's
//!   agent objects with `type` added.
//! - `log --leader | --mesos-id <id> [--component <unit>] [--lines N] [--follow] [--json]`:
//!   the node's journal through DC/OS's logs API (dcos-log v1: `/system/v1/logs/v1/range/`
//!   on the leading master, `/system/v1/agent/<id>/logs/v1/range/` on an agent) with
//!   `skip_prev=N` (the last N entries) and `filter=_SYSTEMD_UNIT:<unit>` for
//!   `--component` (`.service` added when the name has no unit suffix). Entries are
//!   asked for as JSON (`Accept: application/json`) and printed as journalctl's short
//!   lines (UTC), or as the JSON entries with `--json`. `--follow` reads `…/stream/` as
//!   Server-Sent Events and, when the stream breaks, reconnects with `Last-Event-ID`
//!   (the last event's cursor), so no entry is printed twice. A cluster that does not
//!   serve the API gets a clear "not served" error, never made-up lines.
//! - `diagnostics`: unit health from `/system/health/v1` (the master's node health).

use crate::client::Client;
use crate::config::BasaltDir;
use crate::error::{CliError, Result};
use crate::output::{self, Table};
use clap::{ArgGroup, Subcommand};
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
        /// Only this systemd unit's entries (`basalt-gateway` or `basalt-gateway.service`).
        #[arg(long, value_name = "UNIT")]
        component: Option<String>,
        /// Print the last N lines.
        #[arg(long, default_value_t = 10)]
        lines: u32,
        /// Keep printing new lines.
        #[arg(long)]
        follow: bool,
        /// Print the journal entries as JSON (one per line).
        #[arg(long)]
        json: bool,
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
/// 5xx because nothing listens behind the route. An unknown agent stays what it is.
fn missing(what: &str, path: &str, e: CliError) -> CliError {
    match e {
        CliError::Api {
            status, message, ..
        } if (status == 404 && !message.contains("no agent with id")) || status >= 500 => {
            CliError::MissingEndpoint {
                what: what.to_owned(),
                path: path.to_owned(),
                detail: format!(
                    "the gateway answered {status}: {message}; this cluster has no service behind that route yet"
                ),
            }
        }
        other => other,
    }
}

/// The `_SYSTEMD_UNIT` of `--component`: `.service` added to a bare name.
pub fn component_unit(c: &str) -> String {
    const SUFFIXES: [&str; 6] = [
        ".service", ".socket", ".target", ".timer", ".mount", ".scope",
    ];
    if SUFFIXES.iter().any(|s| c.ends_with(s)) {
        c.to_owned()
    } else {
        format!("{c}.service")
    }
}

/// journalctl's short line of a dcos-log JSON entry (`{"fields": …, "realtime_timestamp"}`),
/// UTC: `Mmm dd HH:MM:SS host identifier[pid]: message`.
pub fn short_line(entry: &Value) -> String {
    let f = |k: &str| {
        entry
            .pointer(&format!("/fields/{k}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let us = entry
        .get("realtime_timestamp")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let secs = i64::try_from(us / 1_000_000).unwrap_or(i64::MAX);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil date from days since 1970-01-01
    let z = days + 719_468;
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let name = usize::try_from(month - 1)
        .ok()
        .and_then(|i| MONTHS.get(i))
        .copied()
        .unwrap_or("Jan");
    let mut line = format!(
        "{name} {day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if !f("_HOSTNAME").is_empty() {
        line.push(' ');
        line.push_str(f("_HOSTNAME"));
    }
    let ident = [f("SYSLOG_IDENTIFIER"), f("_COMM")]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or("unknown");
    line.push(' ');
    line.push_str(ident);
    if let Some(pid) = [f("SYSLOG_PID"), f("_PID")]
        .into_iter()
        .find(|s| !s.is_empty())
    {
        line.push_str(&format!("[{pid}]"));
    }
    line.push_str(": ");
    line.push_str(f("MESSAGE"));
    line
}

fn print_entry(out: &mut impl Write, entry: &Value, json: bool) {
    let line = if json {
        entry.to_string()
    } else {
        short_line(entry)
    };
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// How often `--follow` reconnects after the stream broke, in a row.
const FOLLOW_RECONNECTS: u32 = 5;
/// The pause before such a reconnect.
const FOLLOW_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// Options of `basalt node log`.
struct LogArgs {
    mesos_id: Option<String>,
    component: Option<String>,
    lines: u32,
    follow: bool,
    json: bool,
}

async fn log(client: &Client, a: LogArgs) -> Result<()> {
    let base = match &a.mesos_id {
        None => "/system/v1/logs/v1".to_owned(),
        Some(id) => format!("/system/v1/agent/{id}/logs/v1"),
    };
    let path = format!("{base}/{}/", if a.follow { "stream" } else { "range" });
    let mut query = vec![("skip_prev", a.lines.to_string())];
    if let Some(c) = &a.component {
        query.push(("filter", format!("_SYSTEMD_UNIT:{}", component_unit(c))));
    }
    let mut out = std::io::stdout();
    if !a.follow {
        let resp = client
            .stream(&path, &query, "application/json")
            .await
            .map_err(|e| missing("node log", &path, e))?;
        let body = resp.text().await.map_err(|e| CliError::Unreachable {
            url: client.url(&path),
            detail: e.to_string(),
        })?;
        for l in body.lines().filter(|l| !l.trim().is_empty()) {
            let entry: Value = serde_json::from_str(l).map_err(|e| CliError::Api {
                method: "GET".into(),
                url: client.url(&path),
                status: 200,
                message: format!("an answer line is no JSON journal entry ({e}): {l:.200}"),
            })?;
            print_entry(&mut out, &entry, a.json);
        }
        return Ok(());
    }
    follow(client, &path, query, a.json, &mut out).await
}

/// `--follow`: SSE events, reconnecting with `Last-Event-ID` when the stream breaks.
async fn follow(
    client: &Client,
    path: &str,
    query: Vec<(&str, String)>,
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    let mut last_id: Option<String> = None;
    let mut failures = 0;
    loop {
        let resp = match &last_id {
            None => client.stream(path, &query, "text/event-stream").await,
            Some(id) => {
                client
                    .stream_with(path, &query, "text/event-stream", &[("Last-Event-ID", id)])
                    .await
            }
        };
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) if last_id.is_none() => return Err(missing("node log", path, e)),
            Err(e) => {
                failures += 1;
                if failures > FOLLOW_RECONNECTS {
                    return Err(e);
                }
                tracing::warn!(error = %e, "reconnecting the log stream");
                tokio::time::sleep(FOLLOW_BACKOFF).await;
                continue;
            }
        };
        let mut buf = String::new();
        let broke = loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(i) = buf.find("\n\n") {
                let event: String = buf.drain(..i + 2).collect();
                let mut data = String::new();
                for line in event.lines() {
                    if let Some(id) = line.strip_prefix("id:") {
                        last_id = Some(id.trim_start().to_owned());
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if let Ok(entry) = serde_json::from_str::<Value>(&data) {
                    failures = 0;
                    print_entry(out, &entry, json);
                }
            }
        };
        failures += 1;
        if failures > FOLLOW_RECONNECTS {
            return Err(CliError::Unreachable {
                url: client.url(path),
                detail: broke.unwrap_or_else(|| "the log stream ended".into()),
            });
        }
        tracing::warn!(reason = ?broke, "the log stream ended; reconnecting with Last-Event-ID");
        tokio::time::sleep(FOLLOW_BACKOFF).await;
    }
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
            component,
            lines,
            follow,
            json: j,
            ..
        } => {
            let args = LogArgs {
                mesos_id,
                component,
                lines,
                follow,
                json: j || json,
            };
            log(&client, args).await
        }
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

    #[test]
    fn components_and_short_lines() {
        assert_eq!(component_unit("basalt-gateway"), "basalt-gateway.service");
        assert_eq!(
            component_unit("basalt-gateway.service"),
            "basalt-gateway.service"
        );
        assert_eq!(
            component_unit("basalt-master.target"),
            "basalt-master.target"
        );
        let e = json!({"fields": {"_HOSTNAME": "n1", "SYSLOG_IDENTIFIER": "basalt-iam",
                                  "_PID": "42", "MESSAGE": "ready"},
                       "cursor": "s=1", "realtime_timestamp": 1_700_000_000_000_000u64});
        assert_eq!(short_line(&e), "Nov 14 22:13:20 n1 basalt-iam[42]: ready");
        assert_eq!(
            short_line(&json!({"fields": {"MESSAGE": "x"}})),
            "Jan 01 00:00:00 unknown: x"
        );
    }
}
