//! `acquire` and the guard's drop never allocate, on grants and on every kind of denial:
//! a counting global allocator (counting per thread, so the refresher does not interfere)
//! around many calls.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use leasehold_client::{Client, Denied};
use leasehold_testkit::{release_date, stub};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn acquire_and_release_never_allocate() {
    let addr = stub::start(100);
    let client = Client::builder()
        .servers(&addr.to_string())
        .client_key(leasehold_testkit::CLIENT_KEY)
        .product_release(release_date())
        .features(["tts", "asr.en-US"])
        .refresh(Duration::from_millis(50))
        .build()
        .unwrap();
    assert!(client.wait_connected(Duration::from_secs(10)));
    let mut held = Vec::with_capacity(100);

    let before = allocations();
    for _ in 0..10_000 {
        let g = client.acquire("tts").unwrap();
        drop(g);
        let g = client.acquire_index(0).unwrap();
        drop(g);
        assert_eq!(client.acquire("nope").unwrap_err(), Denied::NoSuchFeature);
    }
    while let Ok(g) = client.acquire("tts") {
        held.push(g);
    }
    for _ in 0..10_000 {
        assert_eq!(client.acquire("tts").unwrap_err(), Denied::QuotaExhausted);
    }
    let raw = held.pop().unwrap().into_raw();
    assert!(client.release_raw(raw));
    held.clear();
    let after = allocations();
    assert_eq!(after - before, 0, "acquire/release allocated");
    assert_eq!(held.capacity(), 100);
}
