//! /api/v1/tasks: the queue as agents and admins see it.

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{ApiActor, ApiError, ApiJson};
use crate::auth::Actor;
use crate::db::tasks::{Completion, Outcome, TaskQuery};
use crate::http::{AppState, Route};
use crate::reconcile::TaskKind;

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/api/v1/tasks", Method::GET, get(list_tasks)),
        ("/api/v1/tasks/claim", Method::POST, post(claim_task)),
        ("/api/v1/tasks/{id}", Method::GET, get(get_task)),
        (
            "/api/v1/tasks/{id}/complete",
            Method::POST,
            post(complete_task),
        ),
        (
            "/api/v1/tasks/{id}/release",
            Method::POST,
            post(release_task),
        ),
    ]
}

/// Largest and default page of the task list.
const MAX_LIMIT: i64 = 500;
const DEFAULT_LIMIT: i64 = 50;
const STATES: [&str; 5] = ["open", "in_progress", "done", "failed", "cancelled"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    kind: Option<String>,
    subject: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
    app: Option<String>,
}

/// A token sees its own app only; naming another is refused rather than ignored.
fn check_app(actor: &Actor, app: Option<&str>) -> Result<(), ApiError> {
    match app {
        Some(a) if a != actor.app_id => Err(ApiError::new(
            403,
            "forbidden_app",
            format!("this token belongs to app {:?}, not {a:?}", actor.app_id),
        )),
        _ => Ok(()),
    }
}

async fn list_tasks(
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
    let kind = q.kind.as_deref().map(parse_kind).transpose()?;
    let subject = q
        .subject
        .as_deref()
        .map(|s| {
            Uuid::parse_str(s).map_err(|_| {
                ApiError::new(400, "invalid_subject", "subject must be a user id (UUID)")
            })
        })
        .transpose()?;
    let int = |name: &str, v: Option<&str>| -> Result<Option<i64>, ApiError> {
        v.map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::new(400, "invalid_query", format!("{name} must be an integer"))
            })
        })
        .transpose()
    };
    let limit = int("limit", q.limit.as_deref())?
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT);
    let tq = TaskQuery {
        state: q.state,
        kind,
        subject,
        after: int("cursor", q.cursor.as_deref())?,
        limit,
    };
    let (tasks, more) = s.store.tasks(&actor.app_id, &tq).await?;
    let next = if more {
        tasks.last().map(|t| t.id.to_string())
    } else {
        None
    };
    Ok(Json(json!({"tasks": tasks, "next_cursor": next})))
}

fn parse_kind(k: &str) -> Result<TaskKind, ApiError> {
    TaskKind::parse(k).ok_or_else(|| {
        let all: Vec<&str> = TaskKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::new(
            400,
            "invalid_kind",
            format!("kind must be one of {}", all.join(", ")),
        )
    })
}

fn task_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::new(404, "not_found", format!("task {id} not found")))
}

async fn get_task(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (task, history) = s
        .store
        .task_with_history(&actor.app_id, task_id(&id)?)
        .await?;
    let mut body =
        serde_json::to_value(task).map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
    if let Value::Object(m) = &mut body {
        m.insert("history".into(), json!(history));
    }
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimRequest {
    /// Lease length; default `--lease-seconds`.
    lease_seconds: Option<i64>,
    /// Must be the token's app when given.
    app: Option<String>,
}

async fn claim_task(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> Result<Response, ApiError> {
    check_app(&actor, req.app.as_deref())?;
    let lease = req.lease_seconds.unwrap_or(s.config.lease_secs);
    if !(10..=86_400).contains(&lease) {
        return Err(ApiError::new(
            400,
            "invalid_lease",
            "lease_seconds must be between 10 and 86400",
        ));
    }
    Ok(match s.store.claim(&actor, lease).await? {
        Some(task) => Json(task).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteRequest {
    outcome: Outcome,
    lease_id: Option<Uuid>,
    note: Option<String>,
    #[serde(default)]
    fields: serde_json::Map<String, Value>,
}

async fn complete_task(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<Json<Value>, ApiError> {
    let c = Completion {
        outcome: req.outcome,
        lease_id: req.lease_id,
        note: req.note,
        fields: req.fields,
    };
    let task = s.store.complete(&actor, task_id(&id)?, c).await?;
    Ok(Json(json!(task)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseRequest {
    lease_id: Option<Uuid>,
}

async fn release_task(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReleaseRequest>,
) -> Result<Json<Value>, ApiError> {
    let task = s.store.release(&actor, task_id(&id)?, req.lease_id).await?;
    Ok(Json(json!(task)))
}
