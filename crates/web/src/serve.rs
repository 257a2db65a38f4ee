//! Serving a router on a TCP listener with the bounds every listener of Leasehold needs: at
//! most `max_connections` open at once (one more is closed at once and counted), request
//! headers read within `header_read_timeout`, a connection with no traffic for
//! `idle_timeout` closed, and a whole request answered within `request_timeout`. Without
//! them, a few thousand connections sending half a request line hold their sockets forever
//! and exhaust the process's open files. The peer address is in every request's extensions
//! as axum's `ConnectInfo<SocketAddr>`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutLayer;

use crate::tls::Tls;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; one more is closed at accept.
    pub max_connections: usize,
    /// Time to receive a request's headers, from its first byte.
    pub header_read_timeout: Duration,
    /// A connection with no byte in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Time to answer one request, body read included.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Raises this process's soft limit of open files to its hard limit (a no-op where it cannot)
/// and returns the limit now in force, so a listener's `max_connections` can stay below it.
pub fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(error = %e, "cannot raise the open files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes; then stops
/// accepting, lets requests in flight finish (at most `limits.request_timeout`) and
/// returns. `name` labels the listener in logs and `/metrics`. With `tls`, every connection
/// is HTTPS: the handshake must be done within `limits.header_read_timeout`.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            ::metrics::counter!("leasehold_http_connections_refused_total", "listener" => name)
                .increment(1);
            tracing::debug!(listener = name, %peer, "connection limit reached; closed");
            drop(tcp);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        let mut stop = stop_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let activity = Arc::new(Activity::new());
            let tcp = Tracked {
                inner: tcp,
                activity: activity.clone(),
            };
            match tls {
                None => {
                    serve_connection(name, tcp, activity, peer, router, limits, &mut stop).await
                }
                Some(tls) => {
                    let handshake = tls.acceptor().accept(tcp);
                    match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                        Ok(Ok(stream)) => {
                            serve_connection(
                                name, stream, activity, peer, router, limits, &mut stop,
                            )
                            .await
                        }
                        Ok(Err(e)) => {
                            ::metrics::counter!("leasehold_http_tls_handshake_failures_total", "listener" => name)
                                .increment(1);
                            tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            ::metrics::counter!("leasehold_http_tls_handshake_failures_total", "listener" => name)
                                .increment(1);
                            tracing::debug!(listener = name, %peer, "TLS handshake not done in time; closed");
                        }
                    }
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    // Every connection task holds a permit until it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.request_timeout, slots.acquire_many(all)).await;
    Ok(())
}

async fn serve_connection<S>(
    name: &'static str,
    stream: S,
    activity: Arc<Activity>,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    stop: &mut watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let service = router.map_request(move |r: hyper::Request<hyper::body::Incoming>| {
        let mut r = r.map(axum::body::Body::new);
        r.extensions_mut().insert(ConnectInfo(peer));
        r
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let idle_for = activity.idle_for();
        let wake_in = limits.idle_timeout.saturating_sub(idle_for);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep(wake_in), if !closing => {
                if activity.idle_for() >= limits.idle_timeout {
                    ::metrics::counter!("leasehold_http_connections_idle_closed_total", "listener" => name)
                        .increment(1);
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            changed = stop.changed(), if !closing => {
                if changed.is_err() || *stop.borrow() {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// When the connection last moved a byte, in milliseconds since `start`.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.start.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A TCP stream that notes every byte read or written in its [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
