//! The HTTP surfaces: SCIM (`/scim/v2`, for IdPs), the task API (`/api/v1`, for agents
//! and admins), the admin web UI (`/ui`, for people) and health probes. Handlers are
//! thin: parse, call the store, render.
//! Each surface maps errors to its own wire format exactly once.

pub mod api;
pub mod attachment;
pub mod auth;
pub mod detach;
pub mod health;
mod home;
pub mod host;
pub mod metrics;
pub mod nul;
pub mod oauth;
pub mod origin;
pub mod ratelimit;
pub mod scim;
pub mod surface;
pub mod web;

use std::sync::Arc;

use axum::http::{HeaderName, Method, Request};
use axum::routing::MethodRouter;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::db::Store;
use surface::{refuse, Refusal};

/// Shared state of every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The store (all SQL).
    pub store: Store,
    /// Server settings.
    pub config: Arc<Config>,
    /// Verified bearer tokens.
    pub tokens: Arc<auth::TokenCache>,
    /// Wakes long-polling claims.
    pub notifier: Arc<crate::queue::Notifier>,
    /// Request counts and latencies for `/metrics`.
    pub metrics: Arc<metrics::HttpMetrics>,
    /// The key of OAuth access tokens.
    pub oauth: Arc<auth::jwt::Keys>,
    /// Rate limits (per credential, per client address, the token endpoint).
    pub limits: Arc<ratelimit::Limits>,
    /// The ticket bridge's worker (its secrets, HTTP client), for the inbound webhook
    /// and the bridge's configuration.
    pub tickets: Arc<crate::tickets::sync::Syncer>,
}

/// One route: path, method and handler. The router and the route table (checked
/// against openapi.yaml by a test) are both built from this one list.
pub type Route = (&'static str, Method, MethodRouter<AppState>);

/// Every route the server answers.
pub fn routes() -> Vec<Route> {
    [
        health::routes(),
        home::routes(),
        scim::routes(),
        api::routes(),
        oauth::routes(),
        web::routes(),
    ]
    .concat()
}

/// `(METHOD, path)` of every route, for the OpenAPI check.
pub fn route_table() -> Vec<(String, String)> {
    routes()
        .into_iter()
        .map(|(path, method, _)| (method.to_string(), path.to_string()))
        .collect()
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the full application: routes, fallbacks and the middleware stack.
pub fn router(state: AppState) -> Router {
    let mut by_path: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for (path, _, handler) in routes() {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(handler),
            None => by_path.push((path, handler)),
        }
    }
    let mut router = Router::new();
    for (path, handler) in by_path {
        let handler =
            handler.fallback(move || async move { refuse(path, Refusal::MethodNotAllowed) });
        router = router.route(path, handler);
    }
    let timeout = state.config.request_timeout();
    // See `detach`: on a one-connection store no handler is dropped mid-query.
    let detached = state.store.one_connection();
    let snapshot_timeout = std::time::Duration::from_secs(state.config.snapshot_timeout_secs);
    let metrics_state = state.clone();
    let allowed_hosts = std::sync::Arc::new(state.config.allowed_hosts.clone());
    // The NUL check reads bodies up to the largest any route takes (a completion with
    // its attachments, base64-encoded).
    let max_body = state.config.body_limit.max(api::LARGEST_BODY);
    router
        .fallback(fallback)
        .layer(axum::extract::DefaultBodyLimit::max(state.config.body_limit))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                        let matched = req
                            .extensions()
                            .get::<axum::extract::MatchedPath>()
                            .map(|m| m.as_str().to_owned())
                            .unwrap_or_default();
                        let request_id = req
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        tracing::info_span!("request", method = %req.method(), path = %matched, request_id)
                    }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                // Before anything reads the request: the Host it names decides links.
                .layer(axum::middleware::from_fn(move |req, next| {
                    host::check_host(allowed_hosts.clone(), req, next)
                }))
                .layer(axum::middleware::from_fn_with_state(
                    metrics_state,
                    metrics::track,
                ))
                .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next| {
                    // Snapshot uploads carry a whole user list: their own, longer bound.
                    let t = if is_snapshot_upload(req.uri().path()) {
                        snapshot_timeout
                    } else {
                        timeout
                    };
                    deadline(t, detached, req, next)
                }))
                .layer(axum::middleware::from_fn(move |req, next| {
                    detach::run(detached, req, next)
                }))
                .layer(axum::middleware::from_fn(move |req, next| {
                    nul::refuse_nul(max_body, req, next)
                })),
        )
}

/// Whether a path takes a snapshot upload or applies one (long-running by design).
fn is_snapshot_upload(path: &str) -> bool {
    path.starts_with("/api/v1/snapshots") || path.starts_with("/ui/snapshots")
}

/// Bounds every request: past the deadline the client gets a 503 with `Retry-After`, in
/// the error format of the surface it called. The handler is dropped (its transaction
/// rolls back, so nothing half-done commits), unless it is `detached` (see `detach`): then
/// it goes on to its end and the answer says so.
async fn deadline(
    timeout: std::time::Duration,
    detached: bool,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path().to_owned();
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(?timeout, "request timed out");
            refuse(
                &path,
                Refusal::Timeout {
                    finishing: detached,
                },
            )
        }
    }
}

async fn fallback(uri: axum::http::Uri) -> axum::response::Response {
    refuse(
        uri.path(),
        Refusal::NoRoute {
            path: uri.path().to_owned(),
        },
    )
}
