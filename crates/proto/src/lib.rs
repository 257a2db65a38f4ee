//! Leasehold's pure core: identifiers, licenses, the signed bundle envelope, usage reports,
//! lease messages and the rules that decide where a license may load. No I/O lives here;
//! the node, the server, the client and the CLI all build on these types.
#![forbid(unsafe_code)]

pub mod api;
pub mod clock;
pub mod envelope;
pub mod error;
pub mod guid;
pub mod ids;
pub mod lease;
pub mod license;
#[cfg(feature = "openapi")]
mod openapi;
pub mod rules;
pub mod sync;
pub mod traffic;
pub mod usage;

pub use clock::{Clock, ManualClock, SystemClock};
pub use envelope::{
    parse_public_key, public_key_to_string, EnvelopeError, KeyId, PublicKeyError, SignedEnvelope,
    TrustedKeys, VendorSigningKey,
};
pub use error::{ErrorBody, ErrorCode, Health};
pub use guid::{GuidError, ServerGuid};
pub use ids::{
    AccountId, ApiTokenId, ClientId, Feature, IdError, InstallationId, InstanceId, LicenseId,
    SyncToken,
};
pub use lease::{
    check_client_name, check_client_secret, decode_client_name, encode_client_name, FeatureQuota,
    FeatureRequest, LeaseRequest, LeaseResponse, QuotaReason, CLIENT_NAME_HEADER,
    CLIENT_SECRET_HEADER, MAX_CLIENT_NAME_CHARS,
};
pub use license::{Context, ContextError, License, LicenseError};
pub use sync::{BundlePayload, SyncUpload};
pub use usage::UsageBucket;

/// Grace never goes below this many days: the seed promises at least 60 days without contact.
pub const MIN_GRACE_DAYS: u32 = 60;
/// Default interval between syncs with the license nodes.
pub const DEFAULT_SYNC_INTERVAL_SECS: u64 = 24 * 60 * 60;
/// How long a client's lease lasts after its last successful request (the seed's two minutes).
pub const LEASE_SECS: u64 = 120;
/// Largest sync upload a node accepts, in bytes.
pub const MAX_SYNC_BODY_BYTES: usize = 4 * 1024 * 1024;
