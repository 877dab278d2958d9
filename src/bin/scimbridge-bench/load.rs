//! Driving an operation from concurrent clients and summarising what came back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An operation's result: `Err` carries what went wrong (a non-2xx answer, a SQL error).
pub type OpResult = Result<(), String>;

/// What a scenario's run on one side measured.
#[derive(Default)]
pub struct Outcome {
    /// Operations finished (errors included).
    pub ops: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Wall time of the run.
    pub secs: f64,
    /// Latency of every operation in microseconds, sorted.
    pub lat: Vec<u32>,
    /// The first failure, to print.
    pub first_error: Option<String>,
}

impl Outcome {
    /// Operations per second.
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Latency percentile `p` (0..1) in milliseconds.
    pub fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return 0.0;
        }
        let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
        self.lat[i] as f64 / 1000.0
    }
}

/// Runs `op(n)` for n = 0, 1, … from `workers` clients until `limit` operations or `secs`
/// have passed. `op` returns None when there is nothing left to do (an empty queue),
/// which stops every client.
pub async fn drive<F, Fut>(workers: usize, limit: u64, secs: f64, op: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<OpResult>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (op, next, stop) = (op.clone(), next.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            loop {
                if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= limit {
                    break;
                }
                let t = Instant::now();
                // A bounded wait per operation, so a stuck request cannot outlive the run.
                let r = match tokio::time::timeout(Duration::from_secs(30), op(n)).await {
                    Ok(r) => r,
                    Err(_) => Some(Err("timed out after 30 s".into())),
                };
                let Some(r) = r else {
                    stop.store(true, Ordering::Relaxed);
                    break;
                };
                out.lat
                    .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                out.ops += 1;
                if let Err(e) = r {
                    out.errors += 1;
                    out.first_error.get_or_insert(e);
                }
            }
            out
        }));
    }
    let mut total = Outcome::default();
    for h in handles {
        if let Ok(o) = h.await {
            total.ops += o.ops;
            total.errors += o.errors;
            total.lat.extend(o.lat);
            if total.first_error.is_none() {
                total.first_error = o.first_error;
            }
        }
    }
    total.secs = start.elapsed().as_secs_f64();
    total.lat.sort_unstable();
    total
}
