//! Governance routes for admins: approvals, held batches, notification deliveries,
//! reports and the audit export.
//!
//! | route                                   | what                                        |
//! |-----------------------------------------|---------------------------------------------|
//! | POST /tasks/{id}/approve, /reject       | decide a task awaiting approval             |
//! | GET  /batches, /batches/{id}            | held batches with their impact preview      |
//! | POST /batches/{id}/release, /cancel     | decide a held batch as a whole              |
//! | GET  /deliveries, POST /deliveries/retry | webhook deliveries; requeue failed ones    |
//! | GET  /webhooks                          | configured webhooks (no secrets)            |
//! | GET  /reports/seats, /sla, /leavers     | reports                                     |
//! | GET  /reports/verification              | what snapshots verified and found           |
//! | GET  /audit/export                      | the audit trail as CSV                      |

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{permit, ApiActor, ApiError, ApiJson};
use crate::auth::Action;
use crate::http::{AppState, Route};

pub(super) fn routes() -> Vec<Route> {
    vec![
        (
            "/api/v1/tasks/{id}/approve",
            Method::POST,
            post(approve_task),
        ),
        ("/api/v1/tasks/{id}/reject", Method::POST, post(reject_task)),
        ("/api/v1/batches", Method::GET, get(list_batches)),
        ("/api/v1/batches/{id}", Method::GET, get(get_batch)),
        (
            "/api/v1/batches/{id}/release",
            Method::POST,
            post(release_batch),
        ),
        (
            "/api/v1/batches/{id}/cancel",
            Method::POST,
            post(cancel_batch),
        ),
        ("/api/v1/deliveries", Method::GET, get(list_deliveries)),
        (
            "/api/v1/deliveries/retry",
            Method::POST,
            post(retry_deliveries),
        ),
        ("/api/v1/webhooks", Method::GET, get(list_webhooks)),
        ("/api/v1/reports/seats", Method::GET, get(report_seats)),
        ("/api/v1/reports/sla", Method::GET, get(report_sla)),
        ("/api/v1/reports/leavers", Method::GET, get(report_leavers)),
        (
            "/api/v1/reports/verification",
            Method::GET,
            get(report_verification),
        ),
        ("/api/v1/audit/export", Method::GET, get(export_audit)),
    ]
}

fn id_of(what: &str, id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::new(404, "not_found", format!("{what} {id} not found")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    /// Why (recorded with a rejection).
    reason: Option<String>,
}

async fn approve_task(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::Approve)?;
    Ok(Json(json!(
        s.store.approve(&actor, id_of("task", &id)?).await?
    )))
}

async fn reject_task(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
    ApiJson(d): ApiJson<Decision>,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::Approve)?;
    let task = s
        .store
        .reject(&actor, id_of("task", &id)?, d.reason.as_deref())
        .await?;
    Ok(Json(json!(task)))
}

async fn list_batches(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"batches": s.store.batches(&actor.app_id).await?}),
    ))
}

async fn get_batch(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(
        s.store.batch(&actor.app_id, id_of("batch", &id)?).await?
    )))
}

async fn release_batch(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::DecideBatch)?;
    Ok(Json(json!(
        s.store.release_batch(&actor, id_of("batch", &id)?).await?
    )))
}

async fn cancel_batch(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::DecideBatch)?;
    Ok(Json(json!(
        s.store.cancel_batch(&actor, id_of("batch", &id)?).await?
    )))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    state: Option<String>,
    limit: Option<i64>,
}

async fn list_deliveries(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    query: Result<Query<DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::Deliveries)?;
    let Query(q) = query.map_err(|e| ApiError::new(400, "invalid_query", e.body_text()))?;
    if let Some(st) = &q.state {
        if !["pending", "delivered", "failed"].contains(&st.as_str()) {
            return Err(ApiError::new(
                400,
                "invalid_state",
                "state must be pending, delivered or failed",
            ));
        }
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        json!({"deliveries": s.store.deliveries(&actor.app_id, q.state.as_deref(), limit).await?}),
    ))
}

async fn retry_deliveries(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::Deliveries)?;
    Ok(Json(
        json!({"requeued": s.store.retry_failed_deliveries(&actor.app_id).await?}),
    ))
}

async fn list_webhooks(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::Deliveries)?;
    Ok(Json(
        json!({"webhooks": s.store.webhooks(Some(&actor.app_id)).await?}),
    ))
}

async fn report_seats(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"app": actor.app_id, "seats": s.store.seats(&actor.app_id).await?}),
    ))
}

async fn report_verification(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
) -> Result<Json<Value>, ApiError> {
    let mut v = json!(s.store.verification(&actor.app_id).await?);
    v["app"] = json!(actor.app_id);
    Ok(Json(v))
}

async fn report_sla(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"app": actor.app_id, "kinds": s.store.sla_report(&actor.app_id).await?}),
    ))
}

async fn report_leavers(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"app": actor.app_id, "leavers": s.store.leavers(&actor.app_id, 1000).await?}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    /// A subject id (user, group, batch).
    subject: Option<String>,
    /// RFC 3339 start (inclusive).
    from: Option<DateTime<Utc>>,
    /// RFC 3339 end (exclusive).
    to: Option<DateTime<Utc>>,
}

async fn export_audit(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    permit(&actor, Action::Audit)?;
    let Query(q) = query.map_err(|e| ApiError::new(400, "invalid_query", e.body_text()))?;
    let csv = s
        .store
        .audit_csv(&actor.app_id, q.subject.as_deref(), q.from, q.to)
        .await?;
    let mut res = csv.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    res.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"audit.csv\""),
    );
    Ok(res)
}
