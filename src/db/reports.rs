//! Reports for admins and auditors: seats, SLA performance, leavers, and the audit trail
//! as CSV. Each is one query over the app's rows.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::Store;
use crate::error::Result;
use crate::reconcile::TaskState;

/// Seats of one app: what the IdP wants against what the app is known to have.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Seats {
    /// Users the IdP wants active in the app.
    pub desired_active: i64,
    /// Accounts the app is known to have active (confirmed by completed tasks).
    pub confirmed_active: i64,
    /// Creations planned or in progress.
    pub pending_creations: i64,
    /// Removals and deactivations planned or in progress.
    pub pending_removals: i64,
    /// Completed removals/deactivations whose seat release was not confirmed ("no" or
    /// "unknown"): licences that may still be paid for.
    pub removals_seat_unconfirmed: i64,
    /// Accounts active in the app per its last applied snapshot (None: no snapshot yet):
    /// the seats the app really uses, orphans included.
    pub observed_active: Option<i64>,
    /// When that snapshot's export was taken.
    pub observed_at: Option<DateTime<Utc>>,
}

/// How far the app's own user list confirms what scimbridge believes (snapshots).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verification {
    /// The last applied snapshot.
    pub last_snapshot: Option<i64>,
    /// When its export was taken.
    pub last_taken_at: Option<DateTime<Utc>>,
    /// IdP users (not deleted).
    pub users: i64,
    /// Of them, those whose account the last snapshot that saw them showed as wanted.
    pub verified: i64,
    /// `verified` as a percentage of `users` (None without users).
    pub verified_pct: Option<f64>,
    /// Users (deleted ones included: a leaver still present) whose account the last
    /// snapshot showed differing from what the IdP wants.
    pub drift: i64,
    /// IdP users no applied snapshot has compared yet.
    pub never_verified: i64,
    /// Accounts in the app that no IdP user owns, awaiting review.
    pub orphans: i64,
    /// Users the IdP wants whose account the app does not have (open findings).
    pub missing: i64,
    /// Tasks completed as done that a snapshot contradicted (reopened), ever.
    pub verification_failures: i64,
    /// Seats: active accounts the IdP wants, the app is confirmed to have, and the app
    /// showed in its last snapshot.
    pub seats: SeatCounts,
}

/// The counts of [`Store::verification`], as read.
#[derive(sqlx::FromRow)]
struct VerificationCounts {
    last_snapshot: Option<i64>,
    users: i64,
    verified: i64,
    drift: i64,
    never_verified: i64,
    orphans: i64,
    missing: i64,
    verification_failures: i64,
}

/// Seats three ways.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeatCounts {
    /// Users the IdP wants active.
    pub desired_active: i64,
    /// Accounts confirmed active (tasks completed, or snapshots).
    pub confirmed_active: i64,
    /// Accounts active in the last applied snapshot.
    pub observed_active: Option<i64>,
}

/// Time to complete one kind of task.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct SlaLine {
    /// Task kind.
    pub kind: String,
    /// Tasks finished (done or not applicable).
    pub completed: i64,
    /// Median hours from the IdP's change to completion.
    #[sqlx(rename = "p50")]
    pub p50_hours: Option<f64>,
    /// 90th percentile.
    #[sqlx(rename = "p90")]
    pub p90_hours: Option<f64>,
    /// 95th percentile.
    #[sqlx(rename = "p95")]
    pub p95_hours: Option<f64>,
    /// Share finished by their due time.
    pub within_sla: Option<f64>,
    /// Unfinished tasks past their due time now.
    pub overdue_now: i64,
}

/// One deprovisioned user: when the IdP asked, who removed access, when, and the seat.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Leaver {
    /// The user.
    pub user_id: Uuid,
    /// userName.
    pub user_name: String,
    /// The task.
    pub task_id: i64,
    /// remove or deactivate.
    pub kind: String,
    /// Task state.
    pub state: TaskState,
    /// When the IdP asked (the task was planned).
    pub asked_at: DateTime<Utc>,
    /// When it was due.
    pub due_at: Option<DateTime<Utc>>,
    /// Who did it in the app.
    pub done_by: Option<String>,
    /// When.
    pub done_at: Option<DateTime<Utc>>,
    /// yes / no / unknown, as recorded.
    pub seat_freed: Option<String>,
    /// Who now owns the connectors and records.
    pub ownership_moved_to: Option<String>,
}

/// A row of the leavers query.
#[derive(sqlx::FromRow)]
struct LeaverRow {
    user_id: Uuid,
    user_name: String,
    task_id: i64,
    kind: String,
    state: TaskState,
    created_at: DateTime<Utc>,
    due_at: Option<DateTime<Utc>>,
    finished_by: Option<String>,
    finished_at: Option<DateTime<Utc>>,
    seat_freed: Option<String>,
    ownership_moved_to: Option<String>,
}

impl From<LeaverRow> for Leaver {
    fn from(r: LeaverRow) -> Leaver {
        // Who and when only once access is gone (done or not applicable).
        let finished = r.state.is_in(&TaskState::CONFIRMED);
        Leaver {
            user_id: r.user_id,
            user_name: r.user_name,
            task_id: r.task_id,
            kind: r.kind,
            state: r.state,
            asked_at: r.created_at,
            due_at: r.due_at,
            done_by: r.finished_by.filter(|_| finished),
            done_at: r.finished_at.filter(|_| finished),
            seat_freed: r.seat_freed,
            ownership_moved_to: r.ownership_moved_to,
        }
    }
}

/// A row of the audit trail as the CSV export reads it.
#[derive(sqlx::FromRow)]
struct AuditCsvRow {
    chain_seq: i64,
    at: DateTime<Utc>,
    actor: String,
    actor_role: String,
    action: String,
    subject_type: String,
    subject_id: String,
    task_id: Option<i64>,
    request_id: Option<String>,
    outcome: String,
    detail: Value,
    hash: Vec<u8>,
}

impl Store {
    /// Seats of the app.
    pub async fn seats(&self, app_id: &str) -> Result<Seats> {
        Ok(sqlx::query_as(concat!(
            "select \
               (select count(*) from scim_user where app_id = $1 and deleted_at is null and active) as desired_active, \
               (select count(*) from scim_user where app_id = $1 and (confirmed->>'active')::boolean) as confirmed_active, \
               (select count(*) from task where app_id = $1 and kind = 'create_account' \
                  and state in ",
            unfinished_states!(),
            ") as pending_creations, \
               (select count(*) from task where app_id = $1 and kind in ('remove', 'deactivate') \
                  and state in ",
            unfinished_states!(),
            ") as pending_removals, \
               (select count(*) from task where app_id = $1 and kind in ('remove', 'deactivate') and state = 'done' \
                  and coalesce(evidence->>'seat_freed', 'unknown') <> 'yes') as removals_seat_unconfirmed, \
               l.taken_at as observed_at, \
               case when l.snapshot_id is not null then \
                 (select count(*) from snapshot_row r where r.snapshot_id = l.snapshot_id \
                    and (r.observed->>'active')::boolean) end as observed_active \
             from (select 1) one left join lateral (select snapshot_id, taken_at from snapshot \
                  where app_id = $1 and state = 'applied' order by snapshot_id desc limit 1) l on true"
        ))
        .bind(app_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// What snapshots of the app's user list verified, and what they found.
    pub async fn verification(&self, app_id: &str) -> Result<Verification> {
        let seats = self.seats(app_id).await?;
        let c: VerificationCounts = sqlx::query_as(
            "select \
               (select snapshot_id from snapshot where app_id = $1 and state = 'applied' \
                  order by snapshot_id desc limit 1) as last_snapshot, \
               (select count(*) from scim_user where app_id = $1 and deleted_at is null) as users, \
               (select count(*) from scim_user where app_id = $1 and deleted_at is null \
                  and observed_snapshot is not null and not drift) as verified, \
               (select count(*) from scim_user where app_id = $1 and subject_kind = 'user' \
                  and observed_snapshot is not null and drift) as drift, \
               (select count(*) from scim_user where app_id = $1 and deleted_at is null \
                  and observed_snapshot is null) as never_verified, \
               (select count(*) from scim_user where app_id = $1 and subject_kind = 'account' \
                  and resolution is null) as orphans, \
               (select count(*) from finding where app_id = $1 and kind = 'missing' \
                  and resolved_at is null) as missing, \
               (select count(*) from finding where app_id = $1 and kind = 'contradiction') \
                  as verification_failures",
        )
        .bind(app_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(Verification {
            last_snapshot: c.last_snapshot,
            last_taken_at: seats.observed_at,
            users: c.users,
            verified: c.verified,
            verified_pct: (c.users > 0)
                .then(|| (c.verified as f64 * 1000.0 / c.users as f64).round() / 10.0),
            drift: c.drift,
            never_verified: c.never_verified,
            orphans: c.orphans,
            missing: c.missing,
            verification_failures: c.verification_failures,
            seats: SeatCounts {
                desired_active: seats.desired_active,
                confirmed_active: seats.confirmed_active,
                observed_active: seats.observed_active,
            },
        })
    }

    /// Time to complete by kind (percentiles), and what is overdue now.
    pub async fn sla_report(&self, app_id: &str) -> Result<Vec<SlaLine>> {
        Ok(sqlx::query_as(&format!(
            "select k.kind, \
               count(t.task_id) filter (where t.state in {confirmed}) as completed, \
               percentile_cont(0.5) within group (order by extract(epoch from t.finished_at - t.created_at)::float8 / 3600) \
                 filter (where t.state in {confirmed}) as p50, \
               percentile_cont(0.9) within group (order by extract(epoch from t.finished_at - t.created_at)::float8 / 3600) \
                 filter (where t.state in {confirmed}) as p90, \
               percentile_cont(0.95) within group (order by extract(epoch from t.finished_at - t.created_at)::float8 / 3600) \
                 filter (where t.state in {confirmed}) as p95, \
               (avg(case when t.finished_at <= t.due_at then 1.0 else 0.0 end) \
                 filter (where t.state in {confirmed} and t.due_at is not null))::float8 as within_sla, \
               count(t.task_id) filter (where t.state in {unfinished} \
                 and t.due_at < now()) as overdue_now \
             from unnest(enum_range(null::task_kind)::text[]) as k(kind) \
             left join task t on t.kind::text = k.kind and t.app_id = $1 \
             group by k.kind order by k.kind",
            confirmed = confirmed_states!(),
            unfinished = unfinished_states!(),
        ))
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every removal and deactivation of the app, newest first.
    pub async fn leavers(&self, app_id: &str, limit: i64) -> Result<Vec<Leaver>> {
        let rows: Vec<LeaverRow> = sqlx::query_as(
            "select t.user_id, u.user_name, t.task_id, t.kind::text as kind, t.state, t.created_at, t.due_at, \
                    t.finished_by, t.finished_at, t.evidence->>'seat_freed' as seat_freed, \
                    t.evidence->>'ownership_moved_to' as ownership_moved_to \
               from task t join scim_user u using (user_id) \
              where t.app_id = $1 and t.kind in ('remove', 'deactivate') and t.state <> 'cancelled' \
              order by t.task_id desc limit $2",
        )
        .bind(app_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Leaver::from).collect())
    }

    /// Audit records of the app in chain order, for one subject or a period, as CSV
    /// (RFC 4180): the request → approval → completion chain, ready for sampling.
    pub async fn audit_csv(
        &self,
        app_id: &str,
        subject: Option<&str>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<String> {
        // What is committed is sealed first, so the export holds every record so far
        // (an unsealed record has no chain position yet and is left out).
        self.seal_audit_all().await?;
        let rows: Vec<AuditCsvRow> = sqlx::query_as(
            "select chain_seq, at, actor, actor_role, action, subject_type, subject_id, task_id, request_id, outcome, \
                    detail, hash from audit where app_id = $1 and ($2::text is null or subject_id = $2) \
                and ($3::timestamptz is null or at >= $3) and ($4::timestamptz is null or at < $4) \
                and chain_seq is not null order by chain_seq",
        )
        .bind(app_id)
        .bind(subject)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let mut out = String::from(
            "chain_seq,at,actor,actor_role,action,subject_type,subject_id,task_id,request_id,outcome,detail,hash\r\n",
        );
        for r in rows {
            let fields = [
                r.chain_seq.to_string(),
                super::rfc3339(r.at),
                r.actor,
                r.actor_role,
                r.action,
                r.subject_type,
                r.subject_id,
                r.task_id.map(|t| t.to_string()).unwrap_or_default(),
                r.request_id.unwrap_or_default(),
                r.outcome,
                r.detail.to_string(),
                hex::encode(r.hash),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        }
        Ok(out)
    }
}

/// Quotes a CSV field when it needs it (RFC 4180 §2). A leading `=`, `+`, `-` or `@` is
/// prefixed with `'` so spreadsheets do not run it as a formula (CSV injection).
fn csv_field(f: &str) -> String {
    let f = if f.starts_with(['=', '+', '-', '@']) {
        format!("'{f}")
    } else {
        f.to_owned()
    };
    if f.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
    }
}
