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
        Ok(())
    }
}

/// The start of the UTC hour containing `t`.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp() - t.timestamp().rem_euclid(3600);
    DateTime::from_timestamp(secs, 0).unwrap_or(t)
}
