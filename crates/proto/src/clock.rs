//! Time is injected, never read ad hoc: everything that needs "now" takes a `Clock`, so tests
//! can move time by 60 days and the simulation can skew it.

use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + fmt::Debug {
    /// Wall-clock time, UTC. May jump, may be set back.
    fn now(&self) -> DateTime<Utc>;
    /// Monotonic milliseconds since an arbitrary start; never goes back. Leases are timed
    /// with this, never with the wall clock.
    fn monotonic_ms(&self) -> u64;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn monotonic_ms(&self) -> u64 {
        static START: OnceLock<Instant> = OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock tests set and move by hand. `advance` moves both clocks; `set` moves only the
/// wall clock, as an operator changing the system time would.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<(DateTime<Utc>, u64)>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new((start, 1_000)),
        }
    }

    pub fn set(&self, to: DateTime<Utc>) {
        self.now.lock().unwrap_or_else(|e| e.into_inner()).0 = to;
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        now.0 += by;
        now.1 += u64::try_from(by.num_milliseconds()).unwrap_or(0);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.now.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    fn monotonic_ms(&self) -> u64 {
        self.now.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}
