//! Host clocks: every host runs `local(t) = skew + t·(1 + drift)` with |drift| ≤ 0.5 %.

use super::DRIFT_MAX_PPM;

#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    pub(super) drift_ppm: i64,
    pub(super) skew: u64,
}

impl Clock {
    pub(super) fn local(&self, t: u64) -> u64 {
        let scaled = i128::from(t) * i128::from(1_000_000 + self.drift_ppm) / 1_000_000;
        self.skew + u64::try_from(scaled).unwrap_or(0)
    }

    /// True duration after which this clock has advanced by `local_ms` (rounded up).
    pub(super) fn true_dur(&self, local_ms: u64) -> u64 {
        let den = u128::try_from(1_000_000 + self.drift_ppm).unwrap_or(1);
        u64::try_from((u128::from(local_ms) * 1_000_000).div_ceil(den)).unwrap_or(u64::MAX)
    }
}

/// A local duration in the worst case in true time (the slowest clock).
pub(super) fn slow(local_ms: u64) -> u64 {
    let den = u64::try_from(1_000_000 - DRIFT_MAX_PPM).unwrap_or(1);
    (local_ms * 1_000_000).div_ceil(den)
}
