//! Who holds what: every client is listed with the name it sent, its source address, its
//! product release and since when it is connected; the operator can search and sort; names
//! and addresses stay on the server (the upload carries none of them).

use chrono::Duration;
use leasehold_proto::api::server::{ClientSort, ClientStatus};
use leasehold_proto::{encode_client_name, Clock, CLIENT_NAME_HEADER};
use leasehold_testkit::server::{client_id, lease_http, lease_request, Synced, TestServer};
use leasehold_testkit::SERVER_TOKEN;

/// `POST /v1/lease` for client `n` (tts, wanting `want`) naming itself with the raw header
/// value `name` (none with `None`): status and body.
async fn lease_named(server: &TestServer, n: u8, want: u32, name: Option<&str>) -> (u16, String) {
    let mut r = lease_http()
        .post(format!("{}/v1/lease", server.lease_url))
        .json(&lease_request(n, "tts", want, want, 0));
    if let Some(name) = name {
        r = r.header(CLIENT_NAME_HEADER, name);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `GET /v1/admin/clients?QUERY`: status, `X-Total-Count` and the clients (empty on an error).
async fn admin_clients(
    server: &TestServer,
    query: &str,
) -> (u16, usize, Vec<ClientStatus>, String) {
    let r = reqwest::Client::new()
        .get(format!("{}/v1/admin/clients?{query}", server.admin_url))
        .bearer_auth(SERVER_TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let total = r
        .headers()
        .get("x-total-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let text = r.text().await.unwrap();
    let clients = if status == 200 {
        serde_json::from_str(&text).unwrap()
    } else {
        Vec::new()
    };
    (status, total, clients, text)
}

fn names(clients: &[ClientStatus]) -> Vec<&str> {
    clients
        .iter()
        .map(|c| c.name.as_deref().unwrap_or("-"))
        .collect()
}

#[tokio::test]
async fn clients_are_listed_with_their_name_address_release_and_connected_since() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synced::start(dir.path()).await;
    let server = &s.server;
    let first_seen = s.clock.now();
    assert_eq!(
        lease_named(
            server,
            1,
            3,
            Some(&encode_client_name("media-7/transcoder[4711]"))
        )
        .await
        .0,
        200
    );
    s.clock.advance(Duration::seconds(60));
    assert_eq!(
        lease_named(
            server,
            2,
            1,
            Some(&encode_client_name("Zoë's laptop/dictation[12]"))
        )
        .await
        .0,
        200
    );
    assert_eq!(lease_named(server, 3, 2, None).await.0, 200);

    let (code, total, clients, text) = admin_clients(server, "").await;
    assert_eq!((code, total), (200, 3), "{text}");
    // By name by default, clients without one last.
    assert_eq!(
        names(&clients),
        [
            "media-7/transcoder[4711]",
            "Zoë's laptop/dictation[12]",
            "-"
        ]
    );
    let media = &clients[0];
    assert_eq!(media.client, client_id(1));
    assert_eq!(media.address.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        media.product_release,
        Some(leasehold_testkit::release_date())
    );
    assert_eq!(media.connected_since, Some(first_seen));
    assert_eq!(media.in_use(), 3);
    assert_eq!(
        clients[1].connected_since,
        Some(first_seen + Duration::seconds(60))
    );

    // A later request keeps the time it came and takes a new name.
    assert_eq!(
        lease_named(server, 1, 3, Some("media-7%2Frenamed")).await.0,
        200
    );
    let c = &server.clients().await;
    let media = c.iter().find(|c| c.client == client_id(1)).unwrap();
    assert_eq!(
        (media.name.as_deref(), media.connected_since),
        (Some("media-7/renamed"), Some(first_seen))
    );

    // Search: name, address, id or feature, case-insensitive; the total counts the matches.
    let (_, total, found, _) = admin_clients(server, "search=LAPTOP").await;
    assert_eq!(
        (total, names(&found)),
        (1, vec!["Zoë's laptop/dictation[12]"])
    );
    let (_, total, _, _) = admin_clients(server, "search=127.0.0").await;
    assert_eq!(total, 3);
    let id = client_id(3).to_string();
    let (_, total, found, _) = admin_clients(server, &format!("search={}", &id[..10])).await;
    assert_eq!((total, found[0].client.clone()), (1, client_id(3)));
    let (_, total, _, _) = admin_clients(server, "search=nobody-here").await;
    assert_eq!(total, 0);

    // Sort: most in use first; longest connected first; pages of the sorted list.
    let (_, _, by_use, _) = admin_clients(server, "sort=in_use").await;
    let uses: Vec<u64> = by_use.iter().map(ClientStatus::in_use).collect();
    assert_eq!(uses, [3, 2, 1]);
    let (_, _, by_age, _) = admin_clients(server, "sort=connected_since").await;
    assert_eq!(by_age[0].client, client_id(1));
    let (_, total, page, _) = admin_clients(server, "sort=in_use&offset=1&limit=1").await;
    assert_eq!((total, page.len(), page[0].in_use()), (3, 1, 2));
    let typed = server
        .admin
        .clients_where(Some("media"), ClientSort::Name)
        .await
        .unwrap();
    assert_eq!(names(&typed), ["media-7/renamed"]);

    // Bad queries name what is wrong.
    let (code, _, _, text) = admin_clients(server, "sort=size").await;
    assert!(
        code == 400 && text.contains("sort must be one of"),
        "{code} {text}"
    );
    let long = "x".repeat(201);
    let (code, _, _, text) = admin_clients(server, &format!("search={long}")).await;
    assert!(
        code == 400 && text.contains("search may be at most"),
        "{code} {text}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_malformed_client_name_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synced::start(dir.path()).await;
    let server = &s.server;
    let too_long = "n".repeat(leasehold_proto::MAX_CLIENT_NAME_CHARS + 1);
    for (header, says) in [
        ("%FF%FE", "UTF-8"),
        ("a%0Ab", "control"),
        (too_long.as_str(), "at most"),
        ("%20%20", "empty"),
    ] {
        let (code, text) = lease_named(server, 9, 2, Some(header)).await;
        assert_eq!(code, 400, "{header}: {text}");
        assert!(
            text.contains(says) && text.contains(CLIENT_NAME_HEADER),
            "{header}: {text}"
        );
    }
    assert!(
        server.clients().await.is_empty(),
        "a refused request left a client"
    );
    s.stop().await;
}

#[tokio::test]
async fn names_and_addresses_never_leave_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = Synced::start(dir.path()).await;
    let server = &s.server;
    let secret_names = [
        "finance-db-07/report-writer[991]",
        "ceo-laptop.corp.example/dictation[4]",
    ];
    for (n, name) in (1u8..).zip(secret_names) {
        assert_eq!(
            lease_named(server, n, 2, Some(&encode_client_name(name)))
                .await
                .0,
            200
        );
    }
    assert_eq!(names(&server.clients().await).len(), 2);
    s.clock.advance(Duration::hours(1));
    server.service().flush().await.unwrap();

    // What the server uploads to the vendor: the hour's counts, nothing that names a client.
    let upload = server.service().upload().await.unwrap();
    assert!(
        !upload.usage.is_empty(),
        "the hour was not closed: {upload:?}"
    );
    let json = serde_json::to_string(&upload).unwrap();
    let ids = [client_id(1).to_string(), client_id(2).to_string()];
    let forbidden = secret_names
        .iter()
        .copied()
        .chain(["finance-db", "ceo-laptop", "127.0.0.1", "report-writer"])
        .chain(ids.iter().map(String::as_str));
    for word in forbidden {
        assert!(!json.contains(word), "the upload carries {word:?}: {json}");
    }
    // The node holds what arrived: nothing there names a client either.
    let synced = server.sync_now().await;
    assert!(synced.ok, "{synced:?}");
    let stored = s.node.admin.usage(s.installation.production).await.unwrap();
    let stored = serde_json::to_string(&stored).unwrap();
    assert!(stored.contains("tts"), "{stored}");
    for word in secret_names.iter().copied().chain(["127.0.0.1"]) {
        assert!(
            !stored.contains(word),
            "the node's usage holds {word:?}: {stored}"
        );
    }
    s.stop().await;
}
