//! Contexts and licenses: what an entitlement is and when it is in force.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::ids::{Feature, LicenseId};

/// The kind of server a license (or a server) is for. A license loads only on a server of its
/// own context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Context {
    Production,
    Backup,
    Development,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("context {0:?} is not one of production, backup, development")]
pub struct ContextError(pub String);

impl Context {
    pub const ALL: [Context; 3] = [Context::Production, Context::Backup, Context::Development];

    pub fn as_str(self) -> &'static str {
        match self {
            Context::Production => "production",
            Context::Backup => "backup",
            Context::Development => "development",
        }
    }

    /// Production and development servers are an installation's primary; backups are not.
    pub fn is_primary(self) -> bool {
        !matches!(self, Context::Backup)
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Context {
    type Err = ContextError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "production" => Ok(Context::Production),
            "backup" => Ok(Context::Backup),
            "development" => Ok(Context::Development),
            _ => Err(ContextError(s.chars().take(40).collect())),
        }
    }
}

/// One entitlement: `count` concurrent uses of `feature`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct License {
    pub id: LicenseId,
    pub feature: Feature,
    pub count: u32,
    pub context: Context,
    /// Software released after this date is not covered by this license.
    pub maintenance_until: NaiveDate,
    /// Last day (UTC) on which the license may be used; `None` means perpetual.
    pub expires: Option<NaiveDate>,
    /// For a backup license: the production license it parallels.
    pub backs_up: Option<LicenseId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseError {
    #[error("license count must be at least 1")]
    ZeroCount,
    #[error("a backup license must name the production license it backs up (backs_up)")]
    BackupWithoutTarget,
    #[error("only a backup license may name a license it backs up; this one is {0}")]
    TargetOnNonBackup(Context),
}

impl License {
    /// Checks the rules a license holds on its own (count, `backs_up` only on backups).
    pub fn validate(&self) -> Result<(), LicenseError> {
        if self.count == 0 {
            return Err(LicenseError::ZeroCount);
        }
        match (self.context, &self.backs_up) {
            (Context::Backup, None) => Err(LicenseError::BackupWithoutTarget),
            (Context::Backup, Some(_)) => Ok(()),
            (other, Some(_)) => Err(LicenseError::TargetOnNonBackup(other)),
            (_, None) => Ok(()),
        }
    }

    /// Whether the license may still be used on `today` (UTC): it is usable through its
    /// expiry date inclusive.
    pub fn is_expired_on(&self, today: NaiveDate) -> bool {
        self.expires.is_some_and(|e| today > e)
    }

    /// Whether a product released on `release` is covered by the maintenance date.
    pub fn covers_release(&self, release: NaiveDate) -> bool {
        release <= self.maintenance_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(context: Context, backs_up: Option<LicenseId>) -> License {
        License {
            id: LicenseId::from_random([1; 8]),
            feature: Feature::parse("tts").unwrap(),
            count: 3,
            context,
            maintenance_until: NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
            expires: Some(NaiveDate::from_ymd_opt(2027, 6, 30).unwrap()),
            backs_up,
        }
    }

    #[test]
    fn context_parses_and_prints() {
        for c in Context::ALL {
            assert_eq!(c.as_str().parse::<Context>().unwrap(), c);
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        }
        assert_eq!(
            "Production".parse::<Context>().unwrap(),
            Context::Production
        );
        let e = "prod".parse::<Context>().unwrap_err();
        assert!(e.to_string().contains("production, backup, development"));
    }

    #[test]
    fn validation_rules() {
        assert!(sample(Context::Production, None).validate().is_ok());
        let mut zero = sample(Context::Production, None);
        zero.count = 0;
        assert_eq!(zero.validate(), Err(LicenseError::ZeroCount));
        assert_eq!(
            sample(Context::Backup, None).validate(),
            Err(LicenseError::BackupWithoutTarget)
        );
        let target = Some(LicenseId::from_random([2; 8]));
        assert!(sample(Context::Backup, target.clone()).validate().is_ok());
        assert_eq!(
            sample(Context::Development, target).validate(),
            Err(LicenseError::TargetOnNonBackup(Context::Development))
        );
    }

    #[test]
    fn expiry_is_inclusive_and_maintenance_covers_up_to_its_date() {
        let l = sample(Context::Production, None);
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert!(!l.is_expired_on(d(2027, 6, 30)));
        assert!(l.is_expired_on(d(2027, 7, 1)));
        assert!(l.covers_release(d(2027, 1, 31)));
        assert!(!l.covers_release(d(2027, 2, 1)));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let l = sample(Context::Production, None);
        let mut v = serde_json::to_value(&l).unwrap();
        v["mac_address"] = serde_json::json!("00:11:22:33:44:55");
        assert!(serde_json::from_value::<License>(v).is_err());
    }
}
