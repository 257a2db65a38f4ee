//! The listener bounds of `leasehold_web::serve`, over real sockets: the connection limit,
//! the header-read and idle timeouts, and the peer address handed to handlers. Waits are
//! bounded; no duration is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use leasehold_web::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let router = Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    );
    common::start(router, limits, None).await
}

/// Whether the server closes `conn` within 10 s (EOF or reset on read).
async fn closed_by_server(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // An answer (a 408 for a header timeout, say) and then the close.
            Ok(Ok(_)) => continue,
        }
    }
}

async fn get_peer(conn: &mut TcpStream) -> String {
    conn.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn small() -> Limits {
    Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        request_timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn a_request_gets_its_peer_address_and_an_idle_connection_is_closed() {
    let (addr, _stop) = start(small()).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let answer = get_peer(&mut conn).await;
    let local = conn.local_addr().unwrap().to_string();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(&local), "{answer} vs {local}");
    // Kept alive, then closed once idle.
    assert!(
        closed_by_server(&mut conn).await,
        "an idle connection stayed open"
    );
}

#[tokio::test]
async fn half_a_request_line_does_not_hold_a_connection() {
    let (addr, _stop) = start(small()).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"POST /v1/lease HT").await.unwrap();
    assert!(
        closed_by_server(&mut conn).await,
        "a half request stayed open"
    );
    // Trickling a byte at a time does not either: the header deadline runs from the start.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let mut closed = false;
    for b in b"GET /peer HTTP/1.1\r\nHost: slowly-slowly-slowly\r\n" {
        if slow.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // (Without the header deadline the trickle keeps the idle timeout from ever firing.)
    assert!(
        closed,
        "a slow client held its connection for the whole header"
    );
}

#[tokio::test]
async fn one_connection_over_the_limit_is_closed_at_once_and_the_others_are_served() {
    let limits = Limits {
        idle_timeout: Duration::from_secs(30),
        header_read_timeout: Duration::from_secs(30),
        ..small()
    };
    let (addr, _stop) = start(limits).await;
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    // Both are being served (a request each proves they were accepted).
    assert!(get_peer(&mut a).await.starts_with("HTTP/1.1 200"));
    assert!(get_peer(&mut b).await.starts_with("HTTP/1.1 200"));
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_by_server(&mut c).await,
        "a third connection was kept"
    );
    // A slot frees when a connection closes.
    drop(a);
    let mut d = None;
    for _ in 0..100 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf)).await {
            if n > 0 && buf.starts_with(b"HTTP/1.1 200") {
                d = Some(conn);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(d.is_some(), "no slot freed after a connection closed");
    assert!(get_peer(&mut b).await.starts_with("HTTP/1.1 200"));
}
