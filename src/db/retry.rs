//! The backstop against transaction conflicts (issue #13): a write whose transaction
//! Postgres aborted with `40P01 deadlock_detected` or `40001 serialization_failure` was
//! rolled back whole, so running it again is safe and is what the client would do
//! anyway. The store does it itself, a bounded number of times, so an IdP's push never
//! sees a 500 (or a 503) for what is only bad timing between two writers. The lock order
//! (see [`super`]) makes deadlocks impossible between the server's own writes; this is
//! for what that order cannot cover (an operator's SQL, a future write that breaks it).

use std::future::Future;
use std::time::Duration;

use rand::Rng as _;

use crate::error::{Error, Result};

/// Attempts in all (the first and the retries); the last error is returned after them
/// (a 503 with `Retry-After` on every surface, never a 500).
pub const ATTEMPTS: u32 = 5;

/// Whether the error is a rolled-back transaction conflict worth running again.
pub fn is_conflict(e: &Error) -> bool {
    let (Error::Unavailable(sqlx::Error::Database(d)) | Error::Db(sqlx::Error::Database(d))) = e
    else {
        return false;
    };
    matches!(d.code().as_deref(), Some("40P01" | "40001"))
}

/// Runs `op` (one whole transaction) until it does not fail with a conflict, at most
/// [`ATTEMPTS`] times, sleeping a short random time between attempts so that the two
/// sides of a deadlock do not meet again in step. Each retry is logged at WARN.
pub async fn retrying<T, F, Fut>(what: &'static str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if attempt < ATTEMPTS && is_conflict(&e) => {
                tracing::warn!(operation = what, attempt, error = %e, "transaction conflict, retrying");
                let ms = rand::thread_rng().gen_range(1..=10u64 << attempt);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
