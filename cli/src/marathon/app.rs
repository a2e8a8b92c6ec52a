//! `basalt marathon app …`.

use super::{deployment_of, normalize_id, path, read_json_input};
use crate::client::Client;
use crate::error::{CliError, Result};
use crate::output::{self, Table};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::IsTerminal;

/// `basalt marathon app …`.
#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Create an app from a JSON definition (a file, or stdin with `-` or nothing).
    Add {
        /// The JSON file (`-`: stdin).
        file: Option<String>,
    },
    /// List the apps.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print an app's definition and status.
    Show {
        /// App id.
        id: String,
        /// A version (a timestamp from `app version list`, or -N for the Nth previous).
        #[arg(long, allow_hyphen_values = true, value_name = "VERSION")]
        app_version: Option<String>,
    },
    /// Change an app: `key=value` pairs (values are JSON, else strings), or a JSON
    /// object on stdin.
    Update {
        /// App id.
        id: String,
        /// `key=value` pairs, e.g. `instances=3 cmd="sleep 100"`.
        properties: Vec<String>,
        /// Override a running deployment.
        #[arg(long)]
        force: bool,
    },
    /// Remove an app.
    Remove {
        /// App id.
        id: String,
        /// Override a running deployment.
        #[arg(long)]
        force: bool,
    },
    /// Restart an app (a rolling replacement of its tasks).
    Restart {
        /// App id.
        id: String,
        /// Override a running deployment.
        #[arg(long)]
        force: bool,
    },
    /// Kill an app's tasks (Marathon starts replacements unless `--scale`).
    Kill {
        /// App id.
        id: String,
        /// Scale the app down by the killed tasks.
        #[arg(long)]
        scale: bool,
        /// Only the tasks on this host.
        #[arg(long)]
        host: Option<String>,
    },
    /// An app's versions.
    #[command(subcommand)]
    Version(VersionCmd),
}

/// `basalt marathon app version …`.
#[derive(Debug, Subcommand)]
pub enum VersionCmd {
    /// List an app's versions, newest first.
    List {
        /// App id.
        id: String,
        /// At most this many.
        #[arg(long)]
        max_count: Option<usize>,
    },
}

fn app_path(id: &str) -> String {
    path(&format!("/v2/apps{id}"))
}

/// Parses `key=value` pairs into a JSON object (values parsed as JSON, else strings).
pub fn parse_properties(props: &[String]) -> Result<Value> {
    let mut m = Map::new();
    for p in props {
        let Some((k, v)) = p.split_once('=') else {
            return Err(CliError::Usage(format!(
                "{p:?} is not key=value (e.g. instances=3)"
            )));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(CliError::Usage(format!("{p:?}: the key is empty")));
        }
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        m.insert(k.to_owned(), value);
    }
    Ok(Value::Object(m))
}

fn print_deployment(a: &crate::client::Answer) -> Result<()> {
    let body = a.json().unwrap_or(Value::Null);
    match deployment_of(a.deployment_id.as_deref(), &body) {
        Some(d) => println!("Created deployment {d}"),
        None => println!("Done"),
    }
    Ok(())
}

async fn list(client: &Client, json: bool) -> Result<()> {
    let v = client.get(&path("/v2/apps")).await?;
    let apps: Vec<Value> = v
        .get("apps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if json {
        return output::print_json(&apps);
    }
    // Current action per app (the DEPLOYMENT column), from the running deployments.
    let mut actions: BTreeMap<String, String> = BTreeMap::new();
    if let Ok(ds) = client.get(&path("/v2/deployments")).await {
        for d in ds.as_array().into_iter().flatten() {
            for a in d
                .get("currentActions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                actions.insert(
                    output::s(a, "app").to_owned(),
                    super::deployment::action_name(output::s(a, "action")),
                );
            }
        }
    }
    let waiting: Option<Vec<String>> = client.get(&path("/v2/queue")).await.ok().map(|q| {
        q.get("queue")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| e.pointer("/delay/overdue") != Some(&Value::Bool(false)))
            .filter_map(|e| e.pointer("/app/id").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    });
    let mut t = Table::new(&[
        "ID",
        "MEM",
        "CPUS",
        "TASKS",
        "HEALTH",
        "DEPLOYMENT",
        "WAITING",
        "CONTAINER",
        "CMD",
    ]);
    for a in &apps {
        let id = output::s(a, "id");
        let running = a.get("tasksRunning").and_then(Value::as_u64).unwrap_or(0);
        let instances = a.get("instances").and_then(Value::as_u64).unwrap_or(0);
        let checks = a
            .get("healthChecks")
            .and_then(Value::as_array)
            .is_some_and(|h| !h.is_empty());
        let health = if checks {
            format!(
                "{}/{}",
                a.get("tasksHealthy").and_then(Value::as_u64).unwrap_or(0),
                running
            )
        } else {
            "---".into()
        };
        let deploying = a
            .get("deployments")
            .and_then(Value::as_array)
            .is_some_and(|d| !d.is_empty());
        let deployment = match actions.get(id) {
            Some(a) => a.clone(),
            None if deploying => "deploying".into(),
            None => "---".into(),
        };
        let waiting = match &waiting {
            Some(w) => if w.iter().any(|w| w == id) {
                "True"
            } else {
                "False"
            }
            .to_owned(),
            None => "---".into(),
        };
        t.row(vec![
            id.to_owned(),
            output::num_field(a, "/mem"),
            output::num_field(a, "/cpus"),
            format!("{running}/{instances}"),
            health,
            deployment,
            waiting,
            output::or_dashes(
                a.pointer("/container/type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_ascii_uppercase(),
            ),
            output::or_dashes(output::s(a, "cmd")),
        ]);
    }
    t.print();
    Ok(())
}

async fn show(client: &Client, id: &str, version: Option<String>) -> Result<()> {
    let id = normalize_id(id)?;
    let Some(version) = version else {
        let v = client.get(&app_path(&id)).await?;
        return output::print_json(v.get("app").unwrap_or(&v));
    };
    let version = match version.parse::<i64>() {
        Ok(n) if n < 0 => {
            let vs = client.get(&format!("{}/versions", app_path(&id))).await?;
            let list = vs
                .get("versions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let i = usize::try_from(-n).unwrap_or(usize::MAX);
            list.get(i)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "--app-version {n}: app {id} has only {} earlier version(s)",
                        list.len().saturating_sub(1)
                    ))
                })?
        }
        Ok(n) => {
            return Err(CliError::Usage(format!(
                "--app-version {n}: give a version timestamp or a negative number (-1: the previous version)"
            )));
        }
        Err(_) => version,
    };
    let v = client
        .get(&format!("{}/versions/{version}", app_path(&id)))
        .await?;
    output::print_json(&v)
}

async fn update(client: &Client, id: &str, props: &[String], force: bool) -> Result<()> {
    let id = normalize_id(id)?;
    let body = if props.is_empty() {
        if std::io::stdin().is_terminal() {
            return Err(CliError::Usage(
                "nothing to change: give key=value pairs, or pipe a JSON object on stdin".into(),
            ));
        }
        let v = read_json_input(None)?;
        if !v.is_object() {
            return Err(CliError::Usage(
                "the JSON on stdin must be an object of app fields".into(),
            ));
        }
        v
    } else {
        parse_properties(props)?
    };
    // A PUT would create a missing app; `update` only changes existing ones (as the
    // DC/OS CLI, which reads the app first).
    client.get(&app_path(&id)).await?;
    let a = client
        .call(
            Method::PUT,
            &app_path(&id),
            &[("force", force.to_string())],
            Some(&body),
        )
        .await?;
    print_deployment(&a)
}

/// Runs `basalt marathon app …`.
pub async fn run(client: &Client, cmd: AppCmd) -> Result<()> {
    match cmd {
        AppCmd::Add { file } => {
            let body = read_json_input(file.as_deref())?;
            if body.get("id").and_then(Value::as_str).is_none() {
                return Err(CliError::Usage(
                    "the app definition has no \"id\" (e.g. \"id\": \"/web\")".into(),
                ));
            }
            let a = client
                .call(Method::POST, &path("/v2/apps"), &[], Some(&body))
                .await?;
            print_deployment(&a)
        }
        AppCmd::List { json } => list(client, json).await,
        AppCmd::Show { id, app_version } => show(client, &id, app_version).await,
        AppCmd::Update {
            id,
            properties,
            force,
        } => update(client, &id, &properties, force).await,
        AppCmd::Remove { id, force } => {
            let id = normalize_id(&id)?;
            client
                .call(
                    Method::DELETE,
                    &app_path(&id),
                    &[("force", force.to_string())],
                    None,
                )
                .await?;
            eprintln!("Removed app {id}");
            Ok(())
        }
        AppCmd::Restart { id, force } => {
            let id = normalize_id(&id)?;
            let a = client
                .call(
                    Method::POST,
                    &format!("{}/restart", app_path(&id)),
                    &[("force", force.to_string())],
                    None,
                )
                .await?;
            print_deployment(&a)
        }
        AppCmd::Kill { id, scale, host } => {
            let id = normalize_id(&id)?;
            let mut q = vec![("scale", scale.to_string())];
            if let Some(h) = host {
                q.push(("host", h));
            }
            let a = client
                .call(
                    Method::DELETE,
                    &format!("{}/tasks", app_path(&id)),
                    &q,
                    None,
                )
                .await?;
            let v = a.json()?;
            if let Some(tasks) = v.get("tasks").and_then(Value::as_array) {
                println!("Killed tasks: {}", tasks.len());
                for t in tasks {
                    println!("{}", output::s(t, "id"));
                }
                Ok(())
            } else {
                print_deployment(&a)
            }
        }
        AppCmd::Version(VersionCmd::List { id, max_count }) => {
            let id = normalize_id(&id)?;
            let v = client.get(&format!("{}/versions", app_path(&id))).await?;
            let mut list = v
                .get("versions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(n) = max_count {
                list.truncate(n);
            }
            output::print_json(&list)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn properties() {
        let v = parse_properties(&[
            "instances=3".into(),
            "cmd=sleep 100".into(),
            "env={\"A\":\"b\"}".into(),
        ])
        .ok();
        assert_eq!(
            v,
            Some(json!({"instances": 3, "cmd": "sleep 100", "env": {"A": "b"}}))
        );
        let e = parse_properties(&["instances".into()])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("key=value"), "{e}");
    }
}
