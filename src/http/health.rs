//! Liveness and readiness probes. They carry no data, so they need no token (load
//! balancers and orchestrators call them unauthenticated).

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};

use super::{AppState, Route};

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/healthz", Method::GET, get(healthz)),
        ("/readyz", Method::GET, get(readyz)),
    ]
}

/// The process is up.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The process can serve: the database answers.
async fn readyz(State(s): State<AppState>) -> (StatusCode, Json<Value>) {
    if s.store.ping().await {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "database unreachable"})),
        )
    }
}
