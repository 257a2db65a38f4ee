//! The vendor's usage report of an installation: pure aggregation of the hourly rows its
//! servers uploaded, and of the daily rows older hours were rolled up into, into days; and
//! the hours in which backup and production licenses were used at the same time (from
//! hourly rows only: rolled-up days no longer tell hours apart).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use leasehold_proto::{Context, Feature, ServerGuid};

use crate::api::{DailyUsage, SimultaneousUse, UsageRow};
use crate::store::DailyUsageRow;

/// One server's rows, with what it is.
#[derive(Debug, Clone)]
pub struct ServerUsage {
    pub guid: ServerGuid,
    pub context: Context,
    /// Hourly rows.
    pub rows: Vec<UsageRow>,
    /// Rolled-up days.
    pub daily: Vec<DailyUsageRow>,
}

/// Days from `from` to `to` (inclusive, UTC) of every server's rows, sorted by day, feature
/// and context; and the simultaneous-use hours, sorted by hour, feature and server.
pub fn aggregate(
    servers: &[ServerUsage],
    from: NaiveDate,
    to: NaiveDate,
) -> (Vec<DailyUsage>, Vec<SimultaneousUse>) {
    let in_range = |r: &&UsageRow| {
        let d = r.hour.date_naive();
        d >= from && d <= to
    };
    // Per (hour, feature, context): the sum over servers of their rows (a server may have
    // rows of several instances for one hour, after a reassign: added too).
    #[derive(Default, Clone, Copy)]
    struct Hour {
        peak: u32,
        grants: u64,
        denials: u64,
        denials_while_free: u64,
        license_secs: u64,
    }
    let mut hours: BTreeMap<(DateTime<Utc>, Feature, Context), Hour> = BTreeMap::new();
    let mut production: BTreeMap<(DateTime<Utc>, Feature), u32> = BTreeMap::new();
    let mut backup: BTreeMap<(DateTime<Utc>, Feature, ServerGuid), u64> = BTreeMap::new();
    for s in servers {
        for r in s.rows.iter().filter(in_range) {
            let h = hours
                .entry((r.hour, r.feature.clone(), s.context))
                .or_default();
            h.peak = h.peak.saturating_add(r.peak_in_use);
            h.grants += r.grants;
            h.denials += r.denials;
            h.denials_while_free += r.denials_while_free;
            h.license_secs += r.license_secs;
            match s.context {
                Context::Production => {
                    let p = production.entry((r.hour, r.feature.clone())).or_default();
                    *p = p.saturating_add(r.peak_in_use);
                }
                Context::Backup if r.backup_use_secs > 0 => {
                    *backup
                        .entry((r.hour, r.feature.clone(), s.guid))
                        .or_default() += r.backup_use_secs;
                }
                _ => {}
            }
        }
    }
    let mut days: BTreeMap<(NaiveDate, Feature, Context), DailyUsage> = BTreeMap::new();
    for ((hour, feature, context), h) in hours {
        let day = hour.date_naive();
        let d = days
            .entry((day, feature.clone(), context))
            .or_insert_with(|| empty_day(day, feature, context));
        d.peak_in_use = d.peak_in_use.max(h.peak);
        add_counts(
            d,
            u64::from(h.peak),
            h.license_secs,
            h.grants,
            h.denials,
            h.denials_while_free,
        );
    }
    // Rolled-up days: each server's day summed over the servers of a context (the peak an
    // upper bound, as for hours), then merged with any hourly rows of the same day (late
    // uploads that arrived after the day was rolled up and before the next roll-up).
    let mut rolled: BTreeMap<(NaiveDate, Feature, Context), DailyUsage> = BTreeMap::new();
    for s in servers {
        for r in s.daily.iter().filter(|r| r.day >= from && r.day <= to) {
            let d = rolled
                .entry((r.day, r.feature.clone(), s.context))
                .or_insert_with(|| empty_day(r.day, r.feature.clone(), s.context));
            d.peak_in_use = d.peak_in_use.saturating_add(r.peak_in_use);
            add_counts(
                d,
                r.peak_hours,
                r.license_secs,
                r.grants,
                r.denials,
                r.denials_while_free,
            );
        }
    }
    for (k, r) in rolled {
        let d = days
            .entry(k)
            .or_insert_with(|| empty_day(r.day, r.feature.clone(), r.context));
        d.peak_in_use = d.peak_in_use.max(r.peak_in_use);
        add_counts(
            d,
            r.peak_hours,
            r.license_secs,
            r.grants,
            r.denials,
            r.denials_while_free,
        );
    }
    let simultaneous = backup
        .into_iter()
        .filter_map(|((hour, feature, guid), secs)| {
            let peak = production.get(&(hour, feature.clone())).copied()?;
            (peak > 0).then_some(SimultaneousUse {
                hour,
                feature,
                backup_server: guid,
                backup_use_secs: secs,
                production_peak: peak,
            })
        })
        .collect();
    (days.into_values().collect(), simultaneous)
}

/// Adds peak-hours, license time and counts to a day (the peak is combined by the caller: a
/// maximum over hours, a sum over servers).
fn add_counts(
    d: &mut DailyUsage,
    peak_hours: u64,
    license_secs: u64,
    grants: u64,
    denials: u64,
    while_free: u64,
) {
    d.peak_hours += peak_hours;
    d.license_secs += license_secs;
    d.grants += grants;
    d.denials += denials;
    d.denials_while_free += while_free;
}

fn empty_day(day: NaiveDate, feature: Feature, context: Context) -> DailyUsage {
    DailyUsage {
        day,
        feature,
        context,
        peak_in_use: 0,
        peak_hours: 0,
        license_secs: 0,
        grants: 0,
        denials: 0,
        denials_while_free: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use leasehold_proto::InstanceId;

    fn row(h: u32, day: u32, feature: &str, peak: u32, backup_secs: u64) -> UsageRow {
        let hour = Utc.with_ymd_and_hms(2026, 11, day, h, 0, 0).unwrap();
        UsageRow {
            instance_id: InstanceId::from_random([1; 16]),
            seq: u64::from(day * 100 + h),
            feature: Feature::parse(feature).unwrap(),
            hour,
            peak_in_use: peak,
            grants: u64::from(peak) * 2,
            denials: 1,
            denials_while_free: u64::from(h % 2),
            backup_use_secs: backup_secs,
            // Half an hour at the peak.
            license_secs: u64::from(peak) * 1800,
            received_at: hour,
        }
    }

    #[test]
    fn days_sum_servers_take_the_highest_hour_and_flag_backup_use_beside_production() {
        let prod = ServerGuid::from_bytes([1; 16]);
        let backup = ServerGuid::from_bytes([2; 16]);
        let servers = vec![
            ServerUsage {
                guid: prod,
                context: Context::Production,
                rows: vec![
                    row(9, 2, "tts", 3, 0),
                    row(10, 2, "tts", 5, 0),
                    row(9, 3, "tts", 0, 0),
                ],
                daily: vec![],
            },
            ServerUsage {
                guid: backup,
                context: Context::Backup,
                // 10:00 beside production use (flagged); 09:00 on day 3 while production
                // was idle (a real failover, not flagged); day 4 outside the range.
                rows: vec![
                    row(10, 2, "tts", 2, 600),
                    row(9, 3, "tts", 4, 3600),
                    row(9, 4, "tts", 9, 3600),
                ],
                daily: vec![],
            },
        ];
        let from = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let to = NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
        let (days, simultaneous) = aggregate(&servers, from, to);
        let got: Vec<(u32, Context, u32, u64, u64, u64)> = days
            .iter()
            .map(|d| {
                use chrono::Datelike;
                (
                    d.day.day(),
                    d.context,
                    d.peak_in_use,
                    d.peak_hours,
                    d.grants,
                    d.denials,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (2, Context::Production, 5, 8, 16, 2),
                (2, Context::Backup, 2, 2, 4, 1),
                (3, Context::Production, 0, 0, 0, 1),
                (3, Context::Backup, 4, 4, 8, 1),
            ]
        );
        assert_eq!(days[0].denials_while_free, 1);
        // License time adds up over the day's hours: 3 and 5 at the peak for half an hour.
        assert_eq!(days[0].license_secs, (3 + 5) * 1800);
        assert_eq!(simultaneous.len(), 1, "{simultaneous:?}");
        let s = &simultaneous[0];
        assert_eq!(
            (s.backup_server, s.backup_use_secs, s.production_peak),
            (backup, 600, 5)
        );
        assert_eq!(s.hour, Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap());
    }

    #[test]
    fn rolled_up_days_sum_over_servers_and_merge_with_late_hourly_rows() {
        let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let daily = |d, peak, hours| DailyUsageRow {
            feature: Feature::parse("tts").unwrap(),
            day: day(d),
            peak_in_use: peak,
            peak_hours: hours,
            license_secs: hours * 1000,
            grants: 10,
            denials: 2,
            denials_while_free: 1,
            backup_use_secs: 0,
        };
        let servers = vec![
            ServerUsage {
                guid: ServerGuid::from_bytes([1; 16]),
                context: Context::Development,
                // Day 2 rolled up, and a late hourly row of day 2 not yet rolled up.
                rows: vec![row(9, 2, "tts", 7, 0)],
                daily: vec![daily(1, 3, 20), daily(2, 4, 30)],
            },
            ServerUsage {
                guid: ServerGuid::from_bytes([2; 16]),
                context: Context::Development,
                rows: vec![],
                daily: vec![daily(1, 2, 5), daily(9, 9, 9)],
            },
        ];
        let (days, simultaneous) = aggregate(&servers, day(1), day(3));
        let got: Vec<_> = days
            .iter()
            .map(|d| (d.day, d.peak_in_use, d.peak_hours, d.grants, d.denials))
            .collect();
        assert_eq!(
            got,
            vec![(day(1), 5, 25, 20, 4), (day(2), 7, 37, 24, 3)],
            "{days:?}"
        );
        let secs: Vec<u64> = days.iter().map(|d| d.license_secs).collect();
        assert_eq!(secs, vec![25_000, 30_000 + 7 * 1800]);
        assert!(simultaneous.is_empty());
    }
}
