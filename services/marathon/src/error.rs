//! Errors: [`MarathonError`] for the library, [`ApiError`] for HTTP answers in
//! Marathon's JSON shape (`{"message": ..., "details": [...]}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use crate::validation::Violations;

/// Library errors, naming the app, deployment or key involved.
#[derive(Debug, thiserror::Error)]
pub enum MarathonError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] basalt_store::StoreError),
    /// A stored value could not be decoded or encoded.
    #[error("{what}: {source}")]
    Json {
        /// What was being (de)coded.
        what: String,
        /// The error.
        source: serde_json::Error,
    },
    /// An app does not exist.
    #[error("App '{0}' does not exist")]
    UnknownApp(String),
    /// A deployment does not exist.
    #[error("DeploymentPlan {0} does not exist")]
    UnknownDeployment(String),
    /// The dependency graph has a cycle.
    #[error("Dependency graph has cyclic dependencies: {0}")]
    Cycle(String),
    /// Talking to the master failed.
    #[error("master {url}: {message}")]
    Master {
        /// The master URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// Binding or serving HTTP failed.
    #[error("http {addr}: {source}")]
    Http {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not the leader.
    #[error("not the leader")]
    NotLeader,
}

/// An HTTP error answer.
#[derive(Debug)]
pub struct ApiError {
    /// Status code.
    pub status: StatusCode,
    /// JSON body.
    pub body: Json,
}

impl ApiError {
    /// `{"message": msg}` with `status`.
    pub fn message(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({"message": msg.into()}),
        }
    }

    /// 422 `Object is not valid` with details.
    pub fn invalid(v: Violations) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"message": "Object is not valid", "details": v.0}),
        }
    }

    /// 400 `Invalid JSON`.
    pub fn invalid_json(detail: impl std::fmt::Display) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({"message": "Invalid JSON", "details": [{"path": "/", "errors": [detail.to_string()]}]}),
        }
    }

    /// 404 for an unknown app.
    pub fn unknown_app(id: &str) -> ApiError {
        ApiError::message(StatusCode::NOT_FOUND, format!("App '{id}' does not exist"))
    }

    /// 409 for an app locked by deployments.
    pub fn locked(deployments: &[String]) -> ApiError {
        let first = deployments.first().cloned().unwrap_or_default();
        ApiError {
            status: StatusCode::CONFLICT,
            body: json!({
                "message": format!("App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/{first}'."),
                "deployments": deployments.iter().map(|d| json!({"id": d})).collect::<Vec<_>>(),
            }),
        }
    }

    /// 503 with a message.
    pub fn unavailable(msg: impl Into<String>) -> ApiError {
        ApiError::message(StatusCode::SERVICE_UNAVAILABLE, msg)
    }
}

impl From<MarathonError> for ApiError {
    fn from(e: MarathonError) -> ApiError {
        match &e {
            MarathonError::UnknownApp(id) => ApiError::unknown_app(id),
            MarathonError::UnknownDeployment(_) => {
                ApiError::message(StatusCode::NOT_FOUND, e.to_string())
            }
            MarathonError::Cycle(_) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                body: json!({"message": "Object is not valid", "details": [{"path": "/", "errors": ["Dependency graph has cyclic dependencies."]}]}),
            },
            MarathonError::NotLeader => ApiError::unavailable("Leader not available"),
            _ => {
                tracing::warn!(error = %e, "request failed");
                ApiError::unavailable(e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}
