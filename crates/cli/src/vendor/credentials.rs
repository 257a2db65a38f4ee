//! The personal tokens `leasehold vendor login` keeps: one per node base URL, in
//! `$XDG_CONFIG_HOME/leasehold/vendor-credentials.json` (default `~/.config/…`), mode 0600
//! in a directory of mode 0700, replaced whole on every change so a crash never leaves half
//! a file. The token is a secret: its `Debug` never shows it.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::DirBuilder;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use leasehold_proto::api::staff::AccountName;
use leasehold_proto::ApiTokenId;
use serde::{Deserialize, Serialize};

/// The file's name below `$XDG_CONFIG_HOME/leasehold/`.
pub const FILE_NAME: &str = "vendor-credentials.json";

/// What is kept for one node.
#[derive(Clone, Serialize, Deserialize)]
pub struct Saved {
    pub account: AccountName,
    pub token: String,
    pub token_id: ApiTokenId,
    pub saved_at: DateTime<Utc>,
}

impl fmt::Debug for Saved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saved")
            .field("account", &self.account)
            .field("token", &"<redacted>")
            .field("token_id", &self.token_id)
            .field("saved_at", &self.saved_at)
            .finish()
    }
}

/// The whole file: node base URL (as `--node` normalizes it, ending in `/`) → credentials.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    pub nodes: BTreeMap<String, Saved>,
}

/// Where the file is: `$XDG_CONFIG_HOME/leasehold/…`, else `$HOME/.config/leasehold/…`.
pub fn path() -> anyhow::Result<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let config = match (from("XDG_CONFIG_HOME"), from("HOME")) {
        (Some(dir), _) => dir,
        (None, Some(home)) => home.join(".config"),
        (None, None) => bail!(
            "cannot tell where to keep the vendor credentials: neither XDG_CONFIG_HOME nor HOME is an absolute path; set one, or pass --token"
        ),
    };
    Ok(config.join("leasehold").join(FILE_NAME))
}

impl Credentials {
    /// The file at `path`; empty when there is none.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display())))
            }
        };
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                eprintln!(
                    "warning: {} holds API tokens but others may read it (mode {mode:04o}); run `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
        }
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a credentials file written by `leasehold vendor login`; remove it and sign in again",
                path.display()
            )
        })
    }

    pub fn get(&self, node: &str) -> Option<&Saved> {
        self.nodes.get(node)
    }

    /// Writes the file anew (mode 0600; its directory 0700 when created), through a
    /// temporary file renamed over it.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let dir = path
            .parent()
            .context("the credentials file has no directory")?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let text = format!("{}\n", serde_json::to_string_pretty(self)?);
        leasehold_server::config::write_file_atomically(path, text.as_bytes(), 0o600)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> Saved {
        Saved {
            account: AccountName::parse("alice").unwrap(),
            token: format!("lhv_{}", "ab".repeat(32)),
            token_id: ApiTokenId::from_random([7; 8]),
            saved_at: Utc::now(),
        }
    }

    #[test]
    fn the_file_round_trips_with_mode_0600_and_never_shows_the_token_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg").join("leasehold").join(FILE_NAME);
        assert!(Credentials::load(&path).unwrap().nodes.is_empty());
        let mut c = Credentials::default();
        c.nodes.insert("http://n:1/".into(), saved());
        c.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let back = Credentials::load(&path).unwrap();
        let s = back.get("http://n:1/").unwrap();
        assert_eq!(s.token, saved().token);
        assert!(!format!("{back:?}").contains(&saved().token));

        // A file others could read is made private again at the next save.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        back.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        std::fs::write(&path, "nonsense").unwrap();
        let e = Credentials::load(&path).unwrap_err().to_string();
        assert!(e.contains("vendor login"), "{e}");
    }
}
