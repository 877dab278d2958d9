//! /api/v1/snapshots: an app's user list as the app itself shows it (the observed
//! state), submitted by an admin or an agent, compared with what the IdP wants.
//!
//! | route                                  | what                                        |
//! |----------------------------------------|---------------------------------------------|
//! | POST /snapshots                        | upload (CSV or JSON, streamed), reconcile   |
//! | GET  /snapshots, /snapshots/{id}       | snapshots with preview and summary          |
//! | POST /snapshots/{id}/apply, /discard   | an admin's decision on a held snapshot      |
//! | GET  /findings                         | what snapshots found                        |

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::tasks::int;
use super::{permit, ApiActor, ApiError};
use crate::auth::{Action, Actor};
use crate::db::snapshots::{ImportError, NewSnapshot};
use crate::db::Store;
use crate::http::{AppState, Route};
use crate::reconcile::snapshot::Format;

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/api/v1/snapshots", Method::POST, post(import_snapshot)),
        ("/api/v1/snapshots", Method::GET, get(list_snapshots)),
        ("/api/v1/snapshots/{id}", Method::GET, get(get_snapshot)),
        (
            "/api/v1/snapshots/{id}/apply",
            Method::POST,
            post(apply_snapshot),
        ),
        (
            "/api/v1/snapshots/{id}/discard",
            Method::POST,
            post(discard_snapshot),
        ),
        ("/api/v1/findings", Method::GET, get(list_findings)),
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    /// `csv` or `json`; else from the Content-Type.
    format: Option<String>,
    /// When the export was taken (RFC 3339); the upload time if absent.
    taken_at: Option<String>,
    /// The file's name, for the record.
    filename: Option<String>,
}

/// Why reading the body stopped.
#[derive(Debug)]
pub(crate) enum UploadError {
    /// Past `--snapshot-limit`.
    TooLarge(u64),
    /// The connection failed.
    Body(String),
}

/// The response to an import that failed, in the API's format.
pub(crate) fn import_error(e: ImportError<UploadError>) -> ApiError {
    match e {
        ImportError::Input(e) => ApiError::new(400, e.code, e.message),
        ImportError::Stream(UploadError::TooLarge(limit)) => ApiError::new(
            413,
            "snapshot_too_large",
            format!(
                "the file is larger than the snapshot limit of {limit} bytes \
                 (--snapshot-limit / SCIMBRIDGE_SNAPSHOT_LIMIT)"
            ),
        ),
        ImportError::Stream(UploadError::Body(m)) => {
            ApiError::new(400, "bad_body", format!("the upload was interrupted: {m}"))
        }
        ImportError::Store(e) => e.into(),
    }
}

/// Parses `taken_at`: RFC 3339, not in the future.
pub(crate) fn taken_at(v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let t = DateTime::parse_from_rfc3339(v)
        .map_err(|_| {
            ApiError::new(
                400,
                "invalid_query",
                format!("taken_at {v:?} is not an RFC 3339 time like 2026-12-05T09:00:00Z"),
            )
        })?
        .with_timezone(&Utc);
    if t > Utc::now() + chrono::Duration::minutes(5) {
        return Err(ApiError::new(
            400,
            "invalid_query",
            "taken_at is in the future",
        ));
    }
    Ok(Some(t))
}

/// Reconciles a received or confirmed snapshot in a task of its own, so it completes
/// even if the client goes away or the request's deadline passes.
pub(crate) async fn reconcile(
    store: &Store,
    actor: &Actor,
    id: i64,
    confirmed: bool,
) -> Result<crate::db::snapshots::Snapshot, crate::error::Error> {
    let (store, actor) = (store.clone(), actor.clone());
    let run = tokio::spawn(async move { store.reconcile_snapshot(&actor, id, confirmed).await });
    match run.await {
        Ok(r) => r,
        Err(e) => {
            // Only a panic or a shutting-down runtime gets here; the snapshot stays
            // `applying`, and an admin can apply it again to finish.
            tracing::error!(error = %e, snapshot = id, "applying a snapshot stopped");
            Err(crate::error::Error::Unavailable(sqlx::Error::WorkerCrashed))
        }
    }
}

async fn import_snapshot(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    query: Result<Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    permit(&actor, Action::SubmitSnapshot)?;
    let Query(q) = query.map_err(|e| ApiError::new(400, "invalid_query", e.body_text()))?;
    let format = match q.format.as_deref() {
        Some("csv") => Format::Csv,
        Some("json") => Format::Json,
        Some(other) => {
            return Err(ApiError::new(
                400,
                "invalid_query",
                format!("format {other:?}: use csv or json"),
            ))
        }
        None => headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(Format::from_content_type)
            .ok_or_else(|| {
                ApiError::new(
                    415,
                    "unsupported_media_type",
                    "send the file as text/csv or application/json (or say ?format=csv|json)",
                )
            })?,
    };
    let new = NewSnapshot {
        format,
        filename: q.filename.filter(|f| !f.trim().is_empty()),
        taken_at: taken_at(q.taken_at.as_deref())?,
    };
    let limit = s.config.snapshot_limit;
    let mut seen: u64 = 0;
    let chunks = body.into_data_stream().map(move |c| {
        let c = c.map_err(|e| UploadError::Body(e.to_string()))?;
        seen += c.len() as u64;
        if seen > limit {
            return Err(UploadError::TooLarge(limit));
        }
        Ok(c)
    });
    let id = s
        .store
        .import_snapshot(&actor, new, Box::pin(chunks))
        .await
        .map_err(import_error)?;
    let snap = reconcile(&s.store, &actor, id, false).await?;
    let mut res = (StatusCode::CREATED, Json(json!(snap))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/snapshots/{id}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

fn id_of(what: &str, id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::new(404, "not_found", format!("{what} {id} not found")))
}

fn limit_of(v: Option<&str>) -> Result<i64, ApiError> {
    let limit = int("limit", v)?.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(
            400,
            "invalid_query",
            "limit must be between 1 and 500",
        ));
    }
    Ok(limit)
}

async fn list_snapshots(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(400, "invalid_query", e.body_text()))?;
    let limit = limit_of(q.limit.as_deref())?;
    let before = int("cursor", q.cursor.as_deref())?;
    let (snaps, more) = s.store.snapshots(&actor.app_id, before, limit).await?;
    let next = more
        .then(|| snaps.last().map(|l| l.id.to_string()))
        .flatten();
    Ok(Json(json!({"snapshots": snaps, "next_cursor": next})))
}

async fn get_snapshot(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = id_of("snapshot", &id)?;
    Ok(Json(json!(s.store.snapshot(&actor.app_id, id).await?)))
}

async fn apply_snapshot(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::DecideSnapshot)?;
    let id = id_of("snapshot", &id)?;
    s.store.decide_snapshot(&actor, id, true).await?;
    Ok(Json(json!(reconcile(&s.store, &actor, id, true).await?)))
}

async fn discard_snapshot(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::DecideSnapshot)?;
    let id = id_of("snapshot", &id)?;
    Ok(Json(json!(
        s.store.decide_snapshot(&actor, id, false).await?
    )))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingQuery {
    kind: Option<String>,
    /// `open` (default), `resolved` or `all`.
    state: Option<String>,
    snapshot: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

async fn list_findings(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    query: Result<Query<FindingQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(400, "invalid_query", e.body_text()))?;
    const KINDS: [&str; 4] = ["drift", "missing", "contradiction", "orphan"];
    if let Some(k) = &q.kind {
        if !KINDS.contains(&k.as_str()) {
            return Err(ApiError::new(
                400,
                "invalid_query",
                format!("kind must be one of {}", KINDS.join(", ")),
            ));
        }
    }
    let state = q.state.as_deref().unwrap_or("open");
    if !["open", "resolved", "all"].contains(&state) {
        return Err(ApiError::new(
            400,
            "invalid_query",
            "state must be open, resolved or all",
        ));
    }
    let query = crate::db::findings::FindingQuery {
        kind: q.kind,
        state: state.to_owned(),
        snapshot: int("snapshot", q.snapshot.as_deref())?,
        after: int("cursor", q.cursor.as_deref())?,
        limit: limit_of(q.limit.as_deref())?,
    };
    let (findings, more) = s.store.findings(&actor.app_id, &query).await?;
    let next = more
        .then(|| findings.last().map(|f| f.id.to_string()))
        .flatten();
    Ok(Json(json!({"findings": findings, "next_cursor": next})))
}
