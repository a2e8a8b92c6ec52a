//! `basalt marathon pod …` (`/v2/pods`). A Marathon without pod support answers a bare
//! 404 for every `/v2/pods` path; that is reported as such, distinct from Marathon's
//! own `Pod '/x' does not exist`.

use super::{deployment_of, normalize_id, path, read_json_input};
use crate::client::{Answer, Client};
use crate::error::{CliError, Result};
use crate::output::{self, Table};
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

/// `basalt marathon pod …`.
#[derive(Debug, Subcommand)]
pub enum PodCmd {
    /// Create a pod from a JSON definition (a file, or stdin with `-` or nothing).
    Add {
        /// The JSON file (`-`: stdin).
        file: Option<String>,
    },
    /// List the pods.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a pod's definition and status.
    Show {
        /// Pod id.
        id: String,
    },
    /// Remove a pod.
    Remove {
        /// Pod id.
        id: String,
        /// Override a running deployment.
        #[arg(long)]
        force: bool,
    },
}

async fn pods(
    client: &Client,
    method: Method,
    p: &str,
    query: &[(&str, String)],
    body: Option<&Value>,
) -> Result<Answer> {
    let full = path(p);
    let a = client.raw(method, &full, query, body).await?;
    if a.status == 404 && !a.has_service_message() {
        return Err(CliError::MissingEndpoint {
            what: "Marathon pods".into(),
            path: path("/v2/pods"),
            detail: "Marathon answered 404 without a message: this cluster's Marathon does not serve pods yet".into(),
        });
    }
    a.check()
}

/// Runs `basalt marathon pod …`.
pub async fn run(client: &Client, cmd: PodCmd) -> Result<()> {
    match cmd {
        PodCmd::Add { file } => {
            let body = read_json_input(file.as_deref())?;
            let a = pods(client, Method::POST, "/v2/pods", &[], Some(&body)).await?;
            let v = a.json().unwrap_or(Value::Null);
            match deployment_of(a.deployment_id.as_deref(), &v) {
                Some(d) => println!("Created deployment {d}"),
                None => println!("Created pod {}", output::s(&v, "id")),
            }
            Ok(())
        }
        PodCmd::List { json } => {
            let v = pods(client, Method::GET, "/v2/pods/::status", &[], None)
                .await?
                .json()?;
            let list = v.as_array().cloned().unwrap_or_default();
            if json {
                return output::print_json(&list);
            }
            let mut t = Table::new(&["ID", "STATUS", "INSTANCES", "CONTAINERS"]);
            for p in &list {
                let instances = p
                    .get("instances")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                let containers = p
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                t.row(vec![
                    output::s(p, "id").to_owned(),
                    output::s(p, "status").to_owned(),
                    instances.to_string(),
                    containers.to_string(),
                ]);
            }
            t.print();
            Ok(())
        }
        PodCmd::Show { id } => {
            let id = normalize_id(&id)?;
            let v = pods(
                client,
                Method::GET,
                &format!("/v2/pods{id}::status"),
                &[],
                None,
            )
            .await?
            .json()?;
            output::print_json(&v)
        }
        PodCmd::Remove { id, force } => {
            let id = normalize_id(&id)?;
            pods(
                client,
                Method::DELETE,
                &format!("/v2/pods{id}"),
                &[("force", force.to_string())],
                None,
            )
            .await?;
            eprintln!("Removed pod {id}");
            Ok(())
        }
    }
}
