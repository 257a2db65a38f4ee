//! Who may be leased licenses: the installation's client key (see [`crate::client_key`]).

use leasehold_proto::ErrorCode;
use leasehold_web::ApiError;

use super::{read, write, LicenseServer};
use crate::api::ClientKeyView;
use crate::client_key::KeyCheck;

impl LicenseServer {
    /// Whether `presented` (the bearer token of a lease request) is an accepted client key;
    /// refusals are counted by reason.
    pub fn check_client_key(&self, presented: Option<&str>) -> Result<KeyCheck, ApiError> {
        let check = read(&self.client_keys).check(presented, self.clock.now());
        match check {
            KeyCheck::Wrong => {
                let reason = if presented.is_some() {
                    "wrong"
                } else {
                    "missing"
                };
                metrics::counter!("leasehold_server_client_key_refusals_total", "reason" => reason)
                    .increment(1);
                Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    if presented.is_some() {
                        "the client key is not this installation's (or was replaced longer ago than the overlap); ask the site's operator for the current one (`leasehold server client-key`)"
                    } else {
                        "a client key is required: send Authorization: Bearer KEY (LEASEHOLD_CLIENT_KEY or LEASEHOLD_CLIENT_KEY_FILE; `leasehold server client-key` prints it)"
                    },
                ))
            }
            KeyCheck::Previous => {
                metrics::counter!("leasehold_server_client_key_previous_total").increment(1);
                Ok(check)
            }
            KeyCheck::Current => Ok(check),
        }
    }

    /// How long a replaced key stays valid.
    pub fn client_key_overlap(&self) -> chrono::Duration {
        self.client_key_overlap
    }

    pub fn client_key(&self) -> ClientKeyView {
        let keys = read(&self.client_keys);
        ClientKeyView {
            key: keys.current().to_owned(),
            previous_valid_until: keys.previous(self.clock.now()).collect(),
        }
    }

    /// Makes `key` (a fresh key with `None`) the client key; the replaced one stays valid for
    /// the configured overlap. A malformed key is refused and changes nothing.
    pub fn replace_client_key(&self, key: Option<String>) -> Result<ClientKeyView, ApiError> {
        let now = self.clock.now();
        let result = write(&self.client_keys).replace(key, now, self.client_key_overlap);
        result.map_err(|e| {
            if e.starts_with("a client key") {
                ApiError::bad_request(e)
            } else {
                ApiError::internal("license server", e)
            }
        })?;
        tracing::info!(overlap = ?self.client_key_overlap, "client key replaced");
        Ok(self.client_key())
    }
}
