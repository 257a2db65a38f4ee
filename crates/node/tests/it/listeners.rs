//! A node with an admin listener of its own (`--admin-listen`): the public listener, which
//! license servers reach, serves sync, health, metrics and the description and refuses the
//! admin API and the console with a message saying where they are; the admin listener
//! serves everything (sync too, for `leasehold vendor sync-file`).

use std::sync::Arc;

use leasehold_node::{Node, NodeState};
use leasehold_testkit::browser::{browser, get, Page};
use leasehold_testkit::{manual_clock, vendor_key, NODE_TOKEN};
use reqwest::StatusCode;

async fn bind() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

async fn post_empty(url: &str) -> Page {
    leasehold_testkit::browser::page(
        reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn the_admin_api_and_the_console_move_to_the_admin_listener() {
    let dir = tempfile::tempdir().unwrap();
    let store = leasehold_node::store::open(&format!(
        "sqlite://{}",
        dir.path().join("node.db").display()
    ))
    .await
    .unwrap();
    let node = Arc::new(Node::new(store, vendor_key(), manual_clock()));
    let (public, public_url) = bind().await;
    let (admin, admin_url) = bind().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(leasehold_node::serve(
        NodeState::new(node, NODE_TOKEN),
        public,
        Some(admin),
        leasehold_web::Limits::default(),
        None,
        async {
            let _ = stopped.await;
        },
    ));
    let b = browser();
    let description = leasehold_web::openapi::to_json(&leasehold_node::description());
    for base in [&public_url, &admin_url] {
        assert_eq!(
            get(&b, &format!("{base}/v1/health")).await.status,
            StatusCode::OK
        );
        assert_eq!(
            get(&b, &format!("{base}/metrics")).await.status,
            StatusCode::OK
        );
        let d = get(&b, &format!("{base}/openapi.json")).await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&d.body).unwrap(),
            serde_json::from_str::<serde_json::Value>(&description).unwrap(),
            "{base}: the whole description on both"
        );
    }
    // The public listener: sync (an empty upload is refused by sync itself, not routed
    // away); no admin API, no console, and the answer says where they are.
    let r = post_empty(&format!("{public_url}/v1/sync")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    for path in [
        "/v1/admin/installations",
        "/v1/admin/login",
        "/console",
        "/console/login",
    ] {
        let r = get(&b, &format!("{public_url}{path}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(r.body.contains("--admin-listen"), "{path}: {}", r.body);
    }
    // The admin listener: the admin API (401 without a token), the console, and sync.
    let r = get(&b, &format!("{admin_url}/v1/admin/installations")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let r = get(&b, &format!("{admin_url}/console")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        get(&b, &format!("{admin_url}/console/login")).await.status,
        StatusCode::OK
    );
    let r = post_empty(&format!("{admin_url}/v1/sync")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
