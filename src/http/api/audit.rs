//! /api/v1/audit: the tamper-evident trail, for admins.

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiActor, ApiError};
use crate::auth::Role;
use crate::http::{AppState, Route};

pub(super) fn routes() -> Vec<Route> {
    vec![("/api/v1/audit/verify", Method::GET, get(verify_audit))]
}

/// Only people administering the app may act on governance routes.
pub(super) fn admin_only(role: Role) -> Result<(), ApiError> {
    match role {
        Role::Admin => Ok(()),
        Role::Agent | Role::Scim | Role::System => Err(ApiError::new(
            403,
            "forbidden_role",
            "this needs an admin token",
        )),
    }
}

/// Recomputes the app's audit chain and names the first record that does not match.
async fn verify_audit(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
) -> Result<Json<Value>, ApiError> {
    admin_only(actor.role)?;
    Ok(Json(json!(s.store.verify_audit(&actor.app_id).await?)))
}
