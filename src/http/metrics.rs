//! Prometheus metrics: request counts and latency by route, and queue, outbox and pool
//! gauges read at scrape time.
//!
//! Hand-written text exposition format (version 0.0.4) rather than the `metrics` +
//! `metrics-exporter-prometheus` crates: four metric families need ~150 lines, no
//! global recorder (tests run several apps in one process, and a process-wide static
//! would mix their numbers), and no new dependency tree to build and audit.
//!
//! `/metrics` is served unauthenticated on its own listener (`--metrics-bind`, off by
//! default), never on the public port: Prometheus scrapes it from inside the network,
//! and the numbers span every app, which no app's token may see (a token belongs to one
//! app and sees nothing of any other).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One (method, route, status) series.
#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum: f64,
    /// Observations at or below each bucket bound (not cumulative; summed on render).
    buckets: [u64; BUCKETS.len()],
}

/// Request counters and latency histograms of this process.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    // std Mutex: held only to update a few numbers, never across an .await.
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl HttpMetrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let s = series
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        s.count += 1;
        s.sum += seconds;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            s.buckets[i] += 1;
        }
    }

    fn render(&self, out: &mut String) {
        let series = match self.series.lock() {
            Ok(s) => s.clone(),
            Err(_) => return,
        };
        out.push_str("# HELP scimbridge_http_requests_total HTTP requests answered, by method, matched route and status.\n");
        out.push_str("# TYPE scimbridge_http_requests_total counter\n");
        for ((method, route, status), s) in &series {
            let _ = writeln!(
                out,
                "scimbridge_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                s.count
            );
        }
        out.push_str("# HELP scimbridge_http_request_duration_seconds Time to answer, by method, matched route and status.\n");
        out.push_str("# TYPE scimbridge_http_request_duration_seconds histogram\n");
        for ((method, route, status), s) in &series {
            let labels = format!(
                "method=\"{method}\",route=\"{}\",status=\"{status}\"",
                escape(route)
            );
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "scimbridge_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "scimbridge_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "scimbridge_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "scimbridge_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
    }
}

/// A label value with `\`, `"` and newlines escaped (exposition format).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The middleware: times each request and counts it under its matched route (the path
/// template, so ids never become labels; `unmatched` for 404s of unknown paths).
pub async fn track(state: State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let res = next.run(req).await;
    state.metrics.observe(
        &method,
        &route,
        res.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    res
}

/// The router of the metrics listener: `GET /metrics` only.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(state)
}

async fn scrape(State(s): State<AppState>) -> Response {
    let mut out = String::new();
    s.metrics.render(&mut out);
    match s.store.metrics().await {
        Ok(m) => {
            out.push_str("# HELP scimbridge_tasks Unfinished tasks, by app, state and kind.\n");
            out.push_str("# TYPE scimbridge_tasks gauge\n");
            for t in &m.tasks {
                let _ = writeln!(
                    out,
                    "scimbridge_tasks{{app=\"{}\",state=\"{}\",kind=\"{}\"}} {}",
                    escape(&t.app_id),
                    t.state.as_str(),
                    t.kind.as_str(),
                    t.count
                );
            }
            out.push_str("# HELP scimbridge_task_oldest_open_age_seconds Age of the oldest task not yet started (open, awaiting approval or held), by app.\n");
            out.push_str("# TYPE scimbridge_task_oldest_open_age_seconds gauge\n");
            for o in &m.oldest_open {
                let _ = writeln!(
                    out,
                    "scimbridge_task_oldest_open_age_seconds{{app=\"{}\"}} {}",
                    escape(&o.app_id),
                    o.age_seconds
                );
            }
            out.push_str("# HELP scimbridge_outbox_pending_deliveries Webhook deliveries waiting to be sent.\n");
            out.push_str("# TYPE scimbridge_outbox_pending_deliveries gauge\n");
            let _ = writeln!(
                out,
                "scimbridge_outbox_pending_deliveries {}",
                m.pending_deliveries
            );
            out.push_str(
                "# HELP scimbridge_scrape_database_ok 1 when the scrape could read the database.\n",
            );
            out.push_str("# TYPE scimbridge_scrape_database_ok gauge\n");
            out.push_str("scimbridge_scrape_database_ok 1\n");
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read the database");
            out.push_str("# TYPE scimbridge_scrape_database_ok gauge\n");
            out.push_str("scimbridge_scrape_database_ok 0\n");
        }
    }
    let pool = s.store.pool();
    out.push_str(
        "# HELP scimbridge_db_pool_connections Database connections of this process, by state.\n",
    );
    out.push_str("# TYPE scimbridge_db_pool_connections gauge\n");
    let (size, idle) = (pool.size(), pool.num_idle() as u32);
    let _ = writeln!(
        out,
        "scimbridge_db_pool_connections{{state=\"idle\"}} {idle}"
    );
    let _ = writeln!(
        out,
        "scimbridge_db_pool_connections{{state=\"in_use\"}} {}",
        size.saturating_sub(idle)
    );
    out.push_str(
        "# HELP scimbridge_db_pool_max_connections Largest pool size (--db-max-connections).\n",
    );
    out.push_str("# TYPE scimbridge_db_pool_max_connections gauge\n");
    let _ = writeln!(
        out,
        "scimbridge_db_pool_max_connections {}",
        pool.options().get_max_connections()
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
