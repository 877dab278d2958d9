//! Reading the subjects of one batch in one query: desired account (roles resolved by
//! the profile), confirmed account, their open, in-progress and last finished tasks.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::Ctx;
use crate::db::derive::desired_of;
use crate::error::Result;
use crate::reconcile::Account;

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

pub(super) async fn subjects(
    conn: &mut PgConnection,
    ctx: &Ctx<'_>,
    ids: &[Uuid],
) -> Result<Vec<Loaded>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        r#"
        select u.user_id, u.subject_kind = 'account' as orphan, u.deleted_at is not null as deleted,
               u.user_name, u.doc, u.confirmed, u.confirmed_at, u.observed_at, u.observed_snapshot,
               u.resolution,
               coalesce((select array_agg(g.display_name)
                           from group_member m join scim_group g using (group_id)
                          where m.user_id = u.user_id and g.deleted_at is null), '{}') as group_names,
               o.task_id as open_id, o.target as open_target,
               exists (select 1 from task p where p.user_id = u.user_id and p.state = 'in_progress') as in_progress,
               l.task_id as last_id, l.state::text as last_state, l.target as last_target,
               l.finished_at as last_finished
          from scim_user u
          left join task o on o.user_id = u.user_id and o.state in ('open', 'awaiting_approval', 'held')
          left join lateral (select t.task_id, t.state, t.target, t.finished_at from task t
                              where t.user_id = u.user_id order by t.task_id desc limit 1) l on true
         where u.user_id = any($1) and u.app_id = $2
         order by u.user_id
        "#,
    )
    .bind(ids)
    .bind(ctx.app_id)
    .fetch_all(conn)
    .await?;
    let account = |v: Option<Value>| v.and_then(|v| serde_json::from_value::<Account>(v).ok());
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let orphan: bool = r.get("orphan");
        let deleted: bool = r.get("deleted");
        let desired = if deleted || orphan {
            None
        } else {
            let doc: Value = r.get("doc");
            let groups: Vec<String> = r.get("group_names");
            Some(desired_of(ctx.profile, &doc, &groups))
        };
        let open_id: Option<i64> = r.get("open_id");
        let open = open_id.map(|id| (id, account(r.get("open_target"))));
        let in_progress: bool = r.get("in_progress");
        let last_id: Option<i64> = r.get("last_id");
        let last_state: Option<String> = r.get("last_state");
        let last_finished: Option<DateTime<Utc>> = r.get("last_finished");
        let last_done = match (last_id, last_state.as_deref(), last_finished) {
            (Some(id), Some("done" | "not_applicable"), Some(at))
                if at <= ctx.taken_at && open.is_none() && !in_progress =>
            {
                Some((id, account(r.get("last_target"))))
            }
            _ => None,
        };
        out.push(Loaded {
            id: r.get("user_id"),
            orphan,
            deleted,
            user_name: r.get("user_name"),
            desired,
            confirmed: account(r.get("confirmed")),
            confirmed_at: r.get("confirmed_at"),
            observed_at: r.get("observed_at"),
            observed_snapshot: r.get("observed_snapshot"),
            resolution: r.get("resolution"),
            open,
            in_progress,
            last_done,
        });
    }
    Ok(out)
}
