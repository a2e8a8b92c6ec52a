//! `basalt-qemu up` / `down`: a demo cluster kept running until Ctrl-C, or in the
//! background (`--detach`: the same command re-run under `setsid`, its pid in
//! `<work>/up.pid`, its output in `<work>/up.log`, the reach table in `<work>/cluster.txt`).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use basalt_qemu::cluster::{Cluster, ClusterSpec, MASTER_UNITS, SUPERUSER};
use nix::sys::signal::{SigSet, Signal};

const PID_FILE: &str = "up.pid";
const INFO_FILE: &str = "cluster.txt";
const LOG_FILE: &str = "up.log";

/// How to reach each node, for people.
fn reach_table(c: &Cluster, registered: Duration) -> String {
    let mut s = format!(
        "Basalt cluster up: {} master(s), {} agent(s); every agent registered {:.1} s after boot ({:?})\n\n",
        c.spec.masters,
        c.spec.agents,
        registered.as_secs_f64(),
        c.nodes.first().map(|n| n.vm.accel)
    );
    for n in &c.nodes {
        s.push_str(&format!("{:<4} {:<12} {}\n", n.name, n.ip, n.role));
        for (guest, host) in &n.ports {
            let (label, scheme) = match guest {
                5050 => ("Mesos master", "http"),
                5051 => ("Mesos agent", "http"),
                8080 => ("Marathon", "http"),
                443 => ("gateway", "https"),
                61001 => ("agent gateway", "http"),
                1050 => ("node health", "http"),
                2379 => ("etcd", "https"),
                _ => ("port", "http"),
            };
            s.push_str(&format!(
                "       {label:<16} {scheme}://127.0.0.1:{host}   (guest :{guest})\n"
            ));
        }
        s.push_str(&format!(
            "       console          {}\n",
            n.vm.console_path().display()
        ));
    }
    s.push_str(&format!(
        "\nlogin: {} / {}   cluster CA and keys: {}\n",
        SUPERUSER.0,
        SUPERUSER.1,
        c.genconf_dir().join("serve").display()
    ));
    s
}

/// Boots, waits, prints, and keeps the cluster until SIGINT/SIGTERM.
pub fn foreground(spec: ClusterSpec, timeout: Duration) -> anyhow::Result<()> {
    // Blocked before any thread or VM exists: the signal is taken by `wait` below, and
    // QEMU (stopped with SIGKILL on drop) does not react to Ctrl-C on its own.
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block().context("blocking SIGINT/SIGTERM")?;
    let work = spec.work_dir.clone();
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    std::fs::write(work.join(PID_FILE), std::process::id().to_string())?;
    let _ = std::fs::remove_file(work.join(INFO_FILE));
    eprintln!("building or reusing images, then booting (TCG boots take minutes)…");
    let mut cluster = Cluster::boot(spec)?;
    let registered = match cluster.wait_registered(timeout) {
        Ok(t) => t,
        Err(e) => bail!("{e}\n{}", cluster.consoles(40)),
    };
    // Up means usable: the gateway and IAM answer too (they may start after the agents
    // registered).
    if let Err(e) = cluster.wait_master_units_healthy(MASTER_UNITS, timeout) {
        bail!("{e}\n{}", cluster.consoles(40));
    }
    let table = reach_table(&cluster, registered);
    std::fs::write(work.join(INFO_FILE), &table)?;
    println!("{table}\nStop with Ctrl-C (or `basalt-qemu down` for a detached cluster).");
    let sig = set.wait().context("waiting for SIGINT/SIGTERM")?;
    eprintln!("{sig:?}: stopping the cluster");
    drop(cluster);
    let _ = std::fs::remove_file(work.join(PID_FILE));
    let _ = std::fs::remove_file(work.join(INFO_FILE));
    Ok(())
}

/// Re-runs this command without `--detach` in a new session and returns once it printed
/// the reach table (or failed).
pub fn detach(work: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let _ = std::fs::remove_file(work.join(INFO_FILE));
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--detach")
        .collect();
    let log = std::fs::File::create(work.join(LOG_FILE))?;
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new("setsid")
        .arg(exe)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting `setsid basalt-qemu up`")?;
    eprintln!(
        "starting in the background; log: {}",
        work.join(LOG_FILE).display()
    );
    let info = basalt_qemu::wait_until(
        "the detached cluster to come up",
        Duration::from_secs(3600),
        Duration::from_secs(1),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            std::fs::read_to_string(work.join(INFO_FILE)).ok().map(Ok)
        },
    )?;
    match info {
        Ok(table) => {
            println!("{table}\nStop it with `basalt-qemu down`.");
            Ok(())
        }
        Err(status) => bail!(
            "`basalt-qemu up` exited with {status}; see {}",
            work.join(LOG_FILE).display()
        ),
    }
}

/// Stops a detached cluster.
pub fn down(work: &Path) -> anyhow::Result<()> {
    let pid_file = work.join(PID_FILE);
    let pid: i32 = match std::fs::read_to_string(&pid_file) {
        Ok(p) => p
            .trim()
            .parse()
            .with_context(|| format!("{} is not a pid", pid_file.display()))?,
        Err(_) => {
            println!("no cluster running from {}", work.display());
            return Ok(());
        }
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    if nix::sys::signal::kill(pid, Signal::SIGTERM).is_err() {
        let _ = std::fs::remove_file(&pid_file);
        println!(
            "no cluster running from {} (stale pid file removed)",
            work.display()
        );
        return Ok(());
    }
    basalt_qemu::wait_until(
        "`basalt-qemu up` to stop",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || nix::sys::signal::kill(pid, None).is_err().then_some(()),
    )?;
    println!("cluster from {} stopped", work.display());
    Ok(())
}
