//! `basalt marathon deployment …`.

use super::path;
use crate::client::Client;
use crate::error::{CliError, Result};
use crate::output::{self, Table};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// `basalt marathon deployment …`.
#[derive(Debug, Subcommand)]
pub enum DeploymentCmd {
    /// List the running deployments (of one app, if given).
    List {
        /// Only deployments affecting this app.
        app_id: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a deployment and roll its apps back to where they were.
    Rollback {
        /// Deployment id.
        id: String,
    },
    /// Cancel a deployment where it stands (no rollback).
    Stop {
        /// Deployment id.
        id: String,
    },
    /// Wait for a deployment (or, without an id, all of them) to finish, printing its
    /// progress.
    Watch {
        /// Deployment id.
        id: Option<String>,
        /// Give up after this many checks.
        #[arg(long)]
        max_count: Option<u64>,
        /// Seconds between checks.
        #[arg(long, default_value_t = 1)]
        interval: u64,
    },
}

async fn deployments(client: &Client) -> Result<Vec<Value>> {
    let v = client.get(&path("/v2/deployments")).await?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn affects(d: &Value, app: &str) -> bool {
    d.get("affectedApps")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(app)))
}

fn progress(d: &Value) -> String {
    format!(
        "{}/{}",
        d.get("currentStep").and_then(Value::as_u64).unwrap_or(0),
        d.get("totalSteps").and_then(Value::as_u64).unwrap_or(0)
    )
}

/// Marathon's action names as the DC/OS CLI shows them (`ScaleApplication` → `scale`,
/// `RestartPod` → `restart`, `ResolveArtifacts` → `artifacts`).
pub fn action_name(action: &str) -> String {
    if action == "ResolveArtifacts" {
        return "artifacts".into();
    }
    action
        .strip_suffix("Application")
        .or_else(|| action.strip_suffix("Pod"))
        .unwrap_or(action)
        .to_ascii_lowercase()
}

fn actions(d: &Value) -> Vec<(String, String)> {
    d.get("currentActions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| {
            (
                output::s(a, "app").to_owned(),
                action_name(output::s(a, "action")),
            )
        })
        .collect()
}

async fn cancel(client: &Client, id: &str, force: bool) -> Result<()> {
    let a = client
        .call(
            Method::DELETE,
            &path(&format!("/v2/deployments/{id}")),
            &[("force", force.to_string())],
            None,
        )
        .await?;
    let v = a.json()?;
    if force || v.is_null() {
        eprintln!("Stopped deployment {id}");
        return Ok(());
    }
    output::print_json(&json!({
        "deploymentId": v.get("deploymentId").cloned().unwrap_or(Value::Null),
        "version": v.get("version").cloned().unwrap_or(Value::Null),
    }))
}

async fn watch(client: &Client, id: Option<String>, max: Option<u64>, every: u64) -> Result<()> {
    let mut checks = 0u64;
    let mut last = String::new();
    loop {
        let all = deployments(client).await?;
        let mine: Vec<&Value> = all
            .iter()
            .filter(|d| id.as_deref().is_none_or(|i| output::s(d, "id") == i))
            .collect();
        if mine.is_empty() {
            match &id {
                Some(i) if checks == 0 => {
                    println!("Deployment {i} is not running (it finished, or never existed)")
                }
                Some(i) => println!("Deployment {i} finished"),
                None => println!("No deployments running"),
            }
            return Ok(());
        }
        let line = mine
            .iter()
            .map(|d| {
                let acts: Vec<String> = actions(d)
                    .into_iter()
                    .map(|(app, act)| format!("{act} {app}"))
                    .collect();
                format!(
                    "{} step {}: {}",
                    output::s(d, "id"),
                    progress(d),
                    acts.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        checks += 1;
        if max.is_some_and(|m| checks >= m) {
            return Err(CliError::Aborted(format!(
                "still deploying after {checks} checks: {last}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(every.max(1))).await;
    }
}

/// Runs `basalt marathon deployment …`.
pub async fn run(client: &Client, cmd: DeploymentCmd) -> Result<()> {
    match cmd {
        DeploymentCmd::List { app_id, json } => {
            let app = app_id.as_deref().map(super::normalize_id).transpose()?;
            let ds: Vec<Value> = deployments(client)
                .await?
                .into_iter()
                .filter(|d| app.as_deref().is_none_or(|a| affects(d, a)))
                .collect();
            if json {
                return output::print_json(&ds);
            }
            if ds.is_empty() {
                eprintln!("There are no deployments");
                return Ok(());
            }
            let mut t = Table::new(&["APP", "POD", "ACTION", "PROGRESS", "ID"]);
            for d in &ds {
                let acts = actions(d);
                let apps: Vec<&str> = acts.iter().map(|(a, _)| a.as_str()).collect();
                let kinds: Vec<&str> = acts.iter().map(|(_, k)| k.as_str()).collect();
                let pods: Vec<&str> = d
                    .get("affectedPods")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                t.row(vec![
                    output::or_dashes(apps.join(",")),
                    output::or_dashes(pods.join(",")),
                    output::or_dashes(kinds.join(",")),
                    progress(d),
                    output::s(d, "id").to_owned(),
                ]);
            }
            t.print();
            Ok(())
        }
        DeploymentCmd::Rollback { id } => cancel(client, &id, false).await,
        DeploymentCmd::Stop { id } => cancel(client, &id, true).await,
        DeploymentCmd::Watch {
            id,
            max_count,
            interval,
        } => watch(client, id, max_count, interval).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names() {
        assert_eq!(action_name("ScaleApplication"), "scale");
        assert_eq!(action_name("RestartApplication"), "restart");
        assert_eq!(action_name("StopPod"), "stop");
        assert_eq!(action_name("ResolveArtifacts"), "artifacts");
        assert_eq!(action_name("Other"), "other");
    }
}
