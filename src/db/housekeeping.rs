//! Background upkeep of what the writes leave for later so that they do not serialise
//! on one row (issue #13): the live-user counter's deltas are folded into the per-app
//! total.

use super::Store;
use crate::error::Result;

/// Advisory lock key of the counter compaction (any fixed number unique to this job):
/// one replica compacts at a time, the others skip.
const COMPACT_LOCK: i64 = 0x5c1b_0002;

impl Store {
    /// Folds the live-user deltas written since the last run into `app_user_count`, in
    /// one transaction (the sum a reader sees is the same before and after). Returns how
    /// many deltas were folded; 0 when another replica holds the job.
    pub async fn compact_user_counts(&self) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let got: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
            .bind(COMPACT_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !got {
            return Ok(0);
        }
        let folded: i64 = sqlx::query_scalar(
            "with d as (delete from app_user_count_delta returning app_id, delta), \
                  s as (select app_id, sum(delta)::bigint as delta, count(*) as n from d group by app_id), \
                  u as (insert into app_user_count (app_id, live) select app_id, delta from s \
                        on conflict (app_id) do update set live = app_user_count.live + excluded.live) \
             select coalesce(sum(n), 0)::bigint from s",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(u64::try_from(folded).unwrap_or_default())
    }
}
