//! Who holds a task: an admin reassigning a claimed task (to another token or back to
//! the queue), and claims returning to the queue when their token is revoked. Both
//! change a holder without the holder's consent, so both are audited and both end the
//! old lease at once: the lease id changes (or is cleared), so the old holder's lease
//! answers `lease_mismatch` and its token `not_your_task`.
//!
//! Lock order, as everywhere: a token row (when one is involved) first, then the
//! subject's user row, then the task row. Claims take the claimer's token row `for share`
//! first too, so a revocation waits for a claim in flight and then finds its task.

use serde_json::{json, Value};
use sqlx::PgConnection;
use tracing::field::Empty;
use uuid::Uuid;

use super::{cancel, conflict, lock_task, task_entry, Locked, CLAIMABLE};
use crate::auth::{Actor, Role};
use crate::db::audit;
use crate::db::derive::derive_user;
use crate::db::outbox::{emit, PRIMARY};
use crate::db::tasks::{fetch, Task};
use crate::db::tokens::TokenInfo;
use crate::db::{notify_tasks, Store};
use crate::error::{Error, Result};
use crate::reconcile::{Profiles, TaskState};

/// Where a reassignment sends a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignee {
    /// Back to the queue: anyone may claim it.
    Queue,
    /// To this agent or admin token of the app (a person or an agent).
    Token(Uuid),
}

/// A reassignment request.
#[derive(Debug, Clone)]
pub struct Reassignment {
    /// Where the task goes.
    pub to: Assignee,
    /// Lease of the new holder, seconds (ignored for the queue).
    pub lease_seconds: i64,
    /// Why, recorded in the audit trail and told to the new holder.
    pub reason: Option<String>,
}

/// Whether a token is live, taking its row `for share`: a revocation (which updates the
/// row) waits for the caller's transaction, and the caller waits for a revocation in
/// flight and then sees it. Must come before the caller's user and task locks.
pub(super) async fn lock_live_token(conn: &mut PgConnection, token_id: Uuid) -> Result<bool> {
    let live: Option<i32> = sqlx::query_scalar(
        "select 1 from token where token_id = $1 and revoked_at is null for share",
    )
    .bind(token_id)
    .fetch_optional(conn)
    .await?;
    Ok(live.is_some())
}

/// The refusal of a claim by a token revoked since the caller authenticated it (tokens
/// are cached for `--token-cache-secs`; a claim checks the database).
pub(super) fn revoked() -> Error {
    conflict(
        "token_revoked",
        "this token was revoked; it can no longer claim or be given tasks",
    )
}

/// Gives a task back to the queue (its subject's and its own row locked by the caller):
/// open again with no holder, or cancelled when a newer task of the subject waits (the
/// waiting task is re-planned to cover both). Records the given audit action. Returns the
/// waiting task that supersedes it, if any.
pub(super) async fn return_to_queue(
    conn: &mut PgConnection,
    profiles: &Profiles,
    actor: &Actor,
    t: &Task,
    action: &'static str,
    detail: Value,
) -> Result<Option<i64>> {
    let waiting: Option<i64> = sqlx::query_scalar(concat!(
        "select task_id from task where user_id = $1 and state in ",
        unclaimed_states!()
    ))
    .bind(t.subject.id)
    .fetch_optional(&mut *conn)
    .await?;
    match waiting {
        Some(next) => {
            let why = format!("Released; task #{next} now covers this change.");
            cancel(conn, actor, t.id, &why).await?;
        }
        None => {
            sqlx::query(
                "update task set state = 'open', claimed_by = null, claimed_token = null, claimed_at = null, \
                 lease_id = null, lease_expires_at = null, updated_at = now() where task_id = $1",
            )
            .bind(t.id)
            .execute(&mut *conn)
            .await?;
        }
    }
    derive_user(conn, profiles, actor, t.subject.id).await?;
    notify_tasks(conn, &actor.app_id).await?;
    let mut detail = detail;
    if let Value::Object(m) = &mut detail {
        m.insert("superseded_by".into(), json!(waiting));
    }
    audit::write(
        conn,
        actor,
        task_entry(action, t.id, t.subject.id, "released", detail),
    )
    .await?;
    Ok(waiting)
}

/// Returns every task the token holds to the queue, in the caller's transaction (the
/// token row already updated, so locked, by the caller). Each is audited as
/// `task.release` by `by`, naming the revoked token. Returns the task ids.
pub(crate) async fn return_claims_of(
    conn: &mut PgConnection,
    profiles: &Profiles,
    by: &Actor,
    token: &TokenInfo,
) -> Result<Vec<i64>> {
    // task_lease_idx covers the in-progress tasks of the app: a handful, not the queue.
    let held: Vec<i64> = sqlx::query_scalar(
        "select task_id from task where app_id = $1 and state = 'in_progress' and claimed_token = $2 \
         order by task_id",
    )
    .bind(&token.app_id)
    .bind(token.token_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut returned = Vec::new();
    for id in held {
        if return_claim(conn, profiles, by, token, id).await? {
            returned.push(id);
        }
    }
    Ok(returned)
}

/// Returns one task of a revoked token to the queue, in a span of its own; false when it
/// was completed or reassigned meanwhile (re-checked under the locks).
#[tracing::instrument(
    name = "task.return_claim",
    skip_all,
    fields(app = %by.app_id, task_id = id, kind = Empty)
)]
async fn return_claim(
    conn: &mut PgConnection,
    profiles: &Profiles,
    by: &Actor,
    token: &TokenInfo,
    id: i64,
) -> Result<bool> {
    let Locked { task: t, holder } = lock_task(conn, by, id).await?;
    if t.state != TaskState::InProgress || holder != Some(token.token_id) {
        return Ok(false);
    }
    let detail = json!({
        "reason": format!("the token {:?} holding it was revoked", token.name),
        "from": token.name, "from_token": token.token_id,
    });
    return_to_queue(conn, profiles, by, &t, "task.release", detail).await?;
    Ok(true)
}

/// The holder's name and token, from a locked task.
fn holder_of(t: &Task, holder: Option<Uuid>) -> Value {
    match (&t.claimed_by, holder) {
        (Some(name), Some(id)) if t.state == TaskState::InProgress => {
            json!({"name": name, "token_id": id})
        }
        _ => Value::Null,
    }
}

impl Store {
    /// The live agent and admin tokens of the app: who a task can be assigned to.
    pub async fn assignees(&self, app_id: &str) -> Result<Vec<TokenInfo>> {
        Ok(self
            .tokens(Some(app_id))
            .await?
            .into_iter()
            .filter(|t| t.revoked_at.is_none() && matches!(t.role, Role::Agent | Role::Admin))
            .collect())
    }

    /// Finds an assignee of the app by token id or by name (a name must be unique among
    /// the app's live agent and admin tokens).
    pub async fn find_assignee(&self, app_id: &str, who: &str) -> Result<TokenInfo> {
        let all = self.assignees(app_id).await?;
        let by_id = Uuid::parse_str(who.trim())
            .ok()
            .and_then(|id| all.iter().find(|t| t.token_id == id));
        if let Some(t) = by_id {
            return Ok(t.clone());
        }
        let named: Vec<&TokenInfo> = all.iter().filter(|t| t.name == who.trim()).collect();
        match named.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::Invalid {
                code: "unknown_assignee",
                message: format!(
                    "no live agent or admin token of this app is named or has the id {who:?}"
                ),
            }),
            many => Err(Error::Invalid {
                code: "ambiguous_assignee",
                message: format!(
                    "{} live tokens are named {who:?}; give the token id instead: {}",
                    many.len(),
                    many.iter()
                        .map(|t| t.token_id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// Reassigns a task (admins only; the caller checks the role). A claimed task goes
    /// to another agent or admin token with a fresh lease, or back to the queue; an open
    /// task that could be claimed now is assigned (claimed on the assignee's behalf).
    /// The old holder's lease stops working at once. Audited as `task.reassign` and
    /// announced as `task.reassigned` (so the new holder hears of it).
    #[tracing::instrument(
        name = "task.reassign",
        skip_all,
        fields(app = %actor.app_id, task_id = id, kind = Empty)
    )]
    pub async fn reassign(&self, actor: &Actor, id: i64, r: Reassignment) -> Result<Task> {
        crate::limits::check_opt(
            "reason",
            r.reason.as_deref(),
            crate::limits::MAX_REASON_CHARS,
        )?;
        let mut tx = self.pool.begin().await?;
        let to = match r.to {
            Assignee::Queue => None,
            Assignee::Token(token_id) => {
                let name: Option<String> = sqlx::query_scalar(
                    "select name from token where token_id = $1 and app_id = $2 \
                     and revoked_at is null and role in ('agent', 'admin') for share",
                )
                .bind(token_id)
                .bind(&actor.app_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(name) = name else {
                    return Err(Error::Invalid {
                        code: "unknown_assignee",
                        message: format!(
                            "no live agent or admin token {token_id} in this app; a task goes to \
                             an agent or admin token, or back to the queue"
                        ),
                    });
                };
                Some((token_id, name))
            }
        };
        let Locked { task: t, holder } = lock_task(&mut tx, actor, id).await?;
        let from = holder_of(&t, holder);
        let claimed = match t.state {
            TaskState::InProgress => true,
            TaskState::Open => {
                let ok: bool = sqlx::query_scalar(&format!(
                    "select exists (select 1 from task t where t.task_id = $1 and {CLAIMABLE})"
                ))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                if !ok {
                    return Err(conflict(
                        "task_blocked",
                        format!(
                            "task {id} waits for task #{} of the same user: tasks of one user \
                             are worked in order, so it cannot be assigned yet",
                            t.blocked_by.unwrap_or_default()
                        ),
                    ));
                }
                false
            }
            other @ (TaskState::AwaitingApproval
            | TaskState::Held
            | TaskState::Done
            | TaskState::Failed
            | TaskState::NotApplicable
            | TaskState::Cancelled) => {
                return Err(conflict(
                    "task_not_assignable",
                    format!(
                        "task {id} is {other}; only a claimed or an open task can be reassigned"
                    ),
                ))
            }
        };
        let reason = r.reason.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let lease_id = Uuid::new_v4();
        let outcome = match (&to, claimed) {
            (None, false) => {
                return Err(conflict(
                    "task_not_claimed",
                    format!("task {id} is open: it is in the queue already"),
                ))
            }
            (None, true) => {
                let detail = json!({"reason": reason, "from": from["name"], "from_token": from["token_id"], "by": actor.name});
                return_to_queue(&mut tx, &self.profiles, actor, &t, "task.reassign", detail)
                    .await?;
                "returned_to_queue"
            }
            (Some((token_id, name)), _) => {
                // An assignment of an open task is a claim made for someone: it counts as
                // an attempt. Handing over a claimed task does not.
                sqlx::query(
                    "update task set state = 'in_progress', claimed_by = $2, claimed_token = $3, claimed_at = now(), \
                     lease_id = $4, lease_seconds = $5, lease_expires_at = now() + make_interval(secs => $5), \
                     attempts = attempts + case when state = 'open' then 1 else 0 end, updated_at = now() \
                     where task_id = $1",
                )
                .bind(id)
                .bind(name)
                .bind(token_id)
                .bind(lease_id)
                .bind(r.lease_seconds as i32)
                .execute(&mut *tx)
                .await?;
                let detail = json!({
                    "reason": reason, "from": from["name"], "from_token": from["token_id"],
                    "to": name, "to_token": token_id, "lease_id": lease_id,
                });
                audit::write(
                    &mut tx,
                    actor,
                    task_entry("task.reassign", id, t.subject.id, "reassigned", detail),
                )
                .await?;
                "reassigned"
            }
        };
        let now = fetch(&mut tx, &actor.app_id, id).await?;
        let event = json!({
            "task_id": id, "user_id": t.subject.id, "kind": t.kind, "title": t.title,
            "from": from["name"], "to": to.as_ref().map(|(_, n)| n), "by": actor.name,
            "reason": reason, "outcome": outcome, "state": now.state,
            "lease_expires_at": now.lease_expires_at.map(crate::db::rfc3339),
            "due_at": now.due_at.map(crate::db::rfc3339),
        });
        emit(
            &mut tx,
            &actor.app_id,
            "task.reassigned",
            Some(id),
            event,
            PRIMARY,
        )
        .await?;
        tx.commit().await?;
        Ok(now)
    }
}
