//! Client ↔ server lease messages (DESIGN.md §3.2).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::guid::ServerGuid;
use crate::ids::{ClientId, Feature};
use crate::license::Context;

/// The header every lease request and release carries: a secret the client made at start
/// (random, 16 to 128 visible ASCII characters). The server binds a client id to the first
/// secret it sees for it and refuses the id under any other (`client_id_in_use`), so a
/// process that learned another's client id cannot release or take over its licenses.
pub const CLIENT_SECRET_HEADER: &str = "leasehold-client-secret";

/// Checks a client secret's form (not its value).
pub fn check_client_secret(secret: &str) -> Result<(), String> {
    let ok_len = (16..=128).contains(&secret.len());
    let ok_chars = secret.bytes().all(|b| b.is_ascii_graphic());
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(format!(
            "the {CLIENT_SECRET_HEADER} header must be 16 to 128 visible ASCII characters"
        ))
    }
}

/// The header a client names itself with, for the site's operator: `hostname/program[pid]`
/// unless the application or `LEASEHOLD_CLIENT_NAME` says otherwise. UTF-8, percent-encoded
/// (see [`encode_client_name`]). Optional: a request without it is served. The server shows
/// it with the source address (Clients page, `leasehold server clients`) and never sends it
/// anywhere: usage reports carry counts only.
pub const CLIENT_NAME_HEADER: &str = "leasehold-client-name";

/// Longest client name, in characters.
pub const MAX_CLIENT_NAME_CHARS: usize = 128;

/// What a name's header form percent-encodes besides non-ASCII bytes: controls, space, `%`.
const NAME_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'%');

/// Checks a client name: 1 to [`MAX_CLIENT_NAME_CHARS`] characters, no control characters,
/// not blank.
pub fn check_client_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if name.trim().is_empty() {
        return Err("a client name must not be empty".into());
    }
    if chars > MAX_CLIENT_NAME_CHARS {
        return Err(format!(
            "a client name may be at most {MAX_CLIENT_NAME_CHARS} characters, this one has {chars}"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("a client name must not contain control characters".into());
    }
    Ok(())
}

/// A checked name in its header form.
pub fn encode_client_name(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, NAME_ENCODE).to_string()
}

/// The name a [`CLIENT_NAME_HEADER`] value carries, checked.
pub fn decode_client_name(header: &[u8]) -> Result<String, String> {
    let name = percent_encoding::percent_decode(header)
        .decode_utf8()
        .map_err(|_| format!("the {CLIENT_NAME_HEADER} header is not percent-encoded UTF-8"))?;
    check_client_name(&name).map_err(|e| format!("{CLIENT_NAME_HEADER}: {e}"))?;
    Ok(name.into_owned())
}

/// What a client tells the server every refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    pub client_id: ClientId,
    /// Release date of the client's product, for the maintenance check.
    pub product_release: NaiveDate,
    pub features: BTreeMap<Feature, FeatureRequest>,
    /// True when the client has given up on its primary and talks to a backup.
    #[serde(default)]
    pub failover: bool,
    /// Increases with every request the client sends (to any server). A server acts on a
    /// request's `quota` promises only if no later request of the client arrived before it;
    /// a release names the last request it covers, so one that arrives late cannot free a
    /// newer grant.
    #[serde(default)]
    pub seq: u64,
    /// The `epoch` of this server's last answer the client received (0 if none). A server
    /// frees what a request gives back only when the epoch is its own: a request sent to an
    /// earlier process of the server (delayed on the way, say) cannot give back a grant the
    /// client holds.
    #[serde(default)]
    pub epoch: u64,
    /// The client asks the server before it denies a call (deny-wait): it needs little
    /// headroom, since a call beyond its quota costs a round trip rather than a denial.
    #[serde(default)]
    pub asks: bool,
    /// The client's last request to this server: it gives back everything it holds here
    /// and leaves (clean shutdown, or back to the primary from a backup).
    #[serde(default)]
    pub release: bool,
}

impl LeaseRequest {
    /// Most features one request may name: the server refuses a longer list (each costs it
    /// a holding per client).
    pub const MAX_FEATURES: usize = 256;

    /// Checks what serde cannot, as the server does before it allocates anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.features.len() > Self::MAX_FEATURES {
            return Err(format!(
                "a lease request may name at most {} features",
                Self::MAX_FEATURES
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FeatureRequest {
    /// Licenses the client holds now, with or without a valid lease.
    pub in_use: u32,
    /// Licenses it would like to be able to hold (in use plus head room).
    pub want: u32,
    /// The most the client will hold under this server's earlier answers from now on: the
    /// quota of its installed lease from this server, lowered before sending to what it
    /// keeps (0 when its lease is from another server or has expired). The server frees
    /// the rest of its reservation on receipt. A restarted server relearning its leases
    /// confirms at most this much.
    #[serde(default)]
    pub quota: u32,
    /// Calls waiting now for a license of this feature (deny-wait): part of `want`, to be
    /// granted before any headroom.
    #[serde(default)]
    pub waiting: u32,
    /// Acquisitions granted from the cache that the client has reported to this server, a
    /// running total over its reports to this server only (re-sending a report changes
    /// nothing; calls reported to another server are never in it).
    #[serde(default)]
    pub acquired: u64,
    /// Acquisitions denied by the cache, reported to this server (a running total, as
    /// `acquired`).
    #[serde(default)]
    pub denied: u64,
    /// What this server last confirmed as durably counted of `acquired` (its answer's
    /// `counted_acquired`). A server that lost track of the client counts only beyond it.
    #[serde(default)]
    pub counted_acquired: u64,
    /// What this server last confirmed as durably counted of `denied`.
    #[serde(default)]
    pub counted_denied: u64,
}

/// What the server grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LeaseResponse {
    pub server_guid: ServerGuid,
    pub context: Context,
    pub lease_secs: u64,
    pub features: BTreeMap<Feature, FeatureQuota>,
    /// Random per server process: the client sends it back as its request's `epoch`.
    #[serde(default)]
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FeatureQuota {
    /// How many the client may hold at once until its lease expires.
    pub quota: u32,
    /// Why the quota is below what was wanted, for programs; `reason` says it for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<QuotaReason>,
    /// Why the quota is below what was wanted, when it is for a reason other than sharing
    /// (no such license, maintenance expired, backup not in failover, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Headroom (quota beyond what is held) the client may keep: when calls end and it
    /// holds more than `keep` beyond its use, it gives the rest back at once rather than at
    /// its next refresh. Small when the pool is tight.
    #[serde(default)]
    pub keep: u32,
    /// The client's `acquired` total as this server has durably counted it.
    #[serde(default)]
    pub counted_acquired: u64,
    /// The client's `denied` total as this server has durably counted it.
    #[serde(default)]
    pub counted_denied: u64,
}

/// Why a quota is below what a client wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum QuotaReason {
    /// Every license of the feature is in use or promised to other clients.
    Exhausted,
    /// The server restarted recently and is relearning leases.
    Relearning,
    /// The server has no license for the feature.
    NoLicense,
    /// Maintenance of every license of the feature ends before the product's release.
    Maintenance,
    /// A backup server asked by a client that is not in failover.
    BackupOnly,
    /// The server serves no licenses at all now (not synced, grace over, clock set back).
    Suspended,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_round_trip_through_their_header_form() {
        for name in [
            "media-7/asr-worker[4711]",
            "Zoë's laptop / dictation",
            "a%b 100%",
        ] {
            let header = encode_client_name(name);
            assert!(header.bytes().all(|b| b.is_ascii_graphic()), "{header}");
            assert_eq!(decode_client_name(header.as_bytes()).as_deref(), Ok(name));
        }
    }

    #[test]
    fn bad_client_names_are_refused_with_the_reason() {
        let long = "x".repeat(MAX_CLIENT_NAME_CHARS + 1);
        for (name, says) in [
            ("", "empty"),
            ("  ", "empty"),
            (long.as_str(), "at most"),
            ("a\nb", "control"),
        ] {
            let e = decode_client_name(encode_client_name(name).as_bytes()).unwrap_err();
            assert!(
                e.contains(says) && e.contains(CLIENT_NAME_HEADER),
                "{name:?}: {e}"
            );
        }
        let e = decode_client_name(b"%FF%FE").unwrap_err();
        assert!(e.contains("UTF-8"), "{e}");
        assert!(check_client_name(&"é".repeat(MAX_CLIENT_NAME_CHARS)).is_ok());
    }

    #[test]
    fn a_request_naming_more_features_than_the_limit_is_refused() {
        let feature = |i: usize| {
            (
                Feature::parse(&format!("f{i}")).unwrap(),
                FeatureRequest::default(),
            )
        };
        let mut req = LeaseRequest {
            client_id: ClientId::from_random([1; 16]),
            product_release: NaiveDate::from_ymd_opt(2026, 9, 1).unwrap(),
            features: (0..LeaseRequest::MAX_FEATURES).map(feature).collect(),
            failover: false,
            seq: 1,
            epoch: 0,
            asks: false,
            release: false,
        };
        assert_eq!(req.validate(), Ok(()));
        req.features.extend([feature(LeaseRequest::MAX_FEATURES)]);
        let e = req.validate().unwrap_err();
        assert!(e.contains("at most 256 features"), "{e}");
    }
}
