//! Document work off the async workers (issue #14 item 3): applying a PATCH, normalising
//! a body and rendering a resource are plain CPU work on a JSON document. Run on a
//! runtime worker, a large one stalls every request scheduled there (`/healthz`
//! included), and the request deadline cannot interrupt it since it never yields. Here
//! it runs on tokio's blocking pool, a bounded number of jobs at a time: a flood of heavy
//! requests queues (and the queue is bounded by the request deadline) instead of
//! starting hundreds of threads on a few cores.

use tokio::sync::Semaphore;

use crate::scim::ScimError;

/// Document jobs running at once; the others wait their turn (asynchronously, so the
/// request deadline still applies while they wait).
const JOBS_AT_ONCE: usize = 8;

static JOBS: Semaphore = Semaphore::const_new(JOBS_AT_ONCE);

/// Runs `job` on the blocking pool and returns its result.
pub(super) async fn off_runtime<T, F>(job: F) -> Result<T, ScimError>
where
    F: FnOnce() -> Result<T, ScimError> + Send + 'static,
    T: Send + 'static,
{
    // The semaphore is never closed, so acquiring only waits.
    let permit = JOBS.acquire().await.map_err(|_| internal())?;
    let result = tokio::task::spawn_blocking(move || {
        let _held = permit;
        job()
    })
    .await;
    result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "document work panicked");
        Err(internal())
    })
}

fn internal() -> ScimError {
    ScimError {
        status: 500,
        scim_type: None,
        detail: "internal error; quote the X-Request-Id response header when reporting it".into(),
    }
}
