//! The licensing rules of the seed as pure functions: where a license may load, what shape an
//! installation may take, and how a backup license relates to the production license it
//! parallels. The node applies them on every change; the server applies the context rule to
//! every bundle it loads.

use crate::error::ErrorCode;
use crate::ids::{InstallationId, LicenseId};
use crate::license::{Context, License};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("a {license} license cannot load on a {server} server: license and server context must match")]
    ContextMismatch { license: Context, server: Context },
    #[error("installation already has a {existing} server; an installation has exactly one production or development server")]
    SecondPrimary { existing: Context },
    #[error(
        "backup license must back up a production license, but {target} is a {context} license"
    )]
    BackupOfNonProduction { target: LicenseId, context: Context },
    #[error("backup license must be in the same installation as the production license {target} it backs up")]
    BackupOtherInstallation { target: LicenseId },
    #[error("backup license is for feature {backup} but {target} is for feature {production}")]
    BackupOtherFeature {
        target: LicenseId,
        backup: String,
        production: String,
    },
    #[error("backup license count {backup} exceeds the count {production} of the production license {target} it backs up")]
    BackupExceedsProduction {
        target: LicenseId,
        backup: u32,
        production: u32,
    },
}

impl RuleError {
    pub fn code(&self) -> ErrorCode {
        match self {
            RuleError::ContextMismatch { .. } => ErrorCode::ContextMismatch,
            _ => ErrorCode::InstallationShape,
        }
    }
}

/// A license loads only on a server of its own context.
pub fn check_license_loads_on(license: Context, server: Context) -> Result<(), RuleError> {
    if license == server {
        Ok(())
    } else {
        Err(RuleError::ContextMismatch { license, server })
    }
}

/// An installation has at most one production or development server (never both) and any
/// number of backups. `existing` are the contexts of the servers it already has.
pub fn check_installation_shape(existing: &[Context], new: Context) -> Result<(), RuleError> {
    if new.is_primary() {
        if let Some(&primary) = existing.iter().find(|c| c.is_primary()) {
            return Err(RuleError::SecondPrimary { existing: primary });
        }
    }
    Ok(())
}

/// A backup license parallels a production license of the same installation, for the same
/// feature, with a count no larger than that license's.
pub fn check_backup_license(
    backup: &License,
    backup_installation: &InstallationId,
    target: &License,
    target_installation: &InstallationId,
) -> Result<(), RuleError> {
    if target.context != Context::Production {
        return Err(RuleError::BackupOfNonProduction {
            target: target.id.clone(),
            context: target.context,
        });
    }
    if backup_installation != target_installation {
        return Err(RuleError::BackupOtherInstallation {
            target: target.id.clone(),
        });
    }
    if backup.feature != target.feature {
        return Err(RuleError::BackupOtherFeature {
            target: target.id.clone(),
            backup: backup.feature.to_string(),
            production: target.feature.to_string(),
        });
    }
    if backup.count > target.count {
        return Err(RuleError::BackupExceedsProduction {
            target: target.id.clone(),
            backup: backup.count,
            production: target.count,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Feature;
    use chrono::NaiveDate;
    use Context::*;

    #[test]
    fn context_table() {
        // Every (license, server) pair: only the diagonal loads.
        for license in Context::ALL {
            for server in Context::ALL {
                let r = check_license_loads_on(license, server);
                assert_eq!(r.is_ok(), license == server, "{license} on {server}");
                if let Err(e) = r {
                    assert_eq!(e.code(), ErrorCode::ContextMismatch);
                }
            }
        }
    }

    #[test]
    fn installation_shape_table() {
        let cases: &[(&[Context], Context, bool)] = &[
            (&[], Production, true),
            (&[], Development, true),
            (&[], Backup, true),
            (&[Production], Backup, true),
            (&[Production, Backup, Backup], Backup, true),
            (&[Development], Backup, true),
            (&[Production], Production, false),
            (&[Production], Development, false),
            (&[Development], Production, false),
            (&[Development], Development, false),
            (&[Backup, Development], Production, false),
            (&[Backup, Backup], Production, true),
        ];
        for (existing, new, ok) in cases {
            let r = check_installation_shape(existing, *new);
            assert_eq!(r.is_ok(), *ok, "{existing:?} + {new}");
            if let Err(e) = r {
                assert_eq!(e.code(), ErrorCode::InstallationShape);
            }
        }
    }

    fn lic(id: u8, feature: &str, count: u32, context: Context) -> License {
        License {
            id: LicenseId::from_random([id; 8]),
            feature: Feature::parse(feature).unwrap(),
            count,
            context,
            maintenance_until: NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
            expires: None,
            backs_up: None,
        }
    }

    #[test]
    fn backup_license_table() {
        let a = InstallationId::from_random([1; 8]);
        let b = InstallationId::from_random([2; 8]);
        let prod = lic(1, "tts", 10, Production);
        let dev = lic(2, "tts", 10, Development);
        let ok = lic(3, "tts", 10, Backup);
        let smaller = lic(4, "tts", 4, Backup);
        let bigger = lic(5, "tts", 11, Backup);
        let other_feature = lic(6, "asr", 1, Backup);
        assert!(check_backup_license(&ok, &a, &prod, &a).is_ok());
        assert!(check_backup_license(&smaller, &a, &prod, &a).is_ok());
        assert!(matches!(
            check_backup_license(&bigger, &a, &prod, &a),
            Err(RuleError::BackupExceedsProduction { .. })
        ));
        assert!(matches!(
            check_backup_license(&ok, &a, &prod, &b),
            Err(RuleError::BackupOtherInstallation { .. })
        ));
        assert!(matches!(
            check_backup_license(&ok, &a, &dev, &a),
            Err(RuleError::BackupOfNonProduction { .. })
        ));
        assert!(matches!(
            check_backup_license(&other_feature, &a, &prod, &a),
            Err(RuleError::BackupOtherFeature { .. })
        ));
        assert!(matches!(
            check_backup_license(&ok, &a, &ok, &a),
            Err(RuleError::BackupOfNonProduction { .. })
        ));
    }
}
