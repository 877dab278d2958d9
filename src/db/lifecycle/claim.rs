//! Claims and leases: claiming the next task or a chosen one, extending a lease, and
//! failing tasks whose lease lapsed once too often.

use serde_json::json;
use sqlx::PgConnection;
use tracing::field::Empty;
use uuid::Uuid;

use super::assign::{lock_live_token, revoked};
use super::{lock_held, record_kind, task_entry, Lease, CLAIMABLE};
use crate::auth::Actor;
use crate::db::audit;
use crate::db::derive::replan_waiting;
use crate::db::outbox::{emit, PRIMARY};
use crate::db::tasks::{fetch, Task};
use crate::db::Store;
use crate::error::Result;
use crate::reconcile::{Profiles, TaskKind, TaskState};

/// SQL of a claim's first lock: the claimer's token row (parameter `$n`), `for share`
/// and only while the token is live. Used as a CTE the pick tests first (a one-time
/// filter, so it is locked before any task or user row): a revocation in flight waits
/// for the claim or the claim sees it, and a token revoked but still in a replica's
/// token cache claims nothing (see `assign.rs`).
fn live_holder(n: usize) -> String {
    format!("select 1 from token where token_id = ${n} and revoked_at is null for share")
}

/// A task a claim picked, its row and its subject's row locked.
#[derive(Debug, sqlx::FromRow)]
struct Pick {
    task_id: i64,
    /// The subject.
    user_id: Uuid,
    /// Open, or in progress with a lapsed lease.
    state: TaskState,
    /// Who held it before (a lapsed lease).
    claimed_by: Option<String>,
    /// Claims so far.
    attempts: i32,
}

/// The next task in claim order, and whether any lapsed task of the app is out of
/// attempts (then those are failed before claiming).
#[derive(Debug, sqlx::FromRow)]
struct Candidate {
    #[sqlx(flatten)]
    pick: Pick,
    exhausted: bool,
}

/// A task whose lease lapsed on its last allowed attempt.
#[derive(Debug, sqlx::FromRow)]
struct Exhausted {
    task_id: i64,
    user_id: Uuid,
    kind: TaskKind,
    attempts: i32,
    claimed_by: Option<String>,
}

/// Fails one task whose lease lapsed on its last allowed attempt (row and subject locked
/// by the caller) and flags its subject, in a span of its own.
#[tracing::instrument(
    name = "task.lease_exhausted",
    skip_all,
    fields(app = %app_id, task_id = d.task_id, kind = %d.kind.as_str())
)]
async fn fail_lapsed(
    conn: &mut PgConnection,
    profiles: &Profiles,
    app_id: &str,
    max_attempts: i32,
    d: &Exhausted,
) -> Result<()> {
    tracing::info!(
        attempts = d.attempts,
        "lease lapsed on the last attempt; failing the task"
    );
    let system = Actor::system(app_id);
    let note = format!(
        "The lease lapsed on attempt {} of {max_attempts}; the task needs a person.",
        d.attempts
    );
    sqlx::query(
        "update task set state = 'failed', finished_at = now(), finished_by = 'scimbridge', note = $2, \
         updated_at = now() where task_id = $1",
    )
    .bind(d.task_id)
    .bind(&note)
    .execute(&mut *conn)
    .await?;
    sqlx::query("update scim_user set needs_attention = true where user_id = $1")
        .bind(d.user_id)
        .execute(&mut *conn)
        .await?;
    replan_waiting(conn, profiles, &system, d.user_id).await?;
    let event = json!({"task_id": d.task_id, "user_id": d.user_id, "outcome": "lease_exhausted", "note": note});
    emit(
        &mut *conn,
        app_id,
        "task.failed",
        Some(d.task_id),
        event,
        PRIMARY,
    )
    .await?;
    let detail = json!({"attempts": d.attempts, "last_holder": d.claimed_by, "note": note});
    audit::write(
        conn,
        &system,
        task_entry("task.fail", d.task_id, d.user_id, "lease_exhausted", detail),
    )
    .await
}

/// Leases a picked task to the actor and records the claim, and the lapse of the
/// previous lease if it had one. None when another worker's commit made it unclaimable
/// since it was picked.
async fn lease_to(
    conn: &mut PgConnection,
    actor: &Actor,
    lease: Lease,
    pick: Pick,
) -> Result<Option<Task>> {
    let id = pick.task_id;
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
    record_kind(&t);
    if pick.state == TaskState::InProgress {
        let detail = json!({"attempt": pick.attempts, "last_holder": pick.claimed_by});
        let system = Actor::system(&actor.app_id);
        audit::write(
            conn,
            &system,
            task_entry(
                "task.lease_expired",
                id,
                pick.user_id,
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
        task_entry("task.claim", id, pick.user_id, "claimed", detail),
    )
    .await?;
    Ok(Some(t))
}

impl Store {
    /// Fails the app's tasks whose lease lapsed after the last allowed attempt and flags
    /// their subjects; returns how many. Locks are taken with SKIP LOCKED, so a worker
    /// completing one of them just now wins.
    #[tracing::instrument(name = "task.fail_exhausted", skip_all, fields(app = %app_id))]
    pub(crate) async fn fail_exhausted(&self, app_id: &str, max_attempts: i32) -> Result<u64> {
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
        let dead: Vec<Exhausted> = sqlx::query_as(
            "select t.task_id, t.user_id, t.kind, t.attempts, t.claimed_by from task t join scim_user u on u.user_id = t.user_id \
             where t.app_id = $1 and t.state = 'in_progress' and t.lease_expires_at < now() and t.attempts >= $2 \
             for update of t, u skip locked",
        )
        .bind(app_id)
        .bind(max_attempts)
        .fetch_all(&mut *tx)
        .await?;
        for d in &dead {
            fail_lapsed(&mut tx, &self.profiles, app_id, max_attempts, d).await?;
        }
        tx.commit().await?;
        Ok(dead.len() as u64)
    }

    /// Claims the next claimable task (the task API's claim): leavers (removals,
    /// deactivations) first, then oldest first; a subject's tasks strictly in order; a
    /// task whose lease lapsed is claimable again (the attempt is counted and recorded).
    /// None when nothing is claimable. `kinds` narrows the claim to some task kinds.
    #[tracing::instrument(
        name = "task.claim_next",
        skip_all,
        fields(app = %actor.app_id, task_id = Empty, kind = Empty)
    )]
    pub async fn claim_next(
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
            let candidate: Option<Candidate> = sqlx::query_as(&format!(
                r#"
                with holder as ({holder})
                select t.task_id, t.user_id, t.state, t.claimed_by, t.attempts,
                       exists (select 1 from task x where x.app_id = $1 and x.state = 'in_progress'
                                  and x.lease_expires_at < now() and x.attempts >= $3) as exhausted
                  from task t join scim_user u on u.user_id = t.user_id
                 where exists (select 1 from holder) and t.app_id = $1 and t.state in {queued}
                   and (t.state = 'open' or t.attempts < $3)
                   and ($2::text[] is null or t.kind::text = any($2)) and {CLAIMABLE}
                 order by t.priority, t.task_id
                 limit 1
                 for update of t, u skip locked
                "#,
                queued = queued_states!(),
                holder = live_holder(4),
            ))
            .bind(&actor.app_id)
            .bind(&kinds)
            .bind(lease.max_attempts)
            .bind(actor.token_id)
            .fetch_optional(&mut *tx)
            .await?;
            if candidate.is_none() && !lock_live_token(&mut tx, actor.token_id).await? {
                return Err(revoked());
            }
            let exhausted = candidate.as_ref().is_none_or(|c| c.exhausted);
            if exhausted && !swept {
                tx.rollback().await?;
                swept = true;
                if self
                    .fail_exhausted(&actor.app_id, lease.max_attempts)
                    .await?
                    > 0
                    || candidate.is_some()
                {
                    continue;
                }
                return Ok(None);
            }
            let Some(candidate) = candidate else {
                return Ok(None);
            };
            tracing::Span::current().record("task_id", candidate.pick.task_id);
            if let Some(t) = lease_to(&mut tx, actor, lease, candidate.pick).await? {
                tx.commit().await?;
                return Ok(Some(t));
            }
            tx.rollback().await?;
        }
        Ok(None)
    }

    /// Claims one chosen task of the app (the web UI's Claim button), if it is claimable
    /// now: open and not waiting for its user's task in progress, or in progress with a
    /// lapsed lease. None when it is not; the caller reads the task to say why.
    /// Recorded like [`Store::claim_next`].
    #[tracing::instrument(
        name = "task.claim_chosen",
        skip_all,
        fields(app = %actor.app_id, task_id = id, kind = Empty)
    )]
    pub async fn claim_chosen(&self, actor: &Actor, lease: Lease, id: i64) -> Result<Option<Task>> {
        self.fail_exhausted(&actor.app_id, lease.max_attempts)
            .await?;
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: a worker completing or claiming it right now wins; no waiting.
        let pick: Option<Pick> = sqlx::query_as(&format!(
            "with holder as ({holder}) \
             select t.task_id, t.user_id, t.state, t.claimed_by, t.attempts \
               from task t join scim_user u on u.user_id = t.user_id \
              where exists (select 1 from holder) and t.app_id = $1 and t.task_id = $2 and {CLAIMABLE} \
              for update of t, u skip locked",
            holder = live_holder(3)
        ))
        .bind(&actor.app_id)
        .bind(id)
        .bind(actor.token_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(pick) = pick else {
            if !lock_live_token(&mut tx, actor.token_id).await? {
                return Err(revoked());
            }
            return Ok(None);
        };
        let Some(t) = lease_to(&mut tx, actor, lease, pick).await? else {
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(t))
    }

    /// Extends the lease of a held task by `seconds` (default: the claim's lease length)
    /// from now. Heartbeats are not audited: they change no state anyone acts on.
    #[tracing::instrument(
        name = "task.heartbeat",
        skip_all,
        fields(app = %actor.app_id, task_id = id, kind = Empty)
    )]
    pub async fn heartbeat(
        &self,
        actor: &Actor,
        id: i64,
        lease: Option<Uuid>,
        seconds: Option<i64>,
    ) -> Result<Task> {
        let mut tx = self.pool.begin().await?;
        let outcome: Result<Task> = async {
            lock_held(&mut tx, actor, id, lease).await?;
            sqlx::query(
                "update task set lease_expires_at = now() + make_interval(secs => coalesce($2, lease_seconds, 900)), \
                 lease_seconds = coalesce($2, lease_seconds), updated_at = now() where task_id = $1",
            )
            .bind(id)
            .bind(seconds.map(|s| s as i32))
            .execute(&mut *tx)
            .await?;
            fetch(&mut tx, &actor.app_id, id).await
        }
        .await;
        crate::db::settle(tx, outcome).await
    }
}
