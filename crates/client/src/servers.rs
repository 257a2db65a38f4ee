//! License server lists in the syntax LumenVox users know: entries separated by semicolons,
//! each a host name, an IPv4 address or a bracketed IPv6 address, with an optional port
//! (default [`DEFAULT_PORT`]) and an optional `http://` (or `https://`) prefix:
//!
//! ```text
//! 10.0.0.5;10.0.0.6:7569
//! http://license-a.example.com; [fd00::5]:8000 ;license-b
//! ```
//!
//! Blanks around entries and a trailing semicolon are ignored; anything else that does not
//! parse is refused with an error naming the entry.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// Port a license server listens on for clients unless told otherwise.
pub const DEFAULT_PORT: u16 = 7569;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// One license server address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddr {
    scheme: Scheme,
    /// Host name, IPv4 address, or IPv6 address *without* brackets.
    host: String,
    port: u16,
}

impl ServerAddr {
    pub fn new(scheme: Scheme, host: impl Into<String>, port: u16) -> Self {
        Self {
            scheme,
            host: host.into(),
            port,
        }
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host; an IPv6 address comes without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `scheme://host:port`, with IPv6 hosts in brackets; no trailing slash.
    pub fn base_url(&self) -> String {
        self.to_string()
    }

    /// Parses one entry of a server list.
    pub fn parse(entry: &str) -> Result<Self, ServerListError> {
        let original = entry;
        let err = |why: String| ServerListError {
            entry: original.trim().to_owned(),
            why,
        };
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(err("empty entry".into()));
        }
        let (scheme, rest) = if let Some(r) = strip_prefix_ci(entry, "http://") {
            (Scheme::Http, r)
        } else if let Some(r) = strip_prefix_ci(entry, "https://") {
            (Scheme::Https, r)
        } else if entry.contains("://") {
            return Err(err("only http:// and https:// are supported".into()));
        } else {
            (Scheme::Http, entry)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(err("a server is host[:port]; paths are not allowed".into()));
        }
        if rest.contains('@') {
            return Err(err("user names are not allowed in a server address".into()));
        }
        let (host, port) = if let Some(after) = rest.strip_prefix('[') {
            let Some((inside, tail)) = after.split_once(']') else {
                return Err(err("missing ']' after the IPv6 address".into()));
            };
            let ip = Ipv6Addr::from_str(inside)
                .map_err(|_| err(format!("{inside:?} is not an IPv6 address")))?;
            let port = match tail {
                "" => DEFAULT_PORT,
                t => match t.strip_prefix(':') {
                    Some(p) => parse_port(p).map_err(err)?,
                    None => return Err(err(format!("unexpected {t:?} after ']'"))),
                },
            };
            (ip.to_string(), port)
        } else {
            let (host, port) = match rest.matches(':').count() {
                0 => (rest, DEFAULT_PORT),
                1 => {
                    let (h, p) = rest.split_once(':').unwrap_or((rest, ""));
                    (h, parse_port(p).map_err(err)?)
                }
                _ => {
                    return Err(err(
                        "IPv6 addresses must be written in brackets, e.g. [fd00::5]:7569".into(),
                    ))
                }
            };
            check_host(host).map_err(err)?;
            (host.to_ascii_lowercase(), port)
        };
        Ok(Self { scheme, host, port })
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(
                f,
                "{}://[{}]:{}",
                self.scheme.as_str(),
                self.host,
                self.port
            )
        } else {
            write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
        }
    }
}

impl FromStr for ServerAddr {
    type Err = ServerListError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A server list entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad license server entry {entry:?}: {why}")]
pub struct ServerListError {
    /// The offending entry, trimmed (or the whole list when it is empty).
    pub entry: String,
    pub why: String,
}

/// Parses a semicolon-separated server list. An empty list (only blanks and semicolons) is an
/// error: a caller that has no servers should not pass a list at all.
pub fn parse_server_list(list: &str) -> Result<Vec<ServerAddr>, ServerListError> {
    let out = list
        .split(';')
        .filter(|e| !e.trim().is_empty())
        .map(ServerAddr::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if out.is_empty() {
        return Err(ServerListError {
            entry: list.trim().to_owned(),
            why: "the server list is empty".into(),
        });
    }
    Ok(out)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() {
        return Err("missing port number after ':'".into());
    }
    match p.parse::<u16>() {
        Ok(0) => Err("port 0 is not a valid server port".into()),
        Ok(n) if p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("port {p:?} is not a number from 1 to 65535")),
    }
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("missing host name or address".into());
    }
    if host.len() > 253 {
        return Err("host name is longer than 253 characters".into());
    }
    for label in host.split('.') {
        if label.is_empty() && host != "." {
            return Err(format!("host {host:?} has an empty label"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "host {host:?} has a label starting or ending with '-'"
            ));
        }
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!("host {host:?} contains {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn urls(list: &str) -> Vec<String> {
        parse_server_list(list)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn lumenvox_style_lists_parse() {
        assert_eq!(
            urls("10.0.0.5;10.0.0.6:7569"),
            ["http://10.0.0.5:7569", "http://10.0.0.6:7569"]
        );
        assert_eq!(
            urls(" http://License-A.example.com ; [fd00::5]:8000;license-b; "),
            [
                "http://license-a.example.com:7569",
                "http://[fd00::5]:8000",
                "http://license-b:7569"
            ]
        );
        assert_eq!(
            urls("HTTPS://lic.example.com:443/;[::1]"),
            ["https://lic.example.com:443", "http://[::1]:7569"]
        );
        let a = ServerAddr::parse("http://[::1]:9").unwrap();
        assert_eq!((a.host(), a.port(), a.scheme()), ("::1", 9, Scheme::Http));
        assert_eq!(urls("localhost:1"), ["http://localhost:1"]);
    }

    #[test]
    fn bad_entries_are_named() {
        for (list, entry, why) in [
            ("10.0.0.5;10.0.0.6:75690", "10.0.0.6:75690", "port"),
            ("a;b:;c", "b:", "missing port"),
            ("fd00::5", "fd00::5", "brackets"),
            ("[fd00::5", "[fd00::5", "']'"),
            ("[fd00::zz]:1", "[fd00::zz]:1", "IPv6"),
            ("[::1]x", "[::1]x", "after ']'"),
            ("ftp://a", "ftp://a", "http"),
            ("http://a/path", "http://a/path", "paths"),
            ("a b", "a b", "contains"),
            ("x;host:0", "host:0", "port 0"),
            ("x;host:+1", "host:+1", "port"),
            (":7569", ":7569", "missing host"),
            ("a..b", "a..b", "empty label"),
            ("-a", "-a", "'-'"),
            ("u@h", "u@h", "user"),
            ("", "", "empty"),
            (" ; ;", "; ;", "empty"),
        ] {
            let e = parse_server_list(list).unwrap_err();
            assert_eq!(e.entry, entry, "{list}: {e}");
            assert!(e.why.contains(why), "{list}: {e}");
            assert!(e.to_string().contains(&format!("{entry:?}")), "{e}");
        }
    }
}
