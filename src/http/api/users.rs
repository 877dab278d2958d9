//! /api/v1/users: what the IdP wants next to what the app has, per user, and each user's
//! full trail (for the admin CLI and auditors).

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::routing::get;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::tasks::{check_app, int};
use super::{ApiActor, ApiError};
use crate::http::{AppState, Route};

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/api/v1/users", Method::GET, get(list_users)),
        ("/api/v1/users/{id}", Method::GET, get(get_user)),
        ("/api/v1/users/{id}/history", Method::GET, get(user_history)),
    ]
}

const STATES: [&str; 4] = ["pending", "synced", "failed", "rejected"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// userName prefix, case-insensitive.
    user_name: Option<String>,
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
    app: Option<String>,
}

async fn list_users(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(400, "invalid_query", e.body_text()))?;
    check_app(&actor, q.app.as_deref())?;
    if let Some(st) = &q.state {
        if !STATES.contains(&st.as_str()) {
            return Err(ApiError::new(
                400,
                "invalid_state",
                format!("state must be one of {}", STATES.join(", ")),
            ));
        }
    }
    let limit = int("limit", q.limit.as_deref())?.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(
            400,
            "invalid_query",
            "limit must be between 1 and 500",
        ));
    }
    let (rows, more) = s
        .store
        .user_views(
            &actor.app_id,
            q.user_name.as_deref(),
            q.state.as_deref(),
            int("cursor", q.cursor.as_deref())?,
            limit,
        )
        .await?;
    let next = if more {
        rows.last().map(|(seq, _)| seq.to_string())
    } else {
        None
    };
    let users: Vec<_> = rows.into_iter().map(|(_, u)| u).collect();
    Ok(Json(json!({"users": users, "next_cursor": next})))
}

fn user_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::new(404, "not_found", format!("user {id} not found")))
}

async fn get_user(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        s.store.user_view(&actor.app_id, user_id(&id)?).await?
    )))
}

async fn user_history(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = user_id(&id)?;
    // 404 for ids of other apps, as everywhere.
    s.store.user_view(&actor.app_id, id).await?;
    let history = s
        .store
        .subject_history(&actor.app_id, &id.to_string())
        .await?;
    Ok(Json(json!({"user": id, "history": history})))
}
