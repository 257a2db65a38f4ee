//! What `Client::status` reports: a plain, serializable snapshot.

use serde::{Deserialize, Serialize};

/// Which kind of server the cache's quotas come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerRole {
    Primary,
    Backup,
    /// No server: not connected yet, or the cache is flushed.
    None,
}

/// A snapshot of the client's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub client_id: String,
    /// The name the servers show the site's operator for this client.
    #[serde(default)]
    pub name: String,
    /// The server whose answer the cache holds.
    pub server: ServerRole,
    /// Its address (`http://host:port`), `None` with [`ServerRole::None`].
    pub server_addr: Option<String>,
    /// GUID and context the server answered with.
    pub server_guid: Option<String>,
    pub server_context: Option<String>,
    /// True while the client talks to a backup (it says so in its requests).
    pub failover: bool,
    /// How long ago the last good answer's request was sent, in milliseconds.
    pub last_good_refresh_ms_ago: Option<u64>,
    /// Time left until the cache flushes unless a server answers, in milliseconds; `None`
    /// before the first answer, 0 once flushed.
    pub time_to_flush_ms: Option<u64>,
    /// True when a server had answered but none did for the flush period: new requests are
    /// denied until one answers again.
    pub flushed: bool,
    /// The last failed request (`server: error`); cleared by a good answer from the primary,
    /// so on a backup it says why the primary is not used.
    pub last_error: Option<String>,
    pub features: Vec<FeatureStatus>,
}

/// One feature in [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureStatus {
    pub feature: String,
    /// The quota of the last good answer (what the cache may hand out while the lease holds).
    pub quota: u32,
    /// Licenses held now.
    pub in_use: u32,
    /// Licenses held beyond what a valid lease covers: all of `in_use` once the lease ran
    /// out or the cache was flushed, else what exceeds a shrunk quota. The client reports
    /// them to the server, which counts them against the pool first.
    pub held_without_lease: u32,
    /// Grants and denials from the cache since the client started.
    pub acquired: u64,
    pub denied: u64,
    /// Acquires that found the quota used up and asked the server (deny-wait), granted or not.
    #[serde(default)]
    pub waited: u64,
    /// The server's words when the quota is below what was wanted.
    pub reason: Option<String>,
}
