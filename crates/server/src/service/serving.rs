//! Bundle and serving state: the bundle in force, the view of it the lease path reads (made
//! when the bundle or the day changes, not per request), the clock-tamper check, and
//! whether licenses are served now and why not.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, NaiveDate, Utc};
use leasehold_proto::{BundlePayload, Context, ServerGuid, SignedEnvelope};

use super::{lock, read, write, LicenseServer};
use crate::allocator::{PoolLicense, Serving};
use crate::api::ServerState;

/// A wall clock further back than this below the highest time seen is tampering.
pub const CLOCK_STEP_BACK_TOLERANCE: chrono::Duration = chrono::Duration::hours(1);

/// The bundle in force and who this server is.
#[derive(Debug, Default)]
pub(super) struct BundleState {
    pub guid: Option<ServerGuid>,
    pub envelope: Option<SignedEnvelope>,
    pub payload: Option<BundlePayload>,
    /// Local time the bundle was taken; grace is counted from here in local time, so a
    /// clock set back before a sync cannot stretch it.
    pub received_at: Option<DateTime<Utc>>,
    /// What the lease path needs of all this, made when any of it changes.
    pub view: ServingView,
}

/// The few facts of the bundle the lease path reads, copied out under a short read lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ServingView {
    pub guid: Option<ServerGuid>,
    pub context: Option<Context>,
    /// When the licenses stop being served without a sync (local time).
    pub not_after: Option<DateTime<Utc>>,
    pub received_at: Option<DateTime<Utc>>,
    /// The day whose licenses are in the allocator (`None`: not yet put in).
    pub day: Option<NaiveDate>,
}

impl BundleState {
    pub fn new(guid: Option<ServerGuid>) -> Self {
        let mut b = Self {
            guid,
            ..Self::default()
        };
        b.changed();
        b
    }

    /// Takes a verified bundle.
    pub fn take(
        &mut self,
        envelope: SignedEnvelope,
        payload: BundlePayload,
        at: Option<DateTime<Utc>>,
    ) {
        self.envelope = Some(envelope);
        self.payload = Some(payload);
        self.received_at = at;
        self.changed();
    }

    /// Recomputes the view; the licenses of today go into the allocator again.
    fn changed(&mut self) {
        self.view = ServingView {
            guid: self.guid,
            context: self.payload.as_ref().map(|p| p.context),
            not_after: self.effective_not_after(),
            received_at: self.received_at,
            day: None,
        };
    }

    pub fn effective_not_after(&self) -> Option<DateTime<Utc>> {
        let p = self.payload.as_ref()?;
        Some(
            self.received_at
                .map_or(p.not_after, |r| r + (p.not_after - p.issued_at)),
        )
    }

    pub fn serial(&self) -> u64 {
        self.payload.as_ref().map_or(0, |p| p.serial)
    }
}

/// The highest wall-clock time seen (milliseconds since the epoch), without a lock: every
/// request records its time here.
#[derive(Debug)]
pub(super) struct HighWater(AtomicI64);

impl HighWater {
    pub fn new(t: DateTime<Utc>) -> Self {
        Self(AtomicI64::new(t.timestamp_millis()))
    }

    /// Records `now` and says whether the clock was set back beyond the tolerance.
    pub fn observe(&self, now: DateTime<Utc>) -> bool {
        let ms = now.timestamp_millis();
        let before = self.0.fetch_max(ms, Ordering::AcqRel);
        before - ms > CLOCK_STEP_BACK_TOLERANCE.num_milliseconds()
    }

    pub fn get(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0.load(Ordering::Acquire)).unwrap_or_default()
    }

    /// A sync restores trust in the clock: its time is the new mark, even if lower.
    pub fn reset(&self, now: DateTime<Utc>) {
        self.0.store(now.timestamp_millis(), Ordering::Release);
    }
}

impl LicenseServer {
    pub fn guid(&self) -> Option<ServerGuid> {
        read(&self.bundle).guid
    }

    /// The state and whether (and why not) licenses are served.
    pub fn state(&self, now: DateTime<Utc>) -> (ServerState, Serving) {
        let tampered = self.high_water.observe(now);
        let view = read(&self.bundle).view;
        self.state_of(&view, now, tampered)
    }

    pub(super) fn state_of(
        &self,
        v: &ServingView,
        now: DateTime<Utc>,
        tampered: bool,
    ) -> (ServerState, Serving) {
        if v.guid.is_none() {
            return (ServerState::Unconfigured, Serving::No("no server GUID is set: set it in the dashboard or with `leasehold server set-guid`".into()));
        }
        let Some(not_after) = v.not_after else {
            return (
                ServerState::NotSynced,
                Serving::No("this license server has not synced with a license node yet".into()),
            );
        };
        if tampered {
            return (
                ServerState::ClockTampered,
                Serving::No(format!(
                    "the system clock ({}) is behind the latest time this server has seen ({}) by more than an hour; licenses are suspended until the clock is right or a sync succeeds",
                    now.format("%Y-%m-%d %H:%M UTC"),
                    self.high_water.get().format("%Y-%m-%d %H:%M UTC")
                )),
            );
        }
        if now > not_after {
            return (
                ServerState::Expired,
                Serving::No(format!(
                    "no successful sync with a license node since {}; licenses are suspended until a sync succeeds",
                    v.received_at.unwrap_or(not_after).format("%Y-%m-%d")
                )),
            );
        }
        (ServerState::Ok, Serving::Yes)
    }

    /// Puts the licenses in force today into the allocator when the bundle or the day
    /// changed.
    pub(super) fn refresh_licenses(&self, now: DateTime<Utc>) {
        let today = now.date_naive();
        let mut b = write(&self.bundle);
        if b.view.day == Some(today) {
            return;
        }
        b.view.day = Some(today);
        let licenses: Vec<PoolLicense> = b
            .payload
            .as_ref()
            .map(|p| {
                p.licenses_in_force(today)
                    .map(|l| PoolLicense {
                        feature: l.feature.clone(),
                        count: l.count,
                        maintenance_until: l.maintenance_until,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let backup = b.view.context == Some(Context::Backup);
        drop(b);
        lock(&self.leases).set_licenses(&licenses, backup);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_high_water_mark_sees_a_clock_set_back_beyond_the_tolerance() {
        let t = Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap();
        let hw = HighWater::new(t);
        assert!(!hw.observe(t + chrono::Duration::hours(2)));
        assert!(!hw.observe(t + chrono::Duration::minutes(61)));
        assert!(hw.observe(t + chrono::Duration::minutes(59)));
        assert_eq!(hw.get(), t + chrono::Duration::hours(2));
        hw.reset(t);
        assert!(!hw.observe(t));
    }
}
