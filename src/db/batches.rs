//! Batches held by the mass-change guard: opening one and showing what it would do.
//! Releasing or cancelling one (a transition of its tasks) is `lifecycle`'s.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgConnection;

use super::audit::{self, Entry};
use super::outbox::{emit, PRIMARY};
use super::Store;
use crate::auth::Actor;
use crate::error::{Error, Result};

/// Opens a held batch and announces it (in the caller's transaction).
pub(super) async fn open_batch(
    conn: &mut PgConnection,
    actor: &Actor,
    kind: &str,
    reason: &str,
) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "insert into batch (app_id, kind, reason) values ($1, $2, $3) returning batch_id",
    )
    .bind(&actor.app_id)
    .bind(kind)
    .bind(reason)
    .fetch_one(&mut *conn)
    .await?;
    emit(
        conn,
        &actor.app_id,
        "batch.held",
        None,
        json!({"batch_id": id, "kind": kind, "reason": reason, "count": 1}),
        PRIMARY,
    )
    .await?;
    audit::write(
        conn,
        actor,
        batch_entry(
            "batch.held",
            id,
            "held",
            json!({"kind": kind, "reason": reason}),
        ),
    )
    .await?;
    Ok(id)
}

pub(super) fn batch_entry(
    action: &'static str,
    id: i64,
    outcome: &'static str,
    detail: Value,
) -> Entry<'static> {
    Entry {
        action,
        subject_type: "batch",
        subject_id: id.to_string(),
        task_id: None,
        outcome,
        detail,
    }
}

/// A held (or decided) batch with the preview of what it would do.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Batch {
    /// Id.
    #[sqlx(rename = "batch_id")]
    pub id: i64,
    /// `leavers` or `group_push`.
    pub kind: String,
    /// `held`, `released` or `cancelled`.
    pub state: String,
    /// Why it was held.
    pub reason: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Who released or cancelled it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// Tasks in the batch.
    pub tasks: i64,
    /// Tasks per kind.
    pub by_kind: Value,
    /// Who the changes came from (token names) and how many each.
    pub causes: Value,
    /// The users concerned (first 200 userNames).
    pub users: Vec<String>,
}

const SELECT: &str = r#"
    select b.batch_id, b.kind, b.state, b.reason, b.created_at, b.decided_by, b.decided_at,
           (select count(*) from task t where t.batch_id = b.batch_id) as tasks,
           coalesce((select jsonb_object_agg(k, n) from (select t.kind::text as k, count(*) as n from task t
                      where t.batch_id = b.batch_id group by 1) x), '{}') as by_kind,
           coalesce((select jsonb_object_agg(actor, n) from (select a.actor, count(*) as n from task t
                      join audit a on a.task_id = t.task_id and a.action = 'task.create'
                      where t.batch_id = b.batch_id group by 1) y), '{}') as causes,
           coalesce((select array_agg(user_name) from (select u.user_name from task t join scim_user u using (user_id)
                      where t.batch_id = b.batch_id order by t.task_id limit 200) z), '{}') as users
      from batch b
"#;

impl Store {
    /// The app's batches, held ones first, newest first.
    pub async fn batches(&self, app_id: &str) -> Result<Vec<Batch>> {
        Ok(sqlx::query_as(&format!(
            "{SELECT} where b.app_id = $1 order by b.state = 'held' desc, b.batch_id desc limit 100"
        ))
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One batch of the app with its preview.
    pub async fn batch(&self, app_id: &str, id: i64) -> Result<Batch> {
        sqlx::query_as(&format!("{SELECT} where b.app_id = $1 and b.batch_id = $2"))
            .bind(app_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("batch {id}")))
    }
}
