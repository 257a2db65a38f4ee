//! What the listener tests share: `router` served on a fresh loopback port.

use std::net::SocketAddr;

use axum::Router;
use leasehold_web::{Limits, Tls};
use tokio::net::TcpListener;

/// Serves `router` within `limits` (over HTTPS with `tls`) until the sender is dropped.
pub async fn start(
    router: Router,
    limits: Limits,
    tls: Option<Tls>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(leasehold_web::serve(
        "test",
        listener,
        router,
        limits,
        tls,
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}
