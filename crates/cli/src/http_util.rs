//! What the commands that talk to a Leasehold service share: the token type of their
//! `--token` flags. The HTTP calls themselves are `leasehold-api-client`'s.

use std::fmt;
use std::str::FromStr;

/// A token whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(crate) String);

impl Secret {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let token = s.trim();
        if token.is_empty() {
            return Err("the admin token is empty".into());
        }
        Ok(Self(token.to_owned()))
    }
}

/// The installation's client key for the lease API: the first line of `file`
/// (`--client-key-file`), else `LEASEHOLD_CLIENT_KEY`, else the first line of the file
/// `LEASEHOLD_CLIENT_KEY_FILE` names.
pub fn client_key(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let from_file = |path: &std::path::Path, origin: &str| -> anyhow::Result<String> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the client key file {} ({origin})",
                path.display()
            )
        })?;
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "the client key file {} ({origin}) holds no key",
                    path.display()
                )
            })
    };
    if let Some(path) = file {
        return from_file(path, "--client-key-file");
    }
    if let Ok(key) = std::env::var(leasehold_client::ENV_CLIENT_KEY) {
        if !key.trim().is_empty() {
            return Ok(key.trim().to_owned());
        }
    }
    if let Ok(path) = std::env::var(leasehold_client::ENV_CLIENT_KEY_FILE) {
        if !path.trim().is_empty() {
            return from_file(
                std::path::Path::new(path.trim()),
                leasehold_client::ENV_CLIENT_KEY_FILE,
            );
        }
    }
    anyhow::bail!(
        "no client key: give --client-key-file or set {} or {} (`leasehold server client-key` prints it)",
        leasehold_client::ENV_CLIENT_KEY,
        leasehold_client::ENV_CLIENT_KEY_FILE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted_and_never_empty() {
        let t: Secret = "s3cret".parse().unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!("  ".parse::<Secret>().is_err());
    }
}
