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
    /// The server is set up wrong (an app names a profile this process was not started
    /// with): a server fault, 500 on every surface, with a message for whoever runs it.
    #[error("server misconfigured: {0}")]
    Misconfigured(String),
    /// The database could not be reached or timed out; the request may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// Anything else from the database: a bug or a broken invariant.
    #[error("database error: {0}")]
    Db(sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            Error::Unavailable(e)
        } else {
            Error::Db(e)
        }
    }
}

/// Whether a database error means "the database is unreachable, going away or too busy
/// right now" (retry later: 503) rather than a bug (500): connection refused, reset or
/// closed mid-query, pool timeouts, a server shutting down or refusing connections, a
/// query cancelled by a timeout.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // The connection died in the middle of a message (reset, EOF).
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01..57P03: admin/crash shutdown, cannot
            // connect now; 53300: too many connections; 57014: query cancelled (timeout);
            // 40001/40P01: serialization failure, deadlock (the transaction was rolled
            // back whole; the same request can simply be sent again).
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "57014" | "40001" | "40P01"
                )
        }),
        _ => false,
    }
}

impl From<crate::limits::TooLong> for Error {
    fn from(e: crate::limits::TooLong) -> Self {
        Error::Invalid {
            code: e.code,
            message: e.message,
        }
    }
}

/// Result alias for store and queue operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_are_unavailable_not_internal() {
        for kind in [
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::UnexpectedEof,
            std::io::ErrorKind::TimedOut,
        ] {
            let e = Error::from(sqlx::Error::Io(std::io::Error::from(kind)));
            assert!(matches!(e, Error::Unavailable(_)), "{kind:?}: {e:?}");
        }
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
        ] {
            assert!(matches!(Error::from(e), Error::Unavailable(_)));
        }
        assert!(matches!(
            Error::from(sqlx::Error::RowNotFound),
            Error::Db(_)
        ));
    }
}
