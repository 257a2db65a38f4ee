//! HTTPS on `leasehold_web::serve`, over real sockets: a client trusting the certificate's
//! authority is served, one that does not is refused, plain HTTP gets no answer, a renewed
//! certificate is served without a restart (a broken renewal leaves the old one in service)
//! and a handshake that never comes is closed. Waits are bounded; no duration is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use leasehold_testkit::tls::TestCa;
use leasehold_web::{Limits, Tls, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(tls: Tls, limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let router = Router::new().route("/hello", get(|| async { "hello" }));
    common::start(router, limits, Some(tls)).await
}

async fn hello(client: &reqwest::Client, addr: SocketAddr) -> Result<String, reqwest::Error> {
    client
        .get(format!("https://127.0.0.1:{}/hello", addr.port()))
        .send()
        .await?
        .text()
        .await
}

#[tokio::test]
async fn a_client_trusting_the_authority_is_served_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ours");
    let leaf = ca.issue(dir.path(), "node");
    let tls = Tls::load(TlsFiles {
        cert: leaf.cert_file.clone(),
        key: leaf.key_file.clone(),
    })
    .unwrap();
    assert_eq!(tls.fingerprint().len(), 32 * 3 - 1);
    let (addr, _stop) = start(tls, Limits::default()).await;
    assert_eq!(hello(&ca.client(), addr).await.unwrap(), "hello");

    let other = TestCa::new(dir.path(), "theirs");
    let e = hello(&other.client(), addr).await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");

    // Plain HTTP on the HTTPS port: no HTTP answer.
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(plain
        .get(format!("http://127.0.0.1:{}/hello", addr.port()))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new(dir.path(), "old");
    let leaf = old_ca.issue(dir.path(), "node");
    let tls = Tls::load(TlsFiles {
        cert: leaf.cert_file.clone(),
        key: leaf.key_file.clone(),
    })
    .unwrap();
    let (addr, _stop) = start(tls.clone(), Limits::default()).await;
    assert_eq!(hello(&old_ca.client(), addr).await.unwrap(), "hello");
    assert!(!tls.reload().unwrap(), "unchanged files are not a new pair");

    // A renewal that went wrong: the new certificate with the old key.
    let old_key = std::fs::read(&leaf.key_file).unwrap();
    let new_ca = TestCa::new(dir.path(), "new");
    new_ca.issue(dir.path(), "node");
    std::fs::write(&leaf.key_file, &old_key).unwrap();
    let e = tls.reload().unwrap_err().to_string();
    assert!(e.contains("node.key") && e.contains("node.crt"), "{e}");
    assert_eq!(hello(&old_ca.client(), addr).await.unwrap(), "hello");

    // The renewal done right, picked up by the reloader a serving process runs.
    let reloader = tls.spawn_reloader("test", Duration::from_millis(50));
    let before = tls.fingerprint();
    new_ca.issue(dir.path(), "node");
    let mut served = false;
    for _ in 0..200 {
        if hello(&new_ca.client(), addr).await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the renewed certificate was never served");
    assert_ne!(tls.fingerprint(), before);
    assert!(hello(&old_ca.client(), addr).await.is_err());
    reloader.abort();
}

#[tokio::test]
async fn a_handshake_that_never_comes_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ours");
    let leaf = ca.issue(dir.path(), "node");
    let tls = Tls::load(TlsFiles {
        cert: leaf.cert_file,
        key: leaf.key_file,
    })
    .unwrap();
    let limits = Limits {
        header_read_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let (addr, _stop) = start(tls, limits).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    // Half a ClientHello's record header.
    conn.write_all(&[0x16, 0x03]).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = matches!(
        tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    );
    assert!(closed, "a silent TLS client holds its connection");
}

#[test]
fn files_that_do_not_load_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ours");
    let leaf = ca.issue(dir.path(), "node");
    let load = |cert: &std::path::Path, key: &std::path::Path| {
        Tls::load(TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
        .unwrap_err()
        .to_string()
    };
    let missing = dir.path().join("missing.crt");
    let e = load(&missing, &leaf.key_file);
    assert!(e.contains("missing.crt"), "{e}");
    let e = load(&leaf.key_file, &leaf.key_file);
    assert!(
        e.contains("node.key") && e.contains("no certificate"),
        "{e}"
    );
    let e = load(&leaf.cert_file, &leaf.cert_file);
    assert!(
        e.contains("node.crt") && e.contains("no private key"),
        "{e}"
    );
    let e = TlsFiles::from_flags(Some("c".into()), None, "--tls-cert", "--tls-key")
        .unwrap_err()
        .to_string();
    assert!(e.contains("--tls-key"), "{e}");
    assert!(TlsFiles::from_flags(None, None, "--tls-cert", "--tls-key")
        .unwrap()
        .is_none());
}
