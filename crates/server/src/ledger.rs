//! The usage ledger: per feature, per hour, the peak number in use (summed over clients),
//! grants, denials (and of them, denials while licenses were free) and, on a backup server,
//! license time used by clients in failover. Nothing per client leaves this module.

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

#[derive(Debug, Default)]
pub struct Ledger {
    open: BTreeMap<HourKey, Counts>,
    dirty: bool,
    /// Five-minute slots of the last day, in memory only, for the dashboard's 24-hour chart.
    recent: BTreeMap<DateTime<Utc>, BTreeMap<Feature, Counts>>,
    /// The first recent slot this process recorded.
    recent_from: Option<DateTime<Utc>>,
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
        let c = self
            .open
            .entry((feature.clone(), hour_of(now)))
            .or_default();
        let before = *c;
        c.add(in_use_total, d);
        self.dirty |= *c != before;
        self.record_recent(feature, now, in_use_total, d);
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
