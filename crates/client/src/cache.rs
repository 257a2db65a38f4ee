//! The local license cache: one slot of atomics per configured feature. `acquire` and the
//! guard's drop touch only these atomics: no lock, no allocation, no system call.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Instant;

use leasehold_proto::{Feature, QuotaReason};

/// Why `acquire` said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Denied {
    /// Every license of the quota this client holds is in use (the server gave no more:
    /// all licenses are in use or promised to other clients, or it is relearning leases after
    /// a restart). The client asks for a larger quota at its next refresh.
    QuotaExhausted,
    /// No license server answered for the flush period (or the lease ran out): the cache is
    /// flushed and denies new requests until a server answers again. Licenses already held
    /// stay held.
    Flushed,
    /// No server has answered yet since the client started.
    NotConnected,
    /// The feature was not configured on this client's builder.
    NoSuchFeature,
    /// The license server has no license for this feature.
    NotLicensed,
    /// Maintenance of every license for this feature ended before the product's release date.
    MaintenanceExpired,
    /// The server serves no licenses for another reason (not synced, suspended, backup
    /// server without failover, ...); `Client::status` shows the server's words.
    Unavailable,
}

impl Denied {
    /// A stable snake_case code, for logs and foreign callers.
    pub fn as_str(self) -> &'static str {
        match self {
            Denied::QuotaExhausted => "quota_exhausted",
            Denied::Flushed => "flushed",
            Denied::NotConnected => "not_connected",
            Denied::NoSuchFeature => "no_such_feature",
            Denied::NotLicensed => "not_licensed",
            Denied::MaintenanceExpired => "maintenance_expired",
            Denied::Unavailable => "unavailable",
        }
    }

    /// A small stable number (1..), for a C ABI; 0 is left for "granted".
    pub fn code(self) -> u8 {
        match self {
            Denied::QuotaExhausted => 1,
            Denied::Flushed => 2,
            Denied::NotConnected => 3,
            Denied::NoSuchFeature => 4,
            Denied::NotLicensed => 5,
            Denied::MaintenanceExpired => 6,
            Denied::Unavailable => 7,
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Denied::QuotaExhausted => {
                "license denied: every license of this client's quota is in use"
            }
            Denied::Flushed => {
                "license denied: no license server answered for too long, the cache is flushed"
            }
            Denied::NotConnected => "license denied: no license server has answered yet",
            Denied::NoSuchFeature => {
                "license denied: the feature was not configured on this client"
            }
            Denied::NotLicensed => {
                "license denied: the license server has no license for this feature"
            }
            Denied::MaintenanceExpired => {
                "license denied: maintenance of the licenses ended before this product's release"
            }
            Denied::Unavailable => "license denied: the license server serves no licenses now",
        })
    }
}

impl std::error::Error for Denied {}

/// The server's reason for a quota below what was wanted, as a code the fast path can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Reason {
    /// No reason, or sharing (all licenses in use / relearning): a full cache is
    /// `QuotaExhausted`.
    Sharing = 0,
    NotLicensed = 1,
    Maintenance = 2,
    Unavailable = 3,
}

impl Reason {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Reason::NotLicensed,
            2 => Reason::Maintenance,
            3 => Reason::Unavailable,
            _ => Reason::Sharing,
        }
    }

    /// Maps the server's reason code to what a full cache answers.
    pub(crate) fn classify(code: Option<QuotaReason>) -> Self {
        match code {
            None | Some(QuotaReason::Exhausted | QuotaReason::Relearning) => Reason::Sharing,
            Some(QuotaReason::NoLicense) => Reason::NotLicensed,
            Some(QuotaReason::Maintenance) => Reason::Maintenance,
            Some(QuotaReason::BackupOnly | QuotaReason::Suspended) => Reason::Unavailable,
        }
    }

    fn denial(self) -> Denied {
        match self {
            Reason::Sharing => Denied::QuotaExhausted,
            Reason::NotLicensed => Denied::NotLicensed,
            Reason::Maintenance => Denied::MaintenanceExpired,
            Reason::Unavailable => Denied::Unavailable,
        }
    }
}

/// One feature's cache entry. Aligned to a cache line so that features do not share one.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct Slot {
    pub(crate) name: Box<str>,
    pub(crate) feature: Feature,
    /// Licenses held now (guards alive plus raw handles not yet released).
    pub(crate) in_use: AtomicU32,
    /// Highest `in_use` since the refresher last looked (it resets it).
    pub(crate) peak: AtomicU32,
    /// The quota of the last good answer.
    pub(crate) quota: AtomicU32,
    /// Nanoseconds since the client's epoch until which `quota` may be used: the send time of
    /// the request it answered plus min(lease, flush period). 0 = no lease.
    pub(crate) valid_until: AtomicU64,
    pub(crate) acquired: AtomicU64,
    pub(crate) denied: AtomicU64,
    pub(crate) reason: AtomicU8,
}

impl Slot {
    pub(crate) fn new(feature: Feature) -> Self {
        Self {
            name: feature.as_str().into(),
            feature,
            in_use: AtomicU32::new(0),
            peak: AtomicU32::new(0),
            quota: AtomicU32::new(0),
            valid_until: AtomicU64::new(0),
            acquired: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            reason: AtomicU8::new(Reason::Sharing as u8),
        }
    }

    /// Installs a new answer. The quota is stored before the validity so that a reader that
    /// sees the new validity also sees the new quota: a shrunk quota is never used under the
    /// later expiry of the answer that shrank it.
    pub(crate) fn install(&self, quota: u32, reason: Reason, valid_until: u64) {
        self.reason.store(reason as u8, Ordering::Relaxed);
        self.quota.store(quota, Ordering::Release);
        self.valid_until.store(valid_until, Ordering::Release);
    }

    /// Drops one held license; never goes below zero. Returns false if none was held.
    pub(crate) fn release_one(&self) -> bool {
        self.in_use
            .fetch_update(Ordering::Release, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// State shared by the client handle, the guards and the refresher.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Sorted by name; immutable after build.
    pub(crate) slots: Box<[Slot]>,
    pub(crate) epoch: Instant,
    /// Set once a server has answered.
    pub(crate) connected: AtomicBool,
    /// Set by `acquire` when the cache is full: the refresher refreshes early.
    pub(crate) refresh_wanted: AtomicBool,
    pub(crate) stop: AtomicBool,
    pub(crate) stop_notify: tokio::sync::Notify,
    pub(crate) refresher: OnceLock<Thread>,
}

impl Shared {
    pub(crate) fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn nanos_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn index_of(&self, feature: &str) -> Option<usize> {
        self.slots.binary_search_by(|s| (*s.name).cmp(feature)).ok()
    }

    /// The fast path.
    pub(crate) fn try_acquire(&self, slot: &Slot) -> Result<(), Denied> {
        let valid_until = slot.valid_until.load(Ordering::Acquire);
        if self.now_nanos() >= valid_until {
            slot.denied.fetch_add(1, Ordering::Relaxed);
            return Err(if self.connected.load(Ordering::Relaxed) {
                Denied::Flushed
            } else {
                Denied::NotConnected
            });
        }
        let quota = slot.quota.load(Ordering::Acquire);
        let mut cur = slot.in_use.load(Ordering::Relaxed);
        loop {
            if cur >= quota {
                slot.denied.fetch_add(1, Ordering::Relaxed);
                let reason = Reason::from_u8(slot.reason.load(Ordering::Relaxed));
                if reason == Reason::Sharing {
                    self.want_refresh();
                }
                return Err(reason.denial());
            }
            match slot.in_use.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        slot.acquired.fetch_add(1, Ordering::Relaxed);
        if slot.peak.load(Ordering::Relaxed) <= cur {
            slot.peak.fetch_max(cur + 1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Asks the refresher for an early refresh; never waits.
    pub(crate) fn want_refresh(&self) {
        if !self.refresh_wanted.load(Ordering::Relaxed)
            && !self.refresh_wanted.swap(true, Ordering::AcqRel)
        {
            if let Some(t) = self.refresher.get() {
                t.unpark();
            }
        }
    }
}

/// One license held from the cache; dropping it gives the license back to the cache (the
/// server hears about it at the next refresh).
///
/// The guard borrows the [`Client`](crate::Client): it is a single pointer, costs no
/// reference count, and the borrow checker proves the client outlives it. Callers that need
/// to keep a license beyond a borrow (a C ABI, a handle stored in a struct) turn it into a
/// [`RawLicense`] with [`LicenseGuard::into_raw`] and give it back with
/// [`Client::release_raw`](crate::Client::release_raw).
#[must_use = "dropping the guard releases the license at once"]
pub struct LicenseGuard<'a> {
    pub(crate) slot: &'a Slot,
    pub(crate) index: u32,
}

impl LicenseGuard<'_> {
    pub fn feature(&self) -> &str {
        &self.slot.name
    }

    /// Keeps the license held without a borrow; release it with
    /// [`Client::release_raw`](crate::Client::release_raw) on the same client.
    pub fn into_raw(self) -> RawLicense {
        let raw = RawLicense { index: self.index };
        std::mem::forget(self);
        raw
    }
}

impl fmt::Debug for LicenseGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LicenseGuard")
            .field("feature", &self.slot.name)
            .finish()
    }
}

impl Drop for LicenseGuard<'_> {
    fn drop(&mut self) {
        self.slot.in_use.fetch_sub(1, Ordering::Release);
    }
}

/// A license held without a guard: the index of its feature on the client that granted it.
/// It is plain data (a C wrapper passes it around as an integer); releasing it twice frees
/// someone else's license, so treat it as a move-only value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawLicense {
    index: u32,
}

impl RawLicense {
    /// The feature index (position in [`Client::features`](crate::Client::features)).
    pub fn index(self) -> u32 {
        self.index
    }

    /// Rebuilds a handle from [`RawLicense::index`].
    pub fn from_index(index: u32) -> Self {
        Self { index }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_reason_codes_are_classified() {
        for (code, r) in [
            (None, Reason::Sharing),
            (Some(QuotaReason::Exhausted), Reason::Sharing),
            (Some(QuotaReason::Relearning), Reason::Sharing),
            (Some(QuotaReason::NoLicense), Reason::NotLicensed),
            (Some(QuotaReason::Maintenance), Reason::Maintenance),
            (Some(QuotaReason::BackupOnly), Reason::Unavailable),
            (Some(QuotaReason::Suspended), Reason::Unavailable),
        ] {
            assert_eq!(Reason::classify(code), r, "{code:?}");
        }
    }
}
