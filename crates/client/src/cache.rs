//! The local license cache: one slot of atomics per configured feature. `acquire` and the
//! guard's drop touch only these atomics: no lock, no allocation, no system call (but for
//! waking the refresher when headroom runs low or too much is held, once per refresh).
//!
//! A slot's quota and in-use count share one 64-bit word, so that the refresher can lower the
//! quota to what is held plus what it keeps in one compare-and-swap: once lowered, no
//! `acquire` can take more, and the request that says so can free the rest on the server.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
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

const IN_USE_MASK: u64 = 0xffff_ffff;

fn quota_of(word: u64) -> u32 {
    (word >> 32) as u32
}

fn in_use_of(word: u64) -> u32 {
    (word & IN_USE_MASK) as u32
}

fn word(quota: u32, in_use: u32) -> u64 {
    (u64::from(quota) << 32) | u64::from(in_use)
}

/// One feature's cache entry. Aligned to a cache line so that features do not share one.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct Slot {
    pub(crate) name: Box<str>,
    pub(crate) feature: Feature,
    /// The quota of the last good answer (high 32 bits, possibly lowered by the refresher
    /// since) and the licenses held now (low 32 bits: guards alive plus raw handles).
    word: AtomicU64,
    /// Highest in-use count since the refresher last looked (it resets it).
    pub(crate) peak: AtomicU32,
    /// Nanoseconds since the client's epoch until which the quota may be used: the send time
    /// of the request it answered plus min(lease, flush period). 0 = no lease.
    pub(crate) valid_until: AtomicU64,
    pub(crate) acquired: AtomicU64,
    pub(crate) denied: AtomicU64,
    pub(crate) reason: AtomicU8,
    /// Headroom at or below which an `acquire` asks for an early refresh.
    low_water: AtomicU32,
    /// Headroom above which a release asks the refresher to give licenses back.
    give_back_above: AtomicU32,
    /// Calls waiting in `acquire` for the server (deny-wait).
    pub(crate) waiting: AtomicU32,
    /// Acquires that asked the server (deny-wait), granted or not.
    pub(crate) waited: AtomicU64,
}

impl Slot {
    pub(crate) fn new(feature: Feature) -> Self {
        Self {
            name: feature.as_str().into(),
            feature,
            word: AtomicU64::new(0),
            peak: AtomicU32::new(0),
            valid_until: AtomicU64::new(0),
            acquired: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            reason: AtomicU8::new(Reason::Sharing as u8),
            low_water: AtomicU32::new(0),
            give_back_above: AtomicU32::new(u32::MAX),
            waiting: AtomicU32::new(0),
            waited: AtomicU64::new(0),
        }
    }

    pub(crate) fn in_use(&self) -> u32 {
        in_use_of(self.word.load(Ordering::Acquire))
    }

    pub(crate) fn quota(&self) -> u32 {
        quota_of(self.word.load(Ordering::Acquire))
    }

    /// Installs a new answer. The quota is stored before the validity so that a reader that
    /// sees the new validity also sees the new quota: a shrunk quota is never used under the
    /// later expiry of the answer that shrank it. `low_water` and `give_back_above` set when
    /// the cache wakes the refresher.
    pub(crate) fn install(
        &self,
        quota: u32,
        reason: Reason,
        valid_until: u64,
        low_water: u32,
        give_back_above: u32,
    ) {
        self.reason.store(reason as u8, Ordering::Relaxed);
        self.low_water.store(low_water, Ordering::Relaxed);
        self.give_back_above
            .store(give_back_above, Ordering::Relaxed);
        let _ = self
            .word
            .fetch_update(Ordering::Release, Ordering::Relaxed, |w| {
                Some(word(quota, in_use_of(w)))
            });
        self.valid_until.store(valid_until, Ordering::Release);
    }

    /// Lowers the quota to at most what is held plus `keep`, in one step with the in-use
    /// count: from then on no `acquire` takes more. Returns (in use, quota) as lowered.
    pub(crate) fn lower(&self, keep: u32) -> (u32, u32) {
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            let in_use = in_use_of(w);
            let quota = quota_of(w);
            let lowered = quota
                .min(in_use.saturating_add(keep))
                .max(in_use.min(quota));
            if lowered == quota {
                return (in_use, quota);
            }
            match self.word.compare_exchange_weak(
                w,
                word(lowered, in_use),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return (in_use, lowered),
                Err(now) => w = now,
            }
        }
    }

    /// Takes one license within the quota; returns the headroom left, or None when the quota
    /// is used up. Counts nothing.
    fn take(&self) -> Option<u32> {
        let mut w = self.word.load(Ordering::Relaxed);
        loop {
            let (quota, in_use) = (quota_of(w), in_use_of(w));
            if in_use >= quota {
                return None;
            }
            match self
                .word
                .compare_exchange_weak(w, w + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return Some(quota - in_use - 1),
                Err(now) => w = now,
            }
        }
    }

    /// Drops one held license; never goes below zero. Returns false if none was held.
    pub(crate) fn release_one(&self, shared: &Shared) -> bool {
        match self
            .word
            .fetch_update(Ordering::Release, Ordering::Relaxed, |w| {
                (in_use_of(w) > 0).then(|| w - 1)
            }) {
            Ok(before) => {
                self.after_release(shared, before);
                true
            }
            Err(_) => false,
        }
    }

    /// A license held by a guard comes back.
    fn release_held(&self, shared: &Shared) {
        let before = self.word.fetch_sub(1, Ordering::Release);
        self.after_release(shared, before);
    }

    fn after_release(&self, shared: &Shared, before: u64) {
        let headroom = quota_of(before).saturating_sub(in_use_of(before).saturating_sub(1));
        if headroom > self.give_back_above.load(Ordering::Relaxed) {
            shared.wake(Wake::GIVE_BACK);
        }
    }
}

/// Why the refresher is woken, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wake(pub(crate) u8);

impl Wake {
    /// Headroom ran low or out: refresh early.
    pub(crate) const EARLY: u8 = 1;
    /// More is held than the server lets a client keep: give it back.
    pub(crate) const GIVE_BACK: u8 = 2;
    /// Calls wait for the server (deny-wait).
    pub(crate) const ASK: u8 = 4;
    pub(crate) const STOP: u8 = 8;
}

/// Calls waiting for the server (deny-wait) sleep here; the refresher wakes them when an
/// answer is installed. Only the exhausted path touches it.
#[derive(Debug, Default)]
pub(crate) struct Asks {
    pub(crate) lock: Mutex<()>,
    pub(crate) answered: Condvar,
    /// Waiters registered so far, and the highest registration an answer has covered (the
    /// server answered a request sent after it: what it could give is installed).
    pub(crate) registered: AtomicU64,
    pub(crate) covered: AtomicU64,
}

/// State shared by the client handle, the guards and the refresher.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Sorted by name; immutable after build.
    pub(crate) slots: Box<[Slot]>,
    pub(crate) epoch: Instant,
    /// Set once a server has answered.
    pub(crate) connected: AtomicBool,
    /// Why the refresher should act now ([`Wake`] bits), and how to wake it.
    pub(crate) wake: AtomicU8,
    pub(crate) wake_notify: tokio::sync::Notify,
    pub(crate) stop: AtomicBool,
    /// How long `acquire` waits for the server when the quota is used up, in ms (0: never).
    pub(crate) deny_wait_ms: AtomicU32,
    pub(crate) asks: Asks,
}

impl Shared {
    pub(crate) fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn index_of(&self, feature: &str) -> Option<usize> {
        self.slots.binary_search_by(|s| (*s.name).cmp(feature)).ok()
    }

    /// The fast path: from the cache only. Counts the grant, or the denial unless `asks`
    /// says the caller will ask the server next (it counts the outcome then).
    pub(crate) fn try_acquire(&self, slot: &Slot, asks: bool) -> Result<(), Denied> {
        let valid_until = slot.valid_until.load(Ordering::Acquire);
        if self.now_nanos() >= valid_until {
            slot.denied.fetch_add(1, Ordering::Relaxed);
            return Err(if self.connected.load(Ordering::Relaxed) {
                Denied::Flushed
            } else {
                Denied::NotConnected
            });
        }
        match slot.take() {
            Some(headroom) => {
                self.granted(slot, headroom);
                Ok(())
            }
            None => {
                let reason = Reason::from_u8(slot.reason.load(Ordering::Relaxed));
                if reason == Reason::Sharing {
                    if asks {
                        return Err(Denied::QuotaExhausted);
                    }
                    self.wake(Wake::EARLY);
                }
                slot.denied.fetch_add(1, Ordering::Relaxed);
                Err(reason.denial())
            }
        }
    }

    fn granted(&self, slot: &Slot, headroom: u32) {
        slot.acquired.fetch_add(1, Ordering::Relaxed);
        let in_use = slot.in_use();
        if slot.peak.load(Ordering::Relaxed) < in_use {
            slot.peak.fetch_max(in_use, Ordering::Relaxed);
        }
        if headroom <= slot.low_water.load(Ordering::Relaxed) {
            self.wake(Wake::EARLY);
        }
    }

    /// The exhausted path with deny-wait: ask the server and wait at most `wait` for it to
    /// grant more. `Ok(())` once a license is taken (counted as acquired), else the denial
    /// (counted).
    pub(crate) fn ask_and_wait(
        &self,
        slot: &Slot,
        wait: std::time::Duration,
    ) -> Result<(), Denied> {
        let deadline = Instant::now() + wait;
        slot.waited.fetch_add(1, Ordering::Relaxed);
        slot.waiting.fetch_add(1, Ordering::AcqRel);
        let me = self.asks.registered.fetch_add(1, Ordering::AcqRel) + 1;
        self.wake(Wake::ASK);
        let outcome = loop {
            if let Some(headroom) = slot.take() {
                self.granted(slot, headroom);
                break Ok(());
            }
            let valid = self.now_nanos() < slot.valid_until.load(Ordering::Acquire);
            let reason = Reason::from_u8(slot.reason.load(Ordering::Relaxed));
            if !valid || reason != Reason::Sharing {
                break Err(if valid {
                    reason.denial()
                } else {
                    Denied::Flushed
                });
            }
            if self.asks.covered.load(Ordering::Acquire) >= me {
                // The server answered a request made after this call asked: it has nothing.
                break Err(Denied::QuotaExhausted);
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(Denied::QuotaExhausted);
            }
            let guard = self
                .asks
                .lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Checked again under the lock, so that a notification between the check above
            // and this wait is not missed.
            if self.asks.covered.load(Ordering::Acquire) < me && slot.quota() <= slot.in_use() {
                let _ = self
                    .asks
                    .answered
                    .wait_timeout(guard, deadline - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        slot.waiting.fetch_sub(1, Ordering::AcqRel);
        if outcome.is_err() {
            slot.denied.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// An answer was installed that covers every ask registered up to `registered`.
    pub(crate) fn answered(&self, registered: u64) {
        if self.asks.registered.load(Ordering::Acquire) == self.asks.covered.load(Ordering::Acquire)
        {
            return;
        }
        let _guard = self
            .asks
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.asks.covered.fetch_max(registered, Ordering::AcqRel);
        self.asks.answered.notify_all();
    }

    /// Wakes the refresher for `why` ([`Wake`] bits); never waits. The first wake for a
    /// reason until the refresher looks notifies it, later ones are one atomic load.
    pub(crate) fn wake(&self, why: u8) {
        if self.wake.load(Ordering::Relaxed) & why == why {
            return;
        }
        if self.wake.fetch_or(why, Ordering::AcqRel) & why != why {
            self.wake_notify.notify_one();
        }
    }

    /// Takes the reasons the refresher was woken for.
    pub(crate) fn take_wake(&self) -> u8 {
        self.wake.swap(0, Ordering::AcqRel)
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
    pub(crate) shared: &'a Shared,
    pub(crate) index: u32,
    pub(crate) waited: bool,
}

impl LicenseGuard<'_> {
    fn slot(&self) -> Option<&Slot> {
        self.shared.slots.get(self.index as usize)
    }

    pub fn feature(&self) -> &str {
        self.slot().map_or("", |s| &s.name)
    }

    /// Whether this license came from asking the server (deny-wait) rather than from the
    /// cache alone.
    pub fn waited(&self) -> bool {
        self.waited
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
            .field("feature", &self.feature())
            .finish()
    }
}

impl Drop for LicenseGuard<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot() {
            slot.release_held(self.shared);
        }
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
