//! /api/v1/tasks: the queue as agents and admins see it.
//!
//! | route                                   | what                                          |
//! |-----------------------------------------|-----------------------------------------------|
//! | GET  /tasks                             | list (state, kind, subject; cursor paging)    |
//! | GET  /tasks/counts                      | how many per state and kind                   |
//! | POST /tasks/claim                       | claim the next task (long-poll with `wait`)   |
//! | GET  /tasks/{id}                        | one task with its history                     |
//! | POST /tasks/{id}/heartbeat              | extend the lease                              |
//! | POST /tasks/{id}/complete               | done / failed / not_applicable with evidence  |
//! | POST /tasks/{id}/release                | give it back to the queue                     |
//! | POST /tasks/{id}/reassign               | admin: to another token, or back to the queue |
//! | POST /tasks/{id}/retry                  | plan a failed task's user afresh              |
//! | GET  /tasks/{id}/attachments/{n}        | download an evidence file                     |

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{permit, ApiActor, ApiError, ApiJson};
use crate::auth::{Action, Actor};
use crate::db::lifecycle::{Assignee, Completion, Lease, NewAttachment, Outcome, Reassignment};
use crate::db::tasks::TaskQuery;
use crate::http::attachment::{self, Unfit};
use crate::http::detach::Abandoned;
use crate::http::{AppState, Route};
use crate::reconcile::evidence::{MAX_ATTACHMENTS, MAX_ATTACHMENT_BYTES};
use crate::reconcile::{TaskKind, TaskState};

/// Body limit of a completion: room for the largest allowed attachments, base64-encoded.
pub(crate) const COMPLETE_BODY_LIMIT: usize =
    MAX_ATTACHMENTS * MAX_ATTACHMENT_BYTES * 4 / 3 + 64 * 1024;
/// Longest a claim may wait for a task (`wait`, seconds).
const MAX_WAIT_SECS: u64 = 60;

/// How long a long poll really waits at most: a little less than the request deadline
/// (`--request-timeout-secs`). A poll that waited as long as the deadline would be cut off
/// there as a 503 with a logged warning, and the agent would log one too; an idle queue is
/// no error, so the poll ends first with 204 (no task). The margin leaves time for the last
/// claim attempt and the answer.
fn poll_cap(deadline: Duration) -> Duration {
    deadline
        .saturating_sub(Duration::from_secs(2))
        .max(deadline / 2)
}

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/api/v1/tasks", Method::GET, get(list_tasks)),
        ("/api/v1/tasks/counts", Method::GET, get(count_tasks)),
        ("/api/v1/tasks/claim", Method::POST, post(claim_next_task)),
        ("/api/v1/tasks/{id}", Method::GET, get(get_task)),
        (
            "/api/v1/tasks/{id}/heartbeat",
            Method::POST,
            post(heartbeat_task),
        ),
        (
            "/api/v1/tasks/{id}/complete",
            Method::POST,
            post(complete_task).layer(DefaultBodyLimit::max(COMPLETE_BODY_LIMIT)),
        ),
        (
            "/api/v1/tasks/{id}/release",
            Method::POST,
            post(release_task),
        ),
        ("/api/v1/tasks/{id}/retry", Method::POST, post(retry_task)),
        (
            "/api/v1/tasks/{id}/reassign",
            Method::POST,
            post(reassign_task),
        ),
        (
            "/api/v1/tasks/{id}/attachments/{n}",
            Method::GET,
            get(get_attachment),
        ),
    ]
}

/// Largest and default page of the task list.
const MAX_LIMIT: i64 = 500;
const DEFAULT_LIMIT: i64 = 50;

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
pub(super) fn check_app(actor: &Actor, app: Option<&str>) -> Result<(), ApiError> {
    match app {
        Some(a) if a != actor.app_id => Err(ApiError::new(
            403,
            "forbidden_app",
            format!("this token belongs to app {:?}, not {a:?}", actor.app_id),
        )),
        _ => Ok(()),
    }
}

/// Parses an optional integer query parameter.
pub(super) fn int(name: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    v.map(|v| {
        v.parse::<i64>()
            .map_err(|_| ApiError::new(400, "invalid_query", format!("{name} must be an integer")))
    })
    .transpose()
}

async fn list_tasks(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(400, "invalid_query", e.body_text()))?;
    check_app(&actor, q.app.as_deref())?;
    let state = q
        .state
        .as_deref()
        .map(|st| {
            TaskState::parse(st).ok_or_else(|| {
                let all: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::new(
                    400,
                    "invalid_state",
                    format!("state must be one of {}", all.join(", ")),
                )
            })
        })
        .transpose()?;
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
    let limit = int("limit", q.limit.as_deref())?.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            400,
            "invalid_query",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let tq = TaskQuery {
        state,
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

async fn count_tasks(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
) -> Result<Json<Value>, ApiError> {
    let rows = s.store.task_counts(&actor.app_id).await?;
    let mut by_state: BTreeMap<&str, i64> =
        TaskState::ALL.iter().map(|st| (st.as_str(), 0)).collect();
    let mut by_kind: BTreeMap<&str, i64> = TaskKind::ALL.iter().map(|k| (k.as_str(), 0)).collect();
    let mut matrix: BTreeMap<String, BTreeMap<&str, i64>> = BTreeMap::new();
    for c in &rows {
        if let Some(v) = by_state.get_mut(c.state.as_str()) {
            *v += c.count;
        }
        if let Some(v) = by_kind.get_mut(c.kind.as_str()) {
            *v += c.count;
        }
        matrix
            .entry(c.state.as_str().to_owned())
            .or_default()
            .insert(c.kind.as_str(), c.count);
    }
    let total: i64 = rows.iter().map(|c| c.count).sum();
    Ok(Json(
        json!({"total": total, "by_state": by_state, "by_kind": by_kind, "by_state_and_kind": matrix}),
    ))
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
    let mut body = json!(task);
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
    /// Seconds to wait for a task when none is claimable now (long poll, ≤ 60).
    wait: Option<u64>,
    /// Only these kinds.
    #[serde(default)]
    kinds: Vec<String>,
    /// Must be the token's app when given.
    app: Option<String>,
}

fn check_lease(seconds: i64) -> Result<i64, ApiError> {
    if (10..=86_400).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(ApiError::new(
            400,
            "invalid_lease",
            "lease_seconds must be between 10 and 86400",
        ))
    }
}

/// Claims the next task; with `wait`, holds the request until one becomes claimable
/// (woken by LISTEN/NOTIFY, re-checking every few seconds for lapsed leases) or the
/// wait ends (204).
async fn claim_next_task(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    abandoned: Option<axum::Extension<Abandoned>>,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> Result<Response, ApiError> {
    permit(&actor, Action::Work)?;
    let abandoned = abandoned.map(|axum::Extension(a)| a);
    check_app(&actor, req.app.as_deref())?;
    let lease = Lease {
        seconds: check_lease(req.lease_seconds.unwrap_or(s.config.lease_secs))?,
        max_attempts: s.config.max_attempts,
    };
    let wait = req.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::new(
            400,
            "invalid_wait",
            format!("wait must be at most {MAX_WAIT_SECS} seconds"),
        ));
    }
    let kinds = req
        .kinds
        .iter()
        .map(|k| parse_kind(k))
        .collect::<Result<Vec<_>, _>>()?;
    let deadline =
        Instant::now() + Duration::from_secs(wait).min(poll_cap(s.config.request_timeout()));
    // Subscribe before the first attempt so a task created in between is not missed.
    let mut wake = s.notifier.subscribe();
    loop {
        if let Some(task) = s.store.claim_next(&actor, lease, &kinds).await? {
            return Ok(Json(task).into_response());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let nap = tokio::time::sleep(left.min(Duration::from_secs(5)));
        tokio::pin!(nap);
        loop {
            tokio::select! {
                got = wake.recv() => match got {
                    Ok(app) if app != actor.app_id => continue,
                    _ => break,
                },
                _ = &mut nap => break,
                // The server is shutting down: end the poll now, as an idle one.
                _ = s.notifier.closed() => return Ok(StatusCode::NO_CONTENT.into_response()),
                // A detached poll whose client left: stop here, between queries, rather
                // than claim a task for nobody when one arrives.
                _ = Abandoned::wait(abandoned.clone()) => {
                    return Ok(StatusCode::NO_CONTENT.into_response())
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatRequest {
    lease_id: Option<Uuid>,
    /// New lease length from now; default the claim's.
    lease_seconds: Option<i64>,
}

async fn heartbeat_task(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::Work)?;
    let seconds = req.lease_seconds.map(check_lease).transpose()?;
    let task = s
        .store
        .heartbeat(&actor, task_id(&id)?, req.lease_id, seconds)
        .await?;
    Ok(Json(json!(task)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentIn {
    filename: String,
    content_type: String,
    /// The file, base64-encoded (standard alphabet, padding optional).
    data: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteRequest {
    outcome: Outcome,
    lease_id: Option<Uuid>,
    note: Option<String>,
    #[serde(default)]
    fields: serde_json::Map<String, Value>,
    #[serde(default)]
    attachments: Vec<AttachmentIn>,
}

fn decode(attachments: Vec<AttachmentIn>) -> Result<Vec<NewAttachment>, ApiError> {
    attachment::check_count(attachments.len()).map_err(unfit)?;
    attachments
        .into_iter()
        .map(|a| {
            let engine = base64::engine::general_purpose::STANDARD_NO_PAD;
            let data = engine
                .decode(a.data.trim().trim_end_matches('='))
                .map_err(|e| {
                    ApiError::new(
                        400,
                        "invalid_attachment",
                        format!("{}: not base64 ({e})", a.filename),
                    )
                })?;
            attachment::check_file(&a.filename, &a.content_type, data.len()).map_err(
                |u| match u {
                    Unfit::TooLarge(size) => ApiError::new(
                        400,
                        "attachment_too_large",
                        format!(
                            "{} has {size} bytes; at most {MAX_ATTACHMENT_BYTES} per file",
                            a.filename
                        ),
                    ),
                    Unfit::TooMany | Unfit::BadNameOrType => unfit(u),
                },
            )?;
            Ok(NewAttachment {
                filename: a.filename,
                content_type: a.content_type,
                data,
            })
        })
        .collect()
}

/// The task API's words for a file that cannot be attached.
fn unfit(u: Unfit) -> ApiError {
    match u {
        Unfit::TooMany => ApiError::new(
            400,
            "too_many_attachments",
            format!("at most {MAX_ATTACHMENTS} attachments"),
        ),
        Unfit::TooLarge(size) => ApiError::new(
            400,
            "attachment_too_large",
            format!("a file has {size} bytes; at most {MAX_ATTACHMENT_BYTES} per file"),
        ),
        Unfit::BadNameOrType => ApiError::new(
            400,
            "invalid_attachment",
            "an attachment needs a plain file name and a media type such as image/png",
        ),
    }
}

async fn complete_task(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::Work)?;
    let id = task_id(&id)?;
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The store checks the fields against the task it has locked (retries of a finished
    // completion are answered without a check).
    let c = Completion {
        outcome: req.outcome,
        lease_id: req.lease_id,
        idempotency_key,
        note: req.note,
        fields: req.fields,
        attachments: decode(req.attachments)?,
    };
    let task = s.store.complete(&actor, id, c).await?;
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
    permit(&actor, Action::Work)?;
    let task = s.store.release(&actor, task_id(&id)?, req.lease_id).await?;
    Ok(Json(json!(task)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReassignRequest {
    /// `queue`, or an agent or admin token of the app (its id, or its name when unique).
    to: String,
    /// Why (recorded and announced).
    reason: Option<String>,
    /// Lease of the new holder; default `--lease-seconds`.
    lease_seconds: Option<i64>,
}

/// Reassigns a claimed (or open) task to another token or back to the queue (admins).
async fn reassign_task(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReassignRequest>,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::Reassign)?;
    let id = task_id(&id)?;
    let lease_seconds = check_lease(req.lease_seconds.unwrap_or(s.config.lease_secs))?;
    let to = match req.to.trim() {
        "" => {
            return Err(ApiError::new(
                400,
                "invalid_assignee",
                "to must be \"queue\" or an agent or admin token of this app (id or name)",
            ))
        }
        "queue" => Assignee::Queue,
        who => Assignee::Token(s.store.find_assignee(&actor.app_id, who).await?.token_id),
    };
    let r = Reassignment {
        to,
        lease_seconds,
        reason: req.reason,
    };
    Ok(Json(json!(s.store.reassign(&actor, id, r).await?)))
}

/// Plans a failed task's subject afresh: a new task closing the whole difference.
async fn retry_task(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    permit(&actor, Action::Work)?;
    Ok(Json(json!(s.store.retry(&actor, task_id(&id)?).await?)))
}

async fn get_attachment(
    State(s): State<AppState>,
    ApiActor(actor): ApiActor,
    Path((id, n)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let n: i32 = n
        .parse()
        .map_err(|_| ApiError::new(404, "not_found", "no such attachment"))?;
    let (filename, content_type, data) =
        s.store.attachment(&actor.app_id, task_id(&id)?, n).await?;
    Ok(attachment::download(&filename, &content_type, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_poll_ends_before_the_request_deadline() {
        for (deadline, cap) in [(30, 28_000), (3, 1_500), (1, 500), (60, 58_000)] {
            let got = poll_cap(Duration::from_secs(deadline));
            assert_eq!(got, Duration::from_millis(cap), "deadline {deadline}s");
            assert!(got < Duration::from_secs(deadline));
        }
    }
}
