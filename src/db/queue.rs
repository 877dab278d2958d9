//! The task lifecycle: claim with a lease, heartbeat, complete (done, failed,
//! not_applicable) and release. Every operation locks the subject's user row before its
//! task rows (the order SCIM writes use), except claims and lease expiry, which take both
//! with SKIP LOCKED and so never wait (invariant 3: any number of workers and replicas).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::audit::{self, Entry};
use super::derive::{derive_user, derive_user_task, replan_waiting};
use super::outbox::{emit, PRIMARY};
use super::tasks::{fetch, Task};
use super::{notify_tasks, Store};
use crate::auth::Actor;
use crate::error::{Error, Result};
use crate::queue::evidence::check_fields;
use crate::reconcile::TaskKind;

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
    pub fn state(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::NotApplicable => "not_applicable",
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

fn conflict(code: &'static str, message: impl Into<String>) -> Error {
    Error::TaskConflict {
        code,
        message: message.into(),
    }
}

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

/// Locks the subject's user row, then the task (the order every task operation and SCIM
/// write uses), and reads the task with who holds it.
async fn lock_task(
    conn: &mut PgConnection,
    actor: &Actor,
    id: i64,
) -> Result<(Task, Option<Uuid>)> {
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
    Ok((fetch(conn, &actor.app_id, id).await?, holder))
}

/// Checks the caller holds a locked task: in progress, and the lease given (or, without
/// one, the caller's own token).
fn check_held(actor: &Actor, t: Task, holder: Option<Uuid>, lease: Option<Uuid>) -> Result<Task> {
    let id = t.id;
    if t.state != "in_progress" {
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
    let (t, holder) = lock_task(conn, actor, id).await?;
    check_held(actor, t, holder, lease)
}

/// SQL condition: task `t` may be claimed now. Open tasks wait for their subject's task
/// in progress (tasks of one subject are worked in order); a task whose lease lapsed is
/// claimable again.
pub(super) const CLAIMABLE: &str = "((t.state = 'open' and not exists \
     (select 1 from task p where p.user_id = t.user_id and p.state = 'in_progress')) \
     or (t.state = 'in_progress' and t.lease_expires_at < now()))";

/// A task a claim picked: id, subject, state, last holder, attempts so far.
pub(super) type Picked = (i64, Uuid, String, Option<String>, i32);

/// Takes a picked task (its row and its subject's row locked by the caller): leases it
/// to the actor and records the claim, and the lapse of the previous lease if it had one.
/// None when another worker's commit made it unclaimable since it was picked.
pub(super) async fn take(
    conn: &mut PgConnection,
    actor: &Actor,
    lease: Lease,
    (id, user_id, state, holder, attempts): Picked,
) -> Result<Option<Task>> {
    // Re-checked with a fresh snapshot while holding the subject's lock.
    let lease_id = Uuid::new_v4();
    let updated = sqlx::query(&format!(
        "update task t set state = 'in_progress', claimed_by = $2, claimed_token = $3, claimed_at = now(), \
         lease_id = $4, lease_seconds = $5, lease_expires_at = now() + make_interval(secs => $5), \
         attempts = attempts + 1, updated_at = now() where t.task_id = $1 and {CLAIMABLE}"
    ))
    .bind(id)
    .bind(&actor.name)
    .bind(actor.token_id)
    .bind(lease_id)
    .bind(lease.seconds as i32)
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    let t = fetch(conn, &actor.app_id, id).await?;
    if state == "in_progress" {
        let detail = json!({"attempt": attempts, "last_holder": holder});
        let system = Actor::system(&actor.app_id);
        audit::write(
            conn,
            &system,
            task_entry(
                "task.lease_expired",
                id,
                user_id,
                "returned_to_queue",
                detail,
            ),
        )
        .await?;
    }
    let detail = json!({"lease_id": lease_id, "lease_expires_at": t.lease_expires_at, "attempt": t.attempts});
    audit::write(
        conn,
        actor,
        task_entry("task.claim", id, user_id, "claimed", detail),
    )
    .await?;
    Ok(Some(t))
}

impl Store {
    /// Fails the app's tasks whose lease lapsed after the last allowed attempt and flags
    /// their subjects; returns how many. Locks are taken with SKIP LOCKED, so a worker
    /// completing one of them just now wins.
    pub(super) async fn fail_exhausted(&self, app_id: &str, max_attempts: i32) -> Result<u64> {
        // Every claim calls this first; nearly always nothing lapsed, and one indexed
        // read (task_lease_idx) says so without opening a transaction.
        let any: bool = sqlx::query_scalar(
            "select exists (select 1 from task t where t.app_id = $1 and t.state = 'in_progress' \
             and t.lease_expires_at < now() and t.attempts >= $2)",
        )
        .bind(app_id)
        .bind(max_attempts)
        .fetch_one(&self.pool)
        .await?;
        if !any {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let dead: Vec<(i64, Uuid, i32, Option<String>)> = sqlx::query_as(
            "select t.task_id, t.user_id, t.attempts, t.claimed_by from task t join scim_user u on u.user_id = t.user_id \
             where t.app_id = $1 and t.state = 'in_progress' and t.lease_expires_at < now() and t.attempts >= $2 \
             for update of t, u skip locked",
        )
        .bind(app_id)
        .bind(max_attempts)
        .fetch_all(&mut *tx)
        .await?;
        let system = Actor::system(app_id);
        for (task_id, user_id, attempts, holder) in &dead {
            let note = format!("The lease lapsed on attempt {attempts} of {max_attempts}; the task needs a person.");
            sqlx::query(
                "update task set state = 'failed', finished_at = now(), finished_by = 'scimbridge', note = $2, \
                 updated_at = now() where task_id = $1",
            )
            .bind(task_id)
            .bind(&note)
            .execute(&mut *tx)
            .await?;
            sqlx::query("update scim_user set needs_attention = true where user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            replan_waiting(&mut tx, &self.profiles, &system, *user_id).await?;
            let event = json!({"task_id": task_id, "user_id": user_id, "outcome": "lease_exhausted", "note": note});
            emit(
                &mut tx,
                app_id,
                "task.failed",
                Some(*task_id),
                event,
                PRIMARY,
            )
            .await?;
            let detail = json!({"attempts": attempts, "last_holder": holder, "note": note});
            audit::write(
                &mut tx,
                &system,
                task_entry("task.fail", *task_id, *user_id, "lease_exhausted", detail),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(dead.len() as u64)
    }

    /// Claims the next claimable task: leavers (removals, deactivations) first, then
    /// oldest first; a subject's tasks strictly in order; a task whose lease lapsed is
    /// claimable again (the attempt is counted and recorded). None when nothing is
    /// claimable. `kinds` narrows the claim to some task kinds.
    pub async fn claim(
        &self,
        actor: &Actor,
        lease: Lease,
        kinds: &[TaskKind],
    ) -> Result<Option<Task>> {
        let kinds: Option<Vec<&str>> =
            (!kinds.is_empty()).then(|| kinds.iter().map(|k| k.as_str()).collect());
        // A candidate can be taken by another worker between pick and update; a few
        // retries find the next one. The order is `task_claim_order_idx`'s (priority,
        // then age), so the scan stops at the first claimable task instead of sorting
        // the whole queue. A lapsed task out of attempts is never picked; the pick also
        // says whether one exists, and then it is failed (and its subject flagged)
        // before claiming: the check costs no round trip of its own.
        let mut swept = false;
        for _ in 0..5 {
            let mut tx = self.pool.begin().await?;
            let picked: Option<(i64, Uuid, String, Option<String>, i32, bool)> =
                sqlx::query_as(&format!(
                    r#"
                select t.task_id, t.user_id, t.state::text, t.claimed_by, t.attempts,
                       exists (select 1 from task x where x.app_id = $1 and x.state = 'in_progress'
                                  and x.lease_expires_at < now() and x.attempts >= $3) as exhausted
                  from task t join scim_user u on u.user_id = t.user_id
                 where t.app_id = $1 and t.state in ('open', 'in_progress')
                   and (t.state = 'open' or t.attempts < $3)
                   and ($2::text[] is null or t.kind::text = any($2)) and {CLAIMABLE}
                 order by t.priority, t.task_id
                 limit 1
                 for update of t, u skip locked
                "#
                ))
                .bind(&actor.app_id)
                .bind(&kinds)
                .bind(lease.max_attempts)
                .fetch_optional(&mut *tx)
                .await?;
            let exhausted = picked.as_ref().is_none_or(|p| p.5);
            if exhausted && !swept {
                tx.rollback().await?;
                swept = true;
                if self
                    .fail_exhausted(&actor.app_id, lease.max_attempts)
                    .await?
                    > 0
                    || picked.is_some()
                {
                    continue;
                }
                return Ok(None);
            }
            let Some((id, user_id, state, holder, attempts, _)) = picked else {
                return Ok(None);
            };
            if let Some(t) = take(
                &mut tx,
                actor,
                lease,
                (id, user_id, state, holder, attempts),
            )
            .await?
            {
                tx.commit().await?;
                return Ok(Some(t));
            }
            tx.rollback().await?;
        }
        Ok(None)
    }

    /// Extends the lease of a held task by `seconds` (default: the claim's lease length)
    /// from now. Heartbeats are not audited: they change no state anyone acts on.
    pub async fn heartbeat(
        &self,
        actor: &Actor,
        id: i64,
        lease: Option<Uuid>,
        seconds: Option<i64>,
    ) -> Result<Task> {
        let mut tx = self.pool.begin().await?;
        lock_held(&mut tx, actor, id, lease).await?;
        sqlx::query(
            "update task set lease_expires_at = now() + make_interval(secs => coalesce($2, lease_seconds, 900)), \
             lease_seconds = coalesce($2, lease_seconds), updated_at = now() where task_id = $1",
        )
        .bind(id)
        .bind(seconds.map(|s| s as i32))
        .execute(&mut *tx)
        .await?;
        let t = fetch(&mut tx, &actor.app_id, id).await?;
        tx.commit().await?;
        Ok(t)
    }

    /// Completes a held task. `done` and `not_applicable` move the subject's confirmed
    /// state to the task's target in the same transaction; `failed` leaves it and flags
    /// the subject. Completing again with the same lease or Idempotency-Key returns the
    /// first result. The fields are checked against the task's completion fields (400
    /// `Error::Invalid` when a required one is missing or a choice is not offered).
    pub async fn complete(&self, actor: &Actor, id: i64, c: Completion) -> Result<Task> {
        let mut tx = self.pool.begin().await?;
        let (current, holder) = lock_task(&mut tx, actor, id).await?;
        let finished = matches!(current.state.as_str(), "done" | "failed" | "not_applicable");
        let same_lease = c.lease_id.is_some() && current.lease_id == c.lease_id;
        let same_key = c.idempotency_key.is_some() && current.completion_key == c.idempotency_key;
        if finished && (same_lease || same_key) {
            return Ok(current);
        }
        let t = check_held(actor, current, holder, c.lease_id)?;
        check_fields(
            t.kind.as_str(),
            &t.completion_fields,
            &c.fields,
            c.outcome == Outcome::Done,
        )
        .map_err(|e| Error::Invalid {
            code: e.code,
            message: e.message,
        })?;
        match c.outcome {
            Outcome::Done | Outcome::NotApplicable => {
                sqlx::query(
                    "update scim_user set confirmed = $2, confirmed_at = now(), needs_attention = false where user_id = $1",
                )
                .bind(t.subject.id)
                .bind(if t.target.is_null() { None } else { Some(&t.target) })
                .execute(&mut *tx)
                .await?;
            }
            Outcome::Failed => {
                sqlx::query("update scim_user set needs_attention = true where user_id = $1")
                    .bind(t.subject.id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for (n, a) in c.attachments.iter().enumerate() {
            sqlx::query(
                "insert into task_attachment (task_id, n, filename, content_type, size, data) values ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(n as i32 + 1)
            .bind(&a.filename)
            .bind(&a.content_type)
            .bind(a.data.len() as i32)
            .bind(&a.data)
            .execute(&mut *tx)
            .await?;
        }
        let evidence = Value::Object(c.fields.clone());
        sqlx::query(
            "update task set state = $2::task_state, finished_at = now(), finished_by = $3, note = $4, \
             evidence = $5, completion_key = $6, updated_at = now() where task_id = $1",
        )
        .bind(id)
        .bind(c.outcome.state())
        .bind(&actor.name)
        .bind(&c.note)
        .bind(&evidence)
        .bind(&c.idempotency_key)
        .execute(&mut *tx)
        .await?;
        // A waiting task was planned from this one's target; after a failure it must
        // close the whole difference from the confirmed state instead.
        // The subject's next task, if one waits, becomes claimable: wake the workers.
        let next = match c.outcome {
            Outcome::Done | Outcome::NotApplicable => {
                derive_user_task(&mut tx, &self.profiles, actor, t.subject.id).await?
            }
            Outcome::Failed => replan_waiting(&mut tx, &self.profiles, actor, t.subject.id).await?,
        };
        if next.is_some() {
            notify_tasks(&mut tx, &actor.app_id).await?;
        }
        let files: Vec<&str> = c.attachments.iter().map(|a| a.filename.as_str()).collect();
        let detail = json!({"note": c.note, "fields": evidence, "attachments": files});
        let (action, outcome) = match c.outcome {
            Outcome::Done => ("task.complete", "done"),
            Outcome::NotApplicable => ("task.complete", "not_applicable"),
            Outcome::Failed => ("task.fail", "failed"),
        };
        let event = json!({"task_id": id, "user_id": t.subject.id, "kind": t.kind, "title": t.title,
            "outcome": outcome, "by": actor.name, "note": c.note});
        let event_kind = if c.outcome == Outcome::Failed {
            "task.failed"
        } else {
            "task.completed"
        };
        emit(&mut tx, &actor.app_id, event_kind, Some(id), event, PRIMARY).await?;
        let done = fetch(&mut tx, &actor.app_id, id).await?;
        audit::write(
            &mut tx,
            actor,
            task_entry(action, id, t.subject.id, outcome, detail),
        )
        .await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Approves (`approve = true`) or rejects a task waiting for approval. Approved, it
    /// can be claimed; rejected, it is cancelled with the reason and its user marked
    /// rejected (visible over SCIM) until the IdP changes the user again.
    pub async fn decide_approval(
        &self,
        actor: &Actor,
        id: i64,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<Task> {
        let mut tx = self.pool.begin().await?;
        let t = fetch(&mut tx, &actor.app_id, id).await?;
        sqlx::query("select 1 from scim_user where user_id = $1 for update")
            .bind(t.subject.id)
            .execute(&mut *tx)
            .await?;
        let state: String =
            sqlx::query_scalar("select state::text from task where task_id = $1 for update")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if state != "awaiting_approval" {
            return Err(conflict("not_awaiting_approval", format!("task {id} is {state}; only a task awaiting approval can be approved or rejected")));
        }
        if approve {
            sqlx::query(
                "update task set state = 'open', approved_by = $2, approved_at = now(), updated_at = now() where task_id = $1",
            )
            .bind(id)
            .bind(&actor.name)
            .execute(&mut *tx)
            .await?;
            notify_tasks(&mut tx, &actor.app_id).await?;
        } else {
            let why = format!(
                "Rejected by {}{}",
                actor.name,
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            );
            sqlx::query(
                "update task set state = 'cancelled', cancel_reason = $2, finished_at = now(), finished_by = $3, \
                 updated_at = now() where task_id = $1",
            )
            .bind(id)
            .bind(&why)
            .bind(&actor.name)
            .execute(&mut *tx)
            .await?;
            sqlx::query("update scim_user set rejected_at = now() where user_id = $1")
                .bind(t.subject.id)
                .execute(&mut *tx)
                .await?;
        }
        let (action, outcome) = if approve {
            ("task.approve", "approved")
        } else {
            ("task.reject", "rejected")
        };
        audit::write(
            &mut tx,
            actor,
            task_entry(action, id, t.subject.id, outcome, json!({"reason": reason})),
        )
        .await?;
        let t = fetch(&mut tx, &actor.app_id, id).await?;
        tx.commit().await?;
        Ok(t)
    }

    /// Retries a failed task: plans the subject afresh (a new task that closes the whole
    /// difference from the confirmed state), unless a newer task already exists.
    pub async fn retry(&self, actor: &Actor, id: i64) -> Result<Task> {
        let mut tx = self.pool.begin().await?;
        let t = fetch(&mut tx, &actor.app_id, id).await?;
        sqlx::query("select 1 from scim_user where user_id = $1 for update")
            .bind(t.subject.id)
            .execute(&mut *tx)
            .await?;
        if t.state != "failed" {
            return Err(conflict(
                "task_not_failed",
                format!(
                    "task {id} is {}; only a failed task can be retried",
                    t.state
                ),
            ));
        }
        let newer: Option<i64> = sqlx::query_scalar(
            "select task_id from task where user_id = $1 and task_id > $2 \
             and state in ('open', 'awaiting_approval', 'held', 'in_progress') limit 1",
        )
        .bind(t.subject.id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(n) = newer {
            return Err(conflict(
                "already_retried",
                format!("task #{n} already covers this user"),
            ));
        }
        derive_user(&mut tx, &self.profiles, actor, t.subject.id).await?;
        let next: Option<i64> =
            sqlx::query_scalar("select task_id from task where user_id = $1 and state in ('open', 'awaiting_approval', 'held')")
                .bind(t.subject.id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(next) = next else {
            return Err(conflict(
                "nothing_to_do",
                "the app already has what the IdP wants; nothing to retry",
            ));
        };
        audit::write(
            &mut tx,
            actor,
            task_entry(
                "task.retry",
                id,
                t.subject.id,
                "retried",
                json!({"new_task": next}),
            ),
        )
        .await?;
        let new = fetch(&mut tx, &actor.app_id, next).await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Gives a held task back to the queue. If a newer task of the subject is waiting,
    /// this one is cancelled and the waiting one re-planned to cover both.
    pub async fn release(&self, actor: &Actor, id: i64, lease: Option<Uuid>) -> Result<Task> {
        let mut tx = self.pool.begin().await?;
        let t = lock_held(&mut tx, actor, id, lease).await?;
        let waiting: Option<i64> =
            sqlx::query_scalar("select task_id from task where user_id = $1 and state in ('open', 'awaiting_approval', 'held')")
                .bind(t.subject.id)
                .fetch_optional(&mut *tx)
                .await?;
        match waiting {
            Some(next) => {
                sqlx::query(
                    "update task set state = 'cancelled', cancel_reason = $2, finished_at = now(), \
                     finished_by = $3, updated_at = now() where task_id = $1",
                )
                .bind(id)
                .bind(format!("Released; task #{next} now covers this change."))
                .bind(&actor.name)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "update task set state = 'open', claimed_by = null, claimed_token = null, claimed_at = null, \
                     lease_id = null, lease_expires_at = null, updated_at = now() where task_id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
        }
        derive_user(&mut tx, &self.profiles, actor, t.subject.id).await?;
        notify_tasks(&mut tx, &actor.app_id).await?;
        audit::write(
            &mut tx,
            actor,
            task_entry(
                "task.release",
                id,
                t.subject.id,
                "released",
                json!({"superseded_by": waiting}),
            ),
        )
        .await?;
        let released = fetch(&mut tx, &actor.app_id, id).await?;
        tx.commit().await?;
        Ok(released)
    }
}
