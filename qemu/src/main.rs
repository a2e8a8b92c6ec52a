//! `basalt-qemu`: build a node image and boot it in QEMU.
//!
//! ```text
//! basalt-qemu build --role agent                 # builds (or reuses) target/nodeimg/agent
//! basalt-qemu boot --role agent --mode uefi      # boots it, waits for the ready marker
//! basalt-qemu up --masters 1 --agents 1          # a whole cluster, until Ctrl-C
//! basalt-qemu up --masters 1 --agents 1 --detach # … in the background; `down` stops it
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use basalt_nodeimg::{BuildOptions, ExtraFile, Role, RootFsKind};
use basalt_qemu::{Accel, BootMode, Net, READY_MARKER, Vm, image_vm};
use clap::{Parser, Subcommand, ValueEnum};

mod up;

#[derive(Parser)]
#[command(
    name = "basalt-qemu",
    about = "Build Basalt node images and boot them in QEMU"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct ImageArgs {
    /// master, agent or agent-public
    #[arg(long, default_value = "agent")]
    role: String,
    /// Output directory (default target/nodeimg/<role>)
    #[arg(long)]
    out: Option<PathBuf>,
    /// Base rootfs cache (default $BASALT_IMAGE_CACHE or target/nodeimg-cache)
    #[arg(long)]
    cache: Option<PathBuf>,
}

impl ImageArgs {
    fn options(&self) -> anyhow::Result<BuildOptions> {
        let role: Role = self.role.parse()?;
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| default_target().join("nodeimg").join(role.as_str()));
        let mut o = BuildOptions::new(role, out);
        if let Some(c) = &self.cache {
            o.cache_dir = c.clone();
        }
        Ok(o)
    }
}

#[derive(Copy, Clone, ValueEnum)]
enum Mode {
    Uefi,
    Direct,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot a cluster (genconf, images, bundles over HTTP, N masters + M agents), wait until
    /// every agent has registered, print how to reach it, and keep it up until Ctrl-C
    /// (or `down`, with --detach).
    Up {
        #[arg(long, default_value_t = 1)]
        masters: usize,
        #[arg(long, default_value_t = 1)]
        agents: usize,
        /// Work folder: genconf (the cluster's keys), consoles, disks (default target/qemu-cluster)
        #[arg(long)]
        work: Option<PathBuf>,
        /// Image folder, reused between runs (default target/nodeimg-cluster)
        #[arg(long)]
        images: Option<PathBuf>,
        /// The basaltd to put in the images (default: build it with cargo)
        #[arg(long)]
        basaltd: Option<PathBuf>,
        /// Seconds to wait until every agent has registered.
        #[arg(long, default_value_t = 1200)]
        timeout: u64,
        /// Return once the cluster is up, leaving it running in the background.
        #[arg(long)]
        detach: bool,
    },
    /// Stop a cluster started with `up --detach`.
    Down {
        /// The work folder given to `up`.
        #[arg(long)]
        work: Option<PathBuf>,
    },
    /// Build (or reuse) an image and print its size table.
    Build {
        #[command(flatten)]
        image: ImageArgs,
        /// Use squashfs (zstd) instead of erofs (lz4hc).
        #[arg(long)]
        squashfs: bool,
        /// Skip disk.qcow2.
        #[arg(long)]
        no_qcow2: bool,
        /// Extra file: DEST=SRC or DEST=SRC:MODE (octal), e.g. /usr/bin/basaltd=target/debug/basaltd:755
        #[arg(long = "extra")]
        extra: Vec<String>,
    },
    /// Boot a built image and wait until it reports ready.
    Boot {
        #[command(flatten)]
        image: ImageArgs,
        /// Build (or reuse) the image first.
        #[arg(long)]
        build: bool,
        #[arg(long, value_enum, default_value = "uefi")]
        mode: Mode,
        /// kvm, tcg or auto (default: $BASALT_QEMU_ACCEL or auto)
        #[arg(long)]
        accel: Option<String>,
        #[arg(long, default_value_t = 1024)]
        memory: u32,
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// none, user, or mcast:GROUP:PORT (private L2 segment shared with other VMs)
        #[arg(long, default_value = "user")]
        net: String,
        /// Seconds to wait for the ready marker.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Keep the VM running after it is ready (until QEMU exits or Ctrl-C).
        #[arg(long)]
        keep_running: bool,
        /// Console log, overlay disk, firmware vars (default target/qemu/<role>)
        #[arg(long)]
        work: Option<PathBuf>,
    },
}

fn default_target() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    basalt_nodeimg::options::workspace_root(&cwd)
        .unwrap_or(cwd)
        .join("target")
}

fn parse_extra(s: &str) -> anyhow::Result<ExtraFile> {
    let (dest, rest) = s
        .split_once('=')
        .with_context(|| format!("--extra {s:?}: want DEST=SRC[:MODE]"))?;
    let (src, mode) = match rest.rsplit_once(':') {
        Some((src, m)) => (
            src,
            u32::from_str_radix(m, 8).with_context(|| format!("--extra {s:?}: bad mode"))?,
        ),
        None => (rest, 0o644),
    };
    Ok(ExtraFile::new(dest, src, mode))
}

fn parse_net(s: &str) -> anyhow::Result<Vec<Net>> {
    Ok(match s {
        "none" => vec![],
        "user" => vec![Net::User {
            restrict: true,
            forwards: Vec::new(),
        }],
        other => match other.strip_prefix("mcast:") {
            Some(addr) => vec![Net::Multicast {
                group: addr.parse().with_context(|| format!("--net {other:?}"))?,
                mac: "52:54:00:ba:5a:01".into(),
            }],
            None => bail!("--net {other:?}: want none, user or mcast:GROUP:PORT"),
        },
    })
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Up {
            masters,
            agents,
            work,
            images,
            basaltd,
            timeout,
            detach,
        } => {
            let target = default_target();
            let work = work.unwrap_or_else(|| target.join("qemu-cluster"));
            if detach {
                return up::detach(&work);
            }
            let basaltd = match basaltd {
                Some(b) => b,
                None => {
                    let ws = target
                        .parent()
                        .map(std::path::Path::to_path_buf)
                        .unwrap_or_else(|| PathBuf::from("."));
                    basalt_qemu::cluster::stage_basaltd(&ws, &target, &work.join("stage"))?
                }
            };
            let spec = basalt_qemu::cluster::ClusterSpec::new(
                masters,
                agents,
                &work,
                images.unwrap_or_else(|| basalt_qemu::cluster::default_images_dir(&target)),
                basaltd,
                std::env::current_dir()?.join("units"),
            );
            up::foreground(spec, Duration::from_secs(timeout))?;
        }
        Cmd::Down { work } => {
            up::down(&work.unwrap_or_else(|| default_target().join("qemu-cluster")))?;
        }
        Cmd::Build {
            image,
            squashfs,
            no_qcow2,
            extra,
        } => {
            let mut o = image.options()?;
            if squashfs {
                o.root_fs = RootFsKind::Squashfs;
            }
            o.qcow2 = !no_qcow2;
            o.extra_files = extra
                .iter()
                .map(|e| parse_extra(e))
                .collect::<Result<_, _>>()?;
            let t = Instant::now();
            let a = basalt_nodeimg::build(&o).context("building the node image")?;
            println!("{}", a.size_table());
            for (phase, secs) in &a.timings {
                println!("{phase:<22} {secs:>7.1} s");
            }
            println!(
                "built {} in {:.1} s (base cache hit: {}, reused: {})\nroot hash {}",
                a.dir.display(),
                t.elapsed().as_secs_f64(),
                a.base_cache_hit,
                a.reused,
                a.root_hash
            );
        }
        Cmd::Boot {
            image,
            build,
            mode,
            accel,
            memory,
            cpus,
            net,
            timeout,
            keep_running,
            work,
        } => {
            let o = image.options()?;
            let a = if build {
                basalt_nodeimg::build(&o).context("building the node image")?
            } else {
                basalt_nodeimg::load(&o)
                    .with_context(|| format!("no image in {} (use --build)", o.out_dir.display()))?
            };
            let work = work.unwrap_or_else(|| default_target().join("qemu").join(o.role.as_str()));
            let mode = match mode {
                Mode::Uefi => BootMode::Uefi,
                Mode::Direct => BootMode::Direct,
            };
            let mut cfg = image_vm(o.role.as_str(), &a, None, mode, &work, 1 << 30)?;
            if let Some(acc) = accel {
                cfg.accel = acc.parse::<Accel>().map_err(anyhow::Error::msg)?;
            }
            cfg.memory_mib = memory;
            cfg.cpus = cpus;
            cfg.nets = parse_net(&net)?;
            let mut vm = Vm::start(cfg)?;
            println!(
                "booting ({:?}, {:?}); console: {}",
                mode,
                vm.accel,
                vm.console_path().display()
            );
            let up = vm.wait_for_console(READY_MARKER, Duration::from_secs(timeout))?;
            println!("{}", vm.console_tail(12));
            println!("ready after {:.1} s", up.as_secs_f64());
            if keep_running {
                let status = vm.wait_for_exit(Duration::from_secs(u64::MAX / 4))?;
                println!("QEMU exited: {status}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_and_net_parsing() {
        let e = parse_extra("/usr/bin/basaltd=target/basaltd:755").unwrap();
        assert_eq!(e.dest, "/usr/bin/basaltd");
        assert_eq!(e.mode, 0o755);
        assert_eq!(parse_extra("/a=b").unwrap().mode, 0o644);
        assert!(parse_extra("nodest").is_err());
        assert!(parse_net("none").unwrap().is_empty());
        assert!(matches!(
            parse_net("mcast:230.0.0.1:5555").unwrap()[0],
            Net::Multicast { .. }
        ));
        assert!(parse_net("bridge").is_err());
    }
}
