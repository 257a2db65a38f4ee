//! What every listener's OpenAPI description shares: the two bearer schemes, the error body
//! every refusal carries, `GET /openapi.json` (unauthenticated: a description holds no
//! secrets) and the one JSON rendering `docs/openapi/` commits. Each service declares its
//! routes with `utoipa_axum::routes!`, so its description comes from the same declaration
//! as its router; [`finish`] then adds what is shared here.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use leasehold_proto::{ErrorBody, ErrorCode};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{PartialSchema as _, ToSchema as _};

/// The security scheme of the license server's admin API, and of the node's bootstrap:
/// `Authorization: Bearer <admin token>`.
pub const ADMIN_TOKEN: &str = "admin_token";
/// The security scheme of the node's vendor admin API: a staff account's personal token.
/// Its scope names the least role that may call the operation (`support` or `admin`).
pub const VENDOR_TOKEN: &str = "vendor_token";
/// The security scheme of the lease API: `Authorization: Bearer lhck_…` (the client key).
pub const CLIENT_KEY: &str = "client_key";

/// Completes a listener's description: the security schemes its operations name, a `401`
/// answer on every operation that needs one, and a `default` answer (the error body) on
/// every operation, for the refusals its own list leaves out.
pub fn finish(mut api: OpenApi) -> OpenApi {
    let mut schemes_used = std::collections::BTreeSet::new();
    for item in api.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let names = security_names(operation);
            let admin_only = security_scopes(operation, VENDOR_TOKEN)
                .iter()
                .any(|s| s == "admin");
            let responses = &mut operation.responses.responses;
            if !names.is_empty() {
                responses.entry("401".into()).or_insert_with(|| {
                    refusal("`unauthorized`: the bearer token is missing or wrong; nothing changed")
                });
            }
            if admin_only {
                responses.entry("403".into()).or_insert_with(|| {
                    refusal("`forbidden`: the account's role is support, and this needs admin; nothing changed")
                });
            }
            responses.entry("default".into()).or_insert_with(|| {
                refusal("A refusal: `error` says why (docs/protocol.md lists every code and its status); nothing changed")
            });
            schemes_used.extend(names);
        }
    }
    let components = api.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components
        .schemas
        .insert(ErrorCode::name().into_owned(), ErrorCode::schema());
    for name in schemes_used {
        let description = match name.as_str() {
            ADMIN_TOKEN => "The service's admin token: a license server's `--admin-token` (`LEASEHOLD_SERVER_TOKEN`, or the data directory's `admin-token` file); on a license node the bootstrap token (`--admin-token`, `LEASEHOLD_ADMIN_TOKEN`), which only creates the first admin account.",
            VENDOR_TOKEN => "A vendor staff account's personal API token, `lhv_` and 64 hex digits (`POST /v1/admin/login`, `leasehold vendor login`, or the console's Account page). The scope names the least role that may call the operation: `support` (support and admin accounts) or `admin`.",
            CLIENT_KEY => "The installation's client key, `lhck_` and 64 hex digits (the server's `DATA_DIR/client-key`, shown by `GET /v1/admin/client-key`).",
            _ => continue,
        };
        components.add_security_scheme(
            name,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            ),
        );
    }
    api
}

/// The names of the security schemes an operation requires.
fn security_names(operation: &Operation) -> Vec<String> {
    let requirements = operation.security.iter().flatten();
    requirements
        .filter_map(|r| match serde_json::to_value(r) {
            Ok(serde_json::Value::Object(map)) => Some(map.into_iter().map(|(name, _)| name)),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The scopes an operation's requirement of scheme `name` lists.
pub fn security_scopes(operation: &Operation, name: &str) -> Vec<String> {
    operation
        .security
        .iter()
        .flatten()
        .filter_map(|r| serde_json::to_value(r).ok())
        .filter_map(|v| v.get(name).cloned())
        .filter_map(|v| serde_json::from_value::<Vec<String>>(v).ok())
        .flatten()
        .collect()
}

fn refusal(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build()
        .into()
}

/// The description as `docs/openapi/` holds it: pretty-printed, keys in a stable order,
/// ending with a newline.
pub fn to_json(api: &OpenApi) -> String {
    let mut text = api.to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// A listener's own description, rendered once; [`layer`] hands it to [`openapi_json`].
#[derive(Debug, Clone)]
pub struct Description(Arc<str>);

/// The layer that lets a listener's `GET /openapi.json` answer with `api`.
pub fn layer(api: &OpenApi) -> Extension<Description> {
    Extension(Description(to_json(api).into()))
}

/// `GET /openapi.json`: this listener's description.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "description",
    responses((
        status = 200,
        description = "This listener's OpenAPI 3.1 description (the same as the repository's `docs/openapi/`); no token needed",
        content_type = "application/json",
        body = serde_json::Value,
    ))
)]
pub async fn openapi_json(Extension(description): Extension<Description>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        description.0.to_string(),
    )
}
