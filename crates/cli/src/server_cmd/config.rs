//! The settings of `leasehold server run`: defaults, then the TOML file, then the environment
//! and flags (clap merges those two), each checked with an error that names the setting and
//! where it came from.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use leasehold_proto::{ServerGuid, TrustedKeys};
use rand::rngs::OsRng;
use rand::RngCore;

use super::{RunArgs, Secret};

pub use leasehold_server::config::{
    FileConfig, DEFAULT_ADMIN_LISTEN, DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_NODE_TIMEOUT,
};
/// Name of the generated admin token's file in the data directory.
pub const TOKEN_FILE: &str = "admin-token";

/// The checked settings of one `server run`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub nodes: Vec<String>,
    pub trusted_keys: TrustedKeys,
    pub guid: Option<ServerGuid>,
    /// `None`: generate or reuse `DATA_DIR/admin-token`.
    pub admin_token: Option<Secret>,
    pub node_timeout: Duration,
    /// HTTPS on the lease and admin listeners.
    pub tls: Option<leasehold_web::TlsFiles>,
    /// How the nodes are reached: trusted authorities, proxy.
    pub node_connection: leasehold_server::outbound::NodeConnection,
    pub client_key_overlap: Duration,
    pub client_limits: leasehold_server::ClientLimits,
}

/// Where the file's settings came from, for error messages and relative paths.
struct FileLayer<'a> {
    path: &'a Path,
    config: &'a FileConfig,
}

impl FileLayer<'_> {
    fn origin(&self, key: &str) -> String {
        format!("`{key}` in {}", self.path.display())
    }

    /// A relative path in the file is relative to the file's directory.
    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }
}

/// Merges defaults, the file (if any) and the environment/flags into checked settings.
pub fn resolve(args: &RunArgs, file: Option<(&Path, &FileConfig)>) -> anyhow::Result<Settings> {
    let file = file.map(|(path, config)| FileLayer { path, config });
    let f = file.as_ref();

    let data_dir = match (
        &args.data_dir,
        f.and_then(|l| l.config.data_dir.as_ref().map(|d| (l, d))),
    ) {
        (Some(d), _) => d.clone(),
        (None, Some((l, d))) => l.resolve(d),
        (None, None) => PathBuf::from(DEFAULT_DATA_DIR),
    };
    if data_dir.as_os_str().is_empty() {
        bail!("--data-dir must not be empty");
    }

    let address = |flag: Option<SocketAddr>,
                   key: &str,
                   from_file: Option<&String>,
                   default: &str|
     -> anyhow::Result<SocketAddr> {
        if let Some(a) = flag {
            return Ok(a);
        }
        let (text, origin) = match (f, from_file) {
            (Some(l), Some(t)) => (t.as_str(), l.origin(key)),
            _ => (default, format!("default {key}")),
        };
        text.trim()
            .parse()
            .map_err(|_| anyhow!("{origin}: {text:?} is not an address like {default} (IP:PORT)"))
    };
    let listen = address(
        args.listen,
        "listen",
        f.and_then(|l| l.config.listen.as_ref()),
        DEFAULT_LISTEN,
    )?;
    let admin_listen = address(
        args.admin_listen,
        "admin_listen",
        f.and_then(|l| l.config.admin_listen.as_ref()),
        DEFAULT_ADMIN_LISTEN,
    )?;

    let (node_texts, node_origin): (Vec<String>, String) = if !args.nodes.is_empty() {
        (args.nodes.clone(), "--node".into())
    } else if let Some((l, n)) = f.and_then(|l| l.config.nodes.as_ref().map(|n| (l, n))) {
        (n.clone(), l.origin("nodes"))
    } else {
        (Vec::new(), "--node".into())
    };
    let mut nodes = Vec::new();
    for text in node_texts {
        let url = check_node_url(&text).map_err(|e| anyhow!("{node_origin}: {e}"))?;
        if !nodes.contains(&url) {
            nodes.push(url);
        }
    }

    let mut trusted_keys = TrustedKeys::new();
    if !args.vendor_keys.is_empty() {
        for text in &args.vendor_keys {
            load_vendor_key(&mut trusted_keys, text, None, "--vendor-key")?;
        }
    } else if let Some((l, keys)) = f.and_then(|l| l.config.vendor_keys.as_ref().map(|k| (l, k))) {
        let origin = l.origin("vendor_keys");
        for text in keys {
            load_vendor_key(&mut trusted_keys, text, Some(l), &origin)?;
        }
    }
    let trusted_keys = leasehold_server::config::trust_with_builtin(
        trusted_keys,
        &leasehold_server::config::builtin_vendor_keys(),
    )
    .map_err(|e| anyhow!("--vendor-key (vendor_keys): {e}"))?;
    if trusted_keys.is_empty() {
        bail!(
            "no vendor key: pass --vendor-key KEY|FILE (or set LEASEHOLD_SERVER_VENDOR_KEY, or \
             vendor_keys in the config file) with the public key `leasehold vendor keygen` printed; \
             the server loads only bundles signed by a trusted key"
        );
    }

    let guid = match (
        args.guid,
        f.and_then(|l| l.config.guid.as_ref().map(|g| (l, g))),
    ) {
        (Some(g), _) => Some(g),
        (None, Some((l, text))) => {
            Some(ServerGuid::parse(text).map_err(|e| anyhow!("{}: {e}", l.origin("guid")))?)
        }
        (None, None) => None,
    };

    let admin_token = match (
        &args.admin_token,
        f.and_then(|l| l.config.admin_token.as_ref().map(|t| (l, t))),
    ) {
        (Some(t), _) => Some(t.clone()),
        (None, Some((l, text))) => Some(
            text.parse::<Secret>()
                .map_err(|e| anyhow!("{}: {e}", l.origin("admin_token")))?,
        ),
        (None, None) => None,
    };

    let node_timeout = match (
        args.node_timeout,
        f.and_then(|l| l.config.node_timeout.as_ref().map(|t| (l, t))),
    ) {
        (Some(t), _) => t,
        (None, Some((l, text))) => {
            super::parse_duration(text).map_err(|e| anyhow!("{}: {e}", l.origin("node_timeout")))?
        }
        (None, None) => DEFAULT_NODE_TIMEOUT,
    };

    // A path from the flag, else from the file (relative to it).
    let path = |flag: &Option<PathBuf>, from_file: Option<&PathBuf>| -> Option<PathBuf> {
        flag.clone()
            .or_else(|| f.zip(from_file).map(|(l, p)| l.resolve(p)))
    };
    let tls = leasehold_web::TlsFiles::from_flags(
        path(&args.tls_cert, f.and_then(|l| l.config.tls_cert.as_ref())),
        path(&args.tls_key, f.and_then(|l| l.config.tls_key.as_ref())),
        "--tls-cert (tls_cert)",
        "--tls-key (tls_key)",
    )?;
    let node_ca = path(&args.node_ca, f.and_then(|l| l.config.node_ca.as_ref()));
    let (proxy, no_proxy) = resolve_proxy(
        args.proxy.as_deref(),
        f.and_then(|l| l.config.proxy.as_deref().map(|p| (l, p))),
        |name| std::env::var(name).ok(),
    )?;
    let node_connection = leasehold_server::outbound::NodeConnection {
        ca_file: node_ca,
        proxy,
        no_proxy,
    };
    node_connection
        .check()
        .map_err(|e| anyhow!("--node-ca (node_ca): {e}"))?;

    let client_key_overlap = match (
        args.client_key_overlap,
        f.and_then(|l| l.config.client_key_overlap.as_ref().map(|t| (l, t))),
    ) {
        (Some(d), _) => d,
        (None, Some((l, text))) => super::parse_duration(text)
            .map_err(|e| anyhow!("{}: {e}", l.origin("client_key_overlap")))?,
        (None, None) => Duration::from_secs(7 * 86_400),
    };
    let defaults = leasehold_server::ClientLimits::default();
    let max_clients = args
        .max_clients
        .or_else(|| f.and_then(|l| l.config.max_clients))
        .unwrap_or(defaults.max_clients);
    let new_clients_per_minute = args
        .new_clients_per_minute
        .or_else(|| f.and_then(|l| l.config.new_clients_per_minute))
        .unwrap_or(defaults.new_clients_per_minute);
    if max_clients == 0 {
        bail!("max_clients must be at least 1");
    }
    if new_clients_per_minute == 0 {
        bail!("new_clients_per_minute must be at least 1");
    }

    Ok(Settings {
        data_dir,
        listen,
        admin_listen,
        nodes,
        trusted_keys,
        guid,
        admin_token,
        node_timeout,
        tls,
        node_connection,
        client_key_overlap,
        client_limits: leasehold_server::ClientLimits {
            max_clients,
            new_clients_per_minute,
        },
    })
}

/// The sync's proxy: `--proxy`, else `proxy` in the file, else the environment's
/// (`HTTPS_PROXY`, `ALL_PROXY`; `NO_PROXY`). `none` in the flag or the file means direct.
fn resolve_proxy(
    flag: Option<&str>,
    file: Option<(&FileLayer<'_>, &str)>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(Option<reqwest::Url>, Vec<String>)> {
    use leasehold_server::outbound::{parse_proxy, proxy_from_env};
    let (_, no_proxy) = proxy_from_env(&env).unwrap_or_default();
    let given = match (flag, file) {
        (Some(p), _) => Some((p, "--proxy".to_owned())),
        (None, Some((l, p))) => Some((p, l.origin("proxy"))),
        (None, None) => None,
    };
    match given {
        Some((p, _)) if p.trim().eq_ignore_ascii_case("none") => Ok((None, Vec::new())),
        Some((p, origin)) => Ok((
            Some(parse_proxy(p).map_err(|e| anyhow!("{origin}: {e}"))?),
            no_proxy,
        )),
        None => proxy_from_env(&env).map_err(|e| anyhow!("{e}")),
    }
}

/// A node base URL: http(s), normalized without a trailing slash.
fn check_node_url(text: &str) -> anyhow::Result<String> {
    leasehold_server::config::check_node_url(text).map_err(|e| anyhow!(e))
}

/// A public key given inline or as a file holding one.
fn load_vendor_key(
    keys: &mut TrustedKeys,
    text: &str,
    file: Option<&FileLayer<'_>>,
    origin: &str,
) -> anyhow::Result<()> {
    let base_dir = file.and_then(|l| l.path.parent());
    leasehold_server::config::load_vendor_key(keys, text, base_dir)
        .map(|_| ())
        .map_err(|e| anyhow!("{origin}: {e}"))
}

/// Where the admin token came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOrigin {
    Configured,
    Generated(PathBuf),
    File(PathBuf),
}

/// The configured token, or the one kept in `DATA_DIR/admin-token` (made on first start).
pub fn admin_token(
    data_dir: &Path,
    configured: Option<&Secret>,
) -> anyhow::Result<(Secret, TokenOrigin)> {
    if let Some(t) = configured {
        return Ok((t.clone(), TokenOrigin::Configured));
    }
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.parse::<Secret>().map_err(|_| {
                anyhow!(
                    "the admin token file {} is empty; delete it to generate a new token",
                    path.display()
                )
            })?;
            if let Ok(meta) = std::fs::metadata(&path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "the admin token file is readable by others; chmod 600 it");
                }
            }
            return Ok((token, TokenOrigin::File(path)));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => bail!("cannot read the admin token file {}: {e}", path.display()),
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| {
            file.write_all(format!("{token}\n").as_bytes())?;
            file.sync_all()
        });
    match written {
        Ok(()) => Ok((Secret(token), TokenOrigin::Generated(path))),
        // Another process made it between our read and create: use theirs.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => admin_token(data_dir, None),
        Err(e) => Err(anyhow!(
            "cannot write the admin token file {}: {e}",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_proto::VendorSigningKey;

    fn args() -> RunArgs {
        RunArgs {
            config: None,
            data_dir: None,
            listen: None,
            admin_listen: None,
            nodes: Vec::new(),
            vendor_keys: Vec::new(),
            guid: None,
            admin_token: None,
            node_timeout: None,
            tls_cert: None,
            tls_key: None,
            node_ca: None,
            proxy: None,
            client_key_overlap: None,
            limits: crate::limits::LimitArgs::default(),
            max_clients: None,
            new_clients_per_minute: None,
            agent_tick: Duration::from_secs(5),
        }
    }

    fn key() -> String {
        VendorSigningKey::from_secret_bytes([7; 32]).public_key_string()
    }

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let mut a = args();
        a.vendor_keys = vec![key()];
        let s = resolve(&a, None).unwrap();
        assert_eq!(s.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(s.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(s.admin_listen, DEFAULT_ADMIN_LISTEN.parse().unwrap());
        assert!(s.nodes.is_empty());
        assert_eq!(s.trusted_keys.kids().count(), 1);
        assert!(s.guid.is_none() && s.admin_token.is_none());
        assert_eq!(s.node_timeout, DEFAULT_NODE_TIMEOUT);
    }

    #[test]
    fn the_file_overrides_defaults_and_flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("vendor.pub");
        std::fs::write(&key_file, format!("# vendor key\n{}\n", key())).unwrap();
        let path = dir.path().join("server.toml");
        let cfg = file(
            r#"
            data_dir = "state"
            listen = "127.0.0.1:1000"
            admin_listen = "127.0.0.1:1001"
            nodes = ["http://n1:8470/", "http://n2:8470"]
            vendor_keys = ["vendor.pub"]
            guid = "DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E"
            admin_token = "from-file"
            node_timeout = "5s"
            client_key_overlap = "2d"
            max_clients = 500
            new_clients_per_minute = 60
            "#,
        );
        let s = resolve(&args(), Some((&path, &cfg))).unwrap();
        assert_eq!(s.client_key_overlap, Duration::from_secs(2 * 86_400));
        assert_eq!(s.client_limits.max_clients, 500);
        assert_eq!(s.client_limits.new_clients_per_minute, 60);
        assert_eq!(s.data_dir, dir.path().join("state"));
        assert_eq!(s.listen, "127.0.0.1:1000".parse().unwrap());
        assert_eq!(s.admin_listen, "127.0.0.1:1001".parse().unwrap());
        assert_eq!(s.nodes, ["http://n1:8470", "http://n2:8470"]);
        assert_eq!(s.trusted_keys.kids().count(), 1);
        assert_eq!(
            s.guid.unwrap().to_string(),
            "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}"
        );
        assert_eq!(s.admin_token.unwrap().as_str(), "from-file");
        assert_eq!(s.node_timeout, Duration::from_secs(5));

        let mut a = args();
        a.data_dir = Some("/flag".into());
        a.listen = Some("127.0.0.1:2000".parse().unwrap());
        a.nodes = vec!["https://flag.example".into()];
        a.admin_token = Some("from-flag".parse().unwrap());
        let s = resolve(&a, Some((&path, &cfg))).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/flag"));
        assert_eq!(s.listen, "127.0.0.1:2000".parse().unwrap());
        assert_eq!(s.admin_listen, "127.0.0.1:1001".parse().unwrap());
        assert_eq!(s.nodes, ["https://flag.example"]);
        assert_eq!(s.admin_token.unwrap().as_str(), "from-flag");
    }

    #[test]
    fn wrong_settings_are_named() {
        let path = PathBuf::from("/etc/leasehold/server.toml");
        let err = |a: &RunArgs, cfg: &str| {
            resolve(a, Some((&path, &file(cfg))))
                .unwrap_err()
                .to_string()
        };
        let e = err(&args(), "");
        assert!(e.contains("--vendor-key"), "{e}");
        let mut a = args();
        a.vendor_keys = vec![key()];
        let e = err(&a, r#"listen = "localhost""#);
        assert!(e.contains("`listen` in /etc/leasehold/server.toml"), "{e}");
        let e = err(&a, r#"guid = "nope""#);
        assert!(e.contains("`guid`"), "{e}");
        let e = err(&a, r#"nodes = ["ftp://x"]"#);
        assert!(e.contains("`nodes`") && e.contains("http"), "{e}");
        let e = err(&a, r#"admin_token = " ""#);
        assert!(e.contains("`admin_token`"), "{e}");
        let e = err(&a, r#"node_timeout = "soon""#);
        assert!(e.contains("`node_timeout`"), "{e}");
        let mut a = args();
        a.vendor_keys = vec!["/no/such/key".into()];
        let e = resolve(&a, None).unwrap_err().to_string();
        assert!(
            e.contains("--vendor-key") && e.contains("/no/such/key"),
            "{e}"
        );
        let e = toml::from_str::<FileConfig>("listn = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listn"), "{e}");
    }

    #[test]
    fn tls_files_and_the_node_ca_come_from_flags_or_the_file_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        let mut a = args();
        a.vendor_keys = vec![key()];
        let cfg = file(r#"tls_cert = "tls/server.crt""#);
        let e = resolve(&a, Some((&path, &cfg))).unwrap_err().to_string();
        assert!(e.contains("--tls-key (tls_key)"), "{e}");
        let cfg = file(
            r#"
            tls_cert = "tls/server.crt"
            tls_key = "tls/server.key"
            "#,
        );
        let s = resolve(&a, Some((&path, &cfg))).unwrap();
        let tls = s.tls.unwrap();
        assert_eq!(tls.cert, dir.path().join("tls/server.crt"));
        assert_eq!(tls.key, dir.path().join("tls/server.key"));
        a.node_ca = Some(dir.path().join("missing-ca.pem"));
        let e = resolve(&a, None).unwrap_err().to_string();
        assert!(
            e.contains("--node-ca") && e.contains("missing-ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn the_proxy_comes_from_the_flag_the_file_or_the_environment() {
        let env = |name: &str| match name {
            "HTTPS_PROXY" => Some("http://env-proxy:3128".to_owned()),
            "NO_PROXY" => Some("localhost".to_owned()),
            _ => None,
        };
        let none = |_: &str| None;
        let (p, no) = resolve_proxy(None, None, env).unwrap();
        assert_eq!(p.unwrap().as_str(), "http://env-proxy:3128/");
        assert_eq!(no, ["localhost"]);
        let (p, _) = resolve_proxy(Some("http://flag:1"), None, env).unwrap();
        assert_eq!(p.unwrap().as_str(), "http://flag:1/");
        let (p, _) = resolve_proxy(Some("none"), None, env).unwrap();
        assert!(p.is_none());
        let path = PathBuf::from("/etc/leasehold/server.toml");
        let cfg = FileConfig::default();
        let layer = FileLayer {
            path: &path,
            config: &cfg,
        };
        let (p, _) = resolve_proxy(None, Some((&layer, "file-proxy:8080")), none).unwrap();
        assert_eq!(p.unwrap().as_str(), "http://file-proxy:8080/");
        let e = resolve_proxy(None, Some((&layer, "ftp://x")), none)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`proxy` in /etc/leasehold/server.toml"), "{e}");
        let e = resolve_proxy(Some("http://x/y"), None, none)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--proxy"), "{e}");
    }

    #[test]
    fn a_private_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("vendor.pem");
        let key = VendorSigningKey::from_secret_bytes([9; 32]);
        std::fs::write(&pem, key.to_pkcs8_pem().unwrap()).unwrap();
        let mut a = args();
        a.vendor_keys = vec![pem.display().to_string()];
        let e = resolve(&a, None).unwrap_err().to_string();
        assert!(e.contains("private"), "{e}");
    }

    #[test]
    fn the_token_is_generated_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (t1, o1) = admin_token(&data, None).unwrap();
        let path = data.join(TOKEN_FILE);
        assert_eq!(o1, TokenOrigin::Generated(path.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (t2, o2) = admin_token(&data, None).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(o2, TokenOrigin::File(path));
        let given: Secret = "given".parse().unwrap();
        let (t3, o3) = admin_token(&data, Some(&given)).unwrap();
        assert_eq!((t3, o3), (given, TokenOrigin::Configured));
    }
}
