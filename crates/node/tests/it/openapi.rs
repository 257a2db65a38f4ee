//! The node's OpenAPI description (docs/openapi/node.json): the node serves it at
//! `/openapi.json` without a token, and every operation it describes reaches a handler.
//! That the committed file matches the code is the CLI's `openapi` test.

use leasehold_testkit::node::TestNode;
use leasehold_testkit::openapi::{assert_every_operation_is_served, assert_serves_description};
use leasehold_web::openapi::to_json;

#[tokio::test]
async fn the_node_serves_its_description_and_every_operation_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path(), leasehold_testkit::manual_clock()).await;
    let spec = assert_serves_description(&node.url, &to_json(&leasehold_node::description())).await;
    assert_eq!(spec["openapi"], "3.1.0");
    // Admin paths are described where they are served, under /v1/admin.
    assert!(spec["paths"]
        .get("/v1/admin/licenses/{id}/revoke")
        .is_some());
    assert!(spec["components"]["securitySchemes"]
        .get("client_key")
        .is_none());
    // 14 vendor admin operations, 10 staff operations (sign-in, accounts, tokens, audit),
    // sync, health, metrics and the description.
    assert_eq!(assert_every_operation_is_served(&node.url, &spec).await, 28);
    node.stop().await;
}
