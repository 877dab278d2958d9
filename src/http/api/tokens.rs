//! /api/v1/tokens: an admin manages the bearer tokens of their own app.
//!
//! | route                          | what                                               |
//! |--------------------------------|----------------------------------------------------|
//! | GET  /tokens                   | the app's tokens, live and revoked (never secrets) |
//! | POST /tokens                   | create one (scim, agent or admin); secret shown once |
//! | POST /tokens/{id}/revoke       | revoke one; the tasks it holds return to the queue |

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{permit, ApiActor, ApiError, ApiJson};
use crate::auth::{check_new_token, generate_token, hash_token, Action};
use crate::http::{AppState, Route};

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/api/v1/tokens", Method::GET, get(list_tokens)),
        ("/api/v1/tokens", Method::POST, post(create_token)),
        (
            "/api/v1/tokens/{id}/revoke",
            Method::POST,
            post(revoke_token),
        ),
    ]
}

/// The app's tokens, oldest first; `current` marks the caller's own.
async fn list_tokens(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::ManageTokens)?;
    let tokens: Vec<Value> = s
        .store
        .tokens(Some(&actor.app_id))
        .await?
        .into_iter()
        .map(|t| {
            let current = t.token_id == actor.token_id;
            let mut v = json!(t);
            v["current"] = json!(current);
            v
        })
        .collect();
    Ok(Json(json!({"app": actor.app_id, "tokens": tokens})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// `scim`, `agent` or `admin`.
    role: String,
    /// Who or what uses it (`okta`, `alice`), recorded as the actor of its writes.
    name: String,
}

/// Creates a token of the caller's app and answers its secret, once (201). Only the
/// secret's hash is stored; the answer is marked `no-store` so no cache keeps it.
async fn create_token(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<Response, ApiError> {
    permit(&actor, Action::ManageTokens)?;
    let (role, name) =
        check_new_token(&req.role, &req.name).map_err(|(code, m)| ApiError::new(400, code, m))?;
    let secret = generate_token();
    let token = s
        .store
        .create_app_token(&actor, role, &name, &hash_token(&secret))
        .await?;
    let mut body = json!(token);
    body["secret"] = json!(secret);
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Revokes a token of the caller's app. The tasks it holds return to the queue in the
/// same transaction; this server stops accepting it at once, other replicas within
/// their token cache time (`--token-cache-secs`).
async fn revoke_token(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::ManageTokens)?;
    let not_found = || {
        ApiError::new(
            404,
            "token_not_found",
            format!("no live token {id} in this app"),
        )
    };
    let token_id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    if token_id == actor.token_id {
        // Revoking the token in hand would lock its holder out mid-request; another
        // admin (or `scimbridge token revoke`) can do it.
        return Err(ApiError::new(
            409,
            "own_token",
            "a token cannot revoke itself; use another admin token of the app",
        ));
    }
    let done = match s.store.revoke_app_token(&actor, token_id).await {
        Ok(d) => d,
        Err(crate::error::Error::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    s.tokens.forget(token_id);
    Ok(Json(json!({
        "token": done.token,
        "returned_tasks": done.returned,
    })))
}
