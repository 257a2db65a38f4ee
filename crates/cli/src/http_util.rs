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
            return Err("the token is empty".into());
        }
        Ok(Self(token.to_owned()))
    }
}

/// The client library's builder with the installation's client key: the first line of
/// `key_file` (`--client-key-file`), else `LEASEHOLD_CLIENT_KEY`, else the file
/// `LEASEHOLD_CLIENT_KEY_FILE` names. A missing or unreadable key fails its `build()` (or
/// `authorization()`), in words [`flag_words`] turns into the command line's.
pub fn client_builder(key_file: Option<&std::path::Path>) -> leasehold_client::ClientBuilder {
    let builder = leasehold_client::Client::builder().client_key_from_env();
    match key_file {
        Some(file) => builder.client_key_file(file),
        None => builder,
    }
}

/// The client library speaks of builder calls; the command line of flags.
pub fn flag_words(text: &str) -> String {
    text.replace(" (in servers)", " (in --servers)")
        .replace(" (in backup_servers)", " (in --backup-servers)")
        .replace(
            "call .client_key(..) or .client_key_file(..), or set",
            "give --client-key-file or set",
        )
        .replace("flush_after", "--flush-after")
        .replace("deny_wait", "--deny-wait")
        .replace("client name (name)", "client name (--name)")
        .replace("failover_after", "--failover-after")
        .replace("refresh must", "--refresh must")
        .replace("than refresh", "than --refresh")
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
