//! Bundle signing and verification with 100 licenses (DESIGN.md §5, issue 2).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use leasehold_proto::{
    BundlePayload, Context, Feature, InstallationId, License, LicenseId, ServerGuid,
    SignedEnvelope, SyncToken, TrustedKeys, VendorSigningKey,
};

fn bundle(licenses: usize) -> BundlePayload {
    let issued = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
    BundlePayload {
        serial: 1,
        server_guid: ServerGuid::from_bytes([0xAB; 16]),
        context: Context::Production,
        installation_id: InstallationId::from_random([1; 8]),
        issued_at: issued,
        not_after: issued + chrono::Duration::days(60),
        sync_interval_secs: 86_400,
        next_sync_token: SyncToken::from_random([2; 16]),
        acked_usage_seq: 0,
        licenses: (0..licenses)
            .map(|i| License {
                id: LicenseId::from_random((i as u64).to_be_bytes()),
                feature: Feature::parse(&format!("asr.lang-{i}")).unwrap(),
                count: 20,
                context: Context::Production,
                maintenance_until: NaiveDate::from_ymd_opt(2027, 6, 30).unwrap(),
                expires: Some(NaiveDate::from_ymd_opt(2028, 1, 1).unwrap()),
                backs_up: None,
            })
            .collect(),
    }
}

fn envelope(c: &mut Criterion) {
    let key = VendorSigningKey::from_secret_bytes([7; 32]);
    let trusted = TrustedKeys::new().with(key.verifying_key());
    let b = bundle(100);
    let env = key.sign_bundle(&b);
    let text = env.to_json();

    let mut g = c.benchmark_group("bundle_100_licenses");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign", |bench| bench.iter(|| key.sign_bundle(&b)));
    g.bench_function("verify_and_open", |bench| {
        bench.iter(|| {
            SignedEnvelope::from_json(text.as_bytes())
                .unwrap()
                .open_bundle(&trusted, b.server_guid, Some(Context::Production))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
