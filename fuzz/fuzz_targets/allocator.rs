//! The allocator behind `POST /v1/lease`, sent lease requests made from raw bytes
//! (`arbitrary`) rather than JSON, so that the fuzzer reaches any integer in a step: a few
//! clients, the pool's features and one it lacks, any counts, sequence numbers and epochs,
//! and up to four more licenses in the bundle, of any count.
//! The same allocators and checks as the `lease_request` target
//! (`leasehold_fuzz::answer_and_check`).
#![no_main]

use std::collections::BTreeMap;

use chrono::NaiveDate;
use leasehold_fuzz::{allocators_serving, answer_and_check, pool, EPOCH};
use leasehold_proto::{ClientId, Feature, FeatureRequest, LeaseRequest};
use leasehold_server::allocator::PoolLicense;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

const FEATURES: [&str; 5] = ["tts", "asr.en-US", "one", "site", "unlicensed"];
/// Before, between and after the pool's maintenance dates.
const RELEASES: [(i32, u32, u32); 4] = [(2026, 1, 1), (2026, 9, 1), (2028, 1, 1), (2031, 1, 1)];

#[derive(Debug, Arbitrary)]
struct Request {
    client: u8,
    release: u8,
    features: Vec<(u8, Wants)>,
    failover: bool,
    seq: u64,
    /// 0: none, 1: this server's, else that number.
    epoch: u64,
    asks: bool,
    last: bool,
}

#[derive(Debug, Arbitrary)]
struct Wants {
    in_use: u32,
    want: u32,
    quota: u32,
    waiting: u32,
    acquired: u64,
    denied: u64,
    counted_acquired: u64,
    counted_denied: u64,
}

impl Request {
    fn to_lease_request(&self) -> LeaseRequest {
        let (y, m, d) = RELEASES[usize::from(self.release) % RELEASES.len()];
        let features: BTreeMap<Feature, FeatureRequest> = self
            .features
            .iter()
            .map(|(f, w)| {
                let feature = FEATURES[usize::from(*f) % FEATURES.len()].parse().unwrap();
                let request = FeatureRequest {
                    in_use: w.in_use,
                    want: w.want,
                    quota: w.quota,
                    waiting: w.waiting,
                    acquired: w.acquired,
                    denied: w.denied,
                    counted_acquired: w.counted_acquired,
                    counted_denied: w.counted_denied,
                };
                (feature, request)
            })
            .collect();
        LeaseRequest {
            client_id: ClientId::from_random([self.client % 4; 16]),
            product_release: NaiveDate::from_ymd_opt(y, m, d).unwrap(),
            features,
            failover: self.failover,
            seq: self.seq,
            epoch: if self.epoch == 1 { EPOCH } else { self.epoch },
            asks: self.asks,
            release: self.last,
        }
    }
}

/// Licenses the bundle adds to the target's pool: any count, on one of the features, with
/// one of the maintenance dates.
#[derive(Debug, Arbitrary)]
struct ExtraLicense {
    feature: u8,
    count: u32,
    maintenance: u8,
}

#[derive(Debug, Arbitrary)]
struct Input {
    licenses: Vec<ExtraLicense>,
    requests: Vec<Request>,
}

fuzz_target!(|input: Input| {
    let mut licenses = pool();
    for l in input.licenses.iter().take(4) {
        let (y, m, d) = RELEASES[usize::from(l.maintenance) % RELEASES.len()];
        licenses.push(PoolLicense {
            feature: FEATURES[usize::from(l.feature) % FEATURES.len()]
                .parse()
                .unwrap(),
            count: l.count,
            maintenance_until: NaiveDate::from_ymd_opt(y, m, d).unwrap(),
        });
    }
    let mut allocators = allocators_serving(&licenses);
    for (i, r) in input.requests.iter().enumerate() {
        let req = r.to_lease_request();
        if req.validate().is_err() {
            continue;
        }
        for alloc in &mut allocators {
            answer_and_check(alloc, i, &req);
        }
    }
});
