//! `scimbridge agent`: works the queue with a handler program.
//!
//! N workers each long-poll `POST /tasks/claim`, run the handler once per task (see
//! [`handler`] for the contract), extend the lease while it runs (every lease/3) and
//! record the outcome with `POST /tasks/{id}/complete`. Each completion carries the lease
//! id as its Idempotency-Key and is resent on lost connections and 5xx answers, so it is
//! recorded exactly once even when an answer is lost.
//!
//! Shutdown (SIGTERM, SIGINT): no new claims; running handlers get `--grace-seconds`
//! to finish and are recorded as usual; those still running then are stopped and their
//! tasks released to the queue. A second signal skips the rest of the grace period. The
//! agent exits 0 once every worker is done.

pub mod handler;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::client::{Backoff, Claim, Client, ClientError, Connection, Task};
use handler::Handler;

/// Longest long poll the server allows.
const MAX_WAIT: u64 = 60;
/// How long a completion is resent while the server cannot be reached. Past this the
/// task's lease lapses and the task is handed out again, so handlers should be safe to
/// run twice for the same task.
const COMPLETE_RETRY_FOR: Duration = Duration::from_secs(600);
/// How long a release (after a stopped handler) is resent.
const RELEASE_RETRY_FOR: Duration = Duration::from_secs(30);

/// Settings of `scimbridge agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Server URL and token (an agent token).
    #[command(flatten)]
    pub conn: Connection,
    /// The handler program run once per task (task JSON on stdin; see README.md).
    #[arg(long, value_name = "PROGRAM")]
    pub exec: PathBuf,
    /// Only claim these task kinds (comma-separated), e.g. create_account,remove.
    #[arg(long, value_delimiter = ',', env = "SCIMBRIDGE_AGENT_KINDS")]
    pub kinds: Vec<String>,
    /// How many tasks to work at once (one handler process each).
    #[arg(long, default_value_t = 1, env = "SCIMBRIDGE_AGENT_CONCURRENCY")]
    pub concurrency: usize,
    /// Lease of a claimed task; the agent heartbeats every third of it.
    #[arg(long, default_value_t = 300, env = "SCIMBRIDGE_AGENT_LEASE_SECONDS")]
    pub lease_seconds: u64,
    /// How long one claim waits for a task to appear (long poll, at most 60).
    #[arg(long, default_value_t = 30, env = "SCIMBRIDGE_AGENT_WAIT")]
    pub wait: u64,
    /// Longest a handler may run before it is stopped and its task failed (0: no limit).
    #[arg(long, default_value_t = 900, env = "SCIMBRIDGE_AGENT_TIMEOUT")]
    pub timeout: u64,
    /// On SIGTERM/SIGINT, how long running handlers may take to finish before they are
    /// stopped and their tasks released.
    #[arg(long, default_value_t = 30, env = "SCIMBRIDGE_AGENT_GRACE_SECONDS")]
    pub grace_seconds: u64,
}

/// Where the agent is in its life; workers watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Claiming and working tasks.
    Run,
    /// Shutting down: no new claims; running handlers may finish.
    Drain,
    /// The grace period is over: stop handlers and release their tasks.
    Kill,
}

/// What every worker shares.
struct Shared {
    client: Client,
    handler: Handler,
    claim: Claim,
    lease: Duration,
}

impl AgentArgs {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=256).contains(&self.concurrency),
            "--concurrency must be between 1 and 256"
        );
        anyhow::ensure!(
            (10..=86_400).contains(&self.lease_seconds),
            "--lease-seconds must be between 10 and 86400"
        );
        anyhow::ensure!(
            self.wait <= MAX_WAIT,
            "--wait must be at most {MAX_WAIT} seconds"
        );
        let p = &self.exec;
        // A bare name is looked up in PATH when run; a path must exist now, so a typo
        // is reported at start instead of failing every task.
        if p.components().count() > 1 {
            anyhow::ensure!(p.is_file(), "--exec {}: no such file", p.display());
        }
        Ok(())
    }
}

/// Runs the agent until SIGTERM/SIGINT (then drains) or a fatal error (bad token).
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    args.check()?;
    let client = args.conn.client()?;
    // Fails fast with the API's message on a wrong URL, token or role.
    client.task_counts().await?;
    let kinds: Vec<String> = args
        .kinds
        .iter()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    let shared = Arc::new(Shared {
        client,
        handler: Handler {
            program: args.exec.clone(),
            timeout: (args.timeout > 0).then(|| Duration::from_secs(args.timeout)),
        },
        claim: Claim {
            lease_seconds: Some(args.lease_seconds),
            wait: Some(args.wait),
            kinds: kinds.clone(),
        },
        lease: Duration::from_secs(args.lease_seconds),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let phase_tx = Arc::new(phase_tx);
    tokio::spawn(watch_signals(
        Arc::clone(&phase_tx),
        Duration::from_secs(args.grace_seconds),
    ));
    tracing::info!(
        url = shared.client.api_url(),
        handler = %args.exec.display(),
        concurrency = args.concurrency,
        kinds = ?kinds,
        lease_seconds = args.lease_seconds,
        "agent started"
    );

    let mut workers = JoinSet::new();
    for n in 1..=args.concurrency {
        workers.spawn(worker(n, Arc::clone(&shared), phase_rx.clone()));
    }
    let mut fatal = None;
    while let Some(done) = workers.join_next().await {
        let err = match done {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => anyhow::Error::from(e),
            Err(e) => anyhow::anyhow!("a worker crashed: {e}"),
        };
        // One worker's fatal error (revoked token, …) stops the others' claims too;
        // what they are running still finishes.
        if fatal.is_none() {
            tracing::error!(error = %err, "stopping: no more claims");
            phase_tx.send_if_modified(|p| {
                let change = *p == Phase::Run;
                if change {
                    *p = Phase::Drain;
                }
                change
            });
            fatal = Some(err);
        }
    }
    match fatal {
        Some(e) => Err(e),
        None => {
            tracing::info!("agent stopped");
            Ok(())
        }
    }
}

/// SIGTERM or SIGINT starts the drain and the grace timer; a second one (or the end of
/// the grace period) moves to [`Phase::Kill`].
async fn watch_signals(phase: Arc<watch::Sender<Phase>>, grace: Duration) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the agent gracefully");
            return ctrl_c_only(phase, grace).await;
        }
    };
    let signal = async {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        }
    };
    let name = signal.await;
    tracing::info!(
        signal = name,
        grace_seconds = grace.as_secs(),
        "shutting down: no new claims; running handlers may finish"
    );
    phase.send_if_modified(|p| {
        let change = *p == Phase::Run;
        if change {
            *p = Phase::Drain;
        }
        change
    });
    tokio::select! {
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("grace period over: stopping running handlers and releasing their tasks");
        }
        _ = term.recv() => tracing::warn!("second signal: stopping running handlers now"),
        _ = tokio::signal::ctrl_c() => tracing::warn!("second signal: stopping running handlers now"),
    }
    let _ = phase.send(Phase::Kill);
}

async fn ctrl_c_only(phase: Arc<watch::Sender<Phase>>, grace: Duration) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    let _ = phase.send(Phase::Drain);
    tokio::select! {
        _ = tokio::time::sleep(grace) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = phase.send(Phase::Kill);
}

/// Whether a claim error ends the agent: the request itself is refused (bad token,
/// wrong role, unknown kind) and would be refused forever.
fn is_fatal(e: &ClientError) -> bool {
    match e {
        ClientError::Api { status, .. } => matches!(status, 400 | 401 | 403 | 404),
        ClientError::Config(_) => true,
        ClientError::Unreachable { .. } | ClientError::Protocol { .. } => false,
    }
}

/// One worker: claim, run, record; until the phase leaves [`Phase::Run`].
async fn worker(
    n: usize,
    s: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> Result<(), ClientError> {
    let mut backoff = Backoff::new();
    loop {
        let stopping = *phase.borrow() != Phase::Run;
        if stopping {
            return Ok(());
        }
        // A shutdown drops the waiting claim. The server stops waiting when the
        // connection closes; in the unlikely case it had just claimed a task, that
        // task's lease lapses and it returns to the queue.
        let claimed = tokio::select! {
            r = s.client.claim(&s.claim) => r,
            _ = shutting_down(&mut phase) => return Ok(()),
        };
        match claimed {
            Ok(None) => backoff = Backoff::new(),
            Ok(Some(task)) => {
                backoff = Backoff::new();
                let stopping = *phase.borrow() != Phase::Run;
                if stopping {
                    // Claimed just as the shutdown began: give it straight back.
                    release(&s.client, &task).await;
                    return Ok(());
                }
                work(n, &s, task, &mut phase).await;
            }
            Err(e) if is_fatal(&e) => return Err(e),
            Err(e) => {
                let nap = backoff.pause();
                tracing::warn!(worker = n, error = %e, retry_in_ms = nap.as_millis() as u64, "claim failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(nap) => {}
                    _ = shutting_down(&mut phase) => return Ok(()),
                }
            }
        }
    }
}

/// Resolves once the agent is shutting down (or can no longer be told to).
async fn shutting_down(phase: &mut watch::Receiver<Phase>) {
    // The guard `wait_for` returns is not Send; it must not live across an await.
    let _ = phase.wait_for(|p| *p != Phase::Run).await.map(|_| ());
}

/// Resolves once running handlers must be stopped.
pub(crate) async fn killing(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p == Phase::Kill).await.map(|_| ());
}

/// Works one claimed task: handler, heartbeats, completion (or release on shutdown).
/// Everything it logs, the heartbeats' too, is inside one `agent.job` span with the
/// task's id, app and kind, so a job can be followed in the logs.
#[tracing::instrument(
    name = "agent.job",
    skip_all,
    fields(worker = n, task_id = task.id, app = %task.app, kind = %task.kind)
)]
async fn work(n: usize, s: &Shared, task: Task, phase: &mut watch::Receiver<Phase>) {
    let started = Instant::now();
    let (id, kind) = (task.id, task.kind.clone());
    let Some(lease_id) = task.lease_id.clone() else {
        tracing::error!(
            worker = n,
            task = id,
            "claimed task has no lease_id; leaving it to lapse"
        );
        return;
    };
    tracing::info!(worker = n, task = id, kind = %kind, user = %task.subject.user_name, attempt = task.attempts, "task claimed; running handler");
    let heartbeats = tokio::spawn(
        heartbeat(s.client.clone(), id, lease_id.clone(), s.lease)
            .instrument(tracing::Span::current()),
    );
    let ran = s.handler.run(&task, phase).await;
    heartbeats.abort();
    let ending = ran.ending.to_string();
    let Some(mut completion) = handler::completion(&s.handler.program, ran) else {
        tracing::warn!(worker = n, task = id, kind = %kind, "handler stopped on shutdown; releasing the task");
        release(&s.client, &task).await;
        return;
    };
    completion.lease_id = Some(lease_id.clone());
    let outcome = completion.outcome;
    let mut result = s
        .client
        .complete_with_retry(id, &completion, &lease_id, COMPLETE_RETRY_FOR)
        .await;
    // The handler claimed done but the server refused what it reported (a required
    // field missing, a value not among the choices): record a failure that says why,
    // instead of leaving the task held until its lease lapses.
    if let Err(ClientError::Api {
        status: 400,
        code,
        message,
    }) = &result
    {
        let why = format!(
            "the handler reported {} but the server refused it: {message} ({code})",
            outcome.as_str()
        );
        tracing::warn!(worker = n, task = id, kind = %kind, reason = %why, "recording the task as failed");
        let mut failed = crate::client::Completion::new(crate::client::Outcome::Failed);
        failed.lease_id = Some(lease_id.clone());
        failed.note = Some(match &completion.note {
            Some(note) => format!("{why}\nhandler note: {note}"),
            None => why,
        });
        // A different body under the same key would be answered with the first
        // (refused) one's result; this is a new completion.
        result = s
            .client
            .complete_with_retry(
                id,
                &failed,
                &format!("{lease_id}-failed"),
                COMPLETE_RETRY_FOR,
            )
            .await;
    }
    let ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(t) => {
            tracing::info!(worker = n, task = id, kind = %kind, outcome = %t.state, duration_ms = ms, handler = %ending, "task finished")
        }
        Err(e) => {
            tracing::error!(worker = n, task = id, kind = %kind, outcome = outcome.as_str(), duration_ms = ms, error = %e, "could not record the outcome; the task returns to the queue when its lease lapses")
        }
    }
}

/// Extends the lease every third of its length until aborted. A lost lease (409) ends
/// the heartbeats: the task went to another worker and our completion will be refused.
async fn heartbeat(client: Client, id: i64, lease_id: String, lease: Duration) {
    let every = lease / 3;
    let mut next = tokio::time::Instant::now() + every;
    loop {
        tokio::time::sleep_until(next).await;
        match client
            .heartbeat(id, Some(&lease_id), Some(lease.as_secs()))
            .await
        {
            Ok(t) => {
                tracing::debug!(task = id, lease_expires_at = ?t.lease_expires_at, "lease extended");
                next += every;
            }
            Err(e) if e.status() == Some(409) => {
                tracing::error!(task = id, error = %e, "lost the lease; the handler's result will not be recorded");
                return;
            }
            Err(e) => {
                // Still two more chances before the lease lapses; try again sooner.
                tracing::warn!(task = id, error = %e, "heartbeat failed; retrying");
                next = tokio::time::Instant::now() + (every / 4).max(Duration::from_secs(1));
            }
        }
    }
}

/// Gives a task back to the queue, resending on transient errors for a while.
async fn release(client: &Client, task: &Task) {
    let deadline = Instant::now() + RELEASE_RETRY_FOR;
    let mut backoff = Backoff::new();
    loop {
        match client.release(task.id, task.lease_id.as_deref()).await {
            Ok(t) => {
                tracing::info!(task = task.id, kind = %task.kind, state = %t.state, "task released");
                return;
            }
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                let nap = backoff.pause();
                tracing::warn!(task = task.id, error = %e, "release failed; retrying");
                tokio::time::sleep(nap).await;
            }
            Err(e) => {
                tracing::error!(task = task.id, error = %e, "could not release the task; it returns to the queue when its lease lapses");
                return;
            }
        }
    }
}
