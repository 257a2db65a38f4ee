//! The installation's client key: the secret an application sends (`Authorization: Bearer
//! KEY`) to be leased licenses. The server makes one at first start in
//! `DATA_DIR/client-key` (mode 0600); rotating it keeps the old key valid for an overlap, so
//! applications can be moved to the new key without a refused call. A backup server is
//! given the same key (`leasehold server client-key --set`), so a client needs one key for
//! every server of its installation.
//!
//! File format, one key a line: the current key first, then `previous KEY until RFC3339`
//! for keys still accepted until then.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::config::write_file_atomically;

pub const CLIENT_KEY_FILE: &str = "client-key";
const PREFIX: &str = "lhck_";
/// How long a replaced key stays valid unless the server is told otherwise.
pub const DEFAULT_OVERLAP: Duration = Duration::days(7);

/// What a presented key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    Current,
    /// A replaced key, still inside its overlap.
    Previous,
    /// No key, an unknown key, or a replaced key past its overlap.
    Wrong,
}

#[derive(Clone)]
pub struct ClientKeys {
    path: PathBuf,
    current: String,
    previous: Vec<(String, DateTime<Utc>)>,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKeys")
            .field("path", &self.path)
            .field("previous", &self.previous.len())
            .finish_non_exhaustive()
    }
}

/// A fresh key: `lhck_` and 32 random bytes in hex.
pub fn new_key() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("{PREFIX}{}", hex::encode(b))
}

/// Checks the shape of a key given by an operator (`--set`); the error names what is wrong.
pub fn validate_key(key: &str) -> Result<(), String> {
    let rest = key
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("a client key starts with {PREFIX:?}"))?;
    if rest.len() != 64 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "a client key is {PREFIX:?} and 64 hexadecimal digits ({} characters after the prefix given)",
            rest.chars().count()
        ));
    }
    Ok(())
}

impl ClientKeys {
    /// Reads `DATA_DIR/client-key`, making one when there is none; `true` when it was made.
    pub fn load_or_create(data_dir: &Path) -> Result<(Self, bool), String> {
        let path = data_dir.join(CLIENT_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((Self::parse(path, &text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = Self {
                    path,
                    current: new_key(),
                    previous: Vec::new(),
                };
                keys.save()?;
                Ok((keys, true))
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Makes `key` the client key of the data directory `data_dir` (which must exist), as a
    /// backup server is given its primary's key: the key it replaces, if any, is not kept.
    pub fn install(data_dir: &Path, key: &str, now: DateTime<Utc>) -> Result<(), String> {
        validate_key(key)?;
        let path = data_dir.join(CLIENT_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                Self::parse(path, &text)?.replace(Some(key.to_owned()), now, Duration::zero())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self {
                path,
                current: key.to_owned(),
                previous: Vec::new(),
            }
            .save(),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    fn parse(path: PathBuf, text: &str) -> Result<Self, String> {
        let bad = |line: usize, why: String| format!("{} line {line}: {why}", path.display());
        let mut lines = text
            .lines()
            .map(str::trim)
            .enumerate()
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let (n, current) = lines
            .next()
            .ok_or_else(|| format!("{} holds no client key", path.display()))?;
        validate_key(current).map_err(|e| bad(n + 1, e))?;
        let mut previous = Vec::new();
        for (n, line) in lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [tag, key, until_tag, until] = parts[..] else {
                return Err(bad(n + 1, "expected `previous KEY until TIME`".into()));
            };
            if tag != "previous" || until_tag != "until" {
                return Err(bad(n + 1, "expected `previous KEY until TIME`".into()));
            }
            validate_key(key).map_err(|e| bad(n + 1, e))?;
            let until = DateTime::parse_from_rfc3339(until)
                .map_err(|e| bad(n + 1, format!("until {until:?}: {e}")))?
                .with_timezone(&Utc);
            previous.push((key.to_owned(), until));
        }
        Ok(Self {
            path,
            current: current.to_owned(),
            previous,
        })
    }

    fn save(&self) -> Result<(), String> {
        let mut text = format!("{}\n", self.current);
        for (key, until) in &self.previous {
            text.push_str(&format!(
                "previous {key} until {}\n",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        write_file_atomically(&self.path, text.as_bytes(), 0o600)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    pub fn current(&self) -> &str {
        &self.current
    }

    /// Replaced keys still accepted, and until when.
    pub fn previous(&self, now: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        self.previous
            .iter()
            .filter(move |(_, until)| *until > now)
            .map(|(_, until)| *until)
    }

    /// Compares in constant time against every accepted key.
    pub fn check(&self, presented: Option<&str>, now: DateTime<Utc>) -> KeyCheck {
        let Some(presented) = presented else {
            return KeyCheck::Wrong;
        };
        let eq = |k: &str| bool::from(k.as_bytes().ct_eq(presented.as_bytes()));
        if eq(&self.current) {
            return KeyCheck::Current;
        }
        let mut previous = false;
        for (key, until) in &self.previous {
            previous |= eq(key) && *until > now;
        }
        if previous {
            KeyCheck::Previous
        } else {
            KeyCheck::Wrong
        }
    }

    /// Makes `key` (a fresh one with `None`) the current key; the old one stays valid for
    /// `overlap`. Written to disk before it takes effect; on a write error nothing changes.
    pub fn replace(
        &mut self,
        key: Option<String>,
        now: DateTime<Utc>,
        overlap: Duration,
    ) -> Result<(), String> {
        let key = key.unwrap_or_else(new_key);
        validate_key(&key)?;
        if key == self.current {
            return Ok(());
        }
        let mut next = self.clone();
        next.previous.retain(|(k, until)| *until > now && *k != key);
        if overlap > Duration::zero() {
            next.previous.push((next.current.clone(), now + overlap));
        }
        next.current = key;
        next.save()?;
        *self = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap()
    }

    #[test]
    fn a_key_is_made_once_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (keys, made) = ClientKeys::load_or_create(dir.path()).unwrap();
        assert!(made);
        validate_key(keys.current()).unwrap();
        let mode = std::fs::metadata(dir.path().join(CLIENT_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, made) = ClientKeys::load_or_create(dir.path()).unwrap();
        assert!(!made);
        assert_eq!(again.current(), keys.current());
    }

    #[test]
    fn a_rotated_key_keeps_the_old_one_for_the_overlap_only() {
        let dir = tempfile::tempdir().unwrap();
        let (mut keys, _) = ClientKeys::load_or_create(dir.path()).unwrap();
        let old = keys.current().to_owned();
        keys.replace(None, t(9), Duration::hours(2)).unwrap();
        let new = keys.current().to_owned();
        assert_ne!(old, new);
        assert_eq!(keys.check(Some(&new), t(9)), KeyCheck::Current);
        assert_eq!(keys.check(Some(&old), t(10)), KeyCheck::Previous);
        assert_eq!(keys.check(Some(&old), t(11)), KeyCheck::Wrong);
        assert_eq!(keys.check(None, t(9)), KeyCheck::Wrong);
        assert_eq!(keys.check(Some("lhck_nope"), t(9)), KeyCheck::Wrong);
        // Survives a restart.
        let (read, _) = ClientKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(read.check(Some(&old), t(10)), KeyCheck::Previous);
        assert_eq!(read.previous(t(10)).count(), 1);
        // Without overlap the old key stops at once.
        let mut keys = read;
        keys.replace(None, t(10), Duration::zero()).unwrap();
        assert_eq!(keys.check(Some(&new), t(10)), KeyCheck::Wrong);
    }

    #[test]
    fn an_installed_key_replaces_the_one_there_without_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let key = new_key();
        ClientKeys::install(dir.path(), &key, t(9)).unwrap();
        let (keys, made) = ClientKeys::load_or_create(dir.path()).unwrap();
        assert!(!made);
        assert_eq!(keys.current(), key);
        let other = new_key();
        ClientKeys::install(dir.path(), &other, t(9)).unwrap();
        let (keys, _) = ClientKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(keys.check(Some(&other), t(9)), KeyCheck::Current);
        assert_eq!(keys.check(Some(&key), t(9)), KeyCheck::Wrong);
        assert!(ClientKeys::install(dir.path(), "lhck_short", t(9)).is_err());
    }

    #[test]
    fn a_bad_key_or_file_is_refused_naming_what_is_wrong() {
        assert!(validate_key("lhck_12")
            .unwrap_err()
            .contains("64 hexadecimal"));
        assert!(validate_key("abc").unwrap_err().contains("starts with"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CLIENT_KEY_FILE), "garbage\n").unwrap();
        let e = ClientKeys::load_or_create(dir.path()).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let (mut keys, _) = {
            std::fs::remove_file(dir.path().join(CLIENT_KEY_FILE)).unwrap();
            ClientKeys::load_or_create(dir.path()).unwrap()
        };
        let before = keys.current().to_owned();
        assert!(keys
            .replace(Some("lhck_short".into()), t(9), Duration::hours(1))
            .is_err());
        assert_eq!(keys.current(), before, "a refused key changes nothing");
    }
}
