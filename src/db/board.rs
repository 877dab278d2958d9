//! What the admin web UI reads beyond the task API's queries: the queue as a board (in
//! claim order, searchable by userName or email), the user list with search, the seats
//! and completion-time reports. Every query is scoped to one app. (The UI's Claim button
//! is `lifecycle`'s `claim_chosen`.)

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::users::STATE;
use super::Store;
use crate::error::Result;
use crate::reconcile::{TaskKind, TaskState};

/// The rank a task of this kind has in claim order (lower first): leavers first, joiners
/// last: the stored `task.priority` (migration 0004), which `Store::claim_next` orders by, so
/// the board lists tasks in the order workers get them (a test checks the two agree).
const RANK: &str = "t.priority::int";

/// How the board orders its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardOrder {
    /// As claims take them: leavers first, then oldest first (for work still to do).
    Claim,
    /// Newest first (for finished work, where the latest matters most).
    Newest,
}

/// Where the next page starts: the last row's rank and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardCursor {
    /// Rank in claim order (0 in newest-first order).
    pub rank: i32,
    /// Task id.
    pub id: i64,
}

impl BoardCursor {
    /// The cursor as a URL parameter: `rank.id`.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.rank, self.id)
    }

    /// Parses [`BoardCursor::encode`]'s form.
    pub fn decode(s: &str) -> Option<BoardCursor> {
        let (rank, id) = s.split_once('.')?;
        Some(BoardCursor {
            rank: rank.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

/// Filters of the board.
#[derive(Debug, Clone)]
pub struct BoardQuery {
    /// Only tasks in this state (None: all).
    pub state: Option<TaskState>,
    /// Only tasks of this kind.
    pub kind: Option<TaskKind>,
    /// Only tasks whose user's userName or email contains this (case-insensitive).
    pub search: Option<String>,
    /// Order of the rows.
    pub order: BoardOrder,
    /// Rows after this cursor.
    pub after: Option<BoardCursor>,
    /// Page size.
    pub limit: i64,
}

/// One task as a row of the board.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BoardRow {
    /// Task id.
    #[sqlx(rename = "task_id")]
    pub id: i64,
    /// What to do.
    pub kind: TaskKind,
    /// Task state.
    pub state: TaskState,
    /// One-line summary.
    pub title: String,
    /// The user's SCIM id.
    pub user_id: Uuid,
    /// The user's userName.
    pub user_name: String,
    /// The account's email (target, else base).
    pub email: Option<String>,
    /// When the task was derived.
    pub created_at: DateTime<Utc>,
    /// Who holds (or held) it.
    pub claimed_by: Option<String>,
    /// When the current lease lapses.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When it was finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// The in-progress task of the same user this one waits for.
    pub blocked_by: Option<i64>,
    /// Position in claim order.
    pub rank: i32,
    /// When the task is due (from the profile's SLA), if it has a due date.
    pub due_at: Option<DateTime<Utc>>,
    /// `ok`, `due_soon` or `overdue`, as the SLA sweeper last marked it.
    pub sla_state: String,
}

/// One user as a row of the user list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    /// SCIM id.
    #[sqlx(rename = "user_id")]
    pub id: Uuid,
    /// userName.
    pub user_name: String,
    /// displayName, if any.
    pub display_name: Option<String>,
    /// First email, if any.
    pub email: Option<String>,
    /// Desired `active`.
    pub active: bool,
    /// When the IdP deleted the user.
    pub deleted_at: Option<DateTime<Utc>>,
    /// `pending`, `synced` or `failed`.
    pub state: String,
    /// The open or in-progress task, if any.
    pub open_task_id: Option<i64>,
    /// When the app last confirmed the account.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Cursor of this row (creation order).
    pub seq: i64,
}

/// Seats and pending work of one app, now.
#[derive(Debug, Clone, Default)]
pub struct SeatReport {
    /// Live users the IdP wants active.
    pub desired_active: i64,
    /// Users the app is known to have as active accounts.
    pub confirmed_active: i64,
    /// Users whose last task failed.
    pub needs_attention: i64,
    /// Unfinished tasks (open or in progress) by kind.
    pub pending: Vec<(TaskKind, i64)>,
}

/// How long finished tasks of one kind took from creation to completion.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CompletionTimes {
    /// The kind.
    pub kind: TaskKind,
    /// Tasks finished.
    pub count: i64,
    /// Median, in seconds.
    pub median_secs: f64,
    /// Longest, in seconds.
    pub max_secs: f64,
}

/// Days of finished tasks the completion-time report covers.
pub const COMPLETION_WINDOW_DAYS: i32 = 90;

impl Store {
    /// One page of the app's tasks for the board; true when more follow.
    pub async fn board(&self, app_id: &str, q: &BoardQuery) -> Result<(Vec<BoardRow>, bool)> {
        crate::limits::check_opt(
            "the search",
            q.search.as_deref(),
            crate::limits::MAX_SEARCH_CHARS,
        )?;
        let mut b: QueryBuilder<'_, Postgres> = QueryBuilder::new(format!(
            "select * from (select t.task_id, t.kind, t.state, t.title, t.user_id, \
             u.user_name, coalesce(t.target->>'email', t.base->>'email') as email, t.created_at, t.claimed_by, \
             t.lease_expires_at, t.finished_at, t.due_at, t.sla_state, \
             (select p.task_id from task p where p.user_id = t.user_id and p.state = 'in_progress' \
               and p.task_id <> t.task_id) as blocked_by, \
             {rank} as rank \
             from task t join scim_user u on u.user_id = t.user_id where t.app_id = ",
            rank = match q.order {
                BoardOrder::Claim => RANK,
                BoardOrder::Newest => "0",
            }
        ));
        b.push_bind(app_id.to_owned());
        if let Some(s) = q.state {
            b.push(" and t.state = ").push_bind(s);
        }
        if let Some(k) = q.kind {
            b.push(" and t.kind::text = ").push_bind(k.as_str());
        }
        if let Some(s) = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            let s = s.to_lowercase();
            b.push(" and (strpos(lower(u.user_name), ")
                .push_bind(s.clone())
                .push(") > 0 or strpos(lower(coalesce(t.target->>'email', t.base->>'email', '')), ")
                .push_bind(s.clone())
                .push(") > 0 or exists (select 1 from unnest(u.emails) e where strpos(e, ")
                .push_bind(s)
                .push(") > 0))");
        }
        b.push(") x");
        match (q.order, q.after) {
            (BoardOrder::Claim, Some(c)) => {
                b.push(" where (x.rank, x.task_id) > (")
                    .push_bind(c.rank)
                    .push(", ")
                    .push_bind(c.id)
                    .push(")");
            }
            (BoardOrder::Newest, Some(c)) => {
                b.push(" where x.task_id < ").push_bind(c.id);
            }
            (_, None) => {}
        }
        b.push(match q.order {
            BoardOrder::Claim => " order by x.rank, x.task_id",
            BoardOrder::Newest => " order by x.task_id desc",
        });
        // One row more than asked says whether another page follows.
        b.push(" limit ").push_bind(q.limit + 1);
        let mut rows: Vec<BoardRow> = b.build_query_as().fetch_all(&self.pool).await?;
        let more = rows.len() as i64 > q.limit;
        rows.truncate(q.limit as usize);
        Ok((rows, more))
    }

    /// The token holding a task of the app (None: nobody, or no such task).
    pub async fn task_holder(&self, app_id: &str, id: i64) -> Result<Option<Uuid>> {
        Ok(sqlx::query_scalar::<_, Option<Uuid>>(
            "select claimed_token from task where app_id = $1 and task_id = $2",
        )
        .bind(app_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// Users of the app, deleted ones too (an auditor looks for leavers), in creation
    /// order after a cursor; `search` narrows to userName, displayName or an email
    /// containing it, `state` to one provisioning state. True when more follow.
    pub async fn user_rows(
        &self,
        app_id: &str,
        search: Option<&str>,
        state: Option<&str>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<UserRow>, bool)> {
        crate::limits::check_opt("the search", search, crate::limits::MAX_SEARCH_CHARS)?;
        let search = search
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase);
        let sql = format!(
            "select * from (select u.user_id, u.seq, u.user_name, u.doc->>'displayName' as display_name, \
             u.emails[1] as email, u.active, u.deleted_at, u.confirmed_at, {STATE} as state, \
             (select t.task_id from task t where t.user_id = u.user_id and t.state in {queued} \
               order by t.task_id limit 1) as open_task_id \
             from scim_user u where u.app_id = $1 \
             and ($2::text is null or strpos(lower(u.user_name), $2) > 0 \
                  or strpos(lower(coalesce(u.doc->>'displayName', '')), $2) > 0 \
                  or exists (select 1 from unnest(u.emails) e where strpos(e, $2) > 0)) \
             and ($4::bigint is null or u.seq > $4)) x \
             where ($3::text is null or x.state = $3) order by x.seq limit $5",
            queued = queued_states!(),
        );
        let mut rows: Vec<UserRow> = sqlx::query_as(&sql)
            .bind(app_id)
            .bind(search)
            .bind(state)
            .bind(after)
            .bind(limit + 1)
            .fetch_all(&self.pool)
            .await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok((rows, more))
    }

    /// Seats now: active accounts the IdP wants against those the app is known to have,
    /// and the unfinished tasks by kind.
    pub async fn seat_report(&self, app_id: &str) -> Result<SeatReport> {
        let (desired_active, confirmed_active, needs_attention): (i64, i64, i64) = sqlx::query_as(
            "select count(*) filter (where deleted_at is null and active), \
                    count(*) filter (where coalesce((confirmed->>'active')::boolean, false)), \
                    count(*) filter (where needs_attention) \
             from scim_user where app_id = $1",
        )
        .bind(app_id)
        .fetch_one(&self.pool)
        .await?;
        let pending: Vec<(TaskKind, i64)> = sqlx::query_as(concat!(
            "select kind::text, count(*) from task where app_id = $1 and state in ",
            queued_states!(),
            " group by 1 order by 1"
        ))
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(SeatReport {
            desired_active,
            confirmed_active,
            needs_attention,
            pending,
        })
    }

    /// Time from creation to completion of the tasks finished (done or not applicable)
    /// in the last [`COMPLETION_WINDOW_DAYS`] days, by kind.
    pub async fn completion_times(&self, app_id: &str) -> Result<Vec<CompletionTimes>> {
        Ok(sqlx::query_as(concat!(
            "select kind::text as kind, count(*) as count, \
                    percentile_cont(0.5) within group (order by extract(epoch from finished_at - created_at))::float8 as median_secs, \
                    max(extract(epoch from finished_at - created_at))::float8 as max_secs \
             from task where app_id = $1 and state in ",
            confirmed_states!(),
            " and finished_at > now() - make_interval(days => $2) group by 1 order by 1"
        ))
        .bind(app_id)
        .bind(COMPLETION_WINDOW_DAYS)
        .fetch_all(&self.pool)
        .await?)
    }
}
