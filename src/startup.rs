//! Building and running the server: bind, serve, shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tower_http::normalize_path::NormalizePath;

use crate::config::Config;
use crate::db::Store;
use crate::http::{self, auth::TokenCache, AppState};

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    app: NormalizePath<axum::Router>,
    stop: Stopper,
    /// Where `/metrics` is served (`--metrics-bind`), if anywhere.
    metrics_addr: Option<SocketAddr>,
    /// Header and idle timeouts, connection cap.
    limits: crate::server::ConnLimits,
}

/// Stops a server and its background work (notification listener, SLA sweeper, webhook
/// deliverers, ticket poller), e.g. when a test ends, so no connection outlives it.
#[derive(Clone, Debug)]
pub struct Stopper(Arc<tokio::sync::watch::Sender<bool>>);

impl Stopper {
    /// Asks everything to stop; in-flight requests finish first.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// A receiver that background loops watch.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.subscribe()
    }

    async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
        // An error means the sender is gone: nobody can stop us any more, so stop.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

impl Application {
    /// Binds `config.bind` (port 0 picks a free port) with the given store.
    pub async fn build(config: Config, store: Store) -> std::io::Result<Application> {
        let listener = TcpListener::bind(config.bind).await?;
        if let Some(warning) = config.host_warning() {
            tracing::warn!("{warning}");
        }
        let stop = Stopper(Arc::new(tokio::sync::watch::channel(false).0));
        let notifier = crate::queue::Notifier::new();
        notifier.spawn_listener(store.clone(), stop.watch());
        notifier.close_on(stop.watch());
        crate::queue::spawn_sweeper(
            store.clone(),
            Duration::from_secs(config.sweep_interval_secs),
            stop.watch(),
        );
        crate::queue::spawn_housekeeper(
            store.clone(),
            crate::queue::HOUSEKEEPING_INTERVAL,
            stop.watch(),
        );
        let policy = crate::notify::Policy {
            max_attempts: config.webhook_max_attempts,
            backoff: Duration::from_secs(config.webhook_backoff_secs),
            timeout: Duration::from_secs(10),
        };
        let tickets = Arc::new(crate::tickets::sync::Syncer {
            store: store.clone(),
            sealer: Arc::new(crate::secrets::Sealer::new(config.secrets_key())),
            http: reqwest::Client::builder()
                .timeout(policy.timeout)
                .build()
                .map_err(std::io::Error::other)?,
            settle: Duration::from_secs(config.ticket_settle_secs),
            public_url: config.public_url.clone(),
        });
        crate::notify::spawn_deliverers(store.clone(), policy, 2, tickets.clone(), stop.watch());
        crate::tickets::sync::spawn_poller(
            tickets.clone(),
            Duration::from_secs(config.ticket_poll_tick_secs),
            stop.watch(),
        );
        let limits = config.conn_limits();
        let state = AppState {
            notifier,
            tickets,
            store,
            tokens: Arc::new(TokenCache::new(Duration::from_secs(
                config.token_cache_secs,
            ))),
            metrics: Arc::new(http::metrics::HttpMetrics::default()),
            limits: Arc::new(http::ratelimit::Limits::new(&config)),
            oauth: Arc::new(http::auth::jwt::Keys::new(
                config.jwt_secret.as_ref().map(|s| s.0.as_str()),
            )),
            config: Arc::new(config),
        };
        let metrics_addr = match state.config.metrics_bind {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await?;
                let bound = listener.local_addr()?;
                tracing::info!(addr = %bound, "metrics served at /metrics");
                let metrics = http::metrics::router(state.clone());
                let stopped = Stopper::stopped(stop.watch());
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, metrics)
                        .with_graceful_shutdown(stopped)
                        .await
                    {
                        tracing::error!(error = %e, "metrics listener failed");
                    }
                });
                Some(bound)
            }
            None => None,
        };
        Ok(Application {
            listener,
            // `/Users/` and `/Users` are the same endpoint (Microsoft's test collection
            // sends the former); trimming happens before routing.
            app: NormalizePath::trim_trailing_slash(http::router(state)),
            stop,
            metrics_addr,
            limits,
        })
    }

    /// Where `/metrics` is served, when `--metrics-bind` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A handle that stops this server and its background work.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGINT/SIGTERM (or the stopper), then stops the background work, ends
    /// waiting long polls with "no task" and finishes the other in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stop = self.stop.clone();
        let signalled = self.stop.clone();
        let stopped = Stopper::stopped(stop.watch());
        let result = crate::server::serve(self.listener, self.app, self.limits, async move {
            tokio::select! {
                _ = shutdown_signal() => {},
                _ = stopped => {},
            }
            // Background work stops as the drain begins; long-polling claims among the
            // in-flight requests answer "no task" at once instead of holding the drain.
            signalled.stop();
        })
        .await;
        stop.stop();
        result
    }

    /// Serves until the future resolves (tests).
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        crate::server::serve(self.listener, self.app, self.limits, stop).await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
