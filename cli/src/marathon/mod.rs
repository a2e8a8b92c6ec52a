//! `basalt marathon …`: Marathon's REST v2 API through the gateway at
//! `/service/marathon` (as the DC/OS CLI). Errors carry Marathon's own `message`
//! (e.g. `App '/x' does not exist`).
//!
//! - [`app`]: `app add | list | show | update | remove | restart | kill | version list`
//! - [`deployment`]: `deployment list | rollback | stop | watch`
//! - [`pod`]: `pod add | list | show | remove` (`/v2/pods`)
//! - [`tasks`]: `task list`
//! - `about`: `/v2/info`

pub mod app;
pub mod deployment;
pub mod pod;
pub mod tasks;

use crate::client::Client;
use crate::config::BasaltDir;
use crate::error::{CliError, Result};
use crate::output;
use clap::Subcommand;
use serde_json::Value;

/// Marathon behind the gateway.
pub const MARATHON: &str = "/service/marathon";

/// `basalt marathon …`.
#[derive(Debug, Subcommand)]
pub enum MarathonCmd {
    /// Manage apps.
    #[command(subcommand)]
    App(app::AppCmd),
    /// Manage deployments.
    #[command(subcommand)]
    Deployment(deployment::DeploymentCmd),
    /// Manage pods.
    #[command(subcommand)]
    Pod(pod::PodCmd),
    /// Marathon's tasks.
    #[command(subcommand)]
    Task(tasks::TaskCmd),
    /// Print Marathon's `/v2/info`.
    About,
}

/// `/service/marathon` + `path`.
pub fn path(p: &str) -> String {
    format!("{MARATHON}{p}")
}

/// An app or pod id with its leading `/`.
pub fn normalize_id(id: &str) -> Result<String> {
    let t = id.trim().trim_end_matches('/');
    if t.is_empty() || t == "/" {
        return Err(CliError::Usage(format!(
            "{id:?} is not an app id (e.g. /prod/web)"
        )));
    }
    Ok(if t.starts_with('/') {
        t.to_owned()
    } else {
        format!("/{t}")
    })
}

/// Reads a JSON document from `file` (`-` or none: stdin).
pub fn read_json_input(file: Option<&str>) -> Result<Value> {
    use std::io::Read;
    let (what, text) = match file {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| CliError::Usage(format!("reading stdin: {e}")))?;
            ("stdin".to_owned(), s)
        }
        Some(f) => {
            let p = std::path::PathBuf::from(f);
            let s = std::fs::read_to_string(&p).map_err(|source| CliError::Io {
                what: "reading",
                path: p.clone(),
                source,
            })?;
            (format!("file {f}"), s)
        }
    };
    if text.trim().is_empty() {
        return Err(CliError::Usage(format!(
            "{what} is empty: give a JSON definition (a file, or `-` and the JSON on stdin)"
        )));
    }
    serde_json::from_str(&text).map_err(|e| CliError::Json {
        what,
        detail: e.to_string(),
    })
}

/// The deployment id of a Marathon change answer (`Marathon-Deployment-Id` header, else
/// `deploymentId`, else `deployments[0].id`).
pub fn deployment_of(header: Option<&str>, body: &Value) -> Option<String> {
    header
        .map(str::to_owned)
        .or_else(|| {
            body.get("deploymentId")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .or_else(|| {
            body.pointer("/deployments/0/id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
}

/// Runs `basalt marathon …`.
pub async fn run(dirs: &BasaltDir, cmd: MarathonCmd) -> Result<()> {
    let client = Client::for_cluster(&dirs.attached()?)?;
    match cmd {
        MarathonCmd::App(c) => app::run(&client, c).await,
        MarathonCmd::Deployment(c) => deployment::run(&client, c).await,
        MarathonCmd::Pod(c) => pod::run(&client, c).await,
        MarathonCmd::Task(c) => tasks::run(&client, c).await,
        MarathonCmd::About => output::print_json(&client.get(&path("/v2/info")).await?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_and_deployments() {
        assert_eq!(normalize_id("web").ok().as_deref(), Some("/web"));
        assert_eq!(normalize_id("/a/b/").ok().as_deref(), Some("/a/b"));
        assert!(normalize_id("/").is_err());
        assert_eq!(
            deployment_of(None, &json!({"deployments": [{"id": "d1"}]})).as_deref(),
            Some("d1")
        );
        assert_eq!(
            deployment_of(Some("h"), &json!({"deploymentId": "d2"})).as_deref(),
            Some("h")
        );
    }
}
