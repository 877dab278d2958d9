//! /api/v1/audit: the tamper-evident trail, for admins.

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};

use super::{permit, ApiActor, ApiError};
use crate::auth::Action;
use crate::http::{AppState, Route};

pub(super) fn routes() -> Vec<Route> {
    vec![("/api/v1/audit/verify", Method::GET, get(verify_audit))]
}

/// Recomputes the app's audit chain and names the first record that does not match.
async fn verify_audit(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::Audit)?;
    Ok(Json(json!(s.store.verify_audit(&actor.app_id).await?)))
}
