//! Reading the subjects of one batch in one query: desired account (roles resolved by
//! the profile), confirmed account, their open, in-progress and last finished tasks.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::Ctx;
use crate::db::derive::desired_of;
use crate::error::Result;
use crate::reconcile::{Account, TaskState};

/// A subject as verification sees it.
#[derive(Debug, Clone)]
pub(super) struct Loaded {
    pub id: Uuid,
    /// An account no IdP user owns.
    pub orphan: bool,
    /// Deleted in the IdP (orphans are stored deleted too).
    pub deleted: bool,
    pub user_name: String,
    /// What the IdP wants (None: deleted, or an orphan).
    pub desired: Option<Account>,
    pub confirmed: Option<Account>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub observed_at: Option<DateTime<Utc>>,
    pub observed_snapshot: Option<i64>,
    /// Orphans: what a review decided.
    pub resolution: Option<String>,
    /// The unclaimed task (id, target).
    pub open: Option<(i64, Option<Account>)>,
    pub in_progress: bool,
    /// The latest task, when it is done or not applicable, finished before the export
    /// was taken, and nothing newer is open or in progress.
    pub last_done: Option<(i64, Option<Account>)>,
}

/// The row [`subjects`] reads.
#[derive(sqlx::FromRow)]
struct LoadRow {
    user_id: Uuid,
    orphan: bool,
    deleted: bool,
    user_name: String,
    doc: Value,
    confirmed: Option<Value>,
    confirmed_at: Option<DateTime<Utc>>,
    observed_at: Option<DateTime<Utc>>,
    observed_snapshot: Option<i64>,
    resolution: Option<String>,
    group_names: Vec<String>,
    open_id: Option<i64>,
    open_target: Option<Value>,
    in_progress: bool,
    last_id: Option<i64>,
    last_state: Option<TaskState>,
    last_target: Option<Value>,
    last_finished: Option<DateTime<Utc>>,
}

pub(super) async fn subjects(
    conn: &mut PgConnection,
    ctx: &Ctx<'_>,
    ids: &[Uuid],
) -> Result<Vec<Loaded>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<LoadRow> = sqlx::query_as(concat!(
        r#"
        select u.user_id, u.subject_kind = 'account' as orphan, u.deleted_at is not null as deleted,
               u.user_name, u.doc, u.confirmed, u.confirmed_at, u.observed_at, u.observed_snapshot,
               u.resolution,
               coalesce((select array_agg(g.display_name)
                           from scim_group g
                          where g.group_id = any(array(select m.group_id from group_member m
                                                       where m.user_id = u.user_id))
                            and g.deleted_at is null), '{}') as group_names,
               o.task_id as open_id, o.target as open_target,
               exists (select 1 from task p where p.user_id = u.user_id and p.state = 'in_progress') as in_progress,
               l.task_id as last_id, l.state as last_state, l.target as last_target,
               l.finished_at as last_finished
          from scim_user u
          left join task o on o.user_id = u.user_id and o.state in "#,
        unclaimed_states!(),
        r#"
          left join lateral (select t.task_id, t.state, t.target, t.finished_at from task t
                              where t.user_id = u.user_id order by t.task_id desc limit 1) l on true
         where u.user_id = any($1) and u.app_id = $2
         order by u.user_id
        "#
    ))
    .bind(ids)
    .bind(ctx.app_id)
    .fetch_all(conn)
    .await?;
    let account = |v: Option<Value>| v.and_then(|v| serde_json::from_value::<Account>(v).ok());
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let desired = if r.deleted || r.orphan {
            None
        } else {
            Some(desired_of(ctx.profile, &r.doc, &r.group_names))
        };
        let open = r.open_id.map(|id| (id, account(r.open_target)));
        let last_done = match (r.last_id, r.last_state, r.last_finished) {
            (Some(id), Some(state), Some(at))
                if state.is_in(&TaskState::CONFIRMED)
                    && at <= ctx.taken_at
                    && open.is_none()
                    && !r.in_progress =>
            {
                Some((id, account(r.last_target)))
            }
            _ => None,
        };
        out.push(Loaded {
            id: r.user_id,
            orphan: r.orphan,
            deleted: r.deleted,
            user_name: r.user_name,
            desired,
            confirmed: account(r.confirmed),
            confirmed_at: r.confirmed_at,
            observed_at: r.observed_at,
            observed_snapshot: r.observed_snapshot,
            resolution: r.resolution,
            open,
            in_progress: r.in_progress,
            last_done,
        });
    }
    Ok(out)
}
