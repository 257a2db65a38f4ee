//! Usage storage over time, once for every backend: hourly rows get a partition a day ahead
//! of their day (PostgreSQL), fold into daily rows after [`UsagePolicy::hourly_days`], and
//! daily rows are deleted after [`UsagePolicy::retention_days`]. Each step runs in its own
//! short transaction under the maintenance lock, so nodes sharing a database take turns,
//! and a pass cut short is finished by the next one (every step is idempotent).

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::store::{DynStore, StoreError, StoreResult};

/// How long usage is kept, and in what detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsagePolicy {
    /// Days of hourly rows kept before they fold into daily rows (today not counted).
    pub hourly_days: u32,
    /// Days of daily rows kept; older days are deleted.
    pub retention_days: u32,
}

impl Default for UsagePolicy {
    fn default() -> Self {
        Self {
            hourly_days: 90,
            retention_days: 730,
        }
    }
}

impl UsagePolicy {
    /// Refuses a policy that would delete days before they are rolled up, or roll up today.
    pub fn validate(&self) -> Result<(), String> {
        if self.hourly_days == 0 {
            return Err("usage hourly days must be at least 1".into());
        }
        if self.retention_days <= self.hourly_days {
            return Err(format!(
                "usage retention ({} days) must be longer than the hourly window ({} days)",
                self.retention_days, self.hourly_days
            ));
        }
        Ok(())
    }

    /// The first day whose hourly rows are kept: days before it are rolled up.
    pub fn first_hourly_day(&self, today: NaiveDate) -> NaiveDate {
        today - Duration::days(i64::from(self.hourly_days))
    }

    /// The first day kept at all.
    pub fn first_kept_day(&self, today: NaiveDate) -> NaiveDate {
        today - Duration::days(i64::from(self.retention_days))
    }
}

/// Days ahead of today that get their partition in advance.
const PARTITIONS_AHEAD: i64 = 3;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub partitions_created: u32,
    pub days_rolled_up: u32,
    pub hourly_rows_rolled_up: u64,
    pub daily_rows_deleted: u64,
}

/// One maintenance pass at `now`.
pub async fn maintain(
    store: &DynStore,
    now: DateTime<Utc>,
    policy: UsagePolicy,
) -> StoreResult<MaintenanceReport> {
    policy.validate().map_err(StoreError::Other)?;
    let today = now.date_naive();
    let first_hourly = policy.first_hourly_day(today);
    let mut report = MaintenanceReport::default();

    // Partitions for every day still kept hourly, so late uploads of a server that was
    // offline for weeks land in their day's partition too.
    let mut tx = store.begin().await?;
    tx.lock_usage_maintenance().await?;
    report.partitions_created = tx
        .prepare_usage_partitions(first_hourly, today + Duration::days(PARTITIONS_AHEAD))
        .await?;
    let oldest = tx.oldest_usage_hour().await?;
    tx.commit().await?;

    if let Some(oldest) = oldest {
        for day in oldest
            .date_naive()
            .iter_days()
            .take_while(|d| *d < first_hourly)
        {
            let mut tx = store.begin().await?;
            tx.lock_usage_maintenance().await?;
            let rows = tx.roll_up_usage_day(day).await?;
            tx.commit().await?;
            if rows > 0 {
                report.days_rolled_up += 1;
                report.hourly_rows_rolled_up += rows;
            }
        }
    }

    let mut tx = store.begin().await?;
    tx.lock_usage_maintenance().await?;
    report.daily_rows_deleted = tx
        .delete_daily_usage_before(policy.first_kept_day(today))
        .await?;
    tx.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_must_roll_up_before_it_deletes() {
        assert!(UsagePolicy::default().validate().is_ok());
        let p = |hourly_days, retention_days| UsagePolicy {
            hourly_days,
            retention_days,
        };
        assert!(p(0, 10).validate().is_err());
        assert!(p(90, 90).validate().is_err());
        assert!(p(90, 91).validate().is_ok());
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(
            p(90, 730).first_hourly_day(today),
            NaiveDate::from_ymd_opt(2026, 9, 2).unwrap()
        );
        assert_eq!(
            p(90, 730).first_kept_day(today),
            NaiveDate::from_ymd_opt(2024, 12, 1).unwrap()
        );
    }
}
