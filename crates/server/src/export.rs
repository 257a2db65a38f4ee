//! The customer's own usage report: the hourly usage of a period of UTC days, one row per
//! feature per hour, for the admin API's JSON (`GET /v1/admin/usage`), `leasehold server
//! usage` and the Usage page's downloads. Counts only, from the same history the charts draw.

use chrono::{NaiveDate, Utc};
use leasehold_proto::api::server::{HourUsage, UsageExport};
use serde::Deserialize;

use crate::history::HistoryPoint;

/// The longest period one export covers, in days.
pub const MAX_EXPORT_DAYS: i64 = 400;
/// The period when none is given: the last 30 days, today included.
pub const DEFAULT_EXPORT_DAYS: i64 = 30;

/// `?from=YYYY-MM-DD&to=YYYY-MM-DD` (UTC days, inclusive), as text so an error can name the
/// parameter that is wrong.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PeriodQuery {
    /// First UTC day, YYYY-MM-DD (default: 29 days before `to`).
    pub from: Option<String>,
    /// Last UTC day, YYYY-MM-DD (default: today).
    pub to: Option<String>,
}

impl PeriodQuery {
    /// The period asked for: `to` defaults to `today`, `from` to 29 days before `to`. A date
    /// that is not YYYY-MM-DD, `from` after `to`, or a period over [`MAX_EXPORT_DAYS`] is
    /// refused with a message naming the parameter.
    pub fn period(&self, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), String> {
        let parse = |name: &str, v: &Option<String>| -> Result<Option<NaiveDate>, String> {
            v.as_deref()
                .map(|s| {
                    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|e| {
                        format!("{name} must be a date YYYY-MM-DD (UTC), got {s:?}: {e}")
                    })
                })
                .transpose()
        };
        let to = parse("to", &self.to)?.unwrap_or(today);
        let from = parse("from", &self.from)?
            .unwrap_or(to - chrono::Duration::days(DEFAULT_EXPORT_DAYS - 1));
        if from > to {
            return Err(format!("from ({from}) is after to ({to})"));
        }
        let days = (to - from).num_days() + 1;
        if days > MAX_EXPORT_DAYS {
            return Err(format!(
                "from {from} to {to} spans {days} days; an export covers at most {MAX_EXPORT_DAYS} (narrow from or to)"
            ));
        }
        Ok((from, to))
    }
}

/// The report of the days `from` to `to` from hourly `points` (closed and open hours, sorted
/// by hour, then feature).
pub fn report(points: &[HistoryPoint], from: NaiveDate, to: NaiveDate) -> UsageExport {
    let rows = points
        .iter()
        .filter(|p| {
            let day = p.start.date_naive();
            day >= from && day <= to
        })
        .map(|p| HourUsage {
            hour: p.start,
            feature: p.feature.clone(),
            peak_in_use: p.peak_in_use,
            license_hours: hours(p.license_secs),
            grants: p.grants,
            denials: p.denials,
            denials_while_free: p.denials_while_free,
            backup_use_hours: hours(p.backup_use_secs),
            open: p.open,
        })
        .collect();
    UsageExport { from, to, rows }
}

/// The start of day `from` (UTC): where the history to read begins.
pub fn start_of(from: NaiveDate) -> chrono::DateTime<Utc> {
    from.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn hours(secs: u64) -> f64 {
    // Exact for any count of seconds an hour can hold (well below 2^53).
    secs as f64 / 3600.0
}

/// The rows as CSV (RFC 4180): a header row of the field names, then one line per row.
pub fn csv(rows: &[HourUsage]) -> Result<String, String> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    if rows.is_empty() {
        // The header comes from the first row; without one, write it alone.
        w.write_record(HEADER).map_err(|e| e.to_string())?;
    }
    for r in rows {
        w.serialize(r).map_err(|e| e.to_string())?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

/// The CSV header: [`HourUsage`]'s field names, in order.
pub const HEADER: [&str; 9] = [
    "hour",
    "feature",
    "peak_in_use",
    "license_hours",
    "grants",
    "denials",
    "denials_while_free",
    "backup_use_hours",
    "open",
];

/// A download's file name: `leasehold-usage-FROM-to-TO.EXT`.
pub fn file_name(from: NaiveDate, to: NaiveDate, ext: &str) -> String {
    format!("leasehold-usage-{from}-to-{to}.{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use leasehold_proto::Feature;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    fn query(from: Option<&str>, to: Option<&str>) -> PeriodQuery {
        PeriodQuery {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
        }
    }

    #[test]
    fn the_period_defaults_to_the_last_30_days_and_names_a_bad_parameter() {
        assert_eq!(query(None, None).period(day(30)), Ok((day(1), day(30))));
        assert_eq!(
            query(Some("2026-11-03"), Some("2026-11-03")).period(day(30)),
            Ok((day(3), day(3)))
        );
        let e = query(Some("2026-13-01"), None).period(day(30)).unwrap_err();
        assert!(e.starts_with("from must be a date"), "{e}");
        let e = query(None, Some("yesterday")).period(day(30)).unwrap_err();
        assert!(e.starts_with("to must be a date"), "{e}");
        let e = query(Some("2026-11-05"), Some("2026-11-04"))
            .period(day(30))
            .unwrap_err();
        assert!(
            e.contains("from (2026-11-05) is after to (2026-11-04)"),
            "{e}"
        );
        let e = query(Some("2025-01-01"), Some("2026-11-04"))
            .period(day(30))
            .unwrap_err();
        assert!(e.contains("at most 400"), "{e}");
        assert!(query(Some("2025-10-01"), Some("2026-11-04"))
            .period(day(30))
            .is_ok());
    }

    #[test]
    fn csv_has_a_header_row_and_reads_back() {
        let empty = csv(&[]).unwrap();
        assert_eq!(empty, format!("{}\n", HEADER.join(",")));
        let row = HourUsage {
            hour: Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap(),
            feature: Feature::parse("asr.en-US").unwrap(),
            peak_in_use: 3,
            license_hours: 1.5,
            grants: 4,
            denials: 1,
            denials_while_free: 0,
            backup_use_hours: 0.25,
            open: false,
        };
        let text = csv(std::slice::from_ref(&row)).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(HEADER.join(",").as_str()));
        assert_eq!(
            lines.next(),
            Some("2026-11-28T09:00:00Z,asr.en-US,3,1.5,4,1,0,0.25,false")
        );
        // Read back with the same crate: one row type for JSON and CSV.
        let mut r = ::csv::Reader::from_reader(text.as_bytes());
        let back: Vec<HourUsage> = r.deserialize().collect::<Result<_, _>>().unwrap();
        assert_eq!(back, vec![row]);
    }
}
