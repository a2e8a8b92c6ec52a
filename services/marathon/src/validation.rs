//! App validation with Marathon's paths and messages (`AppValidation.scala`,
//! `SchedulingValidation.scala`, `PathId.scala`, `EnvVarValidation.scala`). Failures are
//! answered `422 {"message":"Object is not valid","details":[{"path","errors"}]}`.

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use crate::app::{AppDefinition, ContainerKind, HealthProtocol, UnreachableStrategy};
use crate::pathid;

/// One failed rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON path (`/id`, `/healthChecks(0)`, `/` for whole-app rules).
    pub path: String,
    /// Messages for that path.
    pub errors: Vec<String>,
}

/// Every failed rule of one app, grouped by path in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    pub(crate) fn add(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        let path = path.into();
        let msg = msg.into();
        if let Some(v) = self.0.iter_mut().find(|v| v.path == path) {
            if !v.errors.contains(&msg) {
                v.errors.push(msg);
            }
        } else {
            self.0.push(Violation {
                path,
                errors: vec![msg],
            });
        }
    }

    /// No violations.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The messages at `path`.
    pub fn at(&self, path: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|v| v.path == path)
            .flat_map(|v| v.errors.iter().map(String::as_str))
            .collect()
    }

    /// Prefixes every path (for apps nested in groups or batch updates).
    pub fn prefixed(self, prefix: &str) -> Violations {
        Violations(
            self.0
                .into_iter()
                .map(|v| Violation {
                    path: if v.path == "/" {
                        prefix.to_string()
                    } else {
                        format!("{prefix}{}", v.path)
                    },
                    errors: v.errors,
                })
                .collect(),
        )
    }
}

/// Enabled Marathon features (`--enable_features`). DC/OS OSS runs Marathon with
/// `vips,task_killing,external_volumes,gpu_resources`; `secrets` needs a secret store,
/// which Basalt does not configure.
#[derive(Debug, Clone)]
pub struct Features {
    /// The enabled feature names.
    pub enabled: BTreeSet<String>,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            enabled: ["vips", "task_killing", "external_volumes", "gpu_resources"]
                .into_iter()
                .map(str::to_string)
                .collect(),
        }
    }
}

impl Features {
    pub(crate) fn has(&self, f: &str) -> bool {
        self.enabled.contains(f)
    }
}

const OPERATOR_MESSAGE: &str = "Constraint operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER or UNLIKE";
const HC_PORT_INDEX: &str = "Health check port indices must address an element of the ports array or container port mappings.";
const CMD_ARGS_CONTAINER: &str =
    "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.";

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

pub(crate) fn validate_id(v: &mut Violations, path: &str, id: &str) {
    let elems = pathid::elements(id);
    if elems.is_empty() {
        v.add(path, "Path must contain at least one path element");
        return;
    }
    if !elems.iter().all(|e| pathid::segment_is_valid(e)) {
        v.add(
            path,
            format!(
                "must fully match regular expression '{}'",
                pathid::ID_SEGMENT_PATTERN
            ),
        );
    }
    if elems
        .last()
        .is_some_and(|l| pathid::RESERVED_KEYWORDS.contains(l))
    {
        v.add(
            path,
            format!(
                "must not end with any of the following reserved keywords: {}",
                pathid::RESERVED_KEYWORDS.join(", ")
            ),
        );
    }
}

/// Validates one constraint `[field, OP, value?]` (app or persistent-volume rules).
pub fn constraint_errors(c: &[String]) -> Option<String> {
    if c.len() < 2 || c.len() > 3 {
        return Some("Each constraint must have either 2 or 3 fields".to_string());
    }
    if c[0].is_empty() {
        return Some("Missing field and operator".to_string());
    }
    let value = c.get(2);
    match c[1].as_str() {
        "UNIQUE" => value.map(|_| "Value specified but not used".to_string()),
        "CLUSTER" | "IS" => match value {
            Some(v) if !v.is_empty() => None,
            _ => Some("Missing value".to_string()),
        },
        "GROUP_BY" => value
            .filter(|v| v.parse::<i32>().is_err())
            .map(|_| "Value was specified but is not a number".to_string()),
        "MAX_PER" => match value {
            Some(v) if v.parse::<i32>().is_ok() => None,
            _ => Some("Value was not specified or is not a number".to_string()),
        },
        "LIKE" | "UNLIKE" => match value {
            None => Some("A regular expression value must be provided".to_string()),
            Some(p) => regex::Regex::new(&format!("^(?:{p})$"))
                .err()
                .map(|_| format!("'{p}' is not a valid regular expression")),
        },
        _ => Some(OPERATOR_MESSAGE.to_string()),
    }
}

/// Validates a request body already parsed; runs the deprecated-API rules on the raw
/// form, normalizes, then runs the canonical rules. Returns the canonical app.
pub fn validate_app(
    raw: &AppDefinition,
    base: &str,
    features: &Features,
) -> Result<AppDefinition, Violations> {
    let mut v = Violations::default();
    // Deprecated API rules (on the raw body).
    if raw.uris.as_ref().is_some_and(|u| !u.is_empty()) && !raw.fetch.is_empty() {
        v.add("/uris", "may not be set in conjunction with fetch");
    }
    if let (Some(ports), Some(defs)) = (&raw.ports, &raw.port_definitions)
        && !ports.is_empty()
        && !defs.is_empty()
        && ports != &defs.iter().map(|d| d.port).collect::<Vec<_>>()
    {
        v.add("/", "cannot specify both ports and port definitions");
    }
    if raw
        .container
        .as_ref()
        .and_then(|c| c.docker.as_ref())
        .is_some_and(|d| d.credential.is_some())
    {
        v.add("/container/docker/credential", "must be empty");
    }
    if raw
        .container
        .as_ref()
        .and_then(|c| c.docker.as_ref())
        .is_some_and(|d| d.network.is_some())
        && !raw.networks.is_empty()
    {
        v.add(
            "/",
            "must not specify both container.docker.network and networks",
        );
    }
    let mut app = raw.clone();
    app.normalize(base);
    canonical_rules(&app, features, &mut v);
    if v.is_empty() { Ok(app) } else { Err(v) }
}

fn canonical_rules(app: &AppDefinition, features: &Features, v: &mut Violations) {
    validate_id(v, "/id", &app.id);
    for (i, dep) in app.dependencies.iter().enumerate() {
        validate_id(v, &format!("/dependencies({i})"), dep);
    }
    // cmd / args / container
    let cmd = app.cmd.is_some();
    let args = app.args.as_ref().is_some_and(|a| !a.is_empty());
    let image = app
        .container
        .as_ref()
        .is_some_and(|c| c.docker.is_some() || c.extra.contains_key("appc"));
    if !((cmd ^ args) || (!(cmd && args) && image)) {
        v.add("/", CMD_ARGS_CONTAINER);
    }
    if app.cmd.as_deref().is_some_and(str::is_empty) {
        v.add("/cmd", "must not be an empty string");
    }
    // resources and counts
    if app.instances < 0 {
        v.add(
            "/instances",
            format!("got {}, expected 0 or more", app.instances),
        );
    }
    if app.cpus.is_nan() || app.cpus < 0.001 {
        v.add(
            "/cpus",
            format!("got {}, expected 0.001 or more", fmt_num(app.cpus)),
        );
    }
    for (path, val) in [("/mem", app.mem), ("/disk", app.disk)] {
        if val.is_nan() || val < 0.0 {
            v.add(path, format!("got {}, expected 0.0 or more", fmt_num(val)));
        }
    }
    if app.gpus < 0 {
        v.add("/gpus", format!("got {}, expected 0 or more", app.gpus));
    }
    if app.gpus > 0 {
        if app
            .container
            .as_ref()
            .is_some_and(|c| c.kind == ContainerKind::Docker)
        {
            v.add("/", "GPU resources only work with the Mesos containerizer");
        }
        if !features.has("gpu_resources") {
            v.add(
                "/",
                "Feature gpu_resources is not enabled. Enable with --enable_features gpu_resources)",
            );
        }
    }
    if app.backoff_seconds < 0.0 {
        v.add(
            "/backoffSeconds",
            format!("got {}, expected 0.0 or more", fmt_num(app.backoff_seconds)),
        );
    }
    if app.backoff_factor < 1.0 {
        v.add(
            "/backoffFactor",
            format!("got {}, expected 1.0 or more", fmt_num(app.backoff_factor)),
        );
    }
    if app.max_launch_delay_seconds < 0.0 {
        v.add(
            "/maxLaunchDelaySeconds",
            format!(
                "got {}, expected 0.0 or more",
                fmt_num(app.max_launch_delay_seconds)
            ),
        );
    }
    if app.task_kill_grace_period_seconds.is_some_and(|s| s < 0) {
        v.add(
            "/taskKillGracePeriodSeconds",
            "got a negative value, expected 0 or more",
        );
    }
    // executor
    let executor_ok = app.executor.is_empty()
        || app.executor == "//cmd"
        || !(app.executor.contains("//") || app.executor.ends_with('/'));
    if !executor_ok {
        v.add(
            "/executor",
            "must fully match regular expression '^(//cmd)|(/?[^/]+(/[^/]+)*)|$'",
        );
    }
    // upgrade strategy
    let us = app.upgrade();
    for (path, val) in [
        (
            "/upgradeStrategy/minimumHealthCapacity",
            us.minimum_health_capacity,
        ),
        (
            "/upgradeStrategy/maximumOverCapacity",
            us.maximum_over_capacity,
        ),
    ] {
        if val > 1.0 {
            v.add(path, "is greater than 1");
        }
        if val < 0.0 {
            v.add(path, "is less than 0");
        }
    }
    let single_instance = app
        .labels
        .get("MARATHON_SINGLE_INSTANCE_APP")
        .is_some_and(|l| l == "true");
    if single_instance {
        if app.instances > 1 {
            v.add("/", "Single instance app may only have one instance");
        }
        if us.minimum_health_capacity != 0.0 {
            v.add(
                "/upgradeStrategy/minimumHealthCapacity",
                format!("got {}, expected 0.0", fmt_num(us.minimum_health_capacity)),
            );
        }
        if us.maximum_over_capacity != 0.0 {
            v.add(
                "/upgradeStrategy/maximumOverCapacity",
                format!("got {}, expected 0.0", fmt_num(us.maximum_over_capacity)),
            );
        }
    }
    // residency
    let persistent = app.has_persistent_volumes();
    if app.residency.is_some() != persistent {
        v.add(
            "/",
            "App must contain persistent volumes and define residency",
        );
    }
    if app.residency.is_some() {
        if us.maximum_over_capacity != 0.0 {
            v.add(
                "/upgradeStrategy/maximumOverCapacity",
                format!("got {}, expected 0.0", fmt_num(us.maximum_over_capacity)),
            );
        }
        if app.unreachable() != UnreachableStrategy::Disabled {
            v.add(
                "/",
                "unreachableStrategy must be disabled for resident tasks",
            );
        }
    }
    if let UnreachableStrategy::Enabled {
        inactive_after_seconds,
        expunge_after_seconds,
    } = app.unreachable()
    {
        if inactive_after_seconds < 0 {
            v.add(
                "/unreachableStrategy/inactiveAfterSeconds",
                format!("got {inactive_after_seconds}, expected 0 or more"),
            );
        }
        if expunge_after_seconds < inactive_after_seconds {
            v.add(
                "/unreachableStrategy/expungeAfterSeconds",
                format!("got {expunge_after_seconds}, expected {inactive_after_seconds} or more"),
            );
        }
    }
    // env and secrets
    for (name, val) in &app.env {
        if matches!(val, crate::app::EnvValue::Secret { .. }) && !features.has("secrets") {
            v.add(
                format!("/env/{name}"),
                "use of secret-references in the environment requires the secrets feature to be enabled (secrets are not configured)",
            );
        }
    }
    if !app.secrets.is_empty() && !features.has("secrets") {
        v.add(
            "/secrets",
            "Feature secrets is not enabled. Enable with --enable_features secrets)",
        );
    }
    // networking and ports
    let host = app.is_host_networking();
    let pm = app
        .container
        .as_ref()
        .and_then(|c| c.port_mappings.as_ref());
    if host && pm.is_some_and(|p| !p.is_empty()) {
        v.add("/", "portMappings are not allowed with host-networking");
    }
    if !host && app.port_definitions.as_ref().is_some_and(|p| !p.is_empty()) {
        v.add("/", "portDefinitions are only allowed with host-networking");
    }
    for (i, n) in app.networks.iter().enumerate() {
        if !matches!(n.mode.as_str(), "host" | "container" | "container/bridge") {
            v.add(
                format!("/networks({i})/mode"),
                format!(
                    "'{}' is not one of (container, container/bridge, host)",
                    n.mode
                ),
            );
        }
    }
    if app.networks.iter().filter(|n| n.is_host()).count() > 0 && app.networks.len() > 1 {
        v.add(
            "/networks",
            "host networks may not be mixed with other networks",
        );
    }
    if let Some(defs) = &app.port_definitions {
        let mut seen = HashSet::new();
        if defs.iter().any(|d| d.port != 0 && !seen.insert(d.port)) {
            v.add("/portDefinitions", "Ports must be unique.");
        }
        let mut names = HashSet::new();
        if defs
            .iter()
            .filter_map(|d| d.name.as_deref())
            .any(|n| !names.insert(n))
        {
            v.add("/portDefinitions", "Port names must be unique.");
        }
        for (i, d) in defs.iter().enumerate() {
            if !(0..=65535).contains(&d.port) {
                v.add(
                    format!("/portDefinitions({i})/port"),
                    format!("got {}, expected between 0 and 65535", d.port),
                );
            }
            if !matches!(d.protocol.as_str(), "tcp" | "udp" | "udp,tcp" | "tcp,udp") {
                v.add(
                    format!("/portDefinitions({i})/protocol"),
                    "is not one of (tcp, udp, udp,tcp)",
                );
            }
        }
    }
    if let Some(pms) = pm {
        let mut names = HashSet::new();
        if pms
            .iter()
            .filter_map(|m| m.name.as_deref())
            .any(|n| !names.insert(n))
        {
            v.add("/container/portMappings", "Port names must be unique.");
        }
        for (i, m) in pms.iter().enumerate() {
            for (what, p) in [
                ("containerPort", Some(m.container_port)),
                ("hostPort", m.host_port),
            ] {
                if let Some(p) = p
                    && !(0..=65535).contains(&p)
                {
                    v.add(
                        format!("/container/portMappings({i})/{what}"),
                        format!("got {p}, expected between 0 and 65535"),
                    );
                }
            }
        }
    }
    // container
    if let Some(c) = &app.container {
        match (&c.docker, c.kind) {
            (None, ContainerKind::Docker) => {
                v.add("/container/docker", "must not be empty");
            }
            (Some(d), _) if d.image.is_empty() => {
                v.add("/container/docker/image", "must not be empty");
            }
            _ => {}
        }
        if c.kind == ContainerKind::Mesos
            && let Some(d) = &c.docker
            && (!d.parameters.is_empty() || d.privileged)
        {
            v.add(
                "/container/docker/parameters",
                "must be empty (docker parameters only apply to the DOCKER containerizer)",
            );
        }
        for (i, vol) in c.volumes.iter().enumerate() {
            let base = format!("/container/volumes({i})");
            if let Some(p) = &vol.persistent {
                match vol.container_path.as_deref() {
                    None | Some("") => v.add(format!("{base}/containerPath"), "must not be empty"),
                    Some(path) if path.contains('/') => v.add(
                        format!("{base}/containerPath"),
                        "value must not contain \"/\"",
                    ),
                    Some("." | "..") => v.add(
                        format!("{base}/containerPath"),
                        "got a dot path, expected a name",
                    ),
                    _ => {}
                }
                if vol.mode.as_deref().is_some_and(|m| m != "RW") {
                    v.add(format!("{base}/mode"), "got RO, expected RW");
                }
                if p.size <= 0 {
                    v.add(
                        format!("{base}/persistent/size"),
                        format!("got {}, expected more than 0", p.size),
                    );
                }
                if p.max_size.is_some() && p.kind.as_deref() != Some("mount") {
                    v.add(
                        format!("{base}/persistent"),
                        "Only mount volumes can have maxSize",
                    );
                }
                if p.max_size.is_some_and(|m| m <= p.size) {
                    v.add(
                        format!("{base}/persistent"),
                        "Max size must be larger than size",
                    );
                }
            } else if vol.external.is_some() {
                if !features.has("external_volumes") {
                    v.add(
                        base.clone(),
                        "Feature external_volumes is not enabled. Enable with --enable_features external_volumes)",
                    );
                }
            } else if let Some(secret) = &vol.secret {
                if !app.secrets.contains_key(secret) {
                    v.add(
                        base.clone(),
                        "volume.secret must refer to an existing secret",
                    );
                }
            } else {
                if vol.container_path.as_deref().unwrap_or("").is_empty() {
                    v.add(format!("{base}/containerPath"), "must not be empty");
                }
                if vol.host_path.as_deref().unwrap_or("").is_empty() {
                    v.add(format!("{base}/hostPath"), "must not be empty");
                }
            }
            if let Some(m) = &vol.mode
                && m != "RW"
                && m != "RO"
            {
                v.add(format!("{base}/mode"), "is not one of (RO, RW)");
            }
        }
    }
    // health checks
    let ports = app.port_count() as i64;
    let mut mesos_checks = 0;
    for (i, hc) in app.health_checks.iter().enumerate() {
        let path = format!("/healthChecks({i})");
        if hc.protocol.is_marathon_side() && hc.command.is_none() {
            let ok = match hc.port_index {
                Some(idx) => idx >= 0 && idx < ports,
                None => hc.port.is_some(),
            };
            if !ok {
                v.add(path.clone(), HC_PORT_INDEX);
            }
        } else if hc.protocol != HealthProtocol::Command
            && hc.port.is_none()
            && hc.port_index.is_some_and(|idx| idx < 0 || idx >= ports)
        {
            v.add(path.clone(), HC_PORT_INDEX);
        }
        if hc.protocol == HealthProtocol::Command && hc.command.is_none() {
            v.add(format!("{path}/command"), "must not be empty");
        }
        if !hc.protocol.is_marathon_side() && hc.protocol != HealthProtocol::Command {
            mesos_checks += 1;
        }
        if hc.protocol == HealthProtocol::Command && hc.command.is_some() {
            // command checks are counted separately, like Marathon
        }
        if hc.ip_protocol != "IPv4"
            && !(matches!(
                hc.protocol,
                HealthProtocol::MesosHttp | HealthProtocol::MesosHttps | HealthProtocol::MesosTcp
            ) && app
                .container
                .as_ref()
                .is_some_and(|c| c.kind == ContainerKind::Docker))
        {
            v.add(
                path.clone(),
                "IPv6 can only be used for container type DOCKER and Mesos http/https/tcp health checks",
            );
        }
        for (what, val, min) in [
            ("gracePeriodSeconds", hc.grace_period_seconds, 0),
            ("intervalSeconds", hc.interval_seconds, 1),
            ("timeoutSeconds", hc.timeout_seconds, 1),
            ("maxConsecutiveFailures", hc.max_consecutive_failures, 0),
            ("delaySeconds", hc.delay_seconds, 0),
        ] {
            if val < min {
                v.add(
                    format!("{path}/{what}"),
                    format!("got {val}, expected {min} or more"),
                );
            }
        }
    }
    if mesos_checks > 1 {
        v.add(
            "/",
            "AppDefinition can contain at most one Mesos health check",
        );
    }
    // readiness checks
    if app.readiness_checks.len() > 1 {
        v.add(
            "/readinessChecks",
            format!("got {}, expected 1 or less", app.readiness_checks.len()),
        );
    }
    let port_names: BTreeSet<&str> = match pm {
        Some(p) if !p.is_empty() => p.iter().filter_map(|m| m.name.as_deref()).collect(),
        _ => app
            .port_definitions
            .iter()
            .flatten()
            .filter_map(|d| d.name.as_deref())
            .collect(),
    };
    for (i, rc) in app.readiness_checks.iter().enumerate() {
        if !port_names.contains(rc.port_name.as_str()) {
            v.add(
                format!("/readinessChecks({i})/portName"),
                format!("No port definition reference for portName {}", rc.port_name),
            );
        }
        if rc.timeout_seconds >= rc.interval_seconds {
            v.add(
                format!("/readinessChecks({i})/timeoutSeconds"),
                format!(
                    "got {}, expected less than {}",
                    rc.timeout_seconds, rc.interval_seconds
                ),
            );
        }
    }
    // constraints
    for (i, c) in app.constraints.iter().enumerate() {
        if let Some(msg) = constraint_errors(c) {
            v.add(format!("/constraints({i})"), msg);
        }
    }
    // roles
    if let Some(roles) = &app.accepted_resource_roles {
        if roles.is_empty() {
            v.add("/acceptedResourceRoles", "must not be empty");
        }
        for r in roles {
            if basalt_mesos::validate_role(r).is_err() {
                v.add(
                    "/acceptedResourceRoles",
                    format!("'{r}' is not a valid role name"),
                );
            }
        }
    }
    // fetch
    for (i, a) in app.fetch.iter().enumerate() {
        if a.uri.is_empty() {
            v.add(format!("/fetch({i})/uri"), "must not be empty");
        }
    }
    // DC/OS migration API labels
    if app.labels.contains_key("DCOS_MIGRATION_API_VERSION") {
        let ok = app
            .labels
            .get("DCOS_MIGRATION_API_VERSION")
            .is_some_and(|v| v == "v1")
            && app
                .labels
                .get("DCOS_PACKAGE_FRAMEWORK_NAME")
                .is_some_and(|v| !v.is_empty())
            && app
                .labels
                .get("DCOS_MIGRATION_API_PATH")
                .is_some_and(|v| !v.is_empty());
        if !ok {
            v.add(
                "/",
                "DCOS_PACKAGE_FRAMEWORK_NAME and DCOS_MIGRATION_API_PATH must be defined when using DCOS_MIGRATION_API_VERSION",
            );
        }
    }
}
