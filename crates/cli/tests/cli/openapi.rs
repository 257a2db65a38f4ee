//! `leasehold openapi`: the committed descriptions in docs/openapi/ are what the code makes
//! (the drift test), a difference is shown as a diff with the command that fixes it, and the
//! committed files are OpenAPI 3.1 whose every reference resolves.

use std::path::PathBuf;

use crate::support::leasehold;

const FILES: [&str; 3] = ["server-lease.json", "server-admin.json", "node.json"];

fn committed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi")
}

#[test]
fn the_committed_openapi_descriptions_match_the_code() {
    // On failure the diff is in stderr; `leasehold openapi --out docs/openapi` regenerates.
    leasehold()
        .args(["openapi", "--check"])
        .arg(committed_dir())
        .assert()
        .success();
}

#[test]
fn a_description_that_differs_fails_the_check_with_a_diff_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    leasehold()
        .args(["openapi", "--out"])
        .arg(dir.path())
        .assert()
        .success();
    leasehold()
        .args(["openapi", "--check"])
        .arg(dir.path())
        .assert()
        .success();
    let node = dir.path().join("node.json");
    let text = std::fs::read_to_string(&node).unwrap();
    std::fs::write(&node, text.replace("\"/v1/sync\"", "\"/v1/synchronise\"")).unwrap();
    std::fs::remove_file(dir.path().join("server-lease.json")).unwrap();
    let out = leasehold()
        .args(["openapi", "--check"])
        .arg(dir.path())
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("-    \"/v1/synchronise\": {"), "{stderr}");
    assert!(stderr.contains("+    \"/v1/sync\": {"), "{stderr}");
    assert!(
        stderr.contains("server-lease.json, node.json in"),
        "{stderr}"
    );
    assert!(stderr.contains("leasehold openapi --out"), "{stderr}");
    assert!(
        !stderr.contains("server-admin.json (committed)"),
        "{stderr}"
    );
}

/// Every `"$ref"` in `value`, recursively.
fn refs(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => found.push(r.to_string()),
                    _ => refs(v, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[test]
fn the_committed_descriptions_are_openapi_3_1_and_every_reference_resolves() {
    for name in FILES {
        let text = std::fs::read_to_string(committed_dir().join(name)).unwrap();
        let spec = oas3::from_json(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let version = spec.validate_version().unwrap();
        assert_eq!((version.major, version.minor), (3, 1), "{name}");
        assert!(spec.operations().count() >= 4, "{name}");
        for (path, method, operation) in spec.operations() {
            let id = format!("{name}: {method} {path}");
            assert!(operation.request_body(&spec).is_ok(), "{id}");
            let declared = operation.responses.as_ref().map_or(0, |r| r.len());
            assert_eq!(operation.responses(&spec).len(), declared, "{id}");
            assert!(declared >= 2, "{id}: a success and the default refusal");
        }
        let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut found = Vec::new();
        refs(&raw, &mut found);
        assert!(!found.is_empty(), "{name}");
        for r in found {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{name}: {r}"));
            assert!(
                raw.pointer(pointer).is_some(),
                "{name}: {r} does not resolve"
            );
        }
    }
}
