//! Tasks as the task API reads them: one task, lists with a cursor, counts, attachments
//! and histories. The transitions (claim, heartbeat, complete, release, ...) are in
//! `lifecycle`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use super::audit::Record;
use super::Store;
use crate::error::{Error, Result};
use crate::reconcile::{CompletionField, TaskKind, TaskState};

/// A task as the task API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    /// Task id.
    pub id: i64,
    /// The app it belongs to.
    pub app: String,
    /// What to do.
    pub kind: TaskKind,
    /// Where it is in its lifecycle.
    pub state: TaskState,
    /// Who it is about.
    pub subject: Subject,
    /// One-line summary with the concrete values.
    pub title: String,
    /// Step-by-step instructions from the app profile.
    pub instructions: Value,
    /// Field-by-field changes (`[{"field","from","to"}]`).
    pub changes: Value,
    /// The account the app has before the task (null: none).
    pub base: Value,
    /// The account the app has once the task is done (null: none).
    pub target: Value,
    /// What completing as `done` must record.
    pub completion_fields: Vec<CompletionField>,
    /// The in-progress task of the same subject this one waits for.
    pub blocked_by: Option<i64>,
    /// When the task was derived.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Who holds (or held) it.
    pub claimed_by: Option<String>,
    /// When it was claimed.
    pub claimed_at: Option<DateTime<Utc>>,
    /// The current lease (send it back to complete or release).
    pub lease_id: Option<Uuid>,
    /// When the lease lapses and the task may be claimed again.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How many times it was claimed.
    pub attempts: i32,
    /// When it was done, failed or cancelled.
    pub finished_at: Option<DateTime<Utc>>,
    /// Who finished it.
    pub finished_by: Option<String>,
    /// The worker's note.
    pub note: Option<String>,
    /// The completion fields recorded.
    pub evidence: Option<Value>,
    /// Files attached to the completion: `[{"n", "filename", "content_type", "size"}]`.
    pub attachments: Value,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// When it is due (the profile's SLA for its kind, from when the IdP asked).
    pub due_at: Option<DateTime<Utc>>,
    /// `ok`, `due_soon` or `overdue`.
    pub sla_state: String,
    /// Its change grants a role that needs an admin's approval.
    pub needs_approval: bool,
    /// Who approved it.
    pub approved_by: Option<String>,
    /// When.
    pub approved_at: Option<DateTime<Utc>>,
    /// The held batch it belongs to (mass-change guard).
    pub batch_id: Option<i64>,
    /// What snapshots of the app's user list found about it, oldest first:
    /// `[{"finding", "snapshot", "text", "at"}]`.
    pub findings: Value,
    /// Its ticket in Jira or ServiceNow, when the app's ticket bridge mirrors it.
    pub ticket: Option<TaskTicket>,
    /// The Idempotency-Key of the completion (not shown; used to answer retries).
    #[serde(skip)]
    pub completion_key: Option<String>,
}

/// A task's ticket, as the task shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TaskTicket {
    /// `jira`, `jira_service_management` or `servicenow`.
    pub system: String,
    /// `IT-7`, `SCTASK0010001` (none until created).
    pub key: Option<String>,
    /// Where a person opens it.
    pub url: Option<String>,
    /// pending, creating, open or closed.
    pub state: String,
    /// Its status as last seen.
    pub status: Option<String>,
    /// When that status was first seen.
    pub status_at: Option<DateTime<Utc>>,
    /// It reached a closing status but could not close the task: why (the task waits for
    /// a person).
    pub pending: Option<String>,
    /// The task was closed by the ticket.
    pub closed_by_ticket: bool,
}

/// The subject of a task.
#[derive(Debug, Clone, Serialize)]
pub struct Subject {
    /// `user` (an IdP user) or `account` (an account in the app no IdP user owns, found
    /// by a snapshot; its task is a `review_account`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// SCIM id of the user (or the id of the orphan account).
    pub id: Uuid,
    /// The user's userName (an orphan account's email).
    pub user_name: String,
}

/// How many tasks of an app are in one state and of one kind.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskCount {
    /// The state.
    pub state: TaskState,
    /// The kind.
    pub kind: TaskKind,
    /// How many.
    pub count: i64,
}

/// Filters of the task list.
#[derive(Debug, Default, Clone)]
pub struct TaskQuery {
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks of this kind.
    pub kind: Option<TaskKind>,
    /// Only tasks of this user.
    pub subject: Option<Uuid>,
    /// Only tasks with an id above this (the previous page's `next_cursor`).
    pub after: Option<i64>,
    /// Page size.
    pub limit: i64,
}

const SELECT: &str = r#"
    select t.task_id, t.app_id, t.kind, t.state, t.user_id, u.user_name,
           u.subject_kind, t.findings,
           t.title, t.instructions, t.completion_fields, t.changes, t.base, t.target, t.created_at, t.updated_at,
           t.claimed_by, t.claimed_at, t.lease_id, t.lease_expires_at, t.attempts, t.finished_at,
           t.finished_by, t.note, t.evidence, t.cancel_reason, t.completion_key,
           t.due_at, t.sla_state, t.needs_approval, t.approved_by, t.approved_at, t.batch_id,
           (select coalesce(jsonb_agg(jsonb_build_object('n', a.n, 'filename', a.filename,
                                                         'content_type', a.content_type, 'size', a.size)
                                      order by a.n), '[]')
              from task_attachment a where a.task_id = t.task_id) as attachments,
           (select p.task_id from task p
             where p.user_id = t.user_id and p.state = 'in_progress' and p.task_id <> t.task_id) as blocked_by,
           (select jsonb_build_object('system', b.system, 'key', k.key, 'url', k.url, 'state', k.state,
                                      'status', k.remote_status, 'status_at', k.remote_status_at,
                                      'pending', k.done_pending, 'closed_by_ticket', k.closed_by_ticket)
              from ticket k join ticket_bridge b using (bridge_id) where k.task_id = t.task_id) as ticket
      from task t join scim_user u on u.user_id = t.user_id
"#;

/// A row of [`SELECT`].
#[derive(sqlx::FromRow)]
struct TaskRow {
    task_id: i64,
    app_id: String,
    kind: TaskKind,
    state: TaskState,
    user_id: Uuid,
    user_name: String,
    subject_kind: String,
    findings: Value,
    title: String,
    instructions: Value,
    completion_fields: Value,
    changes: Value,
    base: Option<Value>,
    target: Option<Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    claimed_by: Option<String>,
    claimed_at: Option<DateTime<Utc>>,
    lease_id: Option<Uuid>,
    lease_expires_at: Option<DateTime<Utc>>,
    attempts: i32,
    finished_at: Option<DateTime<Utc>>,
    finished_by: Option<String>,
    note: Option<String>,
    evidence: Option<Value>,
    cancel_reason: Option<String>,
    completion_key: Option<String>,
    due_at: Option<DateTime<Utc>>,
    sla_state: String,
    needs_approval: bool,
    approved_by: Option<String>,
    approved_at: Option<DateTime<Utc>>,
    batch_id: Option<i64>,
    attachments: Value,
    blocked_by: Option<i64>,
    ticket: Option<sqlx::types::Json<TaskTicket>>,
}

impl From<TaskRow> for Task {
    fn from(r: TaskRow) -> Task {
        Task {
            id: r.task_id,
            app: r.app_id,
            kind: r.kind,
            state: r.state,
            subject: Subject {
                kind: match r.subject_kind.as_str() {
                    "account" => "account",
                    _ => "user",
                },
                id: r.user_id,
                user_name: r.user_name,
            },
            title: r.title,
            instructions: r.instructions,
            changes: r.changes,
            base: r.base.unwrap_or(Value::Null),
            target: r.target.unwrap_or(Value::Null),
            completion_fields: serde_json::from_value(r.completion_fields).unwrap_or_default(),
            blocked_by: r.blocked_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            claimed_by: r.claimed_by,
            claimed_at: r.claimed_at,
            lease_id: r.lease_id,
            lease_expires_at: r.lease_expires_at,
            attempts: r.attempts,
            finished_at: r.finished_at,
            finished_by: r.finished_by,
            note: r.note,
            evidence: r.evidence,
            attachments: r.attachments,
            due_at: r.due_at,
            sla_state: r.sla_state,
            needs_approval: r.needs_approval,
            approved_by: r.approved_by,
            approved_at: r.approved_at,
            batch_id: r.batch_id,
            findings: r.findings,
            ticket: r.ticket.map(|t| t.0),
            completion_key: r.completion_key,
            cancel_reason: r.cancel_reason,
        }
    }
}

pub(super) async fn fetch(conn: &mut PgConnection, app_id: &str, id: i64) -> Result<Task> {
    let row: Option<TaskRow> =
        sqlx::query_as(&format!("{SELECT} where t.app_id = $1 and t.task_id = $2"))
            .bind(app_id)
            .bind(id)
            .fetch_optional(conn)
            .await?;
    row.map(Task::from)
        .ok_or_else(|| Error::NotFound(format!("task {id}")))
}

impl Store {
    /// Tasks of the app, oldest first, after the cursor; true when more follow.
    pub async fn tasks(&self, app_id: &str, q: &TaskQuery) -> Result<(Vec<Task>, bool)> {
        let mut b: QueryBuilder<'_, Postgres> = QueryBuilder::new(SELECT);
        b.push(" where t.app_id = ").push_bind(app_id.to_owned());
        if let Some(s) = q.state {
            b.push(" and t.state = ").push_bind(s);
        }
        if let Some(k) = q.kind {
            b.push(" and t.kind::text = ").push_bind(k.as_str());
        }
        if let Some(u) = q.subject {
            b.push(" and t.user_id = ").push_bind(u);
        }
        if let Some(a) = q.after {
            b.push(" and t.task_id > ").push_bind(a);
        }
        // One row more than asked says whether another page follows.
        b.push(" order by t.task_id limit ").push_bind(q.limit + 1);
        let rows: Vec<TaskRow> = b.build_query_as().fetch_all(&self.pool).await?;
        let more = rows.len() as i64 > q.limit;
        Ok((
            rows.into_iter()
                .take(q.limit as usize)
                .map(Task::from)
                .collect(),
            more,
        ))
    }

    /// One task of the app.
    pub async fn task(&self, app_id: &str, id: i64) -> Result<Task> {
        let mut conn = self.pool.acquire().await?;
        fetch(&mut conn, app_id, id).await
    }

    /// The task's history (audit records), checking it belongs to the app.
    pub async fn task_with_history(&self, app_id: &str, id: i64) -> Result<(Task, Vec<Record>)> {
        let t = self.task(app_id, id).await?;
        let h = self.task_history(id).await?;
        Ok((t, h))
    }

    /// How many tasks of the app are in each state, by kind.
    pub async fn task_counts(&self, app_id: &str) -> Result<Vec<TaskCount>> {
        Ok(sqlx::query_as(
            "select state::text as state, kind::text as kind, count(*) as count from task where app_id = $1 \
             group by 1, 2 order by 1, 2",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One attachment of a task of the app: file name, media type and bytes.
    pub async fn attachment(
        &self,
        app_id: &str,
        task_id: i64,
        n: i32,
    ) -> Result<(String, String, Vec<u8>)> {
        sqlx::query_as(
            "select a.filename, a.content_type, a.data from task_attachment a join task t using (task_id) \
             where t.app_id = $1 and a.task_id = $2 and a.n = $3",
        )
        .bind(app_id)
        .bind(task_id)
        .bind(n)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::NotFound(format!("attachment {n} of task {task_id}")))
    }
}
