//! A license server's lease API as a raw protocol client: `POST /v1/lease` and
//! `DELETE /v1/lease/{client_id}`. Applications use the client library (`crates/client`),
//! which runs the client policy; this is for load generators and tests that play clients.

use leasehold_proto::{ClientId, LeaseRequest, LeaseResponse};
use reqwest::{Method, Url};

use crate::endpoint::{Auth, Body, Endpoint};
use crate::Result;

#[derive(Debug, Clone)]
pub struct LeaseApi {
    endpoint: Endpoint,
}

impl LeaseApi {
    /// On `http`'s pool (a load generator shares one among its simulated clients).
    pub fn with_http(http: reqwest::Client, base: Url) -> Self {
        Self {
            endpoint: Endpoint::new(http, base, None, "license server", ""),
        }
    }

    pub async fn lease(&self, request: &LeaseRequest) -> Result<LeaseResponse> {
        self.endpoint
            .json(
                Method::POST,
                "v1/lease",
                Body::Json(request),
                Auth::Optional,
            )
            .await
    }

    /// Gives back everything `client` holds, as of its request `seq` answered in `epoch`.
    pub async fn release(&self, client: &ClientId, seq: u64, epoch: u64) -> Result<()> {
        let path = format!("v1/lease/{client}?seq={seq}&epoch={epoch}");
        self.endpoint
            .raw(Method::DELETE, &path, Body::<()>::None, Auth::Optional)
            .await
            .map(drop)
    }
}
