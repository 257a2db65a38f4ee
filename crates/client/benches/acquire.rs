//! `acquire` + release from the cache (DESIGN.md §5: < 100 ns median, no allocation, no
//! lock). The cache is filled by a stub server on loopback. Beside it, for the record, the
//! same license taken by a network round trip to a real license server (a FlexLM-style
//! checkout): one `POST /v1/lease` to a server synced with a node, both in this process on
//! loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use leasehold_client::Client;
use leasehold_proto::{LeaseRequest, LeaseResponse};
use leasehold_testkit::blocking::Env;
use leasehold_testkit::server::lease_request;
use leasehold_testkit::{release_date, stub};

fn acquire(c: &mut Criterion) {
    let addr = stub::start(1_000_000);
    let client = Client::builder()
        .servers(&addr.to_string())
        .client_key(leasehold_testkit::CLIENT_KEY)
        .product_release(release_date())
        .features(["asr.en-US", "tts"])
        .build()
        .unwrap();
    assert!(client.wait_connected(Duration::from_secs(10)));
    c.bench_function("acquire + release", |b| {
        b.iter(|| drop(std::hint::black_box(client.acquire("tts").unwrap())))
    });
    c.bench_function("acquire_index + release", |b| {
        let i = client.feature_index("tts").unwrap();
        b.iter(|| drop(std::hint::black_box(client.acquire_index(i).unwrap())))
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

/// The same license over the network: every iteration is a full HTTP round trip to a real
/// license server (loopback, keep-alive connection, JSON both ways, the allocator's
/// decision), as a checkout in a FlexLM-style system costs.
fn network_checkout(c: &mut Criterion) {
    let env = Env::new();
    let server = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let url = format!("http://{}/v1/lease", server.addr());
    let http = leasehold_testkit::server::lease_http();
    let post = |req: &LeaseRequest| -> LeaseResponse {
        env.rt.block_on(async {
            let r = http.post(&url).json(req).send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.json().await.unwrap()
        })
    };
    // Client 7 holding none of `tts`, asking for one, then giving it back.
    let checkout = lease_request(7, "tts", 0, 1, 1);
    let checkin = lease_request(7, "tts", 0, 0, 0);
    let granted = post(&checkout);
    assert_eq!(granted.features.values().next().unwrap().quota, 1);

    let mut group = c.benchmark_group("network");
    group.sample_size(20);
    group.bench_function("network_checkout (one POST /v1/lease round trip)", |b| {
        b.iter(|| std::hint::black_box(post(&checkout)))
    });
    group.bench_function("network checkout + checkin (two round trips)", |b| {
        b.iter(|| {
            std::hint::black_box(post(&checkout));
            std::hint::black_box(post(&checkin));
        })
    });
    group.finish();
    env.stop_server(server);
}

criterion_group!(benches, acquire, network_checkout);
criterion_main!(benches);
