#![allow(clippy::unwrap_used, clippy::expect_used)]
//! JSON round trips against literal samples written from the Mesos v1 JSON form
//! (mesos.proto field names, as served by `/api/v1` and `/master/state`).

use basalt_mesos::{
    AgentInfo, Attribute, Attributes, CapabilityType, ContainerInfo, ContainerType, DiskKind,
    DomainInfo, FrameworkInfo, ReservationInfo, ReservationType, Resource, ResourceFormat,
    Resources, Scalar, TaskInfo, TaskState, TaskStatus, TaskStatusReason, TaskStatusSource, Value,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

/// Numbers compare by value (`4` == `4.0`), as JSON readers treat them.
fn norm(v: Json) -> Json {
    match v {
        Json::Number(n) => Json::from(n.as_f64().unwrap()),
        Json::Array(a) => Json::Array(a.into_iter().map(norm).collect()),
        Json::Object(o) => Json::Object(o.into_iter().map(|(k, v)| (k, norm(v))).collect()),
        other => other,
    }
}

fn assert_same_json(actual: &impl Serialize, expected: &str) {
    let actual = norm(serde_json::to_value(actual).unwrap());
    let expected = norm(serde_json::from_str(expected).unwrap());
    assert_eq!(
        actual, expected,
        "\nactual:   {actual}\nexpected: {expected}"
    );
}

/// Parses `json` as `T`, writes it back and checks it is the same JSON.
fn round_trip<T: Serialize + DeserializeOwned>(json: &str) -> T {
    let v: T = serde_json::from_str(json).unwrap();
    assert_same_json(&v, json);
    v
}

#[test]
fn offer_resources_from_the_api_example() {
    let json = r#"[
      {"name":"cpus","type":"SCALAR","scalar":{"value":4},"role":"*","allocation_info":{"role":"*"}},
      {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},"role":"*","allocation_info":{"role":"*"}},
      {"name":"disk","type":"SCALAR","scalar":{"value":2048},"role":"*","allocation_info":{"role":"*"},
       "disk":{"source":{"type":"MOUNT","mount":{"root":"/dcos/volume0"}}}}
    ]"#;
    let r: Resources = round_trip(json);
    assert_eq!(r.cpus(), Some(Scalar::from_int(4)));
    assert_eq!(r.ports().unwrap().count(), 1001);
    let disk = r.named("disk").iter().next().cloned().unwrap();
    assert_eq!(disk.disk_kind(), Some(DiskKind::Mount));
    assert_eq!(
        disk.disk.unwrap().source.unwrap().root(),
        Some("/dcos/volume0")
    );
    assert_eq!(r.allocations()["*"], r);
}

#[test]
fn static_reservation_old_and_new_forms() {
    let old = r#"{"name":"disk","type":"SCALAR","scalar":{"value":100},"role":"slave_public"}"#;
    let new = r#"{"name":"disk","type":"SCALAR","scalar":{"value":100},"reservations":[{"type":"STATIC","role":"slave_public"}]}"#;
    let endpoint = r#"{"name":"disk","type":"SCALAR","scalar":{"value":100},"role":"slave_public",
                       "reservations":[{"type":"STATIC","role":"slave_public"}]}"#;
    let a: Resource = serde_json::from_str(old).unwrap();
    let b: Resource = serde_json::from_str(new).unwrap();
    let c: Resource = serde_json::from_str(endpoint).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(
        a.reservations,
        vec![ReservationInfo::new_static("slave_public")]
    );
    assert_same_json(&a, endpoint);
    assert_same_json(&a.formatted(ResourceFormat::PreReservationRefinement), old);
    assert_same_json(&a.formatted(ResourceFormat::PostReservationRefinement), new);
}

#[test]
fn dynamic_reservation_forms() {
    let old = r#"{"name":"cpus","type":"SCALAR","scalar":{"value":1.5},"role":"marathon",
                  "reservation":{"principal":"ops","labels":{"labels":[{"key":"owner","value":"alice"}]}}}"#;
    let endpoint = r#"{"name":"cpus","type":"SCALAR","scalar":{"value":1.5},"role":"marathon",
                  "reservation":{"principal":"ops","labels":{"labels":[{"key":"owner","value":"alice"}]}},
                  "reservations":[{"type":"DYNAMIC","role":"marathon","principal":"ops",
                                   "labels":{"labels":[{"key":"owner","value":"alice"}]}}]}"#;
    let r: Resource = serde_json::from_str(old).unwrap();
    assert!(r.is_dynamically_reserved());
    assert_eq!(r.reservations[0].principal.as_deref(), Some("ops"));
    assert_same_json(&r, endpoint);
    assert_same_json(&r.formatted(ResourceFormat::PreReservationRefinement), old);
    let back: Resource = round_trip(endpoint);
    assert_eq!(back, r);
}

#[test]
fn refined_reservation_stack() {
    let json = r#"{"name":"mem","type":"SCALAR","scalar":{"value":512},
      "reservations":[{"type":"STATIC","role":"eng"},{"type":"DYNAMIC","role":"eng/web","principal":"p"}]}"#;
    let r: Resource = round_trip(json);
    r.validate().unwrap();
    assert_eq!(r.reservation_role(), "eng/web");
    assert!(r.is_allocatable_to("eng/web/api"));
    assert!(!r.is_allocatable_to("eng"));
    // Not expressible with `role` alone: the endpoint form writes only the stack.
    assert_same_json(&r.formatted(ResourceFormat::PreReservationRefinement), json);
}

#[test]
fn persistent_shared_volume() {
    let json = r#"{"name":"disk","type":"SCALAR","scalar":{"value":64},"role":"db",
      "reservation":{"principal":"ops"},
      "reservations":[{"type":"DYNAMIC","role":"db","principal":"ops"}],
      "disk":{"persistence":{"id":"vol-1","principal":"ops"},
              "volume":{"container_path":"data","mode":"RW"},
              "source":{"type":"PATH","path":{"root":"/mnt/path0"}}},
      "shared":{}}"#;
    let r: Resource = round_trip(json);
    r.validate().unwrap();
    assert!(r.shared && r.is_persistent_volume());
    assert_eq!(r.disk_kind(), Some(DiskKind::Path));
    let revocable = r#"{"name":"cpus","type":"SCALAR","scalar":{"value":0.5},"role":"*","revocable":{},
                        "provider_id":{"value":"rp-1"}}"#;
    let r: Resource = round_trip(revocable);
    assert!(r.revocable);
    assert_eq!(r.provider_id.unwrap().value, "rp-1");
}

#[test]
fn set_resource_and_unknown_fields() {
    // Unknown fields are tolerated; `type` may be omitted when the value says it.
    let r: Resource = serde_json::from_str(
        r#"{"name":"tags","type":"SET","set":{"item":["b","a"]},"future_field":{"x":1}}"#,
    )
    .unwrap();
    assert_same_json(
        &r,
        r#"{"name":"tags","type":"SET","set":{"item":["a","b"]},"role":"*"}"#,
    );
    let r: Resource = serde_json::from_str(r#"{"name":"cpus","scalar":{"value":1}}"#).unwrap();
    assert_eq!(r.scalar_value(), Some(Scalar::from_int(1)));
}

#[test]
fn bad_resource_json_names_the_field() {
    for (json, needle) in [
        (
            r#"{"name":"cpus","type":"SCALAR"}"#,
            "resource 'cpus': type SCALAR requires field 'scalar'",
        ),
        (
            r#"{"name":"ports","type":"RANGES","scalar":{"value":1}}"#,
            "resource 'ports': type RANGES requires field 'ranges'",
        ),
        (
            r#"{"name":"x","type":"TEXT","text":{"value":"a"}}"#,
            "type TEXT is not allowed",
        ),
        (
            r#"{"name":"cpus","type":"FLOAT","scalar":{"value":1}}"#,
            "FLOAT",
        ),
        (
            r#"{"name":"cpus","type":"SCALAR","scalar":{"value":1},"role":"*","reservation":{"principal":"p"}}"#,
            "'reservation' is set",
        ),
        (
            r#"{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":5,"end":1}]}}"#,
            "begin greater than end",
        ),
        (r#"{"type":"SCALAR","scalar":{"value":1}}"#, "name"),
        (
            r#"{"name":"cpus","type":"SCALAR","scalar":{"value":1},"reservations":[{"role":"r"}]}"#,
            "type",
        ),
        (
            r#"{"name":"cpus","type":"SCALAR","scalar":{"value":"1"}}"#,
            "invalid type",
        ),
    ] {
        let e = serde_json::from_str::<Resource>(json)
            .expect_err(json)
            .to_string();
        assert!(e.contains(needle), "'{e}' should contain '{needle}'");
    }
}

#[test]
fn attributes_json() {
    let json = r#"[
      {"name":"rack","type":"TEXT","text":{"value":"r1"}},
      {"name":"cores","type":"SCALAR","scalar":{"value":8}},
      {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":1,"end":10}]}},
      {"name":"tags","type":"SET","set":{"item":["gpu","ssd"]}}
    ]"#;
    let a: Attributes = round_trip(json);
    assert_eq!(
        a,
        Attributes::parse("rack:r1;cores:8;ports:[1-10];tags:{ssd,gpu}").unwrap()
    );
    assert_eq!(a.get("rack"), Some(&Attribute::text("rack", "r1")));
    let e = serde_json::from_str::<Attribute>(r#"{"name":"rack","type":"TEXT"}"#).unwrap_err();
    assert!(
        e.to_string()
            .contains("attribute 'rack': type TEXT requires field 'text'"),
        "{e}"
    );
    let a: Attribute = serde_json::from_str(r#"{"name":"rack","text":{"value":"r2"}}"#).unwrap();
    assert_eq!(a.value, Value::Text("r2".into()));
}

#[test]
fn agent_info() {
    let json = r#"{
      "hostname":"10.0.0.5","port":5051,
      "resources":[
        {"name":"cpus","type":"SCALAR","scalar":{"value":4},"role":"*"},
        {"name":"disk","type":"SCALAR","scalar":{"value":100},"role":"slave_public",
         "reservations":[{"type":"STATIC","role":"slave_public"}]}],
      "attributes":[{"name":"rack","type":"TEXT","text":{"value":"r1"}}],
      "id":{"value":"a1b2-S0"},
      "domain":{"fault_domain":{"region":{"name":"aws-us-east-1"},"zone":{"name":"aws-us-east-1a"}}},
      "checkpoint":true
    }"#;
    let a: AgentInfo = round_trip(json);
    assert_eq!(a.port(), 5051);
    assert_eq!(a.id.as_ref().unwrap().as_str(), "a1b2-S0");
    assert_eq!(
        a.domain,
        Some(DomainInfo::new("aws-us-east-1", "aws-us-east-1a"))
    );
    assert_eq!(
        a.resources.reserved(Some("slave_public")).disk(),
        Some(Scalar::from_int(100))
    );
    assert_eq!(a.extra["checkpoint"], Json::Bool(true));
    let minimal: AgentInfo = serde_json::from_str(r#"{"hostname":"h"}"#).unwrap();
    assert_eq!(minimal.port(), 5051);
    assert!(minimal.resources.is_empty());
    let e = serde_json::from_str::<AgentInfo>(r#"{"port":1}"#).unwrap_err();
    assert!(e.to_string().contains("hostname"), "{e}");
}

#[test]
fn framework_info_from_subscribe() {
    let json = r#"{"user":"root","name":"marathon","id":{"value":"9f3c-0000"},
      "failover_timeout":604800,"checkpoint":true,"roles":["*","slave_public"],
      "hostname":"10.0.0.1","principal":"dcos_marathon","webui_url":"http://10.0.0.1:8080",
      "capabilities":[{"type":"MULTI_ROLE"},{"type":"PARTITION_AWARE"},{"type":"TASK_KILLING_STATE"},
                      {"type":"GPU_RESOURCES"},{"type":"RESERVATION_REFINEMENT"},{"type":"FUTURE_CAPABILITY"}],
      "labels":{"labels":[{"key":"DCOS_SERVICE_NAME","value":"marathon"}]},
      "offer_filters":{"slave_public":{"min_allocatable_resources":{}}}}"#;
    let f: FrameworkInfo = round_trip(json);
    assert!(f.has_capability(&CapabilityType::MultiRole));
    assert!(f.has_capability(&CapabilityType::GpuResources));
    assert!(f.has_capability(&CapabilityType::Other("FUTURE_CAPABILITY".into())));
    assert!(!f.has_capability(&CapabilityType::RegionAware));
    assert_eq!(f.effective_roles(), ["*", "slave_public"]);
    assert_eq!(f.failover_timeout_secs(), 604800.0);
    assert!(f.checkpoints());
    assert!(f.extra.contains_key("offer_filters"));

    let old: FrameworkInfo =
        serde_json::from_str(r#"{"user":"nobody","name":"chronos","role":"batch"}"#).unwrap();
    assert_eq!(old.effective_roles(), ["batch"]);
    assert_eq!(old.failover_timeout_secs(), 0.0);
    let plain = FrameworkInfo::new("root", "demo");
    assert_eq!(plain.effective_roles(), ["*"]);
    assert_same_json(&plain, r#"{"user":"root","name":"demo"}"#);
    let e = serde_json::from_str::<FrameworkInfo>(r#"{"name":"x"}"#).unwrap_err();
    assert!(e.to_string().contains("user"), "{e}");
}

#[test]
fn task_info_passes_through_unchanged() {
    let json = r#"{
      "name":"nginx","task_id":{"value":"nginx.8f1e"},"agent_id":{"value":"a1b2-S0"},
      "resources":[
        {"name":"cpus","type":"SCALAR","scalar":{"value":0.1},"role":"*","allocation_info":{"role":"*"}},
        {"name":"mem","type":"SCALAR","scalar":{"value":32},"role":"*","allocation_info":{"role":"*"}},
        {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31005,"end":31005}]},"role":"*","allocation_info":{"role":"*"}}],
      "command":{"uris":[{"value":"https://example.com/conf.tgz","extract":true,"cache":false}],
                 "environment":{"variables":[{"name":"PORT0","value":"31005"},{"name":"TOKEN","type":"SECRET","secret":{"type":"REFERENCE","reference":{"name":"/tok"}}}]},
                 "shell":true,"value":"nginx -g 'daemon off;'","user":"nobody"},
      "container":{"type":"MESOS","mesos":{"image":{"type":"DOCKER","docker":{"name":"nginx:1.25"},"cached":true}},
                   "volumes":[{"container_path":"/data","host_path":"/var/data","mode":"RO"}],
                   "network_infos":[{"name":"dcos","labels":{"labels":[{"key":"k","value":"v"}]}}],
                   "linux_info":{"share_pid_namespace":false}},
      "health_check":{"type":"HTTP","http":{"scheme":"http","port":31005,"path":"/","statuses":[200]},
                      "delay_seconds":5,"interval_seconds":10,"timeout_seconds":20,"consecutive_failures":3,"grace_period_seconds":300},
      "kill_policy":{"grace_period":{"nanoseconds":3000000000}},
      "labels":{"labels":[{"key":"MARATHON_APP_ID","value":"/nginx"}]},
      "discovery":{"visibility":"FRAMEWORK","name":"nginx",
                   "ports":{"ports":[{"number":31005,"name":"http","protocol":"tcp",
                                      "labels":{"labels":[{"key":"VIP_0","value":"/nginx:80"},{"key":"network-scope","value":"host"}]}}]}},
      "check":{"type":"COMMAND","command":{"command":{"value":"true"}}},
      "max_completion_time":{"nanoseconds":60000000000}
    }"#;
    let t: TaskInfo = round_trip(json);
    assert!(t.has_executor_xor_command());
    assert_eq!(
        t.resource_set().cpus(),
        Some(Scalar::try_from_f64(0.1).unwrap())
    );
    assert_eq!(t.container.as_ref().unwrap().kind, ContainerType::Mesos);
    assert_eq!(t.container.as_ref().unwrap().image(), Some("nginx:1.25"));
    assert_eq!(
        t.command
            .as_ref()
            .unwrap()
            .environment
            .as_ref()
            .unwrap()
            .get("PORT0"),
        Some("31005")
    );
    assert!(t.command.as_ref().unwrap().is_shell());
    let port = &t.discovery.as_ref().unwrap().port_list()[0];
    assert_eq!(
        (port.number, port.name.as_deref(), port.protocol.as_deref()),
        (31005, Some("http"), Some("tcp"))
    );
    assert_eq!(
        port.labels.as_ref().unwrap().get("VIP_0"),
        Some(Some("/nginx:80"))
    );
    let hc = t.health_check.as_ref().unwrap();
    assert_eq!(
        (hc.delay(), hc.failures(), hc.grace_period()),
        (5.0, 3, 300.0)
    );
    assert!(t.extra.contains_key("check") && t.extra.contains_key("max_completion_time"));
    assert!(
        t.container
            .as_ref()
            .unwrap()
            .extra
            .contains_key("linux_info")
    );
}

#[test]
fn docker_container_and_executor_task() {
    let json = r#"{"type":"DOCKER","docker":{"image":"redis:7","network":"BRIDGE",
        "port_mappings":[{"host_port":31001,"container_port":6379,"protocol":"tcp"}],
        "privileged":false,"parameters":[{"key":"label","value":"a=b"}],"force_pull_image":true}}"#;
    let c: ContainerInfo = round_trip(json);
    assert_eq!(c.image(), Some("redis:7"));
    assert_eq!(
        c.docker.as_ref().unwrap().port_mappings[0].container_port,
        6379
    );

    let task = r#"{"name":"t","task_id":{"value":"t"},"agent_id":{"value":"a"},
      "executor":{"type":"CUSTOM","executor_id":{"value":"e1"},"framework_id":{"value":"f"},
                  "command":{"value":"./executor","shell":false,"arguments":["./executor","--x"]},
                  "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.1},"role":"*"}],
                  "shutdown_grace_period":{"nanoseconds":5000000000}},
      "data":"aGVsbG8="}"#;
    let t: TaskInfo = round_trip(task);
    let exec = t.executor.as_ref().unwrap();
    assert!(!exec.command.as_ref().unwrap().is_shell());
    assert!(t.has_executor_xor_command());
    let neither: TaskInfo =
        serde_json::from_str(r#"{"name":"t","task_id":{"value":"t"},"agent_id":{"value":"a"}}"#)
            .unwrap();
    assert!(!neither.has_executor_xor_command());
    let e =
        serde_json::from_str::<TaskInfo>(r#"{"name":"t","agent_id":{"value":"a"}}"#).unwrap_err();
    assert!(e.to_string().contains("task_id"), "{e}");
}

#[test]
fn task_status_update() {
    let json = r#"{"task_id":{"value":"t1"},"state":"TASK_RUNNING","source":"SOURCE_EXECUTOR",
      "agent_id":{"value":"a1b2-S0"},"executor_id":{"value":"t1"},"timestamp":1732406400.123,
      "uuid":"AAECAwQFBgcICQoLDA0ODw==","healthy":true,
      "container_status":{"container_id":{"value":"c2","parent":{"value":"c1"}},
        "network_infos":[{"ip_addresses":[{"protocol":"IPv4","ip_address":"9.0.1.5"}]}],"executor_pid":4242},
      "check_status":{"type":"COMMAND","command":{"exit_code":0}}}"#;
    let s: TaskStatus = round_trip(json);
    assert_eq!(s.state, TaskState::Running);
    assert_eq!(s.source, Some(TaskStatusSource::Executor));
    let cs = s.container_status.as_ref().unwrap();
    assert_eq!(cs.container_id.as_ref().unwrap().to_string(), "c1.c2");
    assert_eq!(
        cs.network_infos[0].ip_addresses[0].ip_address.as_deref(),
        Some("9.0.1.5")
    );

    let lost = r#"{"task_id":{"value":"t1"},"state":"TASK_UNREACHABLE","source":"SOURCE_MASTER",
      "reason":"REASON_AGENT_REMOVED","message":"agent removed","unreachable_time":{"nanoseconds":1700000000000000000}}"#;
    let s: TaskStatus = round_trip(lost);
    assert_eq!(s.reason, Some(TaskStatusReason::AgentRemoved));
    assert_eq!(
        s.unreachable_time.unwrap().nanoseconds,
        1_700_000_000_000_000_000
    );
    let oom = r#"{"task_id":{"value":"t"},"state":"TASK_FAILED","reason":"REASON_CONTAINER_LIMITATION_MEMORY"}"#;
    let s: TaskStatus = round_trip(oom);
    assert_eq!(s.reason, Some(TaskStatusReason::ContainerLimitationMemory));
    let e = serde_json::from_str::<TaskStatus>(r#"{"task_id":{"value":"t"},"state":"RUNNING"}"#)
        .unwrap_err();
    assert!(e.to_string().contains("RUNNING"), "{e}");
}

#[test]
fn ids_are_value_objects() {
    let id: basalt_mesos::OfferId = round_trip(r#"{"value":"9f3c-O1"}"#);
    assert_eq!(id.to_string(), "9f3c-O1");
    assert_same_json(&basalt_mesos::FrameworkId::new("f"), r#"{"value":"f"}"#);
    assert_same_json(&basalt_mesos::ExecutorId::from("e"), r#"{"value":"e"}"#);
    assert_same_json(
        &basalt_mesos::TaskId::from("t".to_string()),
        r#"{"value":"t"}"#,
    );
    assert_same_json(&basalt_mesos::AgentId::new("a"), r#"{"value":"a"}"#);
}

#[test]
fn reservation_type_names() {
    let r: ReservationInfo =
        serde_json::from_str(r#"{"type":"DYNAMIC","role":"r","principal":"p"}"#).unwrap();
    assert_eq!(r.kind, ReservationType::Dynamic);
    assert!(serde_json::from_str::<ReservationInfo>(r#"{"type":"WEIRD","role":"r"}"#).is_err());
}
