//! SLA expiry: marks tasks due soon and overdue, re-announces overdue ones at the
//! profile's cadence and escalates overdue leaver tasks. These move a task's `sla_state`
//! (ok → due soon → overdue), not its state. Exactly one replica sweeps at a time: the
//! sweep runs under a transaction-scoped advisory lock that others skip. Each marked task
//! is announced in its own span (`task.sla`, with the task id, app and kind), like every
//! other transition.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::Actor;
use crate::db::audit::{self, Entry};
use crate::db::outbox::{emit, ESCALATION, PRIMARY};
use crate::db::Store;
use crate::error::Result;
use crate::reconcile::TaskKind;

/// Advisory lock key of the sweeper (any fixed number unique to this job).
const SWEEPER_LOCK: i64 = 0x5c1b_0001;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Another replica held the sweeper lock; nothing was done here.
    pub skipped: bool,
    /// Tasks newly due soon.
    pub due_soon: usize,
    /// Tasks newly overdue.
    pub overdue: usize,
    /// Reminders sent for tasks still overdue.
    pub reminders: usize,
    /// Overdue leaver tasks escalated.
    pub escalated: usize,
}

/// A task the sweep just marked, as its events and audit records describe it.
#[derive(sqlx::FromRow)]
struct Marked {
    task_id: i64,
    user_id: Uuid,
    kind: TaskKind,
    title: String,
    due_at: Option<DateTime<Utc>>,
    /// Who holds it now ([`HOLDER`]).
    held_by: Option<String>,
}

/// An app the sweep visits, with the profile whose SLAs apply.
#[derive(sqlx::FromRow)]
struct SweptApp {
    app_id: String,
    profile: String,
}

/// Which mark the sweep gave a task: the event it announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// `ok` → `due_soon`: the share of its SLA the profile calls "soon" is left.
    DueSoon,
    /// → `overdue`: its due time passed (leavers are escalated too).
    Overdue,
    /// Still overdue, and the profile's reminder interval passed since the last one.
    Reminder,
}

impl Mark {
    /// The event announcing it (docs/webhooks.md).
    fn event(self) -> &'static str {
        match self {
            Mark::DueSoon => "task.due_soon",
            Mark::Overdue => "task.overdue",
            Mark::Reminder => "task.reminder",
        }
    }
}

/// States in which a task still waits for someone.
const ACTIVE: &str = concat!("t.state in ", unfinished_states!());

/// The event of a marked task. `held_by` is whoever holds the task at the sweep (null:
/// nobody), read from the row the sweep updates, so after a reassignment the reminders
/// name the new holder and a task returned to the queue names nobody.
fn payload(m: &Marked) -> serde_json::Value {
    json!({"task_id": m.task_id, "user_id": m.user_id, "kind": m.kind, "title": m.title,
        "due_at": m.due_at.map(crate::db::rfc3339), "held_by": m.held_by})
}

/// The sweep never waits for a writer (issue #13): a task whose row a write (a claim, a
/// completion, a SCIM write rederiving it) holds right now is left for the next sweep,
/// which sees it as it is after that write. So the sweep takes no lock anyone waits for
/// longer than its own short transaction, and it cannot join a lock cycle.
const SKIP_HELD: &str = "for update of t skip locked";

/// The holder column of a marked task: only an in-progress task has one (a finished or
/// released task keeps its last `claimed_by` for the record).
const HOLDER: &str = "case when t.state = 'in_progress' then t.claimed_by end as held_by";

impl Store {
    /// One sweep over every app.
    pub async fn sweep(&self) -> Result<SweepReport> {
        let mut tx = self.pool.begin().await?;
        let got: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
            .bind(SWEEPER_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !got {
            return Ok(SweepReport {
                skipped: true,
                ..SweepReport::default()
            });
        }
        let apps: Vec<SweptApp> = sqlx::query_as("select app_id, profile from app order by app_id")
            .fetch_all(&mut *tx)
            .await?;
        let mut report = SweepReport::default();
        for SweptApp { app_id, profile } in apps {
            let gov = self.governance(&profile);
            let due_soon: Vec<Marked> = sqlx::query_as(&format!(
                "update task t set sla_state = 'due_soon', updated_at = now() \
                 where t.task_id in (select t.task_id from task t \
                   where t.app_id = $1 and {ACTIVE} and t.sla_state = 'ok' and t.due_at is not null \
                   and now() >= t.due_at - (t.due_at - t.created_at) * $2 and now() < t.due_at \
                   {SKIP_HELD}) \
                 returning t.task_id, t.user_id, t.kind::text, t.title, t.due_at, {HOLDER}"
            ))
            .bind(&app_id)
            .bind(gov.due_soon_share)
            .fetch_all(&mut *tx)
            .await?;
            for m in &due_soon {
                announce(&mut tx, &app_id, Mark::DueSoon, m).await?;
            }
            let overdue: Vec<Marked> = sqlx::query_as(&format!(
                "update task t set sla_state = 'overdue', last_reminder_at = now(), updated_at = now() \
                 where t.task_id in (select t.task_id from task t \
                   where t.app_id = $1 and {ACTIVE} and t.sla_state <> 'overdue' and t.due_at <= now() \
                   {SKIP_HELD}) \
                 returning t.task_id, t.user_id, t.kind::text, t.title, t.due_at, {HOLDER}"
            ))
            .bind(&app_id)
            .fetch_all(&mut *tx)
            .await?;
            for m in &overdue {
                if announce(&mut tx, &app_id, Mark::Overdue, m).await? {
                    report.escalated += 1;
                }
            }
            let reminders: Vec<Marked> = sqlx::query_as(&format!(
                "update task t set last_reminder_at = now() \
                 where t.task_id in (select t.task_id from task t \
                   where t.app_id = $1 and {ACTIVE} and t.sla_state = 'overdue' \
                   and t.last_reminder_at <= now() - make_interval(secs => $2) \
                   {SKIP_HELD}) \
                 returning t.task_id, t.user_id, t.kind::text, t.title, t.due_at, {HOLDER}"
            ))
            .bind(&app_id)
            .bind(gov.reminder_every().as_secs_f64())
            .fetch_all(&mut *tx)
            .await?;
            for m in &reminders {
                announce(&mut tx, &app_id, Mark::Reminder, m).await?;
            }
            report.due_soon += due_soon.len();
            report.overdue += overdue.len();
            report.reminders += reminders.len();
        }
        tx.commit().await?;
        Ok(report)
    }
}

/// Announces a task the sweep marked, in its own span; an overdue leaver task is also
/// escalated (its subject keeps access while it waits, so a second channel is told and
/// the escalation audited). Returns whether it was escalated.
#[tracing::instrument(
    name = "task.sla",
    skip_all,
    fields(app = %app_id, task_id = m.task_id, kind = %m.kind.as_str(), mark = %mark.event())
)]
async fn announce(conn: &mut PgConnection, app_id: &str, mark: Mark, m: &Marked) -> Result<bool> {
    tracing::debug!(due_at = ?m.due_at, held_by = ?m.held_by, "SLA mark");
    emit(
        &mut *conn,
        app_id,
        mark.event(),
        Some(m.task_id),
        payload(m),
        PRIMARY,
    )
    .await?;
    let leaver = matches!(m.kind, TaskKind::Remove | TaskKind::Deactivate);
    if mark != Mark::Overdue || !leaver {
        return Ok(false);
    }
    tracing::info!("overdue leaver task escalated");
    sqlx::query("update task set escalated_at = now() where task_id = $1")
        .bind(m.task_id)
        .execute(&mut *conn)
        .await?;
    emit(
        &mut *conn,
        app_id,
        "task.escalated",
        Some(m.task_id),
        payload(m),
        ESCALATION,
    )
    .await?;
    let entry = Entry {
        action: "task.escalated",
        subject_type: "user",
        subject_id: m.user_id.to_string(),
        task_id: Some(m.task_id),
        outcome: "escalated",
        detail: json!({"due_at": m.due_at.map(crate::db::rfc3339)}),
    };
    audit::write(conn, &Actor::system(app_id), entry).await?;
    Ok(true)
}
