//! On a one-connection store (the embedded one) a handler runs to its end even when its
//! caller stops waiting: the client hung up, or the request deadline answered 503 first.
//!
//! Dropping a handler drops its query mid-conversation with the database. A Postgres
//! server shrugs that off (sqlx tests the connection on release, or replaces it); the
//! embedded engine's proxy does not: the next message on that connection is refused with
//! a reset, the engine stops serving, and every later request waits for a connection
//! that never comes back. So on such a store each handler runs in a task of its own, and
//! the request only waits for it. A handler that waits for something other than the
//! store (a long-polling claim) stops waiting at its next safe point when told by
//! [`Abandoned`].

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::watch;
use tracing::Instrument;

use super::surface::{refuse, Refusal};

/// Request extension: tells a detached handler that nobody will read its answer.
#[derive(Clone, Debug)]
pub struct Abandoned(watch::Receiver<()>);

impl Abandoned {
    /// Resolves once the caller has stopped waiting. Never resolves for a handler that is
    /// not detached: dropping it is what stops it.
    pub async fn wait(mut this: Option<Self>) {
        match this.as_mut() {
            // The only change a receiver ever sees is its sender's drop.
            Some(Abandoned(rx)) => while rx.changed().await.is_ok() {},
            None => std::future::pending().await,
        }
    }
}

/// Runs the rest of the stack detached when `detach` (a one-connection store), inline
/// otherwise.
pub async fn run(detach: bool, mut req: Request, next: Next) -> Response {
    if !detach {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    // Dropped with this future, which is what tells the handler it was abandoned.
    let (caller, rx) = watch::channel(());
    req.extensions_mut().insert(Abandoned(rx));
    let handler = tokio::spawn(next.run(req).instrument(tracing::Span::current()));
    let res = handler.await;
    drop(caller);
    match res {
        Ok(res) => res,
        Err(e) => {
            // A panicking handler: inline, it would have ended the connection without an
            // answer; here it is logged and answered like any internal error.
            tracing::error!(error = %e, "handler panicked");
            refuse(&path, Refusal::Fault)
        }
    }
}
