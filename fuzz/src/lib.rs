//! What more than one fuzz target needs: the allocators the lease targets drive and the
//! checks they make after every request. Only fixtures and checks live here; every target
//! calls the real code.

use chrono::NaiveDate;
use leasehold_proto::LeaseRequest;
use leasehold_server::allocator::{Allocator, ClientRequest, PoolLicense, Serving, Start};

/// The allocators' epoch: requests that send it back take the trusted path (freeing on the
/// client's word).
pub const EPOCH: u64 = 1;
/// Time between two requests; a hold (130 s) runs out after seven.
pub const STEP_MS: u64 = 20_000;

/// The licenses every allocator here serves.
pub fn pool() -> Vec<PoolLicense> {
    let license = |feature: &str, count, (y, m, d)| PoolLicense {
        feature: feature.parse().unwrap(),
        count,
        maintenance_until: NaiveDate::from_ymd_opt(y, m, d).unwrap(),
    };
    vec![
        license("tts", 10, (2027, 1, 1)),
        // Two maintenance tiers: a product released after mid-2026 draws only on the newer.
        license("asr.en-US", 3, (2026, 6, 30)),
        license("asr.en-US", 4, (2027, 12, 31)),
        license("one", 1, (2027, 1, 1)),
        // A count near the top of its type, for the allocator's arithmetic.
        license("site", 4_000_000_000, (2030, 1, 1)),
    ]
}

/// A fresh production server, and a backup server relearning its leases after a restart,
/// both serving [`pool`].
pub fn allocators() -> [Allocator; 2] {
    allocators_serving(&pool())
}

/// [`allocators`] serving `licenses`.
pub fn allocators_serving(licenses: &[PoolLicense]) -> [Allocator; 2] {
    let mut production = Allocator::new(0, Start::Fresh, false, EPOCH);
    production.set_licenses(licenses);
    let mut backup = Allocator::new(0, Start::Learning { counts: Vec::new() }, true, EPOCH);
    backup.set_licenses(licenses);
    [production, backup]
}

/// Request number `i` (at `i + 1` steps) through `alloc`, as the lease handler hands it
/// over, then the checks: the bookkeeping matches a recount, no quota and no feature's
/// reservations exceed its licensed count (DESIGN.md §4.1); every third request a flush.
pub fn answer_and_check(alloc: &mut Allocator, i: usize, req: &LeaseRequest) {
    let now = (i as u64 + 1) * STEP_MS;
    let answer = alloc.request(now, &ClientRequest::from(req), &Serving::Yes);
    if let Err(e) = alloc.check_consistency() {
        panic!("after request {i}: {e}");
    }
    for (feature, quota) in &answer.features {
        assert!(
            quota.quota <= alloc.count(feature),
            "request {i}: quota {} of {feature} beyond its count {}",
            quota.quota,
            alloc.count(feature)
        );
    }
    for (feature, totals) in alloc.totals() {
        let reserved = alloc.reserved(&feature);
        assert!(
            reserved <= u64::from(totals.count),
            "request {i}: {reserved} of {feature} reserved, {} licensed",
            totals.count
        );
    }
    if i % 3 == 2 {
        // A flush: the snapshot is written and its counts confirmed.
        let snapshot = alloc.snapshot();
        alloc.mark_durable(&snapshot);
    }
}

/// Whether `value` holds a string with a run of 256 or more `'` or `"`: `toml` 0.8 (through
/// `toml_write` 0.1.2, the last of its line) counts such runs in a `u8` and, in builds with
/// overflow checks (debug builds and these targets), panics printing it. Release builds
/// print it right. Fixed in `toml_writer` 1.2 (toml-rs/toml#1188), which `toml` 0.9 uses;
/// until the workspace moves to it, the targets that print TOML skip such values rather than
/// report the same upstream bug again.
pub fn toml_write_overflows(value: &impl serde::Serialize) -> bool {
    fn long_run(s: &str) -> bool {
        let mut run = (0, 0);
        for b in s.bytes() {
            run = match b {
                b'\'' => (run.0 + 1, 0),
                b'"' => (0, run.1 + 1),
                _ => (0, 0),
            };
            if run.0 >= 256 || run.1 >= 256 {
                return true;
            }
        }
        false
    }
    fn walk(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => long_run(s),
            serde_json::Value::Array(a) => a.iter().any(walk),
            serde_json::Value::Object(o) => o.iter().any(|(k, v)| long_run(k) || walk(v)),
            _ => false,
        }
    }
    serde_json::to_value(value).map_or(false, |v| walk(&v))
}
