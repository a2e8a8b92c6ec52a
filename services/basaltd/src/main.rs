//! `basaltd`: the Basalt node binary. One copy of the runtime per image, like k3s:
//! `basaltd <component> [args…]` (or a link named `basalt-<component>`).
//!
//! Components are rows of [`COMPONENTS`]; adding one is adding a row and a module.
//! Every long-running component reports readiness with `sd_notify(READY=1)`
//! ([`basalt_supervisor::notify::notify_ready`]) because its unit is `Type=notify`.
//!
//! Components that run on the node read their configuration from the installed bundle
//! under `/run/basalt` ([`basalt_genconf::render::NODE_ROOT`]; `--node-root` or
//! `BASALT_NODE_ROOT` override it, see [`node`]).

mod agent;
mod dns;
mod gateway;
mod iam;
mod l4lb;
mod logs;
mod marathon;
mod master;
mod node;
mod supervisor;

use std::process::ExitCode;

/// One component of the multi-call binary.
pub struct Component {
    pub name: &'static str,
    pub about: &'static str,
    /// Runs the component with its own arguments (`args[0]` is `basaltd <name>`).
    pub main: fn(Vec<String>) -> anyhow::Result<ExitCode>,
}

/// The dispatch table.
pub const COMPONENTS: &[Component] = &[
    Component {
        name: "supervisor",
        about: "verify the node bundle, install /run/basalt, start the role target, serve node health on :1050",
        main: supervisor::main,
    },
    Component {
        name: "iam",
        about: "identity and access service (users, service accounts, tokens) on 127.0.0.1:8101",
        main: iam::main,
    },
    Component {
        name: "master",
        about: "Mesos-compatible master (scheduler, operator and agent APIs) on :5050",
        main: master::main,
    },
    Component {
        name: "agent",
        about: "Mesos-compatible agent (resource detection, containerizer, executors) on :5051",
        main: agent::main,
    },
    Component {
        name: "marathon",
        about: "Marathon-compatible app scheduler (REST v2) on :8080",
        main: marathon::main,
    },
    Component {
        name: "gateway",
        about: "Admin-Router-compatible front door: masters 443/80 (TLS, auth), agents 61001",
        main: gateway::main,
    },
    Component {
        name: "dns",
        about: "Mesos-DNS-compatible names and node-local forwarder on 198.51.100.1-3:53",
        main: dns::main,
    },
    Component {
        name: "l4lb",
        about: "layer-4 load balancer for named and IP VIPs (userspace proxy)",
        main: l4lb::main,
    },
    Component {
        name: "logs",
        about: "dcos-log-compatible node log API (the journal) on 127.0.0.1:61081",
        main: logs::main,
    },
];

/// Exit status for an unknown component or missing arguments (like a usage error).
const EXIT_USAGE: u8 = 2;

fn usage() -> String {
    let mut s = String::from("usage: basaltd <component> [args…]\n\ncomponents:\n");
    for c in COMPONENTS {
        s.push_str(&format!("  {:<12} {}\n", c.name, c.about));
    }
    s
}

/// Finds the component: `basaltd <name>` or a link named `basalt-<name>`.
fn select(args: &[String]) -> Result<(&'static Component, Vec<String>), String> {
    let argv0 = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    if let Some(name) = argv0.strip_prefix("basalt-")
        && let Some(c) = COMPONENTS.iter().find(|c| c.name == name)
    {
        return Ok((c, args.to_vec()));
    }
    let Some(name) = args.get(1) else {
        return Err(format!("no component given\n\n{}", usage()));
    };
    if matches!(name.as_str(), "-h" | "--help" | "help") {
        return Err(usage());
    }
    match COMPONENTS.iter().find(|c| c.name == name) {
        Some(c) => {
            let mut rest = vec![format!("basaltd {}", c.name)];
            rest.extend(args.iter().skip(2).cloned());
            Ok((c, rest))
        }
        None => Err(format!("unknown component {name:?}\n\n{}", usage())),
    }
}

/// The log filter without `RUST_LOG`: hickory's per-query logs are noise at `info`.
const DEFAULT_LOG_FILTER: &str = "info,hickory_server=warn,hickory_proto=warn";

/// Logs to stderr without colours or timestamps (journald adds both).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .try_init();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (component, rest) = match select(&args) {
        Ok(x) => x,
        Err(msg) => {
            eprintln!("basaltd: {msg}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_tracing();
    match (component.main)(rest) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("basaltd {}: {e:#}", component.name);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dispatch_by_argument_and_by_link_name() {
        let (c, rest) = select(&a(&["/usr/bin/basaltd", "iam", "--listen", "x"])).unwrap();
        assert_eq!(c.name, "iam");
        assert_eq!(rest, a(&["basaltd iam", "--listen", "x"]));
        let (c, rest) = select(&a(&["/usr/bin/basalt-supervisor"])).unwrap();
        assert_eq!(c.name, "supervisor");
        assert_eq!(rest.len(), 1);
    }

    #[test]
    fn unknown_component_lists_the_components() {
        let e = select(&a(&["basaltd", "metronome"])).err().unwrap();
        assert!(e.contains("unknown component \"metronome\""), "{e}");
        for c in COMPONENTS {
            assert!(e.contains(c.name), "{e}");
        }
        assert!(select(&a(&["basaltd"])).is_err());
    }

    #[test]
    fn component_names_are_unique() {
        let mut names: Vec<&str> = COMPONENTS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COMPONENTS.len());
    }
}
