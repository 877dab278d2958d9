//! Building and running the server: bind, serve, shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::ServiceExt;
use tokio::net::TcpListener;
use tower_http::normalize_path::NormalizePath;

use crate::config::Config;
use crate::db::Store;
use crate::http::{self, auth::TokenCache, AppState};

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    app: NormalizePath<axum::Router>,
}

impl Application {
    /// Binds `config.bind` (port 0 picks a free port) with the given store.
    pub async fn build(config: Config, store: Store) -> std::io::Result<Application> {
        let listener = TcpListener::bind(config.bind).await?;
        let state = AppState {
            store,
            tokens: Arc::new(TokenCache::new(Duration::from_secs(
                config.token_cache_secs,
            ))),
            config: Arc::new(config),
        };
        Ok(Application {
            listener,
            // `/Users/` and `/Users` are the same endpoint (Microsoft's test collection
            // sends the former); trimming happens before routing.
            app: NormalizePath::trim_trailing_slash(http::router(state)),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGINT/SIGTERM, then finishes in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        axum::serve(
            self.listener,
            ServiceExt::<Request>::into_make_service(self.app),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await
    }

    /// Serves until the future resolves (tests).
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(
            self.listener,
            ServiceExt::<Request>::into_make_service(self.app),
        )
        .with_graceful_shutdown(stop)
        .await
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
