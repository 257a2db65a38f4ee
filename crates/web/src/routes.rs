//! The routes every service answers the same way.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use leasehold_proto::{ErrorCode, Health};

use crate::ApiError;

/// Which service answers: its name in health answers and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Node,
    Server,
}

impl Service {
    /// The kind, as `/v1/health` reports it.
    pub fn kind(self) -> &'static str {
        match self {
            Service::Node => "node",
            Service::Server => "server",
        }
    }

    /// The name a person reads in messages.
    pub fn name(self) -> &'static str {
        match self {
            Service::Node => "license node",
            Service::Server => "license server",
        }
    }
}

/// `GET /v1/health`: `{"status":"ok","service":"node"|"server","version":"…"}`, unauthenticated.
/// The state names the service (`Service: FromRef<S>`).
#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "health",
    responses((status = 200, description = "The process answers; the same shape on every listener of every service", body = Health))
)]
pub async fn health(State(service): State<Service>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        service: service.kind().into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// The fallback: a JSON `not_found` naming the service.
pub fn not_found(service: Service) -> impl Fn() -> std::future::Ready<ApiError> + Clone {
    move || {
        std::future::ready(ApiError::new(
            ErrorCode::NotFound,
            format!("no such route on this {}", service.name()),
        ))
    }
}

/// The `/metrics` answer: the process's metrics in Prometheus text format.
pub fn metrics_response() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt as _;

    async fn call(app: Router, path: &str) -> (StatusCode, serde_json::Value) {
        let resp = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn health_and_not_found_answer_in_json() {
        let app = Router::new()
            .route("/v1/health", get(health))
            .fallback(not_found(Service::Server))
            .with_state(Service::Server);
        let (status, body) = call(app.clone(), "/v1/health").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["service"], "server");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
        let (status, body) = call(app, "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "not_found");
        assert!(body["message"].as_str().unwrap().contains("license server"));
    }
}
