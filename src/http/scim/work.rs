//! Document work off the async workers (issue #14 item 3): applying a PATCH, normalising
//! a body and rendering a resource are plain CPU work on a JSON document. Run on a
//! runtime worker, a large one stalls every request scheduled there (`/healthz`
//! included), and the request deadline cannot interrupt it since it never yields. Here
//! it runs on tokio's blocking pool, a bounded number of jobs at a time: a flood of heavy
//! requests queues (and the queue is bounded by the request deadline) instead of
//! starting hundreds of threads on a few cores.
//!
//! Small documents stay on the worker ([`document_work`]): handing a job to the blocking
//! pool and back costs two thread wake-ups, which on a loaded 2-core machine cost more
//! than rendering a typical user (issue #13: the hand-off was a tenth of the server's CPU
//! in a GET by id). The JSON of a read is decoded from Postgres on the worker anyway.

use tokio::sync::Semaphore;

use crate::scim::ScimError;

/// Document jobs running at once; the others wait their turn (asynchronously, so the
/// request deadline still applies while they wait).
const JOBS_AT_ONCE: usize = 8;

static JOBS: Semaphore = Semaphore::const_new(JOBS_AT_ONCE);

/// Documents of at most this many JSON values (see [`crate::scim::resource::value_count`])
/// are worked on in place. A User with a few dozen attributes, emails and groups has
/// 30-80; rendering one takes microseconds. The bounds of issue #14 (at most
/// `--max-attribute-values` values per attribute, `--patch-max-operations`) keep what
/// runs in place far from the seconds a large document took.
pub(super) const IN_PLACE_VALUES: usize = 256;

/// The size of a document as [`document_work`] weighs it (counted no further than needed).
pub(super) fn size(v: &serde_json::Value) -> usize {
    crate::scim::resource::value_count(v, IN_PLACE_VALUES + 1)
}

/// Runs `job` in place when `values` (its document's size) is small, else on the
/// blocking pool ([`off_runtime`]).
pub(super) async fn document_work<T, F>(values: usize, job: F) -> Result<T, ScimError>
where
    F: FnOnce() -> Result<T, ScimError> + Send + 'static,
    T: Send + 'static,
{
    if values <= IN_PLACE_VALUES {
        job()
    } else {
        off_runtime(job).await
    }
}

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
