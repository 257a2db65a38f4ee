//! The server's own usage history for the dashboard charts.
//!
//! Closed hours are kept in the `usage_history` table for [`HISTORY_KEEP_DAYS`] days, written
//! in the same transaction that closes the hour into usage buckets (buckets are deleted once a
//! node acknowledged them, so they cannot serve charts). The hour in progress comes from the
//! ledger. For the 24-hour chart the ledger also keeps, in memory only, five-minute slots of
//! the last day ([`RECENT_SLOT_SECS`]); after a restart the hours before the first slot come
//! from the hourly history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leasehold_proto::Feature;
use serde::{Deserialize, Serialize};

use crate::ledger::Counts;

/// How long closed hours stay in `usage_history`.
pub const HISTORY_KEEP_DAYS: i64 = 35;
/// Length of one hourly point.
pub const HOUR_SECS: u32 = 3600;
/// Length of one recent (fine) slot kept in memory by the ledger.
pub const RECENT_SLOT_SECS: u32 = 300;
/// How far back the ledger keeps recent slots.
pub const RECENT_KEEP_SECS: i64 = 25 * 3600;

/// Usage of one feature over one period (an hour, or a five-minute slot of the recent series).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub feature: Feature,
    /// Start of the period (UTC).
    pub start: DateTime<Utc>,
    /// Length of the period in seconds (3600 for hours, 300 for recent slots; shorter for a
    /// partial hour at the seam between the hourly and the recent series).
    pub secs: u32,
    /// Peak number in use during the period, summed over clients (not clipped at the count).
    pub peak_in_use: u32,
    pub grants: u64,
    pub denials: u64,
    /// Of `denials`: reported while licenses were neither in use nor reserved.
    #[serde(default)]
    pub denials_while_free: u64,
    /// Licensed count of the feature: when the hour closed, or now for open periods.
    pub licensed: u32,
    /// License time used by clients in failover (backup servers only), in seconds.
    pub backup_use_secs: u64,
    /// License-seconds: the number in use integrated over the period (hourly points only;
    /// the recent five-minute slots do not keep it).
    #[serde(default)]
    pub license_secs: u64,
    /// The period is still in progress.
    pub open: bool,
}

impl HistoryPoint {
    pub fn end(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::seconds(i64::from(self.secs))
    }

    pub(crate) fn from_counts(
        feature: Feature,
        start: DateTime<Utc>,
        secs: u32,
        c: &Counts,
        licensed: u32,
        open: bool,
    ) -> Self {
        Self {
            feature,
            start,
            secs,
            peak_in_use: c.peak_in_use,
            grants: c.grants,
            denials: c.denials,
            denials_while_free: c.denials_while_free,
            licensed,
            backup_use_secs: c.backup_use_ms / 1000,
            license_secs: c.license_ms / 1000,
            open,
        }
    }
}

/// Start of `t`'s recent slot.
pub fn slot_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let step = i64::from(RECENT_SLOT_SECS);
    let secs = t.timestamp() - t.timestamp().rem_euclid(step);
    DateTime::from_timestamp(secs, 0).unwrap_or(t)
}

/// Stored hours plus the open ones from the ledger. A period present in both (an hour
/// reopened after the clock was set back) is added up: peak is the larger, counts are summed.
/// Sorted by start, then feature.
pub fn merge(
    stored: impl IntoIterator<Item = HistoryPoint>,
    open: impl IntoIterator<Item = HistoryPoint>,
) -> Vec<HistoryPoint> {
    let mut by_key: BTreeMap<(DateTime<Utc>, Feature, u32), HistoryPoint> = BTreeMap::new();
    for p in stored.into_iter().chain(open) {
        let key = (p.start, p.feature.clone(), p.secs);
        match by_key.get_mut(&key) {
            None => {
                by_key.insert(key, p);
            }
            Some(q) => {
                q.peak_in_use = q.peak_in_use.max(p.peak_in_use);
                q.grants = q.grants.saturating_add(p.grants);
                q.denials = q.denials.saturating_add(p.denials);
                q.denials_while_free = q.denials_while_free.saturating_add(p.denials_while_free);
                q.backup_use_secs = q.backup_use_secs.saturating_add(p.backup_use_secs);
                q.license_secs = q.license_secs.saturating_add(p.license_secs);
                if p.open {
                    q.licensed = p.licensed;
                    q.open = true;
                }
            }
        }
    }
    by_key.into_values().collect()
}

/// The recent series: hourly points before `recent_from` (the first recent slot this process
/// recorded; an hour that straddles it is cut short there) followed by the recent slots.
/// Without recent slots it is the hourly series.
pub fn recent_series(
    hourly: Vec<HistoryPoint>,
    recent: Vec<HistoryPoint>,
    recent_from: Option<DateTime<Utc>>,
) -> Vec<HistoryPoint> {
    let Some(from) = recent_from.filter(|_| !recent.is_empty()) else {
        return hourly;
    };
    let mut out: Vec<HistoryPoint> = hourly
        .into_iter()
        .filter(|p| p.start < from)
        .filter_map(|mut p| {
            if p.end() > from {
                if covered_by(&p, &recent) {
                    return None;
                }
                p.secs = u32::try_from((from - p.start).num_seconds()).unwrap_or(0);
            }
            (p.secs > 0).then_some(p)
        })
        .collect();
    out.extend(recent.into_iter().filter(|p| p.start >= from));
    out.sort_by(|a, b| (a.start, &a.feature).cmp(&(b.start, &b.feature)));
    out
}

/// Whether the recent slots within `hour` account for all of it (nothing was recorded in
/// that hour before this process started).
fn covered_by(hour: &HistoryPoint, recent: &[HistoryPoint]) -> bool {
    let (mut peak, mut grants, mut denials) = (0u32, 0u64, 0u64);
    for r in recent
        .iter()
        .filter(|r| r.feature == hour.feature && r.start >= hour.start && r.start < hour.end())
    {
        peak = peak.max(r.peak_in_use);
        grants = grants.saturating_add(r.grants);
        denials = denials.saturating_add(r.denials);
    }
    hour.peak_in_use <= peak && hour.grants <= grants && hour.denials <= denials
}

/// One point per period with every feature added up (for an "all features" chart): peaks,
/// counts and licensed counts are summed.
pub fn total_by_period(points: &[HistoryPoint]) -> Vec<HistoryPoint> {
    let mut by: BTreeMap<(DateTime<Utc>, u32), HistoryPoint> = BTreeMap::new();
    for p in points {
        by.entry((p.start, p.secs))
            .and_modify(|q| {
                q.peak_in_use = q.peak_in_use.saturating_add(p.peak_in_use);
                q.grants = q.grants.saturating_add(p.grants);
                q.denials = q.denials.saturating_add(p.denials);
                q.denials_while_free = q.denials_while_free.saturating_add(p.denials_while_free);
                q.licensed = q.licensed.saturating_add(p.licensed);
                q.backup_use_secs = q.backup_use_secs.saturating_add(p.backup_use_secs);
                q.license_secs = q.license_secs.saturating_add(p.license_secs);
                q.open |= p.open;
            })
            .or_insert_with(|| p.clone());
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn point(f: &str, h: u32, peak: u32, open: bool) -> HistoryPoint {
        HistoryPoint {
            feature: Feature::parse(f).unwrap(),
            start: Utc.with_ymd_and_hms(2026, 11, 28, h, 0, 0).unwrap(),
            secs: HOUR_SECS,
            peak_in_use: peak,
            grants: 1,
            denials: 0,
            denials_while_free: 0,
            licensed: 10,
            backup_use_secs: 0,
            license_secs: 0,
            open,
        }
    }

    #[test]
    fn merge_sorts_and_adds_up_duplicates() {
        let mut open = point("tts", 9, 4, true);
        open.licensed = 12;
        let merged = merge(
            vec![point("tts", 9, 7, false), point("asr.en-US", 8, 1, false)],
            vec![open],
        );
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].feature.as_str(), "asr.en-US");
        let p = &merged[1];
        assert_eq!(
            (p.peak_in_use, p.grants, p.licensed, p.open),
            (7, 2, 12, true)
        );
    }

    #[test]
    fn recent_series_cuts_the_seam_hour() {
        let hourly = vec![point("tts", 8, 3, false), point("tts", 9, 5, true)];
        let from = Utc.with_ymd_and_hms(2026, 11, 28, 9, 20, 0).unwrap();
        let recent = vec![HistoryPoint {
            start: from,
            secs: RECENT_SLOT_SECS,
            ..point("tts", 9, 2, true)
        }];
        // 09:00 has more than the recent slot shows: an earlier process recorded part of it.
        let s = recent_series(hourly.clone(), recent.clone(), Some(from));
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].secs, 3600);
        assert_eq!((s[1].secs, s[1].peak_in_use), (20 * 60, 5));
        assert_eq!((s[2].start, s[2].secs), (from, RECENT_SLOT_SECS));
        assert_eq!(recent_series(hourly.clone(), vec![], Some(from)), hourly);
        // A seam hour the recent slots fully account for is left out.
        let mut all_recent = recent;
        all_recent[0].peak_in_use = 5;
        let s = recent_series(hourly.clone(), all_recent, Some(from));
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].secs, RECENT_SLOT_SECS);
    }

    #[test]
    fn totals_add_features() {
        let t = total_by_period(&[point("tts", 9, 3, false), point("asr.en-US", 9, 4, false)]);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].peak_in_use, t[0].licensed), (7, 20));
    }

    #[test]
    fn slots_are_five_minutes() {
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 9, 7, 59).unwrap();
        assert_eq!(
            slot_of(t),
            Utc.with_ymd_and_hms(2026, 11, 28, 9, 5, 0).unwrap()
        );
    }
}
