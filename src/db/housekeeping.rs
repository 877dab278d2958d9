//! Background upkeep of what the writes leave for later so that they do not serialise
//! on one row (issue #13): the live-user counter's deltas are folded into the per-app
//! total, and committed audit records are sealed into their app's hash chain; tables
//! an IdP's first push has just filled get their planner statistics.

use super::Store;
use crate::error::Result;

/// Advisory lock key of the counter compaction (any fixed number unique to this job):
/// one replica compacts at a time, the others skip.
const COMPACT_LOCK: i64 = 0x5c1b_0002;

/// Advisory lock key of the audit sealer: one replica links records at a time (two
/// would both wait on the same chain heads; the lock lets the second skip instead).
const SEAL_LOCK: i64 = 0x5c1b_0003;

/// Advisory lock key of the statistics refresh: one replica analyzes at a time.
const ANALYZE_LOCK: i64 = 0x5c1b_0004;

/// The tables the SCIM writes fill, whose statistics the list queries' plans use.
/// With the statement that analyzes each (written out: no name is ever spliced into SQL).
const GROWING_TABLES: [(&str, &str); 4] = [
    ("scim_user", "analyze scim_user"),
    ("scim_group", "analyze scim_group"),
    ("group_member", "analyze group_member"),
    ("task", "analyze task"),
];

/// Records linked per transaction: a burst's backlog is sealed in short transactions.
const SEAL_BATCH: i32 = 2_000;

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

    /// Links every committed unsealed audit record into its app's chain (the SQL
    /// function `seal_audit`, in batches of [`SEAL_BATCH`], one transaction each, one
    /// connection held at a time). Returns how many were sealed; 0 when another replica
    /// is sealing right now (the housekeeper's pass: that replica seals them).
    pub async fn seal_audit(&self) -> Result<u64> {
        self.seal(false).await
    }

    /// Like [`Store::seal_audit`], but waits for a sealing pass running elsewhere instead
    /// of leaving it the work: that pass may have started before the caller's records
    /// committed, so afterwards every record committed before this call is sealed. For
    /// readers that promise a whole chain (verify, export). Waits at most 5 s.
    pub async fn seal_audit_all(&self) -> Result<u64> {
        self.seal(true).await
    }

    async fn seal(&self, wait: bool) -> Result<u64> {
        let mut sealed = 0u64;
        loop {
            let mut tx = self.pool.begin().await?;
            if wait {
                // Bounded: a pass that holds the lock longer than this is stuck (its
                // process paused or gone), and a reader must answer rather than hang;
                // what it leaves unsealed the next housekeeper pass seals.
                sqlx::query("set local lock_timeout = '5s'")
                    .execute(&mut *tx)
                    .await?;
                let locked = sqlx::query("select pg_advisory_xact_lock($1)")
                    .bind(SEAL_LOCK)
                    .execute(&mut *tx)
                    .await;
                match locked {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                        tracing::warn!(
                            "another sealing pass held the audit chain for 5 s; reading the chain as sealed so far"
                        );
                        return Ok(sealed);
                    }
                    Err(e) => return Err(e.into()),
                }
                sqlx::query("set local lock_timeout = 0")
                    .execute(&mut *tx)
                    .await?;
            } else {
                let got: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
                    .bind(SEAL_LOCK)
                    .fetch_one(&mut *tx)
                    .await?;
                if !got {
                    return Ok(sealed);
                }
            }
            let n: i32 = sqlx::query_scalar("select seal_audit($1)")
                .bind(SEAL_BATCH)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            sealed += u64::try_from(n).unwrap_or_default();
            if n < SEAL_BATCH {
                return Ok(sealed);
            }
        }
    }

    /// Runs `ANALYZE` on each of the tables the SCIM writes fill ([`GROWING_TABLES`])
    /// that has changed by at least `min_rows` rows and by half its size since it was
    /// last analyzed (or never was). Returns the tables analyzed; none when another
    /// replica holds the job.
    ///
    /// Issue #13: reads by id and by name are planned by key whatever the statistics
    /// say, but an `offset` deep into a list (a random `startIndex` page) is planned
    /// from them, and right after an IdP's first push a table has none until
    /// autovacuum's next round (a minute by default, never where it is off). Half the
    /// size again (autovacuum's default is a tenth) keeps a bulk fill of 100k rows to a
    /// dozen analyses, each a sample of at most 30 000 rows (`default_statistics_target`).
    pub async fn analyze_grown_tables(&self, min_rows: i64) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        let got: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
            .bind(ANALYZE_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !got {
            return Ok(Vec::new());
        }
        let grown: Vec<String> = sqlx::query_scalar(
            "select relname::text from pg_stat_user_tables \
              where schemaname = current_schema() and relname = any($1) \
                and n_mod_since_analyze >= greatest($2, n_live_tup / 2) order by relname",
        )
        .bind(GROWING_TABLES.map(|(t, _)| t).as_slice())
        .bind(min_rows)
        .fetch_all(&mut *tx)
        .await?;
        for (table, analyze) in GROWING_TABLES {
            if grown.iter().any(|g| g == table) {
                // Unnamed (not kept prepared): it runs rarely.
                sqlx::query(analyze)
                    .persistent(false)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(grown)
    }
}
