//! The queue as workers see it, beyond single SQL operations: waking long-polling claims
//! when a task may have become claimable (Postgres LISTEN/NOTIFY fanned out in-process),
//! and checking completion evidence against what the task asks for.

pub mod evidence;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::db::Store;

/// Fans out "tasks of app X may be claimable" to the claims waiting in this process.
#[derive(Debug)]
pub struct Notifier {
    tx: broadcast::Sender<String>,
}

impl Notifier {
    /// A notifier with no listener yet.
    pub fn new() -> Arc<Notifier> {
        let (tx, _) = broadcast::channel(1024);
        Arc::new(Notifier { tx })
    }

    /// Receives app ids as their tasks change.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }

    /// Listens to the database for as long as the process runs, reconnecting after a
    /// lost connection (a claim still re-checks on its own every few seconds, so a gap
    /// only delays, never loses, work).
    pub fn spawn_listener(self: &Arc<Self>, store: Store) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let tx = me.tx.clone();
                if let Err(e) = store
                    .listen_tasks(move |app_id| {
                        // No receiver is fine: nobody is waiting.
                        let _ = tx.send(app_id);
                    })
                    .await
                {
                    tracing::warn!(error = %e, "task notifications interrupted; reconnecting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}
