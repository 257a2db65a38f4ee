//! `acquire` + release from the cache (DESIGN.md §5: < 100 ns median, no allocation, no
//! lock). The cache is filled by a stub server on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/stub.rs"]
mod stub;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use leasehold_client::Client;

fn acquire(c: &mut Criterion) {
    let addr = stub::start(1_000_000);
    let client = Client::builder()
        .servers(&addr.to_string())
        .product_release(chrono::NaiveDate::from_ymd_opt(2026, 10, 1).unwrap())
        .features(["asr.en-US", "tts"])
        .build()
        .unwrap();
    assert!(client.wait_connected(Duration::from_secs(10)));
    c.bench_function("acquire + release", |b| {
        b.iter(|| drop(std::hint::black_box(client.acquire("tts").unwrap())))
    });
    c.bench_function(
        "acquire + release, other threads busy on the same feature",
        |b| {
            let stop = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        drop(client.acquire("tts"));
                    }
                });
                b.iter(|| drop(std::hint::black_box(client.acquire("tts").unwrap())));
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
        },
    );
    c.bench_function("denied (no such feature)", |b| {
        b.iter(|| std::hint::black_box(client.acquire("nope")).is_err())
    });
}

criterion_group!(benches, acquire);
criterion_main!(benches);
