//! Hostile HTTP against every listener that takes a body (the server's lease and admin APIs,
//! the node's sync and admin APIs): oversized bodies, malformed and deeply nested JSON,
//! invalid UTF-8, wrong or missing content types, wrong field types, unknown ids and path
//! traversal. Each gets a clear 4xx naming what is wrong, and nothing changes: the same
//! status, clients, installations and licenses before and after.

use leasehold_testkit::server::{lease_request, Synced};
use leasehold_testkit::{CLIENT_KEY, SERVER_TOKEN};

/// One hostile body: what it is, its content type, its bytes.
struct Body {
    what: &'static str,
    content_type: Option<&'static str>,
    bytes: Vec<u8>,
}

fn hostile_bodies() -> Vec<Body> {
    let json = Some("application/json");
    let nested = {
        let mut v = "[".repeat(100_000);
        v.push_str(&"]".repeat(100_000));
        v.into_bytes()
    };
    vec![
        Body {
            what: "truncated JSON",
            content_type: json,
            bytes: br#"{"client_id": "#.to_vec(),
        },
        Body {
            what: "invalid UTF-8",
            content_type: json,
            bytes: vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
        },
        Body {
            what: "JSON nested 100,000 deep",
            content_type: json,
            bytes: nested,
        },
        Body {
            what: "wrong field types",
            content_type: json,
            bytes: br#"{"client_id": 5, "features": "all", "guid": [], "name": {}}"#.to_vec(),
        },
        Body {
            what: "a JSON array instead of an object",
            content_type: json,
            bytes: b"[1,2,3]".to_vec(),
        },
        Body {
            what: "an empty body",
            content_type: json,
            bytes: Vec::new(),
        },
        Body {
            what: "text/plain",
            content_type: Some("text/plain"),
            bytes: br#"{"a": 1}"#.to_vec(),
        },
        Body {
            what: "no content type",
            content_type: None,
            bytes: br#"{"a": 1}"#.to_vec(),
        },
        Body {
            what: "a form instead of JSON",
            content_type: Some("application/x-www-form-urlencoded"),
            bytes: b"client_id=c_1&features=all".to_vec(),
        },
        Body {
            what: "8 MiB of JSON",
            content_type: json,
            bytes: {
                let mut v = b"{\"pad\": \"".to_vec();
                v.resize(8 * 1024 * 1024, b'x');
                v.extend_from_slice(b"\"}");
                v
            },
        },
    ]
}

/// Sends `body` and checks the answer is a 4xx with a JSON error naming a code and a
/// message; returns the status.
async fn send_hostile(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: &Body,
) -> u16 {
    let mut r = http
        .request(method.clone(), url)
        .bearer_auth(token)
        .body(body.bytes.clone());
    if let Some(ct) = body.content_type {
        r = r.header(reqwest::header::CONTENT_TYPE, ct);
    }
    let r = r
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url} ({}): {e}", body.what));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert!(
        (400..500).contains(&status),
        "{method} {url} with {}: {status} {text}",
        body.what
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "{method} {url} with {}: not a JSON error ({e}): {text}",
            body.what
        )
    });
    let code = v["error"].as_str().unwrap_or_default();
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty() && message.len() > 10,
        "{method} {url} with {}: {text}",
        body.what
    );
    if body.bytes.len() > 1024 * 1024 {
        assert_eq!(status, 413, "{method} {url} with {}: {text}", body.what);
    }
    status
}

#[tokio::test]
async fn hostile_bodies_get_a_clear_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synced::start(dir.path()).await;
    let server = &s.server;
    // One real client holding a license, so "nothing changed" is about something.
    let held = server
        .lease(&lease_request(1, "tts", 1, 1, 0))
        .await
        .unwrap();
    assert_eq!(leasehold_testkit::server::quota(&held, "tts"), 1);
    let http = reqwest::Client::new();
    let node_url = s.node.url.clone();
    // The node's admin API takes a staff account's token (an admin's here).
    let node_token = s.node.admin_token.clone();
    let node_token = node_token.as_str();
    let installations = |http: reqwest::Client| {
        let url = format!("{node_url}/v1/admin/installations");
        async move {
            http.get(url)
                .bearer_auth(node_token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let status_before = server.status().await;
    let clients_before = server.clients().await;
    let installations_before = installations(http.clone()).await;

    let g = s.installation.production.to_string();
    let g = g.trim_matches(['{', '}']);
    let targets: Vec<(reqwest::Method, String, &str)> = vec![
        (
            reqwest::Method::POST,
            format!("{}/v1/lease", server.lease_url),
            CLIENT_KEY,
        ),
        (
            reqwest::Method::PUT,
            format!("{}/v1/admin/guid", server.admin_url),
            SERVER_TOKEN,
        ),
        (
            reqwest::Method::POST,
            format!("{}/v1/admin/bundle", server.admin_url),
            SERVER_TOKEN,
        ),
        (
            reqwest::Method::POST,
            format!("{}/v1/admin/client-key", server.admin_url),
            SERVER_TOKEN,
        ),
        (reqwest::Method::POST, format!("{node_url}/v1/sync"), ""),
        (
            reqwest::Method::POST,
            format!("{node_url}/v1/admin/installations"),
            node_token,
        ),
        (
            reqwest::Method::POST,
            format!("{node_url}/v1/admin/servers"),
            node_token,
        ),
        (
            reqwest::Method::PATCH,
            format!("{node_url}/v1/admin/servers/{g}"),
            node_token,
        ),
        (
            reqwest::Method::POST,
            format!("{node_url}/v1/admin/licenses"),
            node_token,
        ),
        (
            reqwest::Method::POST,
            format!("{node_url}/v1/admin/accounts"),
            node_token,
        ),
        (
            reqwest::Method::PATCH,
            format!("{node_url}/v1/admin/accounts/admin"),
            node_token,
        ),
        (
            reqwest::Method::POST,
            format!("{node_url}/v1/admin/login"),
            "",
        ),
    ];
    for (method, url, token) in &targets {
        for body in &hostile_bodies() {
            send_hostile(&http, method.clone(), url, token, body).await;
        }
    }

    // Ids that are not ids, and paths that climb out.
    for (url, token) in [
        (
            format!(
                "{}/v1/lease/..%2F..%2Fetc%2Fpasswd?seq=1&epoch=1",
                server.lease_url
            ),
            CLIENT_KEY,
        ),
        (
            format!("{node_url}/v1/admin/servers/..%2F..%2Fetc%2Fpasswd"),
            node_token,
        ),
        (
            format!("{node_url}/v1/admin/licenses/%00%ff/revoke"),
            node_token,
        ),
        (
            format!("{node_url}/v1/admin/installations/..%2Finst_x/usage"),
            node_token,
        ),
    ] {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::POST,
            reqwest::Method::DELETE,
        ] {
            let r = http
                .request(method.clone(), &url)
                .bearer_auth(token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let code = r.status().as_u16();
            let text = r.text().await.unwrap();
            assert!((400..500).contains(&code), "{method} {url}: {code} {text}");
            assert!(!text.contains("root:"), "{method} {url}: {text}");
        }
    }
    for path in [
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/static/dashboard.css/../../../etc/passwd",
    ] {
        let r = http
            .get(format!("{}{path}", server.admin_url))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            code == 404 || code == 400 || code == 303,
            "{path}: {code} {text}"
        );
        assert!(!text.contains("root:"), "{path}: {text}");
    }

    // Nothing changed.
    let status_after = server.status().await;
    assert_eq!(status_after.licenses, status_before.licenses);
    assert_eq!(status_after.guid, status_before.guid);
    assert_eq!(server.clients().await.len(), clients_before.len());
    assert_eq!(installations(http.clone()).await, installations_before);
    assert_eq!(status_after.bundle_serial, status_before.bundle_serial);
    // The real client still holds its license and is served.
    let mut next = lease_request(1, "tts", 1, 1, 1);
    next.seq = 1;
    next.epoch = held.epoch;
    let again = server.lease(&next).await.unwrap();
    assert_eq!(leasehold_testkit::server::quota(&again, "tts"), 1);
    s.stop().await;
}
