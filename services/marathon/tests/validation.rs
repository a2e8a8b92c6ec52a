#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Table tests of Marathon's validation rules (path + message) and the DC/OS
//! documentation examples (accepted, and unchanged in meaning through a round trip).

use basalt_marathon::app::AppDefinition;
use basalt_marathon::validation::{Features, validate_app};
use serde_json::{Value, json};

fn check(body: Value) -> Result<AppDefinition, basalt_marathon::validation::Violations> {
    let raw = AppDefinition::from_json(body).expect("parses");
    validate_app(&raw, "/", &Features::default())
}

const ID_ERR: &str = "must fully match regular expression '^(([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])\\.)*([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])|(\\.|\\.\\.)$'";

#[test]
fn bad_apps_are_rejected_with_marathon_paths_and_messages() {
    let hc_idx = "Health check port indices must address an element of the ports array or container port mappings.";
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "uppercase id",
            json!({"id": "/MyApp", "cmd": "x"}),
            "/id",
            ID_ERR,
        ),
        (
            "space in id",
            json!({"id": "/a b", "cmd": "x"}),
            "/id",
            ID_ERR,
        ),
        (
            "underscore id",
            json!({"id": "/a_b", "cmd": "x"}),
            "/id",
            ID_ERR,
        ),
        (
            "root id",
            json!({"id": "/", "cmd": "x"}),
            "/id",
            "Path must contain at least one path element",
        ),
        (
            "reserved keyword",
            json!({"id": "/a/tasks", "cmd": "x"}),
            "/id",
            "must not end with any of the following reserved keywords: restart, tasks, versions, ., ..",
        ),
        (
            "no cmd args or container",
            json!({"id": "/a"}),
            "/",
            "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.",
        ),
        (
            "cmd and args",
            json!({"id": "/a", "cmd": "x", "args": ["y"]}),
            "/",
            "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.",
        ),
        (
            "empty cmd",
            json!({"id": "/a", "cmd": ""}),
            "/cmd",
            "must not be an empty string",
        ),
        (
            "negative instances",
            json!({"id": "/a", "cmd": "x", "instances": -3}),
            "/instances",
            "got -3, expected 0 or more",
        ),
        (
            "zero cpus",
            json!({"id": "/a", "cmd": "x", "cpus": 0}),
            "/cpus",
            "got 0.0, expected 0.001 or more",
        ),
        (
            "negative mem",
            json!({"id": "/a", "cmd": "x", "mem": -1}),
            "/mem",
            "got -1.0, expected 0.0 or more",
        ),
        (
            "negative disk",
            json!({"id": "/a", "cmd": "x", "disk": -5}),
            "/disk",
            "got -5.0, expected 0.0 or more",
        ),
        (
            "negative gpus",
            json!({"id": "/a", "cmd": "x", "gpus": -1}),
            "/gpus",
            "got -1, expected 0 or more",
        ),
        (
            "backoff factor < 1",
            json!({"id": "/a", "cmd": "x", "backoffFactor": 0.5}),
            "/backoffFactor",
            "got 0.5, expected 1.0 or more",
        ),
        (
            "min health > 1",
            json!({"id": "/a", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 1.5, "maximumOverCapacity": 0.5}}),
            "/upgradeStrategy/minimumHealthCapacity",
            "is greater than 1",
        ),
        (
            "over capacity < 0",
            json!({"id": "/a", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": -0.1}}),
            "/upgradeStrategy/maximumOverCapacity",
            "is less than 0",
        ),
        (
            "duplicate ports",
            json!({"id": "/a", "cmd": "x", "portDefinitions": [{"port": 8080}, {"port": 8080}]}),
            "/portDefinitions",
            "Ports must be unique.",
        ),
        (
            "duplicate port names",
            json!({"id": "/a", "cmd": "x", "portDefinitions": [{"port": 0, "name": "http"}, {"port": 0, "name": "http"}]}),
            "/portDefinitions",
            "Port names must be unique.",
        ),
        (
            "legacy duplicate ports",
            json!({"id": "/a", "cmd": "x", "ports": [31000, 31000]}),
            "/portDefinitions",
            "Ports must be unique.",
        ),
        (
            "health check port index out of range",
            json!({"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "HTTP", "portIndex": 3}]}),
            "/healthChecks(0)",
            hc_idx,
        ),
        (
            "health check without ports",
            json!({"id": "/a", "cmd": "x", "portDefinitions": [], "healthChecks": [{"protocol": "TCP"}]}),
            "/healthChecks(0)",
            hc_idx,
        ),
        (
            "two mesos health checks",
            json!({"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "MESOS_HTTP"}, {"protocol": "MESOS_TCP"}]}),
            "/",
            "AppDefinition can contain at most one Mesos health check",
        ),
        (
            "env secret without secrets",
            json!({"id": "/a", "cmd": "x", "env": {"DB_PW": {"secret": "pw"}}}),
            "/env/DB_PW",
            "use of secret-references in the environment requires the secrets feature to be enabled (secrets are not configured)",
        ),
        (
            "secrets without feature",
            json!({"id": "/a", "cmd": "x", "secrets": {"pw": {"source": "db/pw"}}}),
            "/secrets",
            "Feature secrets is not enabled. Enable with --enable_features secrets)",
        ),
        (
            "unknown constraint operator",
            json!({"id": "/a", "cmd": "x", "constraints": [["hostname", "NEAR"]]}),
            "/constraints(0)",
            "Constraint operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER or UNLIKE",
        ),
        (
            "constraint with one field",
            json!({"id": "/a", "cmd": "x", "constraints": [["hostname"]]}),
            "/constraints(0)",
            "Each constraint must have either 2 or 3 fields",
        ),
        (
            "unique with value",
            json!({"id": "/a", "cmd": "x", "constraints": [["hostname", "UNIQUE", "x"]]}),
            "/constraints(0)",
            "Value specified but not used",
        ),
        (
            "cluster without value",
            json!({"id": "/a", "cmd": "x", "constraints": [["rack", "CLUSTER"]]}),
            "/constraints(0)",
            "Missing value",
        ),
        (
            "max_per not a number",
            json!({"id": "/a", "cmd": "x", "constraints": [["@zone", "MAX_PER", "two"]]}),
            "/constraints(0)",
            "Value was not specified or is not a number",
        ),
        (
            "group_by not a number",
            json!({"id": "/a", "cmd": "x", "constraints": [["@region", "GROUP_BY", "x"]]}),
            "/constraints(0)",
            "Value was specified but is not a number",
        ),
        (
            "like bad regex",
            json!({"id": "/a", "cmd": "x", "constraints": [["rack", "LIKE", "r(["]]}),
            "/constraints(0)",
            "'r([' is not a valid regular expression",
        ),
        (
            "like without value",
            json!({"id": "/a", "cmd": "x", "constraints": [["rack", "UNLIKE"]]}),
            "/constraints(0)",
            "A regular expression value must be provided",
        ),
        (
            "docker without image",
            json!({"id": "/a", "container": {"type": "DOCKER", "docker": {"image": ""}}}),
            "/container/docker/image",
            "must not be empty",
        ),
        (
            "port mappings on host network",
            json!({"id": "/a", "cmd": "x", "container": {"type": "MESOS", "portMappings": [{"containerPort": 80}]}}),
            "/",
            "portMappings are not allowed with host-networking",
        ),
        (
            "port definitions on bridge",
            json!({"id": "/a", "cmd": "x", "networks": [{"mode": "container/bridge"}], "portDefinitions": [{"port": 0}]}),
            "/",
            "portDefinitions are only allowed with host-networking",
        ),
        (
            "persistent volume path with slash",
            json!({"id": "/a", "cmd": "x", "container": {"type": "MESOS",
            "volumes": [{"containerPath": "/data", "mode": "RW", "persistent": {"size": 10}}]}}),
            "/container/volumes(0)/containerPath",
            "value must not contain \"/\"",
        ),
        (
            "persistent volume size 0",
            json!({"id": "/a", "cmd": "x", "container": {"type": "MESOS",
            "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 0}}]}}),
            "/container/volumes(0)/persistent/size",
            "got 0, expected more than 0",
        ),
        (
            "resident with over capacity",
            json!({"id": "/a", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 1},
            "container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 10}}]}}),
            "/upgradeStrategy/maximumOverCapacity",
            "got 1.0, expected 0.0",
        ),
        (
            "resident with unreachable enabled",
            json!({"id": "/a", "cmd": "x", "unreachableStrategy": {"inactiveAfterSeconds": 1, "expungeAfterSeconds": 2},
            "container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 10}}]}}),
            "/",
            "unreachableStrategy must be disabled for resident tasks",
        ),
        (
            "residency without volumes",
            json!({"id": "/a", "cmd": "x", "residency": {}}),
            "/",
            "App must contain persistent volumes and define residency",
        ),
        (
            "unreachable expunge before inactive",
            json!({"id": "/a", "cmd": "x", "unreachableStrategy": {"inactiveAfterSeconds": 600, "expungeAfterSeconds": 300}}),
            "/unreachableStrategy/expungeAfterSeconds",
            "got 300, expected 600 or more",
        ),
        (
            "single instance app with 2 instances",
            json!({"id": "/a", "cmd": "x", "instances": 2, "labels": {"MARATHON_SINGLE_INSTANCE_APP": "true"},
            "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0}}),
            "/",
            "Single instance app may only have one instance",
        ),
        (
            "uris and fetch",
            json!({"id": "/a", "cmd": "x", "uris": ["http://a"], "fetch": [{"uri": "http://b"}]}),
            "/uris",
            "may not be set in conjunction with fetch",
        ),
        (
            "bad dependency",
            json!({"id": "/a", "cmd": "x", "dependencies": ["/B"]}),
            "/dependencies(0)",
            ID_ERR,
        ),
        (
            "empty accepted roles",
            json!({"id": "/a", "cmd": "x", "acceptedResourceRoles": []}),
            "/acceptedResourceRoles",
            "must not be empty",
        ),
        (
            "gpus with docker",
            json!({"id": "/a", "gpus": 1, "container": {"type": "DOCKER", "docker": {"image": "x"}}}),
            "/",
            "GPU resources only work with the Mesos containerizer",
        ),
        (
            "readiness check unknown port",
            json!({"id": "/a", "cmd": "x", "readinessChecks": [{"portName": "nope"}]}),
            "/readinessChecks(0)/portName",
            "No port definition reference for portName nope",
        ),
    ];
    assert!(cases.len() >= 20);
    for (name, body, path, msg) in cases {
        let err = match check(body) {
            Ok(app) => panic!("{name}: accepted: {}", app.to_json()),
            Err(e) => e,
        };
        assert!(
            err.at(path).contains(&msg),
            "{name}: expected {path:?} -> {msg:?}, got {:?}",
            err.0
        );
    }
}

#[test]
fn wire_shape_of_a_violation() {
    let err =
        check(json!({"id": "/a", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 2}}))
            .unwrap_err();
    let body = basalt_marathon::ApiError::invalid(err).body;
    assert_eq!(
        body,
        json!({"message": "Object is not valid", "details": [
            {"path": "/upgradeStrategy/minimumHealthCapacity", "errors": ["is greater than 1"]}]})
    );
}

#[test]
fn valid_constraints_are_accepted() {
    let app = check(json!({"id": "/a", "cmd": "x", "constraints": [
        ["hostname", "UNIQUE"], ["rack", "CLUSTER", "r1"], ["@zone", "GROUP_BY", "3"],
        ["@region", "GROUP_BY"], ["rack", "LIKE", "r[12]"], ["rack", "UNLIKE", "r3"],
        ["hostname", "MAX_PER", "2"], ["@hostname", "IS", "10.0.0.1"]]}))
    .unwrap();
    assert_eq!(app.constraints.len(), 8);
}

/// Posting the app, reading it back and posting that again gives the same app.
fn round_trip(body: Value) -> (AppDefinition, Value) {
    let app = check(body).expect("valid");
    let out = app.to_json();
    let again = check(out.clone()).expect("GET output is a valid request");
    assert_eq!(app, again, "round trip changed the app");
    (app, out)
}

#[test]
fn dcos_vip_example_round_trips() {
    let (_, out) = round_trip(json!({
        "id": "/myapp",
        "cmd": "python3 -m http.server $PORT0",
        "cpus": 0.1, "mem": 32, "instances": 2,
        "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "http", "labels": {"VIP_0": "/myapp:80"}}]
    }));
    assert_eq!(out["portDefinitions"][0]["labels"]["VIP_0"], "/myapp:80");
    assert_eq!(out["portDefinitions"][0]["name"], "http");
    assert_eq!(out["instances"], 2);
    assert_eq!(out["cpus"], 0.1);

    let (_, out) = round_trip(json!({
        "id": "/nginx", "instances": 1, "cpus": 0.1, "mem": 64,
        "networks": [{"mode": "container/bridge"}],
        "container": {"type": "DOCKER", "docker": {"image": "nginx:1.25"},
            "portMappings": [{"containerPort": 80, "hostPort": 0, "name": "web", "labels": {"VIP_0": "/nginx:80"}}]}
    }));
    assert_eq!(
        out["container"]["portMappings"][0]["labels"]["VIP_0"],
        "/nginx:80"
    );
    assert!(out.get("portDefinitions").is_none());
}

#[test]
fn dcos_postgres_persistent_volume_example_round_trips() {
    let (app, out) = round_trip(json!({
        "id": "/postgres", "cpus": 1, "instances": 1, "mem": 512,
        "networks": [{"mode": "container/bridge"}],
        "container": {
            "type": "DOCKER",
            "volumes": [{"containerPath": "pgdata", "mode": "RW", "persistent": {"size": 100}}],
            "docker": {"image": "postgres:latest"},
            "portMappings": [{"containerPort": 5432, "hostPort": 0, "protocol": "tcp", "name": "postgres"}]
        },
        "env": {"POSTGRES_PASSWORD": "password", "PGDATA": "/mnt/mesos/sandbox/pgdata"},
        "upgradeStrategy": {"maximumOverCapacity": 0, "minimumHealthCapacity": 0}
    }));
    assert!(app.residency.is_some());
    assert_eq!(out["unreachableStrategy"], "disabled");
    assert_eq!(out["container"]["volumes"][0]["persistent"]["size"], 100);
    assert_eq!(out["upgradeStrategy"]["minimumHealthCapacity"], 0.0);
    assert_eq!(out["env"]["PGDATA"], "/mnt/mesos/sandbox/pgdata");
}

#[test]
fn dcos_environment_example_round_trips() {
    let (_, out) = round_trip(json!({
        "id": "/my-app", "cmd": "env && sleep 300", "cpus": 0.1, "mem": 32,
        "env": {"LD_LIBRARY_PATH": "/usr/local/lib/myLib", "NAME": "value"},
        "labels": {"HAPROXY_GROUP": "external"},
        "healthChecks": [{"protocol": "MESOS_HTTP", "path": "/health"}],
        "constraints": [["hostname", "UNIQUE"]],
        "fetch": [{"uri": "https://example.com/app.tgz"}]
    }));
    assert_eq!(out["env"]["LD_LIBRARY_PATH"], "/usr/local/lib/myLib");
    assert_eq!(out["healthChecks"][0]["portIndex"], 0);
    assert_eq!(out["fetch"][0]["extract"], true);
}
