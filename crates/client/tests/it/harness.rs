//! Client-only helpers on top of the test kit (`leasehold_testkit::blocking` runs the node,
//! the servers and the proxies): a client builder with the shortened timings most tests use,
//! a feature's status, and threads hammering a client while counting what they hold.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use leasehold_client::{Client, ClientBuilder, Denied};
use leasehold_testkit::release_date;

/// A client builder on `servers` for `tts` with the shortened timings most tests use.
pub fn client_builder(servers: &str) -> ClientBuilder {
    Client::builder()
        .servers(servers)
        .client_key(leasehold_testkit::CLIENT_KEY)
        .product_release(release_date())
        .feature("tts")
        .refresh(Duration::from_millis(100))
        .failover_after(Duration::from_millis(500))
        .flush_after(Duration::from_millis(1500))
}

/// Counts licenses held across threads and clients and remembers the most held at once.
#[derive(Debug, Default)]
pub struct HeldCounter {
    held: AtomicU32,
    max: AtomicU32,
}

impl HeldCounter {
    /// Call right after a successful acquire.
    pub fn up(&self) {
        let now = self.held.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    /// Call right before dropping the guard.
    pub fn down(&self) {
        self.held.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn max(&self) -> u32 {
        self.max.load(Ordering::SeqCst)
    }
}

/// Feature status of `feature` in a client's status.
pub fn feature(client: &Client, feature: &str) -> leasehold_client::FeatureStatus {
    client
        .status()
        .features
        .into_iter()
        .find(|f| f.feature == feature)
        .unwrap()
}

/// Runs `threads` threads hammering `tts` on `client` until `stop`; counts into `held` (all
/// clients) and `mine` (this client). Returns the number of grants and of `Flushed`/`NotConnected` denials.
pub fn hammer(
    client: &Client,
    threads: usize,
    stop: &AtomicBool,
    held: &HeldCounter,
    mine: &HeldCounter,
) -> (u64, u64) {
    let grants = AtomicU64::new(0);
    let flushed = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let grants = &grants;
            let flushed = &flushed;
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    match client.acquire("tts") {
                        Ok(g) => {
                            held.up();
                            mine.up();
                            grants.fetch_add(1, Ordering::Relaxed);
                            // Hold it a little, sometimes longer.
                            if (i + t as u64).is_multiple_of(16) {
                                std::thread::sleep(Duration::from_micros(300));
                            } else {
                                std::thread::yield_now();
                            }
                            mine.down();
                            held.down();
                            drop(g);
                        }
                        Err(Denied::QuotaExhausted) => std::thread::yield_now(),
                        Err(Denied::Flushed | Denied::NotConnected) => {
                            flushed.fetch_add(1, Ordering::Relaxed);
                            std::thread::yield_now();
                        }
                        Err(e) => panic!("unexpected denial {e:?}"),
                    }
                }
            });
        }
    });
    (
        grants.load(Ordering::Relaxed),
        flushed.load(Ordering::Relaxed),
    )
}
