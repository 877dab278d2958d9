//! The task lifecycle: every transition of a task's state, in one home.
//!
//! | transition                      | function                   | file         |
//! |---------------------------------|----------------------------|--------------|
//! | open → in progress (next)       | [`Store::claim_next`]      | `claim.rs`   |
//! | open → in progress (chosen)     | [`Store::claim_chosen`]    | `claim.rs`   |
//! | lapsed lease → in progress      | (both claims)              | `claim.rs`   |
//! | lapsed, out of attempts → failed| [`Store::fail_exhausted`] (`fail_lapsed` per task) | `claim.rs` |
//! | in progress, lease extended     | [`Store::heartbeat`]       | `claim.rs`   |
//! | in progress → done/failed/n.a.  | [`Store::complete`]        | `finish.rs`  |
//! | in progress → open (or cancelled when superseded) | [`Store::release`] | `finish.rs` |
//! | awaiting approval → open        | [`Store::approve`]         | `decide.rs`  |
//! | awaiting approval → cancelled   | [`Store::reject`]          | `decide.rs`  |
//! | failed → (a new task planned)   | [`Store::retry`]           | `decide.rs`  |
//! | held → open/awaiting approval   | [`Store::release_batch`]   | `decide.rs`  |
//! | held → cancelled                | [`Store::cancel_batch`]    | `decide.rs`  |
//! | in progress → in progress (another holder) | [`Store::reassign`] | `assign.rs` |
//! | open → in progress (assigned by an admin) | [`Store::reassign`] | `assign.rs` |
//! | in progress → open (taken back by an admin) | [`Store::reassign`] | `assign.rs` |
//! | in progress → open (its token revoked) | [`return_claims_of`] (`return_claim` per task), called by revocation | `assign.rs` |
//! | open/in progress → done/failed/n.a. (its ticket closed) | [`Store::close_from_ticket`] | `ticket.rs` |
//! | unclaimed → cancelled (no longer needed) | `cancel`, called by derivation | here |
//! | unclaimed → done (a snapshot shows it met) | [`close_verified`]      | `verify.rs`  |
//! | done/n.a. → open (a snapshot contradicts it) | [`reopen_contradicted`] | `verify.rs` |
//! | review_account done: removed/kept/linked | `resolve_review`, called by `complete` | `verify.rs` |
//! | SLA: ok → due soon → overdue (leavers escalated), reminders | [`Store::sweep`] | `sla.rs` |
//!
//! Planning itself (creating a task, re-planning the unclaimed one) is derivation, in
//! `db::derive`. Every operation locks the subject's user row before its task rows (the
//! order SCIM writes use), except claims and lease expiry, which take both with SKIP
//! LOCKED and so never wait (invariant 3: any number of workers and replicas). Each
//! transition runs in a span named after it with the task id, app and kind, so one task
//! can be followed through the logs: a span per call for the transitions of one task, a
//! span per task inside the ones that move many (batch decisions, lapsed leases, revoked
//! claims, the SLA sweep).

mod assign;
mod claim;
mod decide;
mod finish;
mod sla;
mod ticket;
mod verify;

pub(crate) use assign::return_claims_of;
pub use assign::{Assignee, Reassignment};
pub use sla::SweepReport;
pub use ticket::{Closing, TicketDone};
pub(super) use verify::{close_verified, reopen_contradicted, SnapshotEvidence};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use tracing::field::Empty;
use uuid::Uuid;

use super::audit::Entry;
use super::tasks::{fetch, Task};
use crate::auth::Actor;
use crate::error::{Error, Result};
use crate::reconcile::{TaskKind, TaskState};

/// How a worker finishes a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done in the app: the confirmed state becomes the task's target.
    Done,
    /// Could not be done: confirmed state stays, the subject needs attention.
    Failed,
    /// Nothing to do: the app already was in the target state (e.g. the user to remove
    /// never had an account). The confirmed state becomes the target, like `done`.
    NotApplicable,
}

impl Outcome {
    /// The task state it leads to.
    pub fn state(self) -> TaskState {
        match self {
            Outcome::Done => TaskState::Done,
            Outcome::Failed => TaskState::Failed,
            Outcome::NotApplicable => TaskState::NotApplicable,
        }
    }
}

/// A file attached to a completion, already decoded and checked.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    /// File name as the worker gave it.
    pub filename: String,
    /// Media type.
    pub content_type: String,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A completion request.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Done, failed or not applicable.
    pub outcome: Outcome,
    /// The lease returned by claim; without it the task must be held by the same token.
    pub lease_id: Option<Uuid>,
    /// The request's Idempotency-Key: a retry with the same key returns the first result.
    pub idempotency_key: Option<String>,
    /// Free text.
    pub note: Option<String>,
    /// Values of the task's completion fields (checked against the task by `complete`).
    pub fields: serde_json::Map<String, Value>,
    /// Evidence files.
    pub attachments: Vec<NewAttachment>,
}

/// Lease settings of a claim.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    /// Seconds until the lease lapses unless extended by a heartbeat.
    pub seconds: i64,
    /// Claims after which a lapsed task fails instead of returning to the queue.
    pub max_attempts: i32,
}

/// SQL condition: task `t` may be claimed now. Open tasks wait for their subject's task
/// in progress (tasks of one subject are worked in order); a task whose lease lapsed is
/// claimable again.
const CLAIMABLE: &str = "((t.state = 'open' and not exists \
     (select 1 from task p where p.user_id = t.user_id and p.state = 'in_progress')) \
     or (t.state = 'in_progress' and t.lease_expires_at < now()))";

fn conflict(code: &'static str, message: impl Into<String>) -> Error {
    Error::TaskConflict {
        code,
        message: message.into(),
    }
}

/// The audit entry of a transition of a user's task.
pub(super) fn task_entry(
    action: &'static str,
    task_id: i64,
    user_id: Uuid,
    outcome: &'static str,
    detail: Value,
) -> Entry<'static> {
    Entry {
        action,
        subject_type: "user",
        subject_id: user_id.to_string(),
        task_id: Some(task_id),
        outcome,
        detail,
    }
}

/// Records the task's kind in the current transition span (declared `kind = Empty`),
/// once the task has been read.
fn record_kind(t: &Task) {
    tracing::Span::current().record("kind", tracing::field::display(t.kind.as_str()));
}

/// Cancels an unclaimed or released task with the reason people will read (the caller
/// holds the subject's lock and writes the audit record). Its own span: derivation
/// cancels tasks no longer needed outside any other transition.
#[tracing::instrument(
    name = "task.cancel",
    skip_all,
    fields(app = %actor.app_id, task_id = task_id, kind = Empty)
)]
pub(super) async fn cancel(
    conn: &mut PgConnection,
    actor: &Actor,
    task_id: i64,
    reason: &str,
) -> Result<()> {
    let kind: TaskKind = sqlx::query_scalar(
        "update task set state = 'cancelled', cancel_reason = $2, finished_at = now(), \
         finished_by = $3, updated_at = now() where task_id = $1 returning kind",
    )
    .bind(task_id)
    .bind(reason)
    .bind(&actor.name)
    .fetch_one(conn)
    .await?;
    tracing::Span::current().record("kind", tracing::field::display(kind.as_str()));
    Ok(())
}

/// A task locked with its subject, and the token holding it (if claimed).
struct Locked {
    task: Task,
    holder: Option<Uuid>,
}

/// Locks the subject's user row, then the task (the order every task operation and SCIM
/// write uses), and reads the task with who holds it.
async fn lock_task(conn: &mut PgConnection, actor: &Actor, id: i64) -> Result<Locked> {
    let user: Option<Uuid> = sqlx::query_scalar(
        "select u.user_id from scim_user u \
         where u.user_id = (select t.user_id from task t where t.app_id = $1 and t.task_id = $2) \
         for update",
    )
    .bind(&actor.app_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if user.is_none() {
        return Err(Error::NotFound(format!("task {id}")));
    }
    let holder: Option<Uuid> =
        sqlx::query_scalar("select claimed_token from task where task_id = $1 for update")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    let task = fetch(conn, &actor.app_id, id).await?;
    record_kind(&task);
    Ok(Locked { task, holder })
}

/// Checks the caller holds a locked task: in progress, and the lease given (or, without
/// one, the caller's own token).
fn check_held(actor: &Actor, locked: Locked, lease: Option<Uuid>) -> Result<Task> {
    let Locked { task: t, holder } = locked;
    let id = t.id;
    if t.state != TaskState::InProgress {
        return Err(conflict(
            "task_not_in_progress",
            format!("task {id} is {}, not in progress: only a claimed task can be completed, extended or released", t.state),
        ));
    }
    match lease {
        Some(l) if t.lease_id != Some(l) => Err(conflict(
            "lease_mismatch",
            format!(
                "lease {l} no longer holds task {id}: it lapsed and the task was claimed again"
            ),
        )),
        None if holder != Some(actor.token_id) => Err(conflict(
            "not_your_task",
            format!(
                "task {id} is held by {}; send its lease_id to act on it",
                t.claimed_by.as_deref().unwrap_or("another worker")
            ),
        )),
        _ => Ok(t),
    }
}

/// Locks a task and its subject and checks the caller holds it.
async fn lock_held(
    conn: &mut PgConnection,
    actor: &Actor,
    id: i64,
    lease: Option<Uuid>,
) -> Result<Task> {
    let locked = lock_task(conn, actor, id).await?;
    check_held(actor, locked, lease)
}

/// Locks the subject's user row of a task of the app, then reads the task (for the
/// decisions, which need no holder).
async fn lock_subject(conn: &mut PgConnection, actor: &Actor, id: i64) -> Result<Task> {
    let t = fetch(conn, &actor.app_id, id).await?;
    record_kind(&t);
    sqlx::query("select 1 from scim_user where user_id = $1 for update")
        .bind(t.subject.id)
        .execute(&mut *conn)
        .await?;
    Ok(t)
}
