//! The transitions a snapshot of the app's user list causes (observed beats confirmed:
//! what the app's own list shows outranks what whoever completed a task said, see
//! docs/snapshots.md): an unclaimed task whose target the app already
//! meets is closed as done, "verified by snapshot"; a task completed as done that the app
//! contradicts is reopened as a verification failure. Both run in the caller's
//! transaction with the subject locked (applying a snapshot locks its batch's subjects).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgConnection;
use tracing::field::Empty;
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

/// The task [`close_verified`] closed.
#[derive(sqlx::FromRow)]
struct Closed {
    /// The account it was to reach: the subject's confirmed state now.
    target: Option<Value>,
    kind: TaskKind,
}

/// An IdP user an orphan account's review links the account to.
#[derive(sqlx::FromRow)]
struct LinkedUser {
    user_id: Uuid,
    user_name: String,
}

/// Closes an unclaimed task as done because a snapshot shows its target already met:
/// "verified by snapshot" in its history, the snapshot as its evidence, the confirmed
/// state moved to its target as of the export. Nothing happens if it was claimed since.
#[tracing::instrument(
    name = "task.verify",
    skip_all,
    fields(app = %e.app_id, task_id = task, kind = Empty, snapshot = e.snapshot)
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
    let closed: Option<Closed> = sqlx::query_as(concat!(
        "update task set state = 'done', finished_at = now(), finished_by = $2, note = $3, \
         evidence = $4, updated_at = now() where task_id = $1 and state in ",
        unclaimed_states!(),
        " returning target, kind"
    ))
    .bind(task)
    .bind(&actor.name)
    .bind(&note)
    .bind(&evidence)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(Closed { target, kind }) = closed else {
        return Ok(());
    };
    tracing::Span::current().record("kind", tracing::field::display(kind.as_str()));
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
    fields(app = %e.app_id, task_id = task, kind = Empty, snapshot = e.snapshot)
)]
pub(in crate::db) async fn reopen_contradicted(
    tx: &mut PgConnection,
    actor: &Actor,
    e: &SnapshotEvidence<'_>,
    subject: Uuid,
    task: i64,
    text: &str,
) -> Result<()> {
    let kind: Option<TaskKind> = sqlx::query_scalar(concat!(
        "update task set state = 'open', claimed_by = null, claimed_token = null, claimed_at = null, \
         lease_id = null, lease_seconds = null, lease_expires_at = null, finished_at = null, \
         finished_by = null, completion_key = null, sla_state = 'ok', last_reminder_at = null, \
         escalated_at = null, updated_at = now() where task_id = $1 and state in ",
        confirmed_states!(),
        " returning kind"
    ))
    .bind(task)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(kind) = kind else { return Ok(()) };
    tracing::Span::current().record("kind", tracing::field::display(kind.as_str()));
    let sla = e.profile.governance.sla(kind).as_secs_f64();
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

/// What completing a `review_account` task (an orphan account's review) decided, from its
/// `resolution` field: `removed` (the account is gone), `kept` (a legitimate account
/// outside the IdP: later snapshots do not flag it), or `linked` to the IdP user named by
/// `linked_user` (userName or email): that user's confirmed account becomes this one, and
/// the user is re-planned (e.g. a task to change the email to the one the IdP wants). Not
/// applicable means the account was not there. Runs in the completion's transaction.
#[tracing::instrument(
    name = "task.resolve_review",
    skip_all,
    fields(app = %actor.app_id, task_id = t.id, kind = %t.kind.as_str(), done)
)]
pub(in crate::db) async fn resolve_review(
    tx: &mut PgConnection,
    profiles: &crate::reconcile::Profiles,
    actor: &Actor,
    t: &crate::db::tasks::Task,
    done: bool,
    fields: &serde_json::Map<String, Value>,
) -> Result<()> {
    let resolution = if done {
        fields
            .get("resolution")
            .and_then(Value::as_str)
            .unwrap_or("removed")
    } else {
        "gone"
    };
    let confirmed = match resolution {
        "kept" => Some(t.base.clone()).filter(|b| !b.is_null()),
        _ => None,
    };
    if resolution == "linked" {
        let who = fields
            .get("linked_user")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| crate::error::Error::Invalid {
                code: "missing_fields",
                message: "resolution linked needs linked_user: the userName or email of the \
                          IdP user the account belongs to"
                    .into(),
            })?;
        let user: Option<LinkedUser> = sqlx::query_as(
            "select user_id, user_name from scim_user where app_id = $1 and deleted_at is null \
             and subject_kind = 'user' and (lower(user_name) = lower($2) or lower($2) = any(emails)) \
             order by user_id limit 1 for update",
        )
        .bind(&actor.app_id)
        .bind(who)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(LinkedUser { user_id, user_name }) = user else {
            return Err(crate::error::Error::Invalid {
                code: "invalid_field",
                message: format!("linked_user: no IdP user of this app is named {who:?}"),
            });
        };
        let mut account = t.base.clone();
        account["user_name"] = json!(user_name);
        sqlx::query("update scim_user set confirmed = $2 where user_id = $1")
            .bind(user_id)
            .bind(&account)
            .execute(&mut *tx)
            .await?;
        crate::db::derive::derive_user(tx, profiles, actor, user_id).await?;
    }
    sqlx::query("update scim_user set resolution = $2, confirmed = $3 where user_id = $1")
        .bind(t.subject.id)
        .bind(resolution)
        .bind(confirmed)
        .execute(tx)
        .await?;
    Ok(())
}
