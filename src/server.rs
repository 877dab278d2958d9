//! Accepting and serving HTTP/1.1 connections, with the limits `axum::serve` does not
//! offer (issue #14 item 2, slowloris): a connection must send a request's head within
//! `--header-read-timeout-secs` of its first byte, an idle keep-alive connection is closed
//! after `--idle-timeout-secs`, and at most `--max-connections` are served at once.
//! Beyond the cap new connections wait in the listen backlog (they are not accepted, so
//! they cost no task or buffer) until a served one closes; both timeouts bound how long
//! that takes, so a flood of slow or idle connections cannot hold the server.
//!
//! Each connection's peer address is attached to its requests as
//! [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo): it keys the per-address rate
//! limits (`http::ratelimit`).
//!
//! Shutdown: once `shutdown` resolves no connection is accepted; idle connections close at
//! once, busy ones after their response, and [`serve`] returns when all have closed.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

/// The connection limits (`--header-read-timeout-secs`, `--idle-timeout-secs`,
/// `--max-connections`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// From the first byte of a request to the end of its head.
    pub header_read: Duration,
    /// Without a request, on a kept-alive or new connection.
    pub idle: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Where a connection is in its request cycle; the connection's watchdog reads it.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Accepted then, nothing received yet.
    New(Instant),
    /// Waiting for the next request since the last one was handled.
    Idle(Instant),
    /// Receiving a request head since its first byte.
    Head(Instant),
    /// A request is being handled (its body read, its response written).
    Busy,
}

type Shared = Arc<Mutex<Phase>>;

fn set(phase: &Shared, to: Phase) {
    // A poisoned lock only means a panic elsewhere mid-update; the phase is still usable.
    *phase.lock().unwrap_or_else(|p| p.into_inner()) = to;
}

fn get(phase: &Shared) -> Phase {
    *phase.lock().unwrap_or_else(|p| p.into_inner())
}

/// The socket, noting when bytes of a new request start to arrive.
struct Watched {
    inner: TcpStream,
    phase: Shared,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
            if let Phase::New(_) | Phase::Idle(_) = *phase {
                *phase = Phase::Head(Instant::now());
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    // Dropping the receiver tells connections to finish; senders closing tells the
    // loop below that all have.
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    let mut stop_rx = Some(stop_rx);
    tokio::spawn(async move {
        shutdown.await;
        drop(stop_rx.take());
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // At the cap, wait for a slot before accepting: the connection waits in the
        // backlog instead of taking memory here.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(io::Error::other)?,
            _ = stop_tx.closed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin or stop.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop_tx.closed() => break,
        };
        let app = app.clone();
        let stop = stop_tx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            connection(stream, peer, app, limits, stop).await;
            drop(permit);
            drop(done);
        });
    }
    drop(listener);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// Serves one connection under its timeouts.
async fn connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    app: S,
    limits: ConnLimits,
    stop: watch::Sender<()>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let phase: Shared = Arc::new(Mutex::new(Phase::New(Instant::now())));
    let io = TokioIo::new(Watched {
        inner: stream,
        phase: phase.clone(),
    });
    let in_service = phase.clone();
    let service = tower::service_fn(move |req: hyper::Request<Incoming>| {
        let phase = in_service.clone();
        let app = app.clone();
        async move {
            set(&phase, Phase::Busy);
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            let res = app.oneshot(req).await;
            // The response is written next; hyper reads no new head before that, so
            // the idle clock starting now only ever runs early, never late.
            set(&phase, Phase::Idle(Instant::now()));
            res
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Our own watchdog below times heads and idleness; hyper's header timer would also
    // run while idle and cut keep-alive connections at the header timeout.
    builder.timer(TokioTimer::new()).header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, TowerToHyperService::new(service)));
    let mut stopping = pin!(stop.closed());
    let mut draining = false;
    loop {
        let deadline = match get(&phase) {
            Phase::New(since) | Phase::Idle(since) if !draining => Some(since + limits.idle),
            Phase::Head(since) => Some(since + limits.header_read),
            _ => None,
        };
        let watchdog = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                // Busy: look again in a while (a handler is bounded by the request
                // deadline, so this is only a poll interval).
                None => tokio::time::sleep(limits.header_read.min(limits.idle)).await,
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            _ = &mut stopping, if !draining => {
                // A request whose head is still arriving has not started: drop it now
                // rather than hold the drain (the client retries elsewhere). So is a
                // connection that never sent a byte: hyper's graceful shutdown would
                // wait for its first request.
                if let Phase::New(_) | Phase::Head(_) = get(&phase) {
                    return;
                }
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = watchdog => match get(&phase) {
                Phase::Head(since) if since.elapsed() >= limits.header_read => {
                    tracing::debug!(%peer, "request head not received in time; closing the connection");
                    return;
                }
                Phase::New(since) | Phase::Idle(since)
                    if !draining && since.elapsed() >= limits.idle =>
                {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ => {}
            },
        }
    }
}
