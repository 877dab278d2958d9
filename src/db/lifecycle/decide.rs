//! An admin's decisions about tasks nobody works yet: approving or rejecting one that
//! waits for approval, releasing or cancelling a held batch, and retrying a failed task.

use serde_json::json;
use sqlx::PgConnection;
use tracing::field::Empty;

use super::{cancel, conflict, lock_subject, task_entry};
use crate::auth::Actor;
use crate::db::audit;
use crate::db::batches::{batch_entry, Batch};
use crate::db::derive::derive_user;
use crate::db::tasks::{fetch, Task};
use crate::db::{notify_tasks, Store};
use crate::error::{Error, Result};
use crate::reconcile::{TaskKind, TaskState};

/// A task a batch decision moved out of `held`.
#[derive(sqlx::FromRow)]
struct Moved {
    task_id: i64,
    kind: TaskKind,
    /// Open, awaiting approval or cancelled.
    state: TaskState,
}

/// Locks a task of the subject locked by the caller and checks it awaits approval.
async fn lock_awaiting(conn: &mut PgConnection, id: i64) -> Result<()> {
    let state: TaskState =
        sqlx::query_scalar("select state from task where task_id = $1 for update")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    if state != TaskState::AwaitingApproval {
        return Err(conflict(
            "not_awaiting_approval",
            format!(
                "task {id} is {state}; only a task awaiting approval can be approved or rejected"
            ),
        ));
    }
    Ok(())
}

impl Store {
    /// Approves a task waiting for approval: it becomes open, and can be claimed.
    #[tracing::instrument(
        name = "task.approve",
        skip_all,
        fields(app = %actor.app_id, task_id = id, kind = Empty)
    )]
    pub async fn approve(&self, actor: &Actor, id: i64) -> Result<Task> {
        let mut tx = self.pool.begin().await?;
        let t = lock_subject(&mut tx, actor, id).await?;
        lock_awaiting(&mut tx, id).await?;
        sqlx::query(
            "update task set state = 'open', approved_by = $2, approved_at = now(), updated_at = now() where task_id = $1",
        )
        .bind(id)
        .bind(&actor.name)
        .execute(&mut *tx)
        .await?;
        notify_tasks(&mut tx, &actor.app_id).await?;
        audit::write(
            &mut tx,
            actor,
            task_entry(
                "task.approve",
                id,
                t.subject.id,
                "approved",
                json!({"reason": null}),
            ),
        )
        .await?;
        let t = fetch(&mut tx, &actor.app_id, id).await?;
        tx.commit().await?;
        Ok(t)
    }

    /// Rejects a task waiting for approval: it is cancelled with the reason and its user
    /// marked rejected (visible over SCIM) until the IdP changes the user again.
    #[tracing::instrument(
        name = "task.reject",
        skip_all,
        fields(app = %actor.app_id, task_id = id, kind = Empty)
    )]
    pub async fn reject(&self, actor: &Actor, id: i64, reason: Option<&str>) -> Result<Task> {
        crate::limits::check_opt("reason", reason, crate::limits::MAX_REASON_CHARS)?;
        let mut tx = self.pool.begin().await?;
        let t = lock_subject(&mut tx, actor, id).await?;
        lock_awaiting(&mut tx, id).await?;
        let why = format!(
            "Rejected by {}{}",
            actor.name,
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        );
        cancel(&mut tx, actor, id, &why).await?;
        sqlx::query("update scim_user set rejected_at = now() where user_id = $1")
            .bind(t.subject.id)
            .execute(&mut *tx)
            .await?;
        audit::write(
            &mut tx,
            actor,
            task_entry(
                "task.reject",
                id,
                t.subject.id,
                "rejected",
                json!({"reason": reason}),
            ),
        )
        .await?;
        let t = fetch(&mut tx, &actor.app_id, id).await?;
        tx.commit().await?;
        Ok(t)
    }

    /// Retries a failed task: plans the subject afresh (a new task that closes the whole
    /// difference from the confirmed state), unless a newer task already exists.
    #[tracing::instrument(
        name = "task.retry",
        skip_all,
        fields(app = %actor.app_id, task_id = id, kind = Empty)
    )]
    pub async fn retry(&self, actor: &Actor, id: i64) -> Result<Task> {
        let mut tx = self.pool.begin().await?;
        let t = lock_subject(&mut tx, actor, id).await?;
        if t.state != TaskState::Failed {
            return Err(conflict(
                "task_not_failed",
                format!(
                    "task {id} is {}; only a failed task can be retried",
                    t.state
                ),
            ));
        }
        let newer: Option<i64> = sqlx::query_scalar(concat!(
            "select task_id from task where user_id = $1 and task_id > $2 and state in ",
            unfinished_states!(),
            " limit 1"
        ))
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
        let next: Option<i64> = sqlx::query_scalar(concat!(
            "select task_id from task where user_id = $1 and state in ",
            unclaimed_states!()
        ))
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

    /// Releases a held batch as a whole: its tasks go to the queue (or wait for approval
    /// if their change needs one).
    #[tracing::instrument(name = "batch.release", skip_all, fields(app = %actor.app_id, batch_id = id))]
    pub async fn release_batch(&self, actor: &Actor, id: i64) -> Result<Batch> {
        self.decide_batch(actor, id, true).await
    }

    /// Cancels a held batch as a whole: its tasks are cancelled and their users marked
    /// rejected (the app stays as it was).
    #[tracing::instrument(name = "batch.cancel", skip_all, fields(app = %actor.app_id, batch_id = id))]
    pub async fn cancel_batch(&self, actor: &Actor, id: i64) -> Result<Batch> {
        self.decide_batch(actor, id, false).await
    }

    async fn decide_batch(&self, actor: &Actor, id: i64, release: bool) -> Result<Batch> {
        let mut tx = self.pool.begin().await?;
        let state: Option<String> = sqlx::query_scalar(
            "select state from batch where app_id = $1 and batch_id = $2 for update",
        )
        .bind(&actor.app_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        match state.as_deref() {
            None => return Err(Error::NotFound(format!("batch {id}"))),
            Some("held") => {}
            Some(other) => {
                return Err(conflict(
                    "batch_decided",
                    format!("batch {id} is already {other}"),
                ))
            }
        }
        // Subjects first, in id order, as every other write locks them (no deadlocks).
        sqlx::query(
            "select 1 from scim_user where user_id in (select user_id from task where batch_id = $1 and state = 'held') \
             order by user_id for update",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // Each task the decision moves gets its own span, like every other transition.
        let moved: Vec<Moved> = if release {
            sqlx::query_as(
                "update task set state = case when needs_approval then 'awaiting_approval'::task_state else 'open' end, \
                 updated_at = now() where batch_id = $1 and state = 'held' returning task_id, kind, state",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
        } else {
            let reason = format!(
                "Held batch #{id} was cancelled by {}; the app stays as it was.",
                actor.name
            );
            sqlx::query_as(
                "with c as (update task set state = 'cancelled', cancel_reason = $2, finished_at = now(), finished_by = $3, \
                 updated_at = now() where batch_id = $1 and state = 'held' returning task_id, user_id, kind, state), \
                 r as (update scim_user set rejected_at = now() where user_id in (select user_id from c)) \
                 select task_id, kind, state from c",
            )
            .bind(id)
            .bind(&reason)
            .bind(&actor.name)
            .fetch_all(&mut *tx)
            .await?
        };
        for m in &moved {
            let span = if release {
                tracing::info_span!("task.release_held", app = %actor.app_id, task_id = m.task_id,
                    kind = %m.kind.as_str(), batch_id = id)
            } else {
                tracing::info_span!("task.cancel_held", app = %actor.app_id, task_id = m.task_id,
                    kind = %m.kind.as_str(), batch_id = id)
            };
            span.in_scope(|| tracing::info!(state = %m.state, "moved by the batch decision"));
        }
        let n = moved.len();
        sqlx::query(
            "update batch set state = $2, decided_by = $3, decided_at = now() where batch_id = $1",
        )
        .bind(id)
        .bind(if release { "released" } else { "cancelled" })
        .bind(&actor.name)
        .execute(&mut *tx)
        .await?;
        let (action, outcome) = if release {
            ("batch.release", "released")
        } else {
            ("batch.cancel", "cancelled")
        };
        audit::write(
            &mut tx,
            actor,
            batch_entry(action, id, outcome, json!({"tasks": n})),
        )
        .await?;
        notify_tasks(&mut tx, &actor.app_id).await?;
        tx.commit().await?;
        self.batch(&actor.app_id, id).await
    }
}
