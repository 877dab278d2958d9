//! The domain error: what can go wrong below the HTTP surfaces (store, queue). Each
//! surface (SCIM, task API) maps it to its own wire format exactly once.

use crate::scim::ScimError;

/// Errors of store and queue operations, named by meaning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The addressed resource or task does not exist in the caller's app.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique value is taken (userName, group displayName).
    #[error("{0}")]
    Uniqueness(String),
    /// The request was understood but refused by SCIM rules (bad PATCH, bad members).
    #[error("{0}")]
    Scim(#[from] ScimError),
    /// An `If-Match` precondition failed (RFC 7644 §3.14): the resource changed.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A task operation that does not fit the task's state or lease.
    #[error("{message}")]
    TaskConflict {
        /// Stable machine-readable code (`task_not_in_progress`, `lease_mismatch`, ...).
        code: &'static str,
        /// What happened and what to do.
        message: String,
    },
    /// A task API request that is malformed (missing completion fields, ...).
    #[error("{message}")]
    Invalid {
        /// Stable machine-readable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The database could not be reached or timed out; the request may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// Anything else from the database: a bug or a broken invariant.
    #[error("database error: {0}")]
    Db(sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Error::Unavailable(e)
            }
            other => Error::Db(other),
        }
    }
}

/// Result alias for store and queue operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
