//! Numbers for `/metrics`, read at scrape time. Each query is served by a partial index
//! (unfinished tasks: the partial unique indexes that keep at most one open and one
//! in-progress task per subject; pending deliveries:
//! `delivery_due_idx`), so a scrape costs the same however much history there is.

use super::Store;
use crate::reconcile::{TaskKind, TaskState};

/// Unfinished tasks of one app, state and kind.
#[derive(Debug, sqlx::FromRow)]
pub struct AppTaskCount {
    /// The app.
    pub app_id: String,
    /// One of `TaskState::UNFINISHED`.
    pub state: TaskState,
    /// The kind.
    pub kind: TaskKind,
    /// How many.
    pub count: i64,
}

/// The oldest not-yet-started task of one app.
#[derive(Debug, sqlx::FromRow)]
pub struct OldestOpen {
    /// The app.
    pub app_id: String,
    /// Seconds since it was created.
    pub age_seconds: f64,
}

/// What a scrape shows of the database.
#[derive(Debug)]
pub struct Snapshot {
    /// Unfinished tasks by app, state and kind.
    pub tasks: Vec<AppTaskCount>,
    /// Seconds since the oldest not-yet-started task was created, by app.
    pub oldest_open: Vec<OldestOpen>,
    /// Webhook deliveries waiting to be sent.
    pub pending_deliveries: i64,
}

impl Store {
    /// The scrape-time numbers, in one read-only transaction.
    pub async fn metrics(&self) -> Result<Snapshot, sqlx::Error> {
        let mut tx = self.pool().begin().await?;
        let tasks = sqlx::query_as::<_, AppTaskCount>(concat!(
            r#"
            select app_id, state::text as state, kind::text as kind, count(*) as count
            from task where state in "#,
            unclaimed_states!(),
            r#"
            group by 1, 2, 3
            union all
            select app_id, state::text, kind::text, count(*)
            from task where state = 'in_progress'
            group by 1, 2, 3
            order by 1, 2, 3
            "#
        ))
        .fetch_all(&mut *tx)
        .await?;
        let oldest_open = sqlx::query_as::<_, OldestOpen>(concat!(
            r#"
            select app_id, extract(epoch from now() - min(created_at))::float8 as age_seconds
            from task where state in "#,
            unclaimed_states!(),
            r#"
            group by app_id order by app_id
            "#
        ))
        .fetch_all(&mut *tx)
        .await?;
        let pending_deliveries: i64 =
            sqlx::query_scalar("select count(*) from delivery where state = 'pending'")
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Snapshot {
            tasks,
            oldest_open,
            pending_deliveries,
        })
    }
}
