//! The transitions a snapshot of the app's user list causes (DESIGN.md "Three states,
//! not two": observed beats confirmed): an unclaimed task whose target the app already
//! meets is closed as done, "verified by snapshot"; a task completed as done that the app
//! contradicts is reopened as a verification failure. Both run in the caller's
//! transaction with the subject locked (applying a snapshot locks its batch's subjects).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::task_entry;
use crate::auth::Actor;
use crate::db::audit;
use crate::db::notify_tasks;
use crate::db::outbox::{emit, PRIMARY};
use crate::error::Result;
use crate::reconcile::{Profile, TaskKind};

/// Which snapshot shows what, for the words and the evidence of a transition.
#[derive(Debug, Clone, Copy)]
pub(in crate::db) struct SnapshotEvidence<'a> {
    /// The app.
    pub app_id: &'a str,
    /// Its profile (name, SLAs).
    pub profile: &'a Profile,
    /// The snapshot's id.
    pub snapshot: i64,
    /// When its export was taken.
    pub taken_at: DateTime<Utc>,
}

/// Closes an unclaimed task as done because a snapshot shows its target already met:
/// "verified by snapshot" in its history, the snapshot as its evidence, the confirmed
/// state moved to its target as of the export. Nothing happens if it was claimed since.
#[tracing::instrument(
    name = "task.verify",
    skip_all,
    fields(app = %e.app_id, task_id = task, snapshot = e.snapshot)
)]
pub(in crate::db) async fn close_verified(
    tx: &mut PgConnection,
    actor: &Actor,
    e: &SnapshotEvidence<'_>,
    subject: Uuid,
    task: i64,
    why: &str,
) -> Result<()> {
    let note = format!(
        "Verified by snapshot #{} of {} ({}): {why}.",
        e.snapshot,
        e.profile.display_name,
        e.taken_at.format("%Y-%m-%d")
    );
    let evidence = json!({"verified_by_snapshot": e.snapshot});
    let closed: Option<(Option<Value>, String)> = sqlx::query_as(concat!(
        "update task set state = 'done', finished_at = now(), finished_by = $2, note = $3, \
         evidence = $4, updated_at = now() where task_id = $1 and state in ",
        unclaimed_states!(),
        " returning target, kind::text"
    ))
    .bind(task)
    .bind(&actor.name)
    .bind(&note)
    .bind(&evidence)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((target, kind)) = closed else {
        return Ok(());
    };
    sqlx::query(
        "update scim_user set confirmed = $2, confirmed_at = $3, needs_attention = false \
         where user_id = $1",
    )
    .bind(subject)
    .bind(target.filter(|t| !t.is_null()))
    .bind(e.taken_at)
    .execute(&mut *tx)
    .await?;
    let event = json!({"task_id": task, "user_id": subject, "kind": kind, "outcome": "done",
        "by": actor.name, "note": note, "verified_by_snapshot": e.snapshot});
    emit(tx, e.app_id, "task.completed", Some(task), event, PRIMARY).await?;
    audit::write(
        tx,
        actor,
        task_entry(
            "task.verify",
            task,
            subject,
            "verified_by_snapshot",
            json!({"snapshot": e.snapshot, "note": note}),
        ),
    )
    .await
}

/// Reopens a task completed as done (or not applicable) that a snapshot contradicts: a
/// verification failure. It goes back to the queue, due anew from now, its lease and
/// completion cleared (its first completion stays in the history); derivation then
/// re-plans it to close the difference the app really has.
#[tracing::instrument(
    name = "task.reopen",
    skip_all,
    fields(app = %e.app_id, task_id = task, snapshot = e.snapshot)
)]
pub(in crate::db) async fn reopen_contradicted(
    tx: &mut PgConnection,
    actor: &Actor,
    e: &SnapshotEvidence<'_>,
    subject: Uuid,
    task: i64,
    text: &str,
) -> Result<()> {
    let kind: Option<String> = sqlx::query_scalar(concat!(
        "update task set state = 'open', claimed_by = null, claimed_token = null, claimed_at = null, \
         lease_id = null, lease_seconds = null, lease_expires_at = null, finished_at = null, \
         finished_by = null, completion_key = null, sla_state = 'ok', last_reminder_at = null, \
         escalated_at = null, updated_at = now() where task_id = $1 and state in ",
        confirmed_states!(),
        " returning kind::text"
    ))
    .bind(task)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(kind) = kind else { return Ok(()) };
    let sla = TaskKind::parse(&kind)
        .map(|k| e.profile.governance.sla(k).as_secs_f64())
        .unwrap_or(86_400.0);
    sqlx::query("update task set due_at = now() + make_interval(secs => $2) where task_id = $1")
        .bind(task)
        .bind(sla)
        .execute(&mut *tx)
        .await?;
    notify_tasks(tx, e.app_id).await?;
    let event = json!({"task_id": task, "user_id": subject, "kind": kind, "snapshot": e.snapshot,
        "text": text});
    emit(tx, e.app_id, "task.reopened", Some(task), event, PRIMARY).await?;
    audit::write(
        tx,
        actor,
        task_entry(
            "task.reopen",
            task,
            subject,
            "verification_failed",
            json!({"snapshot": e.snapshot, "text": text}),
        ),
    )
    .await
}
