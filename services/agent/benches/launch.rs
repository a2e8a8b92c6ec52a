//! Task launch rate: launch + wait of `/bin/true` command tasks through the
//! containerizer, plain (no namespaces, no cgroups) and isolated (pid + mount
//! namespaces, cgroups with limits), next to bare `fork`/`exec` of `/bin/true`.
//!
//! `cargo bench -p basalt-agent --bench launch`. Bounded: `BASALT_BENCH_TASKS` tasks per
//! mode (default 2000), at most 60 s per mode, `BASALT_BENCH_CONCURRENCY` launches in
//! flight (default 8); `BASALT_BENCH_ONLY=bare|plain|isolated` runs one mode. Isolated
//! needs root and cgroups; it is skipped with a reason otherwise. Sandboxes go to a
//! temporary directory under `BASALT_BENCH_WORK_DIR` (default: the system temp dir); its
//! file system is printed, because creating the Mesos sandbox and meta directories
//! (about ten inodes per task) dominates on a busy disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use basalt_agent::containerizer::{Containerizer, ContainerizerConfig, Isolation, LaunchSpec};
use basalt_mesos::{
    AgentId, CommandInfo, ContainerId, FrameworkId, Resource, TaskId, TaskInfo, TaskState,
};
use tokio::task::JoinSet;

const MODE_CAP: Duration = Duration::from_secs(60);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Outcome {
    done: usize,
    elapsed: Duration,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }
}

async fn bare(total: usize, concurrency: usize) -> Outcome {
    let start = Instant::now();
    let mut set = JoinSet::new();
    let mut started = 0;
    let mut done = 0;
    while done < total && start.elapsed() < MODE_CAP {
        while started < total && set.len() < concurrency {
            set.spawn(async {
                tokio::process::Command::new("/bin/true")
                    .status()
                    .await
                    .unwrap()
            });
            started += 1;
        }
        let left = MODE_CAP.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, set.join_next()).await {
            Ok(Some(r)) => {
                assert!(r.unwrap().success());
                done += 1;
            }
            Ok(None) | Err(_) => break,
        }
    }
    set.shutdown().await;
    Outcome {
        done,
        elapsed: start.elapsed(),
    }
}

async fn through(c: Arc<Containerizer>, tag: &str, total: usize, concurrency: usize) -> Outcome {
    let start = Instant::now();
    let mut set = JoinSet::new();
    let mut started = 0;
    let mut done = 0;
    while done < total && start.elapsed() < MODE_CAP {
        while started < total && set.len() < concurrency {
            let c = Arc::clone(&c);
            let id = format!("{tag}-{started}");
            set.spawn(async move {
                let mut cmd = CommandInfo::shell("/bin/true");
                cmd.shell = Some(false);
                let mut task =
                    TaskInfo::command("bench", TaskId::new(&id), AgentId::new("bench"), cmd);
                task.resources = vec![
                    Resource::scalar("cpus", 0.1).unwrap(),
                    Resource::scalar("mem", 32.0).unwrap(),
                ];
                let spec = LaunchSpec::new(ContainerId::new(&id), FrameworkId::new("fw"), task);
                let container = c.launch(spec).await.unwrap();
                container.wait().await
            });
            started += 1;
        }
        let left = MODE_CAP.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, set.join_next()).await {
            Ok(Some(r)) => {
                let t = r.unwrap();
                assert_eq!(t.state, TaskState::Finished, "{}", t.message);
                done += 1;
            }
            Ok(None) => break,
            Err(_) => {
                println!(
                    "{tag}: {} launches still running after {MODE_CAP:?}",
                    set.len()
                );
                break;
            }
        }
    }
    set.shutdown().await;
    for c in c.containers() {
        c.destroy_blocking(Duration::from_secs(10));
    }
    Outcome {
        done,
        elapsed: start.elapsed(),
    }
}

fn print(name: &str, o: &Outcome, target: Option<f64>) {
    let verdict = match target {
        Some(t) if o.rate() >= t => format!("target ≥ {t:.0}/s: met"),
        Some(t) => format!("target ≥ {t:.0}/s: NOT met"),
        None => "reference".to_owned(),
    };
    println!(
        "{name:<34} {:>6} tasks in {:>7.3} s = {:>8.1} /s   ({verdict})",
        o.done,
        o.elapsed.as_secs_f64(),
        o.rate()
    );
}

fn main() {
    let total = env_usize("BASALT_BENCH_TASKS", 2000);
    let concurrency = env_usize("BASALT_BENCH_CONCURRENCY", 8).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "launch + wait of /bin/true, {total} tasks per mode, {concurrency} in flight, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let only = std::env::var("BASALT_BENCH_ONLY").unwrap_or_default();
    let run = |mode: &str| only.is_empty() || only == mode;
    let base = std::env::var_os("BASALT_BENCH_WORK_DIR")
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let fs = match nix::sys::statfs::statfs(&base).map(|s| s.filesystem_type()) {
        Ok(t) if t == nix::sys::statfs::TMPFS_MAGIC => "tmpfs".to_owned(),
        Ok(t) if t == nix::sys::statfs::EXT4_SUPER_MAGIC => "ext4".to_owned(),
        Ok(t) => format!("{t:?}"),
        Err(e) => format!("unknown ({e})"),
    };
    println!("work dir under {} ({fs})", base.display());
    rt.block_on(async {
        let work = tempfile::tempdir_in(&base).unwrap();
        if run("bare") {
            let o = bare(total, concurrency).await;
            print("bare fork+exec (tokio::process)", &o, None);
        }

        let mut cfg = ContainerizerConfig::new(
            work.path().join("plain"),
            AgentId::new("bench"),
            "localhost",
            "127.0.0.1:5051",
        );
        cfg.isolation = Isolation::none();
        if run("plain") {
            let plain = Arc::new(Containerizer::new(cfg).unwrap());
            let o = through(plain, "plain", total, concurrency).await;
            print("containerizer, plain", &o, Some(1000.0));
        }
        if !run("isolated") {
            return;
        }
        if !nix::unistd::geteuid().is_root() {
            println!("containerizer, isolated: SKIPPED (needs root)");
            return;
        }
        let mut cfg = ContainerizerConfig::new(
            work.path().join("isolated"),
            AgentId::new("bench"),
            "localhost",
            "127.0.0.1:5051",
        );
        let cg = basalt_agent::containerizer::CgroupsConfig {
            root: Some(format!("basalt-bench-{}", std::process::id())),
            ..Default::default()
        };
        cfg.isolation = Isolation {
            namespaces: true,
            cgroups: Some(cg),
        };
        let isolated = match Containerizer::new(cfg) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                println!("containerizer, isolated: SKIPPED ({e})");
                return;
            }
        };
        let o = through(Arc::clone(&isolated), "iso", total, concurrency).await;
        print("containerizer, namespaces+cgroups", &o, Some(200.0));
        if let Some(mgr) = isolated.cgroups() {
            for d in mgr.root_dirs() {
                let _ = std::fs::remove_dir(&d);
            }
        }
    });
}
