//! The license server's settings file (`--config`, TOML) and the checks every setting gets.
//! Shared by `leasehold server run`, which layers it under the environment and flags, and by
//! the dashboard's configuration page, which edits and rewrites it.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use leasehold_proto::{parse_public_key, KeyId, TrustedKeys};
use reqwest::Url;
use serde::{Deserialize, Serialize};

pub const DEFAULT_DATA_DIR: &str = "./leasehold-server";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7569";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(30);
/// The config file a server started without `--config` reads from its data directory; the
/// dashboard offers to write it.
pub const DATA_DIR_CONFIG_FILE: &str = "leasehold-server.toml";

/// The `--config` file. Unknown keys are an error, so a typo never silently does nothing.
#[derive(Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_keys: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_timeout: Option<String>,
    /// HTTPS on the lease and admin listeners: certificate chain and key (PEM files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// The authorities node certificates must chain to, instead of the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_ca: Option<PathBuf>,
    /// The HTTP(S) proxy the sync goes through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// How long a replaced client key is still accepted ("7d").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_overlap: Option<String>,
    /// Clients held at once; a new one beyond is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_clients: Option<usize>,
    /// New client ids one source address may bring per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_clients_per_minute: Option<u32>,
}

impl fmt::Debug for FileConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileConfig")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("nodes", &self.nodes)
            .field("vendor_keys", &self.vendor_keys)
            .field("guid", &self.guid)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("node_timeout", &self.node_timeout)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("node_ca", &self.node_ca)
            .field("client_key_overlap", &self.client_key_overlap)
            .field("max_clients", &self.max_clients)
            .field("new_clients_per_minute", &self.new_clients_per_minute)
            .field(
                "proxy",
                &self.proxy.as_ref().map(|p| match reqwest::Url::parse(p) {
                    Ok(u) => crate::outbound::redact_proxy(&u),
                    Err(_) => "<unparsed>".into(),
                }),
            )
            .finish()
    }
}

/// A config file that cannot be read, parsed or written; the message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "cannot read the config file {} (--config): {e}",
                path.display()
            ))
        })?;
        Self::parse(&text).map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    pub fn to_toml(&self) -> String {
        // Plain strings and lists always serialize.
        toml::to_string(self).unwrap_or_default()
    }

    /// Writes the file atomically (a temporary file in the same directory, then a rename), so
    /// a crash leaves the old or the new file, never half of one. Mode 0600: it may hold the
    /// admin token.
    pub fn write_atomically(&self, path: &Path) -> Result<(), ConfigError> {
        let header = "# leasehold license server settings (written by the dashboard).\n\
                      # Flags and LEASEHOLD_SERVER_* environment variables override these.\n";
        write_file_atomically(
            path,
            format!("{header}{}", self.to_toml()).as_bytes(),
            0o600,
        )
        .map_err(|e| {
            ConfigError(format!(
                "cannot write the config file {}: {e}",
                path.display()
            ))
        })
    }
}

/// Replaces `path` with `contents` through a temporary file and a rename in its directory.
pub fn write_file_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // A temporary file left by a crash keeps its old bits through `open`: set them.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself must reach the disk too.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// An `IP:PORT` listen address.
pub fn parse_address(text: &str, example: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an address like {example} (IP:PORT)"))
}

/// A node base URL: http(s), normalized without a trailing slash.
pub fn check_node_url(text: &str) -> Result<String, String> {
    let url = Url::parse(text.trim())
        .map_err(|e| format!("{text:?} is not a URL like https://lic.example.com ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{text:?} must be an http:// or https:// URL with a host"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Node URLs, checked, normalized and without duplicates.
pub fn check_node_urls<'a>(
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, String> {
    let mut nodes = Vec::new();
    for text in texts {
        let url = check_node_url(text)?;
        if !nodes.contains(&url) {
            nodes.push(url);
        }
    }
    Ok(nodes)
}

/// A duration like `30s` or `2m`, more than zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 30s or 2m: {e}"))?;
    if d.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    Ok(d)
}

/// Adds a vendor public key given inline or as a file holding one to `keys`; a relative file
/// name is relative to `base_dir` (the config file's directory) when given.
/// The vendor public keys compiled into this build: `LEASEHOLD_BUILTIN_VENDOR_KEYS` (comma
/// separated, as `leasehold vendor keygen` prints them) in the environment of `cargo build`.
/// A vendor that ships the license server to its customers builds it so: the server then
/// trusts those keys only, and a customer cannot make it trust a key of their own (and a
/// node of their own signing whatever they like).
pub fn builtin_vendor_keys() -> Vec<&'static str> {
    option_env!("LEASEHOLD_BUILTIN_VENDOR_KEYS")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The keys a server trusts, given the configured ones and the `builtin` ones: with no
/// built-in key, the configured ones; with some, the built-in ones, and a configured key
/// that is not among them is refused (naming it).
pub fn trust_with_builtin(
    configured: TrustedKeys,
    builtin: &[&str],
) -> Result<TrustedKeys, String> {
    if builtin.is_empty() {
        return Ok(configured);
    }
    let mut trusted = TrustedKeys::new();
    for text in builtin {
        let key = parse_public_key(text).map_err(|e| {
            format!("a vendor key built into this binary is broken ({e}); rebuild it")
        })?;
        trusted.insert(key);
    }
    if let Some(foreign) = configured.kids().find(|k| !trusted.kids().any(|t| t == *k)) {
        return Err(format!(
            "this build trusts only the vendor keys built into it ({}); the configured key {foreign} is not one of them",
            trusted.kids().map(KeyId::as_str).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(trusted)
}

/// The largest vendor key file read.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

pub fn load_vendor_key(
    keys: &mut TrustedKeys,
    text: &str,
    base_dir: Option<&Path>,
) -> Result<KeyId, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a vendor key must not be empty".into());
    }
    let inline_error = match parse_public_key(text) {
        Ok(key) => return Ok(keys.insert(key)),
        Err(e) => e,
    };
    let path = match base_dir {
        Some(dir) if Path::new(text).is_relative() && !dir.as_os_str().is_empty() => dir.join(text),
        _ => PathBuf::from(text),
    };
    // A key file is a few lines: a device, a pipe or a huge file is refused before reading.
    match std::fs::metadata(&path) {
        Ok(m) if !m.is_file() => {
            return Err(format!(
                "the key file {} is not a regular file",
                path.display()
            ))
        }
        Ok(m) if m.len() > MAX_KEY_FILE_BYTES => {
            return Err(format!(
                "the key file {} is {} bytes; a vendor public key file is a few lines",
                path.display(),
                m.len()
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(format!(
                "{text:?} is neither a vendor public key ({inline_error}) nor an existing file"
            ))
        }
        Err(e) => return Err(format!("cannot read the key file {}: {e}", path.display())),
    }
    let content = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the key file {}: {e}", path.display()))?;
    if content.contains("PRIVATE KEY") {
        return Err(format!(
            "{} holds a private signing key; give the server the public key that \
             `leasehold vendor keygen` printed, never the private key",
            path.display()
        ));
    }
    let line = content
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    let key = parse_public_key(line).map_err(|e| {
        format!(
            "the key file {} does not hold a vendor public key: {e}",
            path.display()
        )
    })?;
    Ok(keys.insert(key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn built_in_vendor_keys_are_the_only_ones_trusted() {
        use leasehold_proto::VendorSigningKey;
        let vendor = VendorSigningKey::from_secret_bytes([3; 32]).public_key_string();
        let customer = VendorSigningKey::from_secret_bytes([4; 32]).public_key_string();
        let keys = |texts: &[&str]| {
            let mut k = TrustedKeys::new();
            for t in texts {
                load_vendor_key(&mut k, t, None).unwrap();
            }
            k
        };
        // No built-in key: the configured ones.
        let t = trust_with_builtin(keys(&[&customer]), &[]).unwrap();
        assert_eq!(t.kids().count(), 1);
        // Built in: trusted without configuring, the vendor's own key accepted, another refused.
        let t = trust_with_builtin(TrustedKeys::new(), &[&vendor]).unwrap();
        assert_eq!(t.kids().count(), 1);
        assert!(trust_with_builtin(keys(&[&vendor]), &[&vendor]).is_ok());
        let e = trust_with_builtin(keys(&[&customer]), &[&vendor]).unwrap_err();
        assert!(e.contains("built into it"), "{e}");
        assert!(trust_with_builtin(TrustedKeys::new(), &["broken"]).is_err());
        // This build has none unless LEASEHOLD_BUILTIN_VENDOR_KEYS was set for it.
        assert_eq!(
            builtin_vendor_keys().is_empty(),
            option_env!("LEASEHOLD_BUILTIN_VENDOR_KEYS").is_none_or(|s| s.trim().is_empty())
        );
    }

    #[test]
    fn a_key_file_that_is_a_device_or_huge_is_refused_before_reading() {
        // Devices and huge files are refused before reading.
        let e = load_vendor_key(&mut TrustedKeys::new(), "/dev/zero", None).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.pub");
        std::fs::write(&big, vec![b'#'; 100_000]).unwrap();
        let e = load_vendor_key(&mut TrustedKeys::new(), big.to_str().unwrap(), None).unwrap_err();
        assert!(e.contains("100000 bytes"), "{e}");
    }

    #[test]
    fn round_trips_and_writes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        let cfg = FileConfig {
            nodes: Some(vec!["http://n1:8470".into()]),
            admin_token: Some("secret".into()),
            ..Default::default()
        };
        cfg.write_atomically(&path).unwrap();
        assert_eq!(FileConfig::load(&path).unwrap(), cfg);
        assert!(!format!("{cfg:?}").contains("secret"));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn checks_name_the_problem() {
        assert!(check_node_url("ftp://x").unwrap_err().contains("http"));
        assert_eq!(check_node_url("http://a:1/").unwrap(), "http://a:1");
        assert_eq!(
            check_node_urls(["http://a:1", "http://a:1/"]).unwrap(),
            ["http://a:1"]
        );
        assert!(parse_address("localhost", DEFAULT_LISTEN).is_err());
        assert!(parse_duration("0s").is_err());
        assert!(load_vendor_key(&mut TrustedKeys::new(), " ", None).is_err());
        let e = FileConfig::parse("listn = 1").unwrap_err();
        assert!(e.contains("listn"), "{e}");
    }
}
