//! Usage summaries: per feature, per hour counts. Nothing per client, per call or personal.

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::Feature;

/// One hour of one feature on one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UsageBucket {
    /// Sequence number, assigned by the server, strictly increasing; the node acknowledges
    /// the highest it stored and ignores any it has already seen.
    pub seq: u64,
    pub feature: Feature,
    /// Start of the hour (UTC, minutes and seconds zero).
    pub hour: DateTime<Utc>,
    /// Highest number in use at once during the hour, summed over clients. Not clipped at the
    /// licensed count: honest usage shows any excess.
    pub peak_in_use: u32,
    pub grants: u64,
    pub denials: u64,
    /// Of `denials`: those clients reported while the server had licenses neither in use
    /// nor reserved (a measure of allocation quality; a count only).
    #[serde(default)]
    pub denials_while_free: u64,
    /// On a backup server: seconds of license use by clients in failover.
    pub backup_use_secs: u64,
    /// License-seconds during the hour: the time integral of the number in use (summed over
    /// clients), so use can be billed by time (license-hours = this / 3600). At most
    /// `peak_in_use` × 3600. Absent (0) in uploads of servers older than this field.
    #[serde(default)]
    pub license_secs: u64,
}

impl UsageBucket {
    pub fn validate(&self) -> Result<(), String> {
        if self.hour.minute() != 0 || self.hour.second() != 0 || self.hour.nanosecond() != 0 {
            return Err(format!(
                "usage bucket {} hour {} is not the start of an hour",
                self.seq, self.hour
            ));
        }
        if self.seq == 0 {
            return Err("usage bucket sequence numbers start at 1".into());
        }
        if self.backup_use_secs > 3600 * u64::from(self.peak_in_use.max(1)) {
            return Err(format!(
                "usage bucket {} claims more backup use than an hour allows",
                self.seq
            ));
        }
        if self.license_secs > 3600 * u64::from(self.peak_in_use) {
            return Err(format!(
                "usage bucket {} claims {} license-seconds, more than its peak in use of {} allows in an hour",
                self.seq, self.license_secs, self.peak_in_use
            ));
        }
        Ok(())
    }
}

/// The start of the UTC hour containing `t`.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp() - t.timestamp().rem_euclid(3600);
    DateTime::from_timestamp(secs, 0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn bucket(peak_in_use: u32, license_secs: u64) -> UsageBucket {
        UsageBucket {
            seq: 1,
            feature: Feature::parse("tts").unwrap(),
            hour: Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap(),
            peak_in_use,
            grants: 0,
            denials: 0,
            denials_while_free: 0,
            backup_use_secs: 0,
            license_secs,
        }
    }

    #[test]
    fn license_seconds_are_bounded_by_the_peak_over_an_hour() {
        assert!(bucket(2, 7200).validate().is_ok());
        assert!(bucket(0, 0).validate().is_ok());
        let e = bucket(2, 7201).validate().unwrap_err();
        assert!(e.contains("license-seconds"), "{e}");
        assert!(bucket(0, 1).validate().is_err());
    }

    #[test]
    fn an_older_servers_bucket_without_license_seconds_parses() {
        let json = r#"{"seq":1,"feature":"tts","hour":"2026-11-28T09:00:00Z","peak_in_use":2,"grants":1,"denials":0,"backup_use_secs":0}"#;
        let b: UsageBucket = serde_json::from_str(json).unwrap();
        assert_eq!((b.license_secs, b.denials_while_free), (0, 0));
    }
}
