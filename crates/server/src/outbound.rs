//! How this server reaches the license nodes: the certificate authorities a node's HTTPS
//! certificate must chain to (the system's, or only those of `--node-ca`), and the HTTP(S)
//! proxy the sync goes through (`--proxy`, else `HTTPS_PROXY` / `ALL_PROXY`; hosts in
//! `NO_PROXY` are reached directly). The sync agent and the dashboard's connection test use
//! the same settings, so the test checks the path the sync takes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

/// The outbound connection settings; the default is direct, trusting the system's roots.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NodeConnection {
    /// PEM file of the authorities node certificates must chain to (the system's roots
    /// are then not trusted); `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The proxy (`http://[USER:PASSWORD@]HOST:PORT`); `None`: direct.
    pub proxy: Option<Url>,
    /// Hosts reached without the proxy: `NO_PROXY` entries (`host`, `.domain` or
    /// `domain` for the domain and its subdomains, `*` for all).
    pub no_proxy: Vec<String>,
}

impl fmt::Debug for NodeConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConnection")
            .field("ca_file", &self.ca_file)
            .field("proxy", &self.proxy.as_ref().map(redact_proxy))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// The proxy URL without its password, for logs and pages.
pub fn redact_proxy(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("<redacted>"));
    }
    shown.to_string().trim_end_matches('/').to_owned()
}

/// A proxy setting checked: http or https with a host, no path.
pub fn parse_proxy(text: &str) -> Result<Url, String> {
    let text = text.trim();
    // `host:port` alone, as curl takes it, means http.
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| {
        format!("{text:?} is not a proxy address like http://proxy.example:3128 ({e})")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{text:?} is not a proxy address like http://proxy.example:3128 (scheme http or https, with a host)"
        ));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(format!(
            "{text:?}: a proxy address has no path, just http://HOST:PORT"
        ));
    }
    Ok(url)
}

/// The proxy the environment names for the sync (`HTTPS_PROXY`, `https_proxy`,
/// `ALL_PROXY`, `all_proxy`, first set and non-empty wins) and its `NO_PROXY` list.
pub fn proxy_from_env(
    var: impl Fn(&str) -> Option<String>,
) -> Result<(Option<Url>, Vec<String>), String> {
    let mut proxy = None;
    for name in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        if let Some(v) = var(name).filter(|v| !v.trim().is_empty()) {
            proxy = Some(parse_proxy(&v).map_err(|e| format!("{name}: {e}"))?);
            break;
        }
    }
    let no_proxy = ["NO_PROXY", "no_proxy"]
        .iter()
        .find_map(|n| var(n))
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok((proxy, no_proxy))
}

/// Every certificate in a PEM file of authorities; an error names the file.
pub fn load_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected PEM blocks \"-----BEGIN CERTIFICATE-----\")",
            path.display()
        ));
    }
    Ok(certs)
}

impl NodeConnection {
    /// Checks the CA file, so a wrong one fails at start, not at the first sync.
    pub fn check(&self) -> Result<(), String> {
        if let Some(path) = &self.ca_file {
            load_ca_file(path)?;
        }
        Ok(())
    }

    /// A client that reaches nodes this way, each request bounded by `timeout`.
    pub fn http_client(&self, timeout: Duration) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("leasehold-server/", env!("CARGO_PKG_VERSION")))
            // The environment's proxy variables were read into `proxy` and `no_proxy`.
            .no_proxy();
        if let Some(path) = &self.ca_file {
            builder = builder.tls_built_in_root_certs(false);
            for cert in load_ca_file(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(proxy) = &self.proxy {
            let p = reqwest::Proxy::all(proxy.clone())
                .map_err(|e| format!("proxy {}: {e}", redact_proxy(proxy)))?
                .no_proxy(reqwest::NoProxy::from_string(&self.no_proxy.join(",")));
            builder = builder.proxy(p);
        }
        builder
            .build()
            .map_err(|e| format!("cannot set up the HTTP client for the nodes: {e}"))
    }

    /// The proxy a request to `url` goes through, if any.
    pub fn proxy_for(&self, url: &Url) -> Option<&Url> {
        let proxy = self.proxy.as_ref()?;
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let bypass = self.no_proxy.iter().any(|entry| {
            let entry = entry.trim_start_matches('.').to_ascii_lowercase();
            let host = host.to_ascii_lowercase();
            entry == "*" || host == entry || host.ends_with(&format!(".{entry}"))
        });
        (!bypass).then_some(proxy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_are_checked_and_their_passwords_never_shown() {
        let p = parse_proxy("http://user:s3cret@proxy.example:3128").unwrap();
        assert_eq!(
            redact_proxy(&p),
            "http://user:%3Credacted%3E@proxy.example:3128"
        );
        let c = NodeConnection {
            proxy: Some(p),
            ..NodeConnection::default()
        };
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(
            parse_proxy("proxy.example:3128").unwrap().as_str(),
            "http://proxy.example:3128/"
        );
        for bad in ["ftp://proxy:21", "http://proxy:3128/path", "http://", ":::"] {
            assert!(parse_proxy(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_environment_names_the_proxy_and_its_exceptions() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let (p, no) = proxy_from_env(env(&[
            ("https_proxy", "http://a:1"),
            ("ALL_PROXY", "http://b:2"),
            ("NO_PROXY", "localhost, .corp.example,"),
        ]))
        .unwrap();
        assert_eq!(p.unwrap().as_str(), "http://a:1/");
        assert_eq!(no, ["localhost", ".corp.example"]);
        let (p, no) = proxy_from_env(env(&[("HTTPS_PROXY", " ")])).unwrap();
        assert!(p.is_none() && no.is_empty());
        let e = proxy_from_env(env(&[("HTTPS_PROXY", "ftp://x")])).unwrap_err();
        assert!(e.starts_with("HTTPS_PROXY"), "{e}");

        let c = NodeConnection {
            proxy: Some(parse_proxy("http://proxy:3128").unwrap()),
            no_proxy: no_list(&["localhost", ".corp.example"]),
            ..NodeConnection::default()
        };
        let via = |u: &str| c.proxy_for(&Url::parse(u).unwrap()).is_some();
        assert!(via("https://lic.vendor.example/"));
        assert!(!via("https://localhost:8470/"));
        assert!(!via("https://n1.corp.example/"));
        assert!(!via("https://corp.example/"));
        assert!(via("https://notcorp.example/"));
    }

    fn no_list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_ca_file_without_certificates_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let c = NodeConnection {
            ca_file: Some(f),
            ..NodeConnection::default()
        };
        let e = c.check().unwrap_err();
        assert!(e.contains("ca.pem"), "{e}");
        let c = NodeConnection {
            ca_file: Some(dir.path().join("missing.pem")),
            ..NodeConnection::default()
        };
        assert!(c.check().unwrap_err().contains("missing.pem"));
    }
}
