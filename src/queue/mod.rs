//! The queue as workers see it, beyond single SQL operations: waking long-polling claims
//! when a task may have become claimable (Postgres LISTEN/NOTIFY fanned out in-process),
//! and the SLA sweeper's loop. The transitions themselves are `db::lifecycle`; the
//! completion evidence rules are `reconcile::evidence`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::db::Store;

/// Fans out "tasks of app X may be claimable" to the claims waiting in this process.
#[derive(Debug)]
pub struct Notifier {
    tx: broadcast::Sender<String>,
    /// Becomes true when the server shuts down: waiting claims answer "no task" at once
    /// instead of holding the graceful shutdown for the rest of their wait.
    closed: watch::Sender<bool>,
}

impl Notifier {
    /// A notifier with no listener yet.
    pub fn new() -> Arc<Notifier> {
        let (tx, _) = broadcast::channel(1024);
        Arc::new(Notifier {
            tx,
            closed: watch::channel(false).0,
        })
    }

    /// Receives app ids as their tasks change.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }

    /// Resolves once the server is shutting down (see [`Notifier::close_on`]).
    pub async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = rx.wait_for(|c| *c).await.map(|_| ());
    }

    /// Closes this notifier when `stop` turns true: every waiting claim ends then.
    pub fn close_on(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await.map(|_| ());
            me.closed.send_replace(true);
        });
    }

    /// Listens to the database for as long as the process runs, reconnecting after a
    /// lost connection (a claim still re-checks on its own every few seconds, so a gap
    /// only delays, never loses, work).
    ///
    /// A store with one connection (the embedded store) wakes claims in-process instead
    /// (`db::local_task_wakes`): a LISTEN would hold its only connection forever.
    pub fn spawn_listener(self: &Arc<Self>, store: Store, mut stop: watch::Receiver<bool>) {
        let me = Arc::clone(self);
        if store.wakes_in_process() {
            let mut local = crate::db::local_task_wakes().subscribe();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        got = local.recv() => match got {
                            Ok(app_id) => {
                                let _ = me.tx.send(app_id);
                            }
                            // Missed some: the claims re-check on their own within seconds.
                            Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                    }
                }
            });
            return;
        }
        tokio::spawn(async move {
            loop {
                let tx = me.tx.clone();
                let listen = store.listen_tasks(move |app_id| {
                    // No receiver is fine: nobody is waiting.
                    let _ = tx.send(app_id);
                });
                tokio::select! {
                    _ = stop.changed() => return,
                    r = listen => if let Err(e) = r {
                        tracing::warn!(error = %e, "task notifications interrupted; reconnecting");
                    },
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }
}

/// Sweeps SLAs every `interval` for as long as the process runs. Every replica runs the
/// loop; the store's advisory lock lets one sweep at a time.
pub fn spawn_sweeper(store: Store, interval: Duration, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            match store.sweep().await {
                Ok(r) if r.skipped => tracing::debug!("another replica is sweeping"),
                Ok(r) => {
                    if r.due_soon + r.overdue + r.reminders > 0 {
                        tracing::info!(
                            due_soon = r.due_soon,
                            overdue = r.overdue,
                            reminders = r.reminders,
                            escalated = r.escalated,
                            "SLA sweep"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "SLA sweep failed; retrying next interval"),
            }
        }
    });
}

/// How often the housekeeper runs: audit records are sealed and the live-user deltas
/// folded at this pace (4 times a second: a record is unsealed for well under a second).
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(250);

/// Every how many housekeeping passes the grown tables' statistics are checked (every
/// 5 s at [`HOUSEKEEPING_INTERVAL`]); see `Store::analyze_grown_tables`.
const ANALYZE_EVERY: u64 = 20;

/// A table is analyzed once this many rows (and half its size) changed since its last
/// analysis: small apps' tables are left to autovacuum.
const ANALYZE_MIN_ROWS: i64 = 1_000;

/// Runs the store's housekeeping (issue #13) every `interval` until stopped. Each run
/// takes one connection for one short transaction and returns it before waiting, so a
/// pool of one connection is enough.
pub fn spawn_housekeeper(store: Store, interval: Duration, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut passes = 0u64;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if let Err(e) = store.seal_audit().await {
                tracing::warn!(error = %e, "audit sealing failed; retrying next interval");
            }
            if let Err(e) = store.compact_user_counts().await {
                tracing::warn!(error = %e, "live-user count compaction failed; retrying next interval");
            }
            passes += 1;
            // Not on a one-connection store: an ANALYZE there would hold every request
            // for its whole run.
            if passes.is_multiple_of(ANALYZE_EVERY) && !store.one_connection() {
                match store.analyze_grown_tables(ANALYZE_MIN_ROWS).await {
                    Ok(t) if !t.is_empty() => {
                        tracing::info!(tables = ?t, "planner statistics refreshed after bulk writes")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshing planner statistics failed; retrying later")
                    }
                }
            }
        }
    });
}
