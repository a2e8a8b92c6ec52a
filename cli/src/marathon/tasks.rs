//! `basalt marathon task list`: Marathon's view of its tasks (`/v2/tasks`).

use super::path;
use crate::client::Client;
use crate::error::Result;
use crate::output::{self, Table};
use clap::Subcommand;
use serde_json::Value;

/// `basalt marathon task …`.
#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// List Marathon's tasks (of one app, if given).
    List {
        /// Only this app's tasks.
        app_id: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `basalt marathon task …`.
pub async fn run(client: &Client, cmd: TaskCmd) -> Result<()> {
    let TaskCmd::List { app_id, json } = cmd;
    let app = app_id.as_deref().map(super::normalize_id).transpose()?;
    let v = client.get(&path("/v2/tasks")).await?;
    let tasks: Vec<Value> = v
        .get("tasks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| app.as_deref().is_none_or(|a| output::s(t, "appId") == a))
        .cloned()
        .collect();
    if json {
        return output::print_json(&tasks);
    }
    let mut t = Table::new(&["APP", "HEALTHY", "STARTED", "HOST", "ID"]);
    for task in &tasks {
        let results = task.get("healthCheckResults").and_then(Value::as_array);
        let healthy = match results {
            Some(r) if !r.is_empty() => {
                if r.iter().all(|h| h.get("alive") == Some(&Value::Bool(true))) {
                    "True"
                } else {
                    "False"
                }
            }
            _ => "---",
        };
        t.row(vec![
            output::s(task, "appId").to_owned(),
            healthy.to_owned(),
            output::or_dashes(output::s(task, "startedAt")),
            output::s(task, "host").to_owned(),
            output::s(task, "id").to_owned(),
        ]);
    }
    t.print();
    Ok(())
}
