//! /api/v1/oauth-clients: an admin lists and revokes the OAuth clients of their own app
//! (created with `scimbridge oauth-client create`, whose secret is shown once there).
//!
//! | route                               | what                                        |
//! |-------------------------------------|---------------------------------------------|
//! | GET  /oauth-clients                 | the app's clients, live and revoked         |
//! | POST /oauth-clients/{id}/revoke     | revoke one: its secret and its JWTs stop    |

use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{permit, ApiActor, ApiError};
use crate::auth::Action;
use crate::error::Error;
use crate::http::{AppState, Route};

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/api/v1/oauth-clients", Method::GET, get(list_clients)),
        (
            "/api/v1/oauth-clients/{id}/revoke",
            Method::POST,
            post(revoke_client),
        ),
    ]
}

/// The app's OAuth clients, oldest first (never their secrets).
async fn list_clients(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
) -> Result<Json<Value>, ApiError> {
    // Clients are credentials like tokens: the same role rule.
    permit(&actor, Action::ManageTokens)?;
    let clients = s.store.oauth_clients(&actor.app_id).await?;
    Ok(Json(json!({"app": actor.app_id, "clients": clients})))
}

/// Revokes an OAuth client of the caller's app (audited in the same transaction): the
/// token endpoint refuses its secret at once; this server refuses its access tokens at
/// once, other replicas within their token cache time (`--token-cache-secs`).
async fn revoke_client(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::ManageTokens)?;
    let not_found = || {
        ApiError::new(
            404,
            "oauth_client_not_found",
            format!("no live OAuth client {id} in this app"),
        )
    };
    let client_id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let client = match s.store.revoke_app_oauth_client(&actor, client_id).await {
        Ok(c) => c,
        Err(Error::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    s.tokens.forget(client_id);
    Ok(Json(json!({ "client": client })))
}
