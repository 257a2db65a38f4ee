//! The usage ledger: per feature, per hour, the peak number in use (summed over clients),
//! grants, denials (and of them, denials while licenses were free) and, on a backup server,
//! license time used by clients in failover, and license time: the integral over time of the
//! number in use, kept from the level seen at each request, release and flush and split at
//! hour boundaries. Nothing per client leaves this module.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leasehold_proto::usage::hour_of;
use leasehold_proto::Feature;

use crate::history;

pub type HourKey = (Feature, DateTime<Utc>);

/// The open hours to rewrite and the finished hours to close.
pub type Flush = (BTreeMap<HourKey, Counts>, Vec<(HourKey, Counts)>);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub peak_in_use: u32,
    pub grants: u64,
    pub denials: u64,
    /// Of `denials`: reported while the server had licenses neither in use nor reserved.
    pub denials_while_free: u64,
    pub backup_use_ms: u64,
    /// License-milliseconds: the number in use integrated over the time it was in use.
    pub license_ms: u64,
}

impl Counts {
    /// Adds the counters of `d` (its peak is ignored) and raises the peak to `in_use`.
    fn add(&mut self, in_use: u32, d: &Counts) {
        self.peak_in_use = self.peak_in_use.max(in_use);
        self.grants += d.grants;
        self.denials += d.denials;
        self.denials_while_free += d.denials_while_free;
        self.backup_use_ms += d.backup_use_ms;
    }
}

/// How many licenses of a feature are in use (summed over clients) since when.
#[derive(Debug, Clone, Copy)]
struct Level {
    in_use: u32,
    since: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct Ledger {
    open: BTreeMap<HourKey, Counts>,
    dirty: bool,
    /// Five-minute slots of the last day, in memory only, for the dashboard's 24-hour chart.
    recent: BTreeMap<DateTime<Utc>, BTreeMap<Feature, Counts>>,
    /// The first recent slot this process recorded.
    recent_from: Option<DateTime<Utc>>,
    /// The last level seen of each feature, integrated into the open hours when it changes.
    /// Not persisted: a restarted process counts from the first level it sees.
    levels: BTreeMap<Feature, Level>,
}

impl Ledger {
    /// Continues from what an earlier process flushed.
    pub fn restore(open: BTreeMap<HourKey, Counts>) -> Self {
        Self {
            open,
            ..Self::default()
        }
    }

    /// Records one request's counters `d` (its peak is ignored) with `in_use_total` licenses
    /// of the feature in use on the server now.
    pub fn record(&mut self, feature: &Feature, now: DateTime<Utc>, in_use_total: u32, d: &Counts) {
        self.observe(feature, now, in_use_total);
        let c = self
            .open
            .entry((feature.clone(), hour_of(now)))
            .or_default();
        let before = *c;
        c.add(in_use_total, d);
        self.dirty |= *c != before;
        self.record_recent(feature, now, in_use_total, d);
    }

    /// Takes `in_use` as the feature's level from `now` on, after adding the time at the level
    /// before it to the hours it spans.
    pub fn observe(&mut self, feature: &Feature, now: DateTime<Utc>, in_use: u32) {
        let level = Level { in_use, since: now };
        match self.levels.get_mut(feature) {
            Some(before) => {
                // A request that read the clock before a flush observed a later time counts
                // from that flush on: time is never counted twice.
                let since = now.max(before.since);
                let previous = std::mem::replace(before, Level { in_use, since });
                self.integrate(feature, previous, now);
            }
            None if in_use > 0 => {
                self.levels.insert(feature.clone(), level);
            }
            None => {}
        }
    }

    /// Observes every feature with licenses in use at its level now, `in_use(feature)` (the
    /// flush and a release: levels can fall without a request of the feature).
    pub fn observe_all(&mut self, now: DateTime<Utc>, in_use: impl Fn(&Feature) -> u32) {
        let features: Vec<Feature> = self
            .levels
            .iter()
            .filter(|(_, l)| l.in_use > 0)
            .map(|(f, _)| f.clone())
            .collect();
        for f in features {
            self.observe(&f, now, in_use(&f));
        }
    }

    /// Adds `level` held from its start to `until` to the open hours it spans, raising each
    /// hour's peak to it. A clock set back adds nothing.
    fn integrate(&mut self, feature: &Feature, level: Level, until: DateTime<Utc>) {
        if level.in_use == 0 {
            return;
        }
        let mut from = level.since;
        while from < until {
            let hour = hour_of(from);
            let end = until.min(hour + chrono::Duration::seconds(i64::from(history::HOUR_SECS)));
            let ms = u64::try_from((end - from).num_milliseconds()).unwrap_or(0);
            let c = self.open.entry((feature.clone(), hour)).or_default();
            c.license_ms = c
                .license_ms
                .saturating_add(u64::from(level.in_use).saturating_mul(ms));
            c.peak_in_use = c.peak_in_use.max(level.in_use);
            self.dirty |= ms > 0;
            from = end;
        }
    }

    fn record_recent(
        &mut self,
        feature: &Feature,
        now: DateTime<Utc>,
        in_use_total: u32,
        d: &Counts,
    ) {
        let slot = history::slot_of(now);
        self.recent_from.get_or_insert(slot);
        let slots = self.recent.entry(slot).or_default();
        if !slots.contains_key(feature) {
            slots.insert(feature.clone(), Counts::default());
        }
        if let Some(c) = slots.get_mut(feature) {
            c.add(in_use_total, d);
        }
        let keep_from = slot - chrono::Duration::seconds(history::RECENT_KEEP_SECS);
        while self
            .recent
            .first_key_value()
            .is_some_and(|(t, _)| *t < keep_from)
        {
            self.recent.pop_first();
        }
    }

    /// What to flush: the open hours to rewrite and the finished hours (before `now`'s hour)
    /// to close. Closed hours leave the ledger.
    pub fn take_flush(&mut self, now: DateTime<Utc>) -> Option<Flush> {
        let current = hour_of(now);
        let finished: Vec<HourKey> = self
            .open
            .keys()
            .filter(|(_, h)| *h < current)
            .cloned()
            .collect();
        if !self.dirty && finished.is_empty() {
            return None;
        }
        let closed = finished
            .into_iter()
            .filter_map(|k| self.open.remove(&k).map(|c| (k, c)))
            .collect();
        self.dirty = false;
        Some((self.open.clone(), closed))
    }

    /// Every hour still open, for closing at once (the server GUID changes: hours recorded
    /// under the old GUID are closed under it).
    pub fn take_all(&mut self) -> Vec<(HourKey, Counts)> {
        self.dirty = false;
        std::mem::take(&mut self.open).into_iter().collect()
    }

    /// Marks the ledger dirty again after a failed flush, so the next one retries.
    pub fn retry(&mut self, closed: Vec<(HourKey, Counts)>) {
        for (k, c) in closed {
            self.open.insert(k, c);
        }
        self.dirty = true;
    }

    pub fn current(&self) -> &BTreeMap<HourKey, Counts> {
        &self.open
    }

    /// Recent five-minute slots (start of slot → feature → counts) of the last day, recorded
    /// by this process only.
    pub fn recent(&self) -> &BTreeMap<DateTime<Utc>, BTreeMap<Feature, Counts>> {
        &self.recent
    }

    /// The first recent slot this process recorded: before it, only hourly history exists.
    pub fn recent_from(&self) -> Option<DateTime<Utc>> {
        self.recent_from
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn counts(grants: u64, denials: u64, backup_use_ms: u64) -> Counts {
        Counts {
            grants,
            denials,
            backup_use_ms,
            ..Counts::default()
        }
    }

    #[test]
    fn peaks_sum_and_hours_close() {
        let f = Feature::parse("tts").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 9, 10, 0).unwrap();
        let mut l = Ledger::default();
        l.record(&f, t, 3, &counts(2, 0, 0));
        l.record(&f, t + chrono::Duration::minutes(5), 7, &counts(1, 1, 0));
        l.record(&f, t + chrono::Duration::minutes(6), 2, &counts(0, 0, 500));
        let (open, closed) = l.take_flush(t).unwrap();
        assert!(closed.is_empty());
        let c = open[&(f.clone(), hour_of(t))];
        assert_eq!(
            (c.peak_in_use, c.grants, c.denials, c.backup_use_ms),
            (7, 3, 1, 500)
        );
        assert!(l.take_flush(t).is_none(), "nothing changed");
        let (open, closed) = l.take_flush(t + chrono::Duration::hours(1)).unwrap();
        assert!(open.is_empty());
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].1.peak_in_use, 7);
    }

    #[test]
    fn license_time_splits_at_the_hour_and_raises_the_next_hours_peak() {
        let f = Feature::parse("tts").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 9, 30, 0).unwrap();
        let mut l = Ledger::default();
        l.record(&f, t, 2, &counts(1, 0, 0));
        // 09:30 to 10:15 at 2, then 10:15 to 10:20 at 3, then free.
        l.record(&f, t + chrono::Duration::minutes(45), 3, &counts(1, 0, 0));
        l.observe_all(t + chrono::Duration::minutes(50), |_| 0);
        let (open, closed) = l.take_flush(t + chrono::Duration::minutes(50)).unwrap();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].1.license_ms, 2 * 30 * 60_000);
        let next = open[&(f.clone(), hour_of(t) + chrono::Duration::hours(1))];
        assert_eq!(next.license_ms, (2 * 15 + 3 * 5) * 60_000);
        assert_eq!(next.peak_in_use, 3);
        // An hour with no request at all still gets the level it was held at, and its peak.
        let mut l = Ledger::default();
        l.record(&f, t, 4, &counts(1, 0, 0));
        l.observe_all(t + chrono::Duration::hours(2), |_| 4);
        let all = l.take_all();
        let got: Vec<(u32, u64)> = all
            .iter()
            .map(|(_, c)| (c.peak_in_use, c.license_ms / 60_000))
            .collect();
        assert_eq!(got, vec![(4, 4 * 30), (4, 4 * 60), (4, 4 * 30)]);
    }

    #[test]
    fn a_clock_set_back_counts_no_time_twice() {
        let f = Feature::parse("tts").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap();
        let mut l = Ledger::default();
        l.record(&f, t, 1, &Counts::default());
        l.observe_all(t + chrono::Duration::minutes(10), |_| 1);
        // A request that read the clock at 09:05, before that flush.
        l.record(&f, t + chrono::Duration::minutes(5), 1, &Counts::default());
        l.observe_all(t + chrono::Duration::minutes(20), |_| 0);
        assert_eq!(l.current()[&(f, t)].license_ms, 20 * 60_000);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// For random in-use traces crossing hours, with flushes between: each hour's
        /// license time is the brute-force sum, second by second, of the level held, and
        /// never more than the hour's peak allows.
        #[test]
        fn license_time_is_the_integral_of_the_level(
            steps in proptest::collection::vec((1u32..2_000, 0u32..20, proptest::bool::ANY), 1..60),
        ) {
            let f = Feature::parse("tts").unwrap();
            let mut t = Utc.with_ymd_and_hms(2026, 11, 28, 9, 50, 0).unwrap();
            let mut l = Ledger::default();
            let mut level = 0u32;
            let mut expected: BTreeMap<DateTime<Utc>, u64> = BTreeMap::new();
            let mut got: Vec<(HourKey, Counts)> = Vec::new();
            for (gap, in_use, flush) in steps {
                for s in 0..gap {
                    let at = t + chrono::Duration::seconds(i64::from(s));
                    *expected.entry(hour_of(at)).or_default() += u64::from(level);
                }
                t += chrono::Duration::seconds(i64::from(gap));
                if flush {
                    l.observe_all(t, |_| level);
                    if let Some((_, closed)) = l.take_flush(t) {
                        got.extend(closed);
                    }
                } else {
                    l.record(&f, t, in_use, &Counts::default());
                    level = in_use;
                }
            }
            l.observe_all(t, |_| level);
            got.extend(l.take_all());
            let mut hours: BTreeMap<DateTime<Utc>, u64> = BTreeMap::new();
            for ((_, hour), c) in &got {
                proptest::prop_assert!(c.license_ms <= u64::from(c.peak_in_use) * 3_600_000);
                *hours.entry(*hour).or_default() += c.license_ms;
            }
            expected.retain(|_, v| *v > 0);
            hours.retain(|_, v| *v > 0);
            let hours: BTreeMap<DateTime<Utc>, u64> =
                hours.into_iter().map(|(h, ms)| (h, ms / 1000)).collect();
            proptest::prop_assert_eq!(hours, expected);
        }
    }

    #[test]
    fn recent_slots_are_kept_for_a_day() {
        let f = Feature::parse("tts").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 9, 1, 0).unwrap();
        let mut l = Ledger::default();
        l.record(&f, t, 3, &counts(1, 0, 0));
        l.record(&f, t + chrono::Duration::minutes(2), 5, &counts(1, 1, 0));
        l.record(&f, t + chrono::Duration::minutes(6), 2, &counts(1, 0, 0));
        assert_eq!(
            l.recent_from(),
            Some(Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap())
        );
        let slots: Vec<(u32, u64)> = l
            .recent()
            .values()
            .map(|m| (m[&f].peak_in_use, m[&f].denials))
            .collect();
        assert_eq!(slots, vec![(5, 1), (2, 0)]);
        l.record(&f, t + chrono::Duration::hours(26), 1, &Counts::default());
        assert_eq!(l.recent().len(), 1, "slots older than a day are dropped");
    }
}
