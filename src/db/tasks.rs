//! Tasks: listing, claiming with a lease, completing and releasing. Every operation locks
//! the subject's user row before its task rows (the order SCIM writes use), except the
//! claim, which takes both with SKIP LOCKED and so never waits (invariant 3).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{postgres::PgRow, PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::audit::{self, Entry, Record};
use super::derive::derive_user;
use super::Store;
use crate::auth::Actor;
use crate::error::{Error, Result};
use crate::reconcile::{CompletionField, TaskKind};

/// A task as the task API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    /// Task id.
    pub id: i64,
    /// The app it belongs to.
    pub app: String,
    /// What to do.
    pub kind: TaskKind,
    /// `open`, `in_progress`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// Who it is about.
    pub subject: Subject,
    /// One-line summary with the concrete values.
    pub title: String,
    /// Step-by-step instructions from the app profile.
    pub instructions: Value,
    /// Field-by-field changes (`[{"field","from","to"}]`).
    pub changes: Value,
    /// The account the app has before the task (null: none).
    pub base: Value,
    /// The account the app has once the task is done (null: none).
    pub target: Value,
    /// What completing as `done` must record.
    pub completion_fields: Vec<CompletionField>,
    /// The in-progress task of the same subject this one waits for.
    pub blocked_by: Option<i64>,
    /// When the task was derived.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Who holds (or held) it.
    pub claimed_by: Option<String>,
    /// When it was claimed.
    pub claimed_at: Option<DateTime<Utc>>,
    /// The current lease (send it back to complete or release).
    pub lease_id: Option<Uuid>,
    /// When the lease lapses and the task may be claimed again.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How many times it was claimed.
    pub attempts: i32,
    /// When it was done, failed or cancelled.
    pub finished_at: Option<DateTime<Utc>>,
    /// Who finished it.
    pub finished_by: Option<String>,
    /// The worker's note.
    pub note: Option<String>,
    /// The completion fields recorded.
    pub evidence: Option<Value>,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
}

/// The subject of a task.
#[derive(Debug, Clone, Serialize)]
pub struct Subject {
    /// Always `user` for now.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// SCIM id of the user.
    pub id: Uuid,
    /// The user's userName.
    pub user_name: String,
}

/// Filters of the task list.
#[derive(Debug, Default, Clone)]
pub struct TaskQuery {
    /// Only tasks in this state.
    pub state: Option<String>,
    /// Only tasks of this kind.
    pub kind: Option<TaskKind>,
    /// Only tasks of this user.
    pub subject: Option<Uuid>,
    /// Only tasks with an id above this (the previous page's `next_cursor`).
    pub after: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// How a worker finishes a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done in the app: the confirmed state becomes the task's target.
    Done,
    /// Could not be done: confirmed state stays, the subject needs attention.
    Failed,
}

/// A completion request.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Done or failed.
    pub outcome: Outcome,
    /// The lease returned by claim; without it the task must be claimed by the same token.
    pub lease_id: Option<Uuid>,
    /// Free text.
    pub note: Option<String>,
    /// Values of the profile's completion fields.
    pub fields: serde_json::Map<String, Value>,
}

const SELECT: &str = r#"
    select t.task_id, t.app_id, t.kind::text as kind, t.state::text as state, t.user_id, u.user_name,
           t.title, t.instructions, t.completion_fields, t.changes, t.base, t.target, t.created_at, t.updated_at,
           t.claimed_by, t.claimed_at, t.lease_id, t.lease_expires_at, t.attempts, t.finished_at,
           t.finished_by, t.note, t.evidence, t.cancel_reason,
           (select p.task_id from task p
             where p.user_id = t.user_id and p.state = 'in_progress' and p.task_id <> t.task_id) as blocked_by
      from task t join scim_user u on u.user_id = t.user_id
"#;

fn task(r: &PgRow) -> Task {
    let kind: String = r.get("kind");
    let kind = TaskKind::parse(&kind).unwrap_or(TaskKind::UpdateAttributes);
    Task {
        id: r.get("task_id"),
        app: r.get("app_id"),
        kind,
        state: r.get("state"),
        subject: Subject {
            kind: "user",
            id: r.get("user_id"),
            user_name: r.get("user_name"),
        },
        title: r.get("title"),
        instructions: r.get("instructions"),
        changes: r.get("changes"),
        base: r.get::<Option<Value>, _>("base").unwrap_or(Value::Null),
        target: r.get::<Option<Value>, _>("target").unwrap_or(Value::Null),
        completion_fields: serde_json::from_value(r.get("completion_fields")).unwrap_or_default(),
        blocked_by: r.get("blocked_by"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        claimed_by: r.get("claimed_by"),
        claimed_at: r.get("claimed_at"),
        lease_id: r.get("lease_id"),
        lease_expires_at: r.get("lease_expires_at"),
        attempts: r.get("attempts"),
        finished_at: r.get("finished_at"),
        finished_by: r.get("finished_by"),
        note: r.get("note"),
        evidence: r.get("evidence"),
        cancel_reason: r.get("cancel_reason"),
    }
}

async fn fetch(conn: &mut PgConnection, app_id: &str, id: i64) -> Result<Task> {
    let row = sqlx::query(&format!("{SELECT} where t.app_id = $1 and t.task_id = $2"))
        .bind(app_id)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref()
        .map(task)
        .ok_or_else(|| Error::NotFound(format!("task {id}")))
}

fn conflict(code: &'static str, message: impl Into<String>) -> Error {
    Error::TaskConflict {
        code,
        message: message.into(),
    }
}

fn task_entry(
    action: &'static str,
    t: &Task,
    outcome: &'static str,
    detail: Value,
) -> Entry<'static> {
    Entry {
        action,
        subject_type: "user",
        subject_id: t.subject.id.to_string(),
        task_id: Some(t.id),
        outcome,
        detail,
    }
}

/// Locks the subject's user row, then the task; checks the caller holds the task.
async fn lock_held(
    conn: &mut PgConnection,
    actor: &Actor,
    id: i64,
    lease: Option<Uuid>,
) -> Result<Task> {
    let user_id: Uuid =
        sqlx::query_scalar("select user_id from task where app_id = $1 and task_id = $2")
            .bind(&actor.app_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("task {id}")))?;
    sqlx::query("select 1 from scim_user where user_id = $1 for update")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let holder: Option<Uuid> =
        sqlx::query_scalar("select claimed_token from task where task_id = $1 for update")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    let t = fetch(conn, &actor.app_id, id).await?;
    if t.state != "in_progress" {
        return Err(conflict(
            "task_not_in_progress",
            format!("task {id} is {}, not in progress: only a claimed task can be completed or released", t.state),
        ));
    }
    match lease {
        Some(l) if t.lease_id != Some(l) => Err(conflict(
            "lease_mismatch",
            format!("lease {l} does not hold task {id}: it lapsed and the task was claimed again"),
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

impl Store {
    /// Tasks of the app, oldest first, after the cursor; true when more follow.
    pub async fn tasks(&self, app_id: &str, q: &TaskQuery) -> Result<(Vec<Task>, bool)> {
        let mut b: QueryBuilder<'_, Postgres> = QueryBuilder::new(SELECT);
        b.push(" where t.app_id = ").push_bind(app_id.to_owned());
        if let Some(s) = &q.state {
            b.push(" and t.state::text = ").push_bind(s.clone());
        }
        if let Some(k) = q.kind {
            b.push(" and t.kind::text = ").push_bind(k.as_str());
        }
        if let Some(u) = q.subject {
            b.push(" and t.user_id = ").push_bind(u);
        }
        if let Some(a) = q.after {
            b.push(" and t.task_id > ").push_bind(a);
        }
        // One row more than asked says whether another page follows.
        b.push(" order by t.task_id limit ").push_bind(q.limit + 1);
        let rows = b.build().fetch_all(&self.pool).await?;
        let more = rows.len() as i64 > q.limit;
        Ok((rows.iter().take(q.limit as usize).map(task).collect(), more))
    }

    /// One task of the app.
    pub async fn task(&self, app_id: &str, id: i64) -> Result<Task> {
        let mut conn = self.pool.acquire().await?;
        fetch(&mut conn, app_id, id).await
    }

    /// The task's history (audit records), checking it belongs to the app.
    pub async fn task_with_history(&self, app_id: &str, id: i64) -> Result<(Task, Vec<Record>)> {
        let t = self.task(app_id, id).await?;
        let h = self.task_history(id).await?;
        Ok((t, h))
    }

    /// Claims the next claimable task: leavers (removals, deactivations) first, then
    /// oldest first; a subject's tasks strictly in order; a task whose lease lapsed is
    /// claimable again. None when nothing is claimable.
    pub async fn claim(&self, actor: &Actor, lease_seconds: i64) -> Result<Option<Task>> {
        // A candidate can be taken by another worker between pick and update; a few
        // retries find the next one.
        for _ in 0..5 {
            let mut tx = self.pool.begin().await?;
            let picked: Option<i64> = sqlx::query_scalar(
                r#"
                select t.task_id
                  from task t join scim_user u on u.user_id = t.user_id
                 where t.app_id = $1
                   and ((t.state = 'open'
                         and not exists (select 1 from task p where p.user_id = t.user_id and p.state = 'in_progress'))
                        or (t.state = 'in_progress' and t.lease_expires_at < now()))
                 order by case t.kind when 'remove' then 0 when 'deactivate' then 0 when 'change_role' then 1
                                      when 'create_account' then 3 else 2 end,
                          t.task_id
                 limit 1
                 for update of t, u skip locked
                "#,
            )
            .bind(&actor.app_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = picked else { return Ok(None) };
            // Re-checked with a fresh snapshot while holding the subject's lock.
            let lease = Uuid::new_v4();
            let updated = sqlx::query(
                r#"
                update task t set state = 'in_progress', claimed_by = $2, claimed_token = $3, claimed_at = now(),
                       lease_id = $4, lease_expires_at = now() + make_interval(secs => $5),
                       attempts = attempts + 1, updated_at = now()
                 where t.task_id = $1
                   and ((t.state = 'open'
                         and not exists (select 1 from task p where p.user_id = t.user_id and p.state = 'in_progress'))
                        or (t.state = 'in_progress' and t.lease_expires_at < now()))
                "#,
            )
            .bind(id)
            .bind(&actor.name)
            .bind(actor.token_id)
            .bind(lease)
            .bind(lease_seconds as f64)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                tx.rollback().await?;
                continue;
            }
            let t = fetch(&mut tx, &actor.app_id, id).await?;
            let detail = json!({"lease_id": lease, "lease_expires_at": t.lease_expires_at, "attempt": t.attempts});
            audit::write(
                &mut tx,
                actor,
                task_entry("task.claim", &t, "claimed", detail),
            )
            .await?;
            tx.commit().await?;
            return Ok(Some(t));
        }
        Ok(None)
    }

    /// Completes a held task. `done` moves the subject's confirmed state to the task's
    /// target in the same transaction; `failed` leaves it and flags the subject.
    /// Completing again with the same lease and outcome returns the first result.
    pub async fn complete(&self, actor: &Actor, id: i64, c: Completion) -> Result<Task> {
        let mut tx = self.pool.begin().await?;
        if let Some(lease) = c.lease_id {
            let t = fetch(&mut tx, &actor.app_id, id).await?;
            let want = match c.outcome {
                Outcome::Done => "done",
                Outcome::Failed => "failed",
            };
            if t.lease_id == Some(lease) && t.state == want {
                return Ok(t);
            }
        }
        let t = lock_held(&mut tx, actor, id, c.lease_id).await?;
        let state = match c.outcome {
            Outcome::Done => {
                let missing: Vec<&str> = t
                    .completion_fields
                    .iter()
                    .filter(|f| {
                        f.required
                            && !c
                                .fields
                                .get(&f.name)
                                .is_some_and(|v| !v.is_null() && v != "")
                    })
                    .map(|f| f.name.as_str())
                    .collect();
                if !missing.is_empty() {
                    return Err(Error::Invalid {
                        code: "missing_fields",
                        message: format!(
                            "completing a {} task as done needs: {}",
                            t.kind.as_str(),
                            missing.join(", ")
                        ),
                    });
                }
                for f in t.completion_fields.iter().filter(|f| !f.choices.is_empty()) {
                    if let Some(v) = c.fields.get(&f.name) {
                        if !v.as_str().is_some_and(|s| f.choices.iter().any(|c| c == s)) {
                            return Err(Error::Invalid {
                                code: "invalid_field",
                                message: format!(
                                    "{} must be one of {}",
                                    f.name,
                                    f.choices.join(", ")
                                ),
                            });
                        }
                    }
                }
                sqlx::query(
                    "update scim_user set confirmed = $2, confirmed_at = now(), needs_attention = false where user_id = $1",
                )
                .bind(t.subject.id)
                .bind(if t.target.is_null() { None } else { Some(&t.target) })
                .execute(&mut *tx)
                .await?;
                "done"
            }
            Outcome::Failed => {
                sqlx::query("update scim_user set needs_attention = true where user_id = $1")
                    .bind(t.subject.id)
                    .execute(&mut *tx)
                    .await?;
                "failed"
            }
        };
        let evidence = Value::Object(c.fields.clone());
        sqlx::query(
            "update task set state = $2::task_state, finished_at = now(), finished_by = $3, note = $4, \
             evidence = $5, updated_at = now() where task_id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(&actor.name)
        .bind(&c.note)
        .bind(&evidence)
        .execute(&mut *tx)
        .await?;
        // A waiting task was planned from this one's target; after a failure it must
        // close the whole difference from the confirmed state instead.
        derive_user(&mut tx, actor, t.subject.id).await?;
        let detail = json!({"note": c.note, "fields": evidence});
        let action = if state == "done" {
            "task.complete"
        } else {
            "task.fail"
        };
        audit::write(
            &mut tx,
            actor,
            task_entry(action, &t, state_outcome(state), detail),
        )
        .await?;
        let done = fetch(&mut tx, &actor.app_id, id).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Gives a held task back to the queue. If a newer task of the subject is waiting,
    /// this one is cancelled and the waiting one re-planned to cover both.
    pub async fn release(&self, actor: &Actor, id: i64, lease: Option<Uuid>) -> Result<Task> {
        let mut tx = self.pool.begin().await?;
        let t = lock_held(&mut tx, actor, id, lease).await?;
        let waiting: Option<i64> =
            sqlx::query_scalar("select task_id from task where user_id = $1 and state = 'open'")
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
        derive_user(&mut tx, actor, t.subject.id).await?;
        audit::write(
            &mut tx,
            actor,
            task_entry(
                "task.release",
                &t,
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

fn state_outcome(state: &str) -> &'static str {
    if state == "done" {
        "done"
    } else {
        "failed"
    }
}
