//! The values every test shares: one vendor key (and a foreign one), the admin tokens, the
//! moment the manual clocks start, the product release date, the standard maintenance date
//! and a license grant with the usual defaults. A test that asserts a date or a count derives
//! it from these rather than repeating the literal.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use leasehold_node::api::GrantLicense;
use leasehold_proto::{Feature, ManualClock, ServerGuid, TrustedKeys, VendorSigningKey};

/// The bootstrap token of every test node (`--admin-token`): it only creates the first admin
/// account; the vendor admin API then takes that account's own token.
pub const NODE_TOKEN: &str = "test-node-admin-token-0123456789";

/// The first admin account of every test node, and its password.
pub const NODE_ADMIN: &str = "admin";
/// The password of every staff account the tests create.
pub const STAFF_PASSWORD: &str = "correct horse battery staple";

/// The admin token of every test license server (`leasehold server ... --token`).
pub const SERVER_TOKEN: &str = "test-server-admin-token-0123456789";

/// The client key every test server of the installation shares (written into its data
/// directory before it starts, as an operator copies the primary's key to its backups).
pub const CLIENT_KEY: &str =
    "lhck_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Writes [`CLIENT_KEY`] as the client key of the data directory `dir` (created if
/// missing) unless it has a key, as an operator gives a backup its primary's key. A path
/// that cannot be a directory (a test of a bad data directory) is left alone.
pub fn share_client_key(data_dir: &std::path::Path) {
    let has_key = data_dir
        .join(leasehold_server::client_key::CLIENT_KEY_FILE)
        .exists();
    if !has_key && std::fs::create_dir_all(data_dir).is_ok() {
        let _ = leasehold_server::client_key::ClientKeys::install(
            data_dir,
            CLIENT_KEY,
            chrono::Utc::now(),
        );
    }
}

/// The vendor key test nodes sign with and test servers trust.
pub fn vendor_key() -> VendorSigningKey {
    VendorSigningKey::from_secret_bytes([11; 32])
}

/// A vendor key no test server trusts, for "signed by someone else" tests.
pub fn other_vendor_key() -> VendorSigningKey {
    VendorSigningKey::from_secret_bytes([99; 32])
}

/// The keys a test server trusts: [`vendor_key`] only.
pub fn trusted_keys() -> TrustedKeys {
    TrustedKeys::new().with(vendor_key().verifying_key())
}

/// When every manual clock starts.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 30, 0).unwrap()
}

/// A manual clock at [`start_time`], to share between a node and its servers.
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(start_time()))
}

/// The release date of the product the test clients are: before [`maintenance_date`].
pub fn release_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()
}

/// The maintenance date of every license a test grants unless it says otherwise.
pub fn maintenance_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2027, 6, 30).unwrap()
}

/// A grant of `count` licenses of `feature` to `server`: the server's context, maintenance
/// to [`maintenance_date`], no expiry, backing up nothing. Change fields with
/// `GrantLicense { expires: …, ..grant_request(…) }`.
pub fn grant_request(server: ServerGuid, feature: &str, count: u32) -> GrantLicense {
    GrantLicense {
        server,
        feature: Feature::parse(feature).unwrap(),
        count,
        context: None,
        maintenance_until: maintenance_date(),
        expires: None,
        backs_up: None,
    }
}
