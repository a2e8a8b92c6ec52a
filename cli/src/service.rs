//! `basalt service [list]`: the frameworks registered with the leading master
//! (`/mesos/master/frameworks`).

use crate::client::Client;
use crate::config::BasaltDir;
use crate::error::Result;
use crate::output::{self, Table};
use clap::Subcommand;
use serde_json::Value;

/// `basalt service …` (no subcommand: `list`).
#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// List the services (frameworks).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Include inactive (disconnected) services.
        #[arg(long)]
        inactive: bool,
        /// Include completed (torn down) services.
        #[arg(long)]
        completed: bool,
    },
}

/// Runs `basalt service …`.
pub async fn run(dirs: &BasaltDir, cmd: Option<ServiceCmd>, json: bool) -> Result<()> {
    let client = Client::for_cluster(&dirs.attached()?)?;
    let ServiceCmd::List {
        json: j,
        inactive,
        completed,
    } = cmd.unwrap_or(ServiceCmd::List {
        json,
        inactive: false,
        completed: false,
    });
    let v = client.get("/mesos/master/frameworks").await?;
    let mut list: Vec<Value> = v
        .get("frameworks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|f| inactive || f.get("active") != Some(&Value::Bool(false)))
        .cloned()
        .collect();
    if completed {
        list.extend(
            v.get("completed_frameworks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    list.sort_by(|a, b| output::s(a, "name").cmp(output::s(b, "name")));
    if j || json {
        return output::print_json(&list);
    }
    let mut t = Table::new(&[
        "NAME", "HOST", "ACTIVE", "TASKS", "CPU", "MEM", "DISK", "ID",
    ]);
    for f in &list {
        let tasks = f.get("tasks").and_then(Value::as_array).map_or(0, Vec::len);
        let active = if f.get("active") == Some(&Value::Bool(true)) {
            "True"
        } else {
            "False"
        };
        t.row(vec![
            output::s(f, "name").to_owned(),
            output::s(f, "hostname").to_owned(),
            active.to_owned(),
            tasks.to_string(),
            output::num_field(f, "/used_resources/cpus"),
            output::num_field(f, "/used_resources/mem"),
            output::num_field(f, "/used_resources/disk"),
            output::s(f, "id").to_owned(),
        ]);
    }
    t.print();
    Ok(())
}
