//! The OpenAPI descriptions of the two listeners (docs/openapi/server-*.json): each listener
//! serves its own at `/openapi.json` without a token, and every operation it describes
//! reaches a handler there. That the committed files match the code is the CLI's
//! `openapi` test.

use leasehold_testkit::openapi::{assert_every_operation_is_served, assert_serves_description};
use leasehold_testkit::server::{options, TestServer};
use leasehold_web::openapi::to_json;

#[tokio::test]
async fn both_listeners_serve_their_description_and_every_operation_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = leasehold_testkit::manual_clock();
    let server = TestServer::start(options(&dir.path().join("s"), vec![], None), clock).await;

    let lease_json = to_json(&leasehold_server::lease_description());
    let admin_json = to_json(&leasehold_server::admin_description());
    let lease = assert_serves_description(&server.lease_url, &lease_json).await;
    let admin = assert_serves_description(&server.admin_url, &admin_json).await;
    assert!(lease["paths"].get("/v1/admin/status").is_none());
    assert!(admin["paths"].get("/v1/lease").is_none());
    assert!(
        admin["paths"].get("/login").is_none(),
        "dashboard pages are not in it"
    );

    let lease_ops = assert_every_operation_is_served(&server.lease_url, &lease).await;
    let admin_ops = assert_every_operation_is_served(&server.admin_url, &admin).await;
    // lease, release, health, the description; the admin API's 9 routes, health, metrics,
    // the description.
    assert_eq!((lease_ops, admin_ops), (4, 12));
    server.stop().await;
}

#[test]
fn every_admin_and_lease_operation_names_its_bearer_scheme() {
    for (api, scheme, open) in [
        (leasehold_server::lease_description(), "client_key", 2),
        (leasehold_server::admin_description(), "admin_token", 3),
    ] {
        let spec = serde_json::to_value(&api).unwrap();
        assert_eq!(spec["openapi"], "3.1.0");
        assert_eq!(
            spec["components"]["securitySchemes"][scheme]["scheme"],
            "bearer"
        );
        let mut unauthenticated = 0;
        for item in spec["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                match operation["security"].as_array() {
                    Some(s) => assert!(s[0].get(scheme).is_some(), "{operation}"),
                    None => unauthenticated += 1,
                }
                assert!(operation["responses"].get("default").is_some());
            }
        }
        // health, metrics (admin listener only) and /openapi.json need no token.
        assert_eq!(unauthenticated, open, "{scheme}");
    }
}
