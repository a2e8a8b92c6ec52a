//! Basalt's Marathon-compatible app scheduler (`basaltd marathon`).
//!
//! A framework like any third-party one: it reaches the Mesos master only through the
//! public v1 scheduler HTTP API ([`scheduler`]), keeps its state in etcd
//! ([`state`]), is leader-elected on service `marathon` (followers proxy to the leader),
//! and serves Marathon's REST v2 API ([`api`]).
//!
//! ## Modules
//!
//! | module | what |
//! |---|---|
//! | [`app`] | the app definition: Marathon field names, defaults, normalization of deprecated fields |
//! | [`validation`] | Marathon's validation rules, paths and messages (422 `Object is not valid`) |
//! | [`pathid`] | path ids, Mesos task names (`/group/app` → `app.group`), task ids |
//! | [`plan`] | the deployment planner (pure): steps in dependency order, rolling restarts within `upgradeStrategy`, kill selection |
//! | [`constraints`] | offer matching (pure): resources, ports, roles, placement constraints |
//! | [`state`] | the etcd repository (keys below) |
//! | [`events`] | the event bus behind `/v2/events` (SSE) |
//! | [`health`] | Marathon-side HTTP/HTTPS/TCP health checks (kill after `maxConsecutiveFailures`) |
//! | [`pod`] | the DC/OS pod JSON, its validation, the app-shaped view for placement, `LAUNCH_GROUP` |
//! | [`readiness`] | readiness checks during deployments (`readinessCheckResults`) |
//! | [`core`] | app changes → versions + deployments; the deployment executor; launch demand and back-off |
//! | [`server`] | one Marathon process: HTTP API, election, leader duties |
//! | [`api`] | the REST v2 API (axum) |
//! | [`scheduler`] | the v1 scheduler client (RecordIO, `Mesos-Stream-Id`, heartbeats, re-subscribe) and the launcher |
//!
//! ## etcd keys (under the store root, default `/basalt/v1/`)
//!
//! | key | value | written by |
//! |---|---|---|
//! | `marathon/apps/<app_id>` | the current app definition (canonical JSON) | leading Marathon |
//! | `marathon/versions/<app_id>/<version>` | every stored version of an app, for rollback and `/versions` | leading Marathon |
//! | `marathon/deployments/<deployment_id>` | a running deployment (plan + progress) | leading Marathon |
//! | `marathon/instances/<app_id>/<instance_id>` | one instance (task id, agent, state, ports, version; a pod instance's container tasks); written **before** its LAUNCH/LAUNCH_GROUP is sent; the leader caches them write-through | leading Marathon |
//! | `marathon/pods/<pod_id>` | the current pod definition (DC/OS pod JSON, defaults filled in) | leading Marathon |
//! | `marathon/pod-versions/<pod_id>/<version>` | every stored version of a pod | leading Marathon |
//! | `marathon/framework-id` | the framework id the master gave (`{"value": ...}`), for re-subscription after failover | leading Marathon |
//! | `leader/marathon/<candidate>` | the election ([`basalt_store::Election`]); value `{"address": "host:port"}` | every Marathon |
//!
//! App ids contain `/`; the store escapes it inside a segment (`%2F`), so one app is one
//! key segment.

pub mod api;
pub mod app;
pub mod constraints;
pub mod core;
pub mod error;
pub mod events;
pub mod health;
pub mod offers;
pub mod pathid;
pub mod plan;
pub mod pod;
pub mod readiness;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod time;
pub mod validation;

pub use app::AppDefinition;
pub use error::{ApiError, MarathonError};
