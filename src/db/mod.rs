//! All SQL. The rest of the crate calls [`Store`]'s operations, each of which is one
//! transaction: a SCIM write, its derived task change and its audit record commit
//! together or not at all, so a crash after a 2xx answer loses no accepted change and
//! no task exists without the change and the record that explain it.
//!
//! Queries are runtime-checked `sqlx::query` calls with bound parameters only; SCIM
//! filters become SQL in [`filter`] through an exhaustive mapping of schema attributes,
//! never by pasting client text.
//!
//! # Lock order (issue #13)
//!
//! Every write takes its row locks in this one order, so two writes can wait for each
//! other but never in a cycle (docs/operations.md, "Concurrency"):
//!
//! 1. the batch or snapshot row a decision works on (`lifecycle::decide`, `snapshots`);
//! 2. the group row (`groups::lock`), for group writes;
//! 3. subjects: `scim_user` rows, several always in `user_id` order in one statement
//!    (`groups::rederive`, `verify::lock`, `lifecycle::decide`); a task operation locks
//!    its subject before the task (`lifecycle::lock_task`);
//! 4. task rows (derivation, claims and the SLA sweep with `skip locked`); a change of a
//!    task's state updates its subject's `open_task_id` (trigger `task_open_task`), a
//!    row the write already holds by step 3.
//!
//! No write locks a row shared by the whole app (issue #13): the live-user counter takes
//! inserted deltas (`app_user_count_delta`), and audit records are inserted unsealed and
//! linked into the chain later by the sealer ([`Store::seal_audit`], which alone takes
//! `audit_head`).
//!
//! Whatever this order cannot rule out (an operator's SQL holding rows, a future write
//! that breaks it) is caught by [`retry`]: a transaction Postgres aborts with `40P01` or
//! `40001` is run again a bounded number of times, never answered 500.

#[macro_use]
mod states;

pub mod apps;
pub mod audit;
pub mod batches;
pub mod board;
mod derive;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod filter;
pub mod findings;
pub mod groups;
pub mod housekeeping;
pub mod lifecycle;
pub mod metrics;
pub mod oauth;
pub mod outbox;
pub mod reports;
pub mod retry;
pub mod sessions;
pub mod snapshots;
pub mod tasks;
pub mod tickets;
pub mod tokens;
pub mod transfer;
pub mod users;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::reconcile::Profiles;

/// Embedded migrations (`migrations/`), run by `scimbridge migrate` and at `serve` start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The Postgres-backed store.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    /// The app profiles task derivation uses, looked up by each app's `profile` key.
    profiles: Arc<Profiles>,
    /// Where this process's startIndex walks of unfiltered user lists left off.
    walks: Arc<filter::WalkHints>,
}

/// Ends a transaction with the outcome of its work: commits it after success, and
/// after a failure rolls it back at once, so the row locks it took are gone before the
/// caller answers. Dropped instead, a transaction's rollback is only queued on its
/// connection, and sqlx sends it when the connection goes back to the pool, from a task
/// of its own: a client acting on the answer at once (an agent claiming right after a
/// 409 on a completion) could find the rows still locked, and the claim's `SKIP LOCKED`
/// passed them by.
pub(crate) async fn settle<T>(
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    outcome: crate::error::Result<T>,
) -> crate::error::Result<T> {
    match outcome {
        Ok(v) => {
            tx.commit().await?;
            Ok(v)
        }
        Err(e) => {
            if let Err(rb) = tx.rollback().await {
                tracing::warn!(error = %rb, "rolling back a failed transaction failed; its connection is dropped");
            }
            Err(e)
        }
    }
}

/// Connections unused for longer than this are checked with a round trip before a
/// request gets one; see [`pool_options`].
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The pool options of a Postgres server's pool. sqlx checks every connection with a
/// round trip each time it leaves the pool, and again when it comes back: two round
/// trips around a one-statement read, which cost the server and Postgres about as much
/// as the read (issue #13). The check on the way back stays (sqlx always makes it); the
/// check on the way out is made only for a connection idle for longer than
/// [`CHECK_IDLE_AFTER`], as HikariCP's `aliveBypassWindowMs` does: a connection that
/// answered a moment ago, and was checked when it came back, is alive. One that has
/// died since (a Postgres restart within that second) fails its request, as it would
/// have failed the check, and is dropped from the pool.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > CHECK_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

impl Store {
    /// Wraps an existing pool (tests pass their per-test database's pool), with the
    /// built-in profiles only.
    pub fn new(pool: PgPool) -> Store {
        Store::with_profiles(pool, Arc::new(Profiles::builtin()))
    }

    /// Wraps an existing pool with the given profiles (built-ins plus `--profiles-dir`).
    pub fn with_profiles(pool: PgPool, profiles: Arc<Profiles>) -> Store {
        Store {
            pool,
            profiles,
            walks: Arc::default(),
        }
    }

    /// Connects lazily: the server starts even while Postgres is still coming up, and
    /// `/readyz` says when it is reachable.
    pub fn connect(url: &str, max_connections: u32) -> Result<Store, sqlx::Error> {
        let options: PgConnectOptions = url.parse()?;
        let pool = pool_options()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(Store::new(pool))
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.pool).await
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("select 1").execute(&self.pool).await.is_ok()
    }

    /// Runs `on(app_id)` for every task notification until the connection fails.
    pub async fn listen_tasks(&self, on: impl Fn(String)) -> Result<(), sqlx::Error> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(TASKS_CHANNEL).await?;
        loop {
            let n = listener.recv().await?;
            on(n.payload().to_owned());
        }
    }

    /// Whether task wake-ups must stay in this process ([`local_task_wakes`]) instead of
    /// LISTEN/NOTIFY: a pool of one connection (the embedded store's) cannot spare one
    /// for a listener, which would hold it forever and starve every query.
    pub fn wakes_in_process(&self) -> bool {
        self.one_connection()
    }

    /// Whether the pool has a single connection (the embedded store's): nothing may hold
    /// it while waiting for something else that needs the store, and no query may be
    /// dropped half-way (`http::detach`).
    pub fn one_connection(&self) -> bool {
        self.pool.options().get_max_connections() <= 1
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The governance rules (SLAs, approvals, mass-change guard) of a profile.
    pub fn governance(&self, profile_key: &str) -> crate::reconcile::Governance {
        self.profiles
            .get(profile_key)
            .map(|p| p.governance.clone())
            .unwrap_or_default()
    }

    /// The app profiles this store derives tasks with.
    pub fn profiles(&self) -> &Arc<Profiles> {
        &self.profiles
    }
}

/// LISTEN/NOTIFY channel that says "a task of this app may have become claimable"; the
/// payload is the app id. Sent in the transaction of the change, so it is delivered only
/// if the change commits.
pub const TASKS_CHANNEL: &str = "scimbridge_tasks";

/// Task wake-ups within this process, for stores whose pool has one connection
/// ([`Store::wakes_in_process`]). Every `pg_notify` of [`TASKS_CHANNEL`] also sends here.
///
/// It is sent before the transaction commits, which is early only in appearance: the
/// sender holds the pool's one connection until it commits or rolls back, so a claim
/// woken by it gets the connection, and looks for work, only after that. (A rolled-back
/// change wakes a claim that finds nothing and waits again.) Stores with more
/// connections use LISTEN/NOTIFY and do not read this channel.
pub fn local_task_wakes() -> &'static tokio::sync::broadcast::Sender<String> {
    static WAKES: std::sync::OnceLock<tokio::sync::broadcast::Sender<String>> =
        std::sync::OnceLock::new();
    WAKES.get_or_init(|| tokio::sync::broadcast::channel(1024).0)
}

fn wake_locally(app_id: &str) {
    // No receiver is fine: nobody is waiting, or wake-ups go through Postgres.
    let _ = local_task_wakes().send(app_id.to_owned());
}

async fn notify_tasks(conn: &mut sqlx::PgConnection, app_id: &str) -> crate::error::Result<()> {
    wake_locally(app_id);
    sqlx::query("select pg_notify($1, $2)")
        .bind(TASKS_CHANNEL)
        .bind(app_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Checks an `If-Match` precondition (RFC 7644 §3.14): `None` means no header or `*`.
fn check_version(if_match: Option<&[i64]>, version: i64) -> crate::error::Result<()> {
    match if_match {
        Some(versions) if !versions.contains(&version) => {
            Err(crate::error::Error::PreconditionFailed(format!(
                "the resource is at version W/\"{version}\"; re-read it and retry"
            )))
        }
        _ => Ok(()),
    }
}

/// Whether a database error is the violation of the named unique index.
fn is_unique_violation(e: &sqlx::Error, constraint: &str) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.constraint() == Some(constraint))
}

/// RFC 3339 with milliseconds and `Z`, as SCIM `dateTime` (RFC 7643 §2.3.5).
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
