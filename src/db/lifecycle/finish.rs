//! What the holder of a task does with it: complete it (done, failed, not applicable) or
//! give it back (release).

use serde_json::{json, Value};
use sqlx::PgConnection;
use tracing::field::Empty;
use uuid::Uuid;

use super::assign::return_to_queue;
use super::{check_held, lock_held, lock_task, task_entry, Completion, Outcome};
use crate::auth::Actor;
use crate::db::audit;
use crate::db::derive::{derive_user_task, replan_waiting};
use crate::db::outbox::{emit, PRIMARY};
use crate::db::tasks::{fetch, Task};
use crate::db::{notify_tasks, Store};
use crate::error::{Error, Result};
use crate::reconcile::evidence::check_fields;
use crate::reconcile::{Profiles, TaskKind, TaskState};

impl Store {
    /// Completes a held task. `done` and `not_applicable` move the subject's confirmed
    /// state to the task's target in the same transaction; `failed` leaves it and flags
    /// the subject. Completing again with the same lease or Idempotency-Key returns the
    /// first result when the request is the same (outcome, note, fields), else 409. The fields are checked against the task's completion fields (400
    /// `Error::Invalid` when a required one is missing or a choice is not offered).
    #[tracing::instrument(
        name = "task.complete",
        skip_all,
        fields(app = %actor.app_id, task_id = id, kind = Empty, outcome = ?c.outcome)
    )]
    pub async fn complete(&self, actor: &Actor, id: i64, c: Completion) -> Result<Task> {
        crate::limits::check_completion(c.note.as_deref(), &c.fields)?;
        let mut tx = self.pool.begin().await?;
        let outcome: Result<Task> = async {
            let locked = lock_task(&mut tx, actor, id).await?;
            let current = &locked.task;
            let finished = current.state.is_in(&TaskState::COMPLETED);
            let same_lease = c.lease_id.is_some() && current.lease_id == c.lease_id;
            let same_key =
                c.idempotency_key.is_some() && current.completion_key == c.idempotency_key;
            if finished && (same_lease || same_key) {
                // A retry must be the same request: the same outcome, note and fields. A
                // different one would be answered 200 while ignored (issue #14 item 9).
                let evidence = Value::Object(c.fields.clone());
                let same = current.state == c.outcome.state()
                    && current.note == c.note
                    && current.evidence.as_ref().unwrap_or(&json!({})) == &evidence;
                if !same {
                    return Err(super::conflict(
                        "completion_differs",
                        format!(
                            "task {id} was already completed as {} with another note or fields; \
                         a retry must repeat the first completion exactly",
                            current.state.as_str()
                        ),
                    ));
                }
                return Ok(locked.task);
            }
            let t = check_held(actor, locked, c.lease_id)?;
            check_fields(
                t.kind,
                &t.completion_fields,
                &c.fields,
                c.outcome == Outcome::Done,
            )
            .map_err(|e| Error::Invalid {
                code: e.code,
                message: e.message,
            })?;
            record_completion(&mut tx, &self.profiles, actor, &t, &c, json!({})).await
        }
        .await;
        crate::db::settle(tx, outcome).await
    }

    /// Gives a held task back to the queue. If a newer task of the subject is waiting,
    /// this one is cancelled and the waiting one re-planned to cover both.
    #[tracing::instrument(
        name = "task.release",
        skip_all,
        fields(app = %actor.app_id, task_id = id, kind = Empty)
    )]
    pub async fn release(&self, actor: &Actor, id: i64, lease: Option<Uuid>) -> Result<Task> {
        let mut tx = self.pool.begin().await?;
        let outcome: Result<Task> = async {
            let t = lock_held(&mut tx, actor, id, lease).await?;
            return_to_queue(
                &mut tx,
                &self.profiles,
                actor,
                &t,
                "task.release",
                json!({}),
            )
            .await?;
            fetch(&mut tx, &actor.app_id, id).await
        }
        .await;
        crate::db::settle(tx, outcome).await
    }
}

/// Records a completion of a task whose subject and row the caller locked and whose
/// fields it checked: the confirmed state (done, not applicable) or the attention flag
/// (failed), the files, the task's new state, the subject's next task, the event and the
/// audit record (its detail extended by `extra`). Shared by [`Store::complete`] (the
/// holder) and the ticket bridge (a ticket that reached a closing status).
pub(super) async fn record_completion(
    conn: &mut PgConnection,
    profiles: &Profiles,
    actor: &Actor,
    t: &Task,
    c: &Completion,
    extra: Value,
) -> Result<Task> {
    let id = t.id;
    match c.outcome {
        Outcome::Done | Outcome::NotApplicable => {
            sqlx::query(
                    "update scim_user set confirmed = $2, confirmed_at = now(), needs_attention = false where user_id = $1",
                )
                .bind(t.subject.id)
                .bind(if t.target.is_null() { None } else { Some(&t.target) })
                .execute(&mut *conn)
                .await?;
        }
        Outcome::Failed => {
            sqlx::query("update scim_user set needs_attention = true where user_id = $1")
                .bind(t.subject.id)
                .execute(&mut *conn)
                .await?;
        }
    }
    // A task a snapshot reopened may already have files from its first completion.
    let before: i32 = if c.attachments.is_empty() {
        0
    } else {
        sqlx::query_scalar("select coalesce(max(n), 0) from task_attachment where task_id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?
    };
    for (n, a) in c.attachments.iter().enumerate() {
        sqlx::query(
                "insert into task_attachment (task_id, n, filename, content_type, size, data) values ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(before + n as i32 + 1)
            .bind(&a.filename)
            .bind(&a.content_type)
            .bind(a.data.len() as i32)
            .bind(&a.data)
            .execute(&mut *conn)
            .await?;
    }
    let evidence = Value::Object(c.fields.clone());
    sqlx::query(
        "update task set state = $2, finished_at = now(), finished_by = $3, note = $4, \
             evidence = $5, completion_key = $6, updated_at = now() where task_id = $1",
    )
    .bind(id)
    .bind(c.outcome.state())
    .bind(&actor.name)
    .bind(&c.note)
    .bind(&evidence)
    .bind(&c.idempotency_key)
    .execute(&mut *conn)
    .await?;
    // A waiting task was planned from this one's target; after a failure it must
    // close the whole difference from the confirmed state instead.
    // The subject's next task, if one waits, becomes claimable: wake the workers.
    if t.kind == TaskKind::ReviewAccount && c.outcome != Outcome::Failed {
        super::verify::resolve_review(
            conn,
            profiles,
            actor,
            t,
            c.outcome == Outcome::Done,
            &c.fields,
        )
        .await?;
    }
    let next = match c.outcome {
        Outcome::Done | Outcome::NotApplicable => {
            derive_user_task(conn, profiles, actor, t.subject.id).await?
        }
        Outcome::Failed => replan_waiting(conn, profiles, actor, t.subject.id).await?,
    };
    if next.is_some() {
        notify_tasks(&mut *conn, &actor.app_id).await?;
    }
    let files: Vec<&str> = c.attachments.iter().map(|a| a.filename.as_str()).collect();
    let mut detail = json!({"note": c.note, "fields": evidence, "attachments": files});
    if let (Value::Object(d), Value::Object(more)) = (&mut detail, extra) {
        d.extend(more);
    }
    let (action, outcome) = match c.outcome {
        Outcome::Done => ("task.complete", "done"),
        Outcome::NotApplicable => ("task.complete", "not_applicable"),
        Outcome::Failed => ("task.fail", "failed"),
    };
    let event = json!({"task_id": id, "user_id": t.subject.id, "kind": t.kind, "title": t.title,
            "outcome": outcome, "by": actor.name, "note": c.note});
    let event_kind = match c.outcome {
        Outcome::Failed => "task.failed",
        Outcome::Done | Outcome::NotApplicable => "task.completed",
    };
    emit(
        &mut *conn,
        &actor.app_id,
        event_kind,
        Some(id),
        event,
        PRIMARY,
    )
    .await?;
    let done = fetch(&mut *conn, &actor.app_id, id).await?;
    audit::write(
        &mut *conn,
        actor,
        task_entry(action, id, t.subject.id, outcome, detail),
    )
    .await?;
    Ok(done)
}
