//! Checks of a listener against its OpenAPI description: it serves the description at
//! `/openapi.json` without a token, and every documented path and method reaches a handler
//! (not the not-found fallback, not a 405), which answers 401 without credentials when the
//! operation names a security scheme.

use serde_json::Value;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// `GET {base}/openapi.json` with no credentials: the description, which must be `expected`.
pub async fn assert_serves_description(base: &str, expected: &str) -> Value {
    let resp = reqwest::get(format!("{base}/openapi.json")).await.unwrap();
    assert_eq!(resp.status(), 200, "{base}/openapi.json");
    assert_eq!(
        resp.headers()["content-type"],
        "application/json",
        "{base}/openapi.json"
    );
    let served: Value = resp.json().await.unwrap();
    let expected: Value = serde_json::from_str(expected).unwrap();
    assert_eq!(
        served, expected,
        "{base}/openapi.json is not the description the code makes"
    );
    served
}

/// Sends every operation of `spec` to `base`, with no credentials and no body, path
/// parameters filled with their schema's example: each must reach its handler, and one that
/// names a security scheme must answer 401. Returns how many were sent.
pub async fn assert_every_operation_is_served(base: &str, spec: &Value) -> usize {
    let http = reqwest::Client::new();
    let mut sent = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let url = format!("{base}{}", fill_path(path, operation, spec));
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = http.request(method.clone(), &url).send().await.unwrap();
            let status = resp.status();
            let body = resp.text().await.unwrap();
            assert_ne!(status, 405, "{method} {url}: the method is not served");
            assert!(
                !(status == 404 && body.contains("no such route")),
                "{method} {url} hit the not-found fallback: {body}"
            );
            if operation.get("security").is_some() {
                assert_eq!(status, 401, "{method} {url} without credentials: {body}");
            }
            sent += 1;
        }
    }
    sent
}

/// `path` with each `{name}` replaced by the first example of its parameter's schema.
fn fill_path(path: &str, operation: &Value, spec: &Value) -> String {
    let mut filled = path.to_string();
    let mut undocumented = path.to_string();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        if parameter["in"] != "path" {
            continue;
        }
        let name = parameter["name"].as_str().unwrap();
        let example = example_of(&parameter["schema"], spec)
            .unwrap_or_else(|| panic!("{path}: parameter {name} has no example"));
        filled = filled.replace(&format!("{{{name}}}"), &example);
        undocumented = undocumented.replace(&format!("{{{name}}}"), "");
    }
    // A GUID's example has braces of its own: look for placeholders left in the template.
    assert!(
        !undocumented.contains('{'),
        "{path}: a path parameter is not documented"
    );
    filled
}

fn example_of(schema: &Value, spec: &Value) -> Option<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.strip_prefix("#/components/schemas/")?;
        return example_of(&spec["components"]["schemas"][name], spec);
    }
    schema["examples"][0].as_str().map(str::to_string)
}
