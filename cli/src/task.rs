//! `basalt task [list] | log | ls`: Mesos tasks, from the leading master's
//! `/mesos/master/state`, and their sandboxes through the agents' files API.
//!
//! A task's sandbox is the `directory` of its executor in the agent's `/state`
//! (`/agent/<agent id>/state` through the gateway); files are read with
//! `/agent/<agent id>/files/read?path=…&offset=…&length=…` and listed with
//! `/agent/<agent id>/files/browse?path=…`. `--follow` polls `files/read` from the last
//! offset once a second (as the DC/OS CLI does).

use crate::client::Client;
use crate::config::BasaltDir;
use crate::error::{CliError, Result};
use crate::output::{self, Table};
use clap::Subcommand;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// `basalt task …` (no subcommand: `list`).
#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// List tasks (running ones; `--completed` adds finished ones).
    List {
        /// Only tasks whose id or name contains this.
        filter: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Include completed tasks.
        #[arg(long, alias = "all")]
        completed: bool,
    },
    /// Print a task's sandbox file (default `stdout`).
    Log {
        /// Task id (or a unique part of its id or name).
        task: String,
        /// The file in the sandbox: `stdout`, `stderr` or another path.
        #[arg(default_value = "stdout")]
        file: String,
        /// Keep printing what is appended.
        #[arg(long)]
        follow: bool,
        /// Print the last N lines.
        #[arg(long, default_value_t = 10)]
        lines: usize,
        /// Also look at completed tasks.
        #[arg(long)]
        completed: bool,
    },
    /// List a task's sandbox (or a folder in it).
    Ls {
        /// Task id (or a unique part of its id or name).
        task: String,
        /// Folder inside the sandbox.
        path: Option<String>,
        /// Long listing (mode, links, owner, group, size, mtime).
        #[arg(long)]
        long: bool,
        /// Also look at completed tasks.
        #[arg(long)]
        completed: bool,
    },
}

/// A task as listed, with what the sandbox lookup needs.
#[derive(Debug, Clone)]
pub struct TaskRef {
    /// The master's task object, with `user`, `hostname` and `completed` added.
    pub value: Value,
    /// Task id.
    pub id: String,
    /// Agent id.
    pub agent_id: String,
    /// Framework id.
    pub framework_id: String,
    /// Executor id (may be empty).
    pub executor_id: String,
    /// Terminal.
    pub completed: bool,
}

/// Every task of the master's state (running first, then completed).
pub fn tasks_of_state(state: &Value) -> Vec<TaskRef> {
    let hosts: BTreeMap<&str, &str> = state
        .get("slaves")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| (output::s(a, "id"), output::s(a, "hostname")))
        .collect();
    let mut out = Vec::new();
    let frameworks = ["frameworks", "completed_frameworks"]
        .iter()
        .filter_map(|k| state.get(*k).and_then(Value::as_array))
        .flatten();
    for fw in frameworks {
        let user = output::s(fw, "user");
        for (key, completed) in [
            ("tasks", false),
            ("unreachable_tasks", false),
            ("completed_tasks", true),
        ] {
            for t in fw.get(key).and_then(Value::as_array).into_iter().flatten() {
                let agent_id = output::s(t, "slave_id").to_owned();
                let mut v = t.clone();
                if let Some(m) = v.as_object_mut() {
                    m.insert("user".into(), json!(user));
                    m.insert(
                        "hostname".into(),
                        json!(hosts.get(agent_id.as_str()).copied().unwrap_or_default()),
                    );
                    m.insert("completed".into(), json!(completed));
                }
                out.push(TaskRef {
                    id: output::s(t, "id").to_owned(),
                    framework_id: output::s(t, "framework_id").to_owned(),
                    executor_id: output::s(t, "executor_id").to_owned(),
                    agent_id,
                    completed,
                    value: v,
                });
            }
        }
    }
    out.sort_by(|a, b| a.completed.cmp(&b.completed).then(a.id.cmp(&b.id)));
    out
}

/// The one task `pattern` names: an exact id, else a unique id/name substring.
pub fn resolve(tasks: &[TaskRef], pattern: &str, completed: bool) -> Result<TaskRef> {
    let pool: Vec<&TaskRef> = tasks.iter().filter(|t| completed || !t.completed).collect();
    if let Some(t) = pool.iter().find(|t| t.id == pattern) {
        return Ok((*t).clone());
    }
    let hits: Vec<&&TaskRef> = pool
        .iter()
        .filter(|t| t.id.contains(pattern) || output::s(&t.value, "name").contains(pattern))
        .collect();
    match hits.as_slice() {
        [] => Err(CliError::Usage(format!(
            "no {}task matches {pattern:?} (`basalt task list{}` shows them)",
            if completed { "" } else { "running " },
            if completed { " --completed" } else { "" }
        ))),
        [one] => Ok((**one).clone()),
        many => Err(CliError::Usage(format!(
            "{} tasks match {pattern:?}: {}; give the full task id",
            many.len(),
            many.iter()
                .map(|t| t.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The sandbox directory of `task` in an agent's `/state`.
pub fn sandbox_of(agent_state: &Value, task: &TaskRef) -> Option<String> {
    let frameworks = ["frameworks", "completed_frameworks"]
        .iter()
        .filter_map(|k| agent_state.get(*k).and_then(Value::as_array))
        .flatten();
    for fw in frameworks {
        let executors = ["executors", "completed_executors"]
            .iter()
            .filter_map(|k| fw.get(*k).and_then(Value::as_array))
            .flatten();
        for ex in executors {
            let has_task = ["tasks", "completed_tasks", "queued_tasks"]
                .iter()
                .filter_map(|k| ex.get(*k).and_then(Value::as_array))
                .flatten()
                .any(|t| output::s(t, "id") == task.id);
            let by_executor = !task.executor_id.is_empty()
                && output::s(ex, "id") == task.executor_id
                && output::s(fw, "id") == task.framework_id;
            if has_task || by_executor {
                let d = output::s(ex, "directory");
                if !d.is_empty() {
                    return Some(d.to_owned());
                }
            }
        }
    }
    None
}

async fn all_tasks(client: &Client) -> Result<Vec<TaskRef>> {
    Ok(tasks_of_state(&client.get("/mesos/master/state").await?))
}

async fn sandbox(client: &Client, task: &TaskRef) -> Result<String> {
    let state = client
        .get(&format!("/agent/{}/state", task.agent_id))
        .await?;
    sandbox_of(&state, task).ok_or_else(|| {
        CliError::Usage(format!(
            "agent {} does not report a sandbox for task {} (it may have been garbage-collected)",
            task.agent_id, task.id
        ))
    })
}

fn join(dir: &str, rel: &str) -> String {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        dir.to_owned()
    } else {
        format!("{}/{rel}", dir.trim_end_matches('/'))
    }
}

/// Reads `length` bytes at `offset` (`offset = -1`: only the size) → (data, offset).
async fn read(
    client: &Client,
    agent: &str,
    file: &str,
    offset: i64,
    length: Option<u64>,
) -> Result<(String, u64)> {
    let mut q = vec![("path", file.to_owned()), ("offset", offset.to_string())];
    if let Some(l) = length {
        q.push(("length", l.to_string()));
    }
    let v = client
        .get_query(&format!("/agent/{agent}/files/read"), &q)
        .await
        .map_err(|e| match e {
            CliError::Api {
                status: 404,
                message,
                ..
            } => CliError::Usage(format!("no file {file} in the sandbox: {message}")),
            other => other,
        })?;
    Ok((
        output::s(&v, "data").to_owned(),
        v.get("offset").and_then(Value::as_u64).unwrap_or(0),
    ))
}

/// The last `n` lines of `text` (a trailing newline does not count as a line).
pub fn last_lines(text: &str, n: usize) -> String {
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    if n == 0 || trimmed.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = trimmed.split('\n').collect();
    let from = lines.len().saturating_sub(n);
    let mut out = lines[from..].join("\n");
    out.push('\n');
    out
}

async fn log(
    client: &Client,
    task: &TaskRef,
    file: &str,
    lines: usize,
    follow: bool,
) -> Result<()> {
    let dir = sandbox(client, task).await?;
    let path = join(&dir, file);
    let (_, size) = read(client, &task.agent_id, &path, -1, None).await?;
    // Read back from the end until the window holds `lines` lines.
    let mut window: u64 = 64 * 1024;
    let tail = loop {
        let start = size.saturating_sub(window);
        let (data, _) = read(
            client,
            &task.agent_id,
            &path,
            i64::try_from(start).unwrap_or(0),
            Some(size - start),
        )
        .await?;
        if start == 0 || data.matches('\n').count() > lines {
            break data;
        }
        window = window.saturating_mul(4);
    };
    let mut out = std::io::stdout();
    let _ = out.write_all(last_lines(&tail, lines).as_bytes());
    let _ = out.flush();
    if !follow {
        return Ok(());
    }
    let mut offset = size;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (data, at) = read(
            client,
            &task.agent_id,
            &path,
            i64::try_from(offset).unwrap_or(0),
            Some(1 << 20),
        )
        .await?;
        if !data.is_empty() {
            let _ = out.write_all(data.as_bytes());
            let _ = out.flush();
            offset = at + data.len() as u64;
        }
    }
}

async fn ls(client: &Client, task: &TaskRef, rel: Option<&str>, long: bool) -> Result<()> {
    let dir = sandbox(client, task).await?;
    let path = join(&dir, rel.unwrap_or(""));
    let v = client
        .get_query(
            &format!("/agent/{}/files/browse", task.agent_id),
            &[("path", path.clone())],
        )
        .await?;
    let entries = v.as_array().cloned().unwrap_or_default();
    let name = |e: &Value| {
        let p = output::s(e, "path");
        p.rsplit('/').next().unwrap_or(p).to_owned()
    };
    if long {
        let mut t = Table::new(&["MODE", "NLINK", "UID", "GID", "SIZE", "MTIME", "NAME"]);
        for e in &entries {
            t.row(vec![
                output::s(e, "mode").to_owned(),
                output::num_field(e, "/nlink"),
                output::s(e, "uid").to_owned(),
                output::s(e, "gid").to_owned(),
                output::num_field(e, "/size"),
                output::num_field(e, "/mtime"),
                name(e),
            ]);
        }
        t.print();
    } else {
        for e in &entries {
            println!("{}", name(e));
        }
    }
    Ok(())
}

fn short_state(s: &str) -> &str {
    s.strip_prefix("TASK_").unwrap_or(s)
}

/// Runs `basalt task …`.
pub async fn run(dirs: &BasaltDir, cmd: TaskCmd) -> Result<()> {
    let client = Client::for_cluster(&dirs.attached()?)?;
    match cmd {
        TaskCmd::List {
            filter,
            json: j,
            completed,
        } => {
            let tasks: Vec<TaskRef> = all_tasks(&client)
                .await?
                .into_iter()
                .filter(|t| completed || !t.completed)
                .filter(|t| {
                    filter
                        .as_deref()
                        .is_none_or(|f| t.id.contains(f) || output::s(&t.value, "name").contains(f))
                })
                .collect();
            if j {
                let v: Vec<&Value> = tasks.iter().map(|t| &t.value).collect();
                return output::print_json(&v);
            }
            let mut t = Table::new(&["NAME", "HOST", "USER", "STATE", "ID", "AGENT ID"]);
            for task in &tasks {
                t.row(vec![
                    output::s(&task.value, "name").to_owned(),
                    output::s(&task.value, "hostname").to_owned(),
                    output::s(&task.value, "user").to_owned(),
                    short_state(output::s(&task.value, "state")).to_owned(),
                    task.id.clone(),
                    task.agent_id.clone(),
                ]);
            }
            t.print();
            Ok(())
        }
        TaskCmd::Log {
            task,
            file,
            follow,
            lines,
            completed,
        } => {
            let t = resolve(&all_tasks(&client).await?, &task, completed)?;
            log(&client, &t, &file, lines, follow).await
        }
        TaskCmd::Ls {
            task,
            path,
            long,
            completed,
        } => {
            let t = resolve(&all_tasks(&client).await?, &task, completed)?;
            ls(&client, &t, path.as_deref(), long).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Value {
        json!({
            "slaves": [{"id": "S1", "hostname": "h1"}],
            "frameworks": [{"id": "F1", "user": "root", "tasks": [
                {"id": "web.1", "name": "web", "slave_id": "S1", "framework_id": "F1", "state": "TASK_RUNNING"},
                {"id": "web.2", "name": "web", "slave_id": "S1", "framework_id": "F1", "state": "TASK_RUNNING"},
            ], "completed_tasks": [
                {"id": "old.1", "name": "old", "slave_id": "S1", "framework_id": "F1", "state": "TASK_FINISHED"},
            ]}],
        })
    }

    #[test]
    fn tasks_and_resolution() {
        let ts = tasks_of_state(&state());
        assert_eq!(ts.len(), 3);
        assert_eq!(ts[0].value["hostname"], "h1");
        assert_eq!(ts[0].value["user"], "root");
        assert_eq!(
            resolve(&ts, "web.2", false).map(|t| t.id).ok().as_deref(),
            Some("web.2")
        );
        let e = resolve(&ts, "web", false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("2 tasks match") && e.contains("web.1"), "{e}");
        assert!(resolve(&ts, "old", false).is_err());
        assert_eq!(
            resolve(&ts, "old", true).map(|t| t.id).ok().as_deref(),
            Some("old.1")
        );
    }

    #[test]
    fn sandbox_lookup_and_tails() {
        let ts = tasks_of_state(&state());
        let agent = json!({"frameworks": [{"id": "F1", "executors": [
            {"id": "web.2", "directory": "/w/2", "tasks": [{"id": "web.2"}]},
            {"id": "web.1", "directory": "/w/1", "tasks": [{"id": "web.1"}]},
        ]}]});
        assert_eq!(sandbox_of(&agent, &ts[0]).as_deref(), Some("/w/1"));
        assert_eq!(sandbox_of(&agent, &ts[2]), None);
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb", 5), "a\nb\n");
        assert_eq!(last_lines("", 5), "");
        assert_eq!(join("/s/", "/x"), "/s/x");
        assert_eq!(join("/s", ""), "/s");
    }
}
