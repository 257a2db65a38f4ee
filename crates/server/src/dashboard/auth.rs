//! Who may use the dashboard: the password (an Argon2 PHC string in the data directory),
//! sessions (random cookie, idle expiry), CSRF tokens for every form, and the limit on
//! failed sign-ins per client address.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng as HashRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};

use crate::config::write_file_atomically;
use crate::http::AppState;

/// The password's file in the data directory: one Argon2 PHC string, mode 0600.
pub const PASSWORD_FILE: &str = "dashboard-password";
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "leasehold_session";
/// The cookie of the sign-in form's CSRF token (there is no session yet to hold it).
pub const LOGIN_COOKIE: &str = "leasehold_login";
/// A session unused this long is gone.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// At most this many failed sign-ins per address within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Shortest password `set-password` accepts.
pub const MIN_PASSWORD_LEN: usize = 8;
const MAX_SESSIONS: usize = 1000;

/// Hashes `password` and writes it to `DATA_DIR/dashboard-password` (atomically, mode 0600).
/// A running server uses the new password at the next sign-in.
pub fn set_password(data_dir: &Path, password: &str) -> Result<PathBuf, String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the dashboard password must have at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    let salt = SaltString::generate(&mut HashRng);
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| format!("cannot hash the password: {e}"))?
        .to_string();
    std::fs::create_dir_all(data_dir).map_err(|e| {
        format!(
            "cannot create the data directory {}: {e}",
            data_dir.display()
        )
    })?;
    let path = data_dir.join(PASSWORD_FILE);
    write_file_atomically(&path, format!("{hash}\n").as_bytes(), 0o600)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Makes sure a password is set: when none is, generates one, stores its hash and returns it
/// (the only time it is ever visible).
pub fn ensure_password(data_dir: &Path) -> Result<Option<String>, String> {
    let path = data_dir.join(PASSWORD_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if PasswordHash::new(text.trim()).is_ok() => return Ok(None),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "the dashboard password file is not an Argon2 hash; generating a new password")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    // No 0/O/1/l/I: the password is read off a terminal and typed.
    const ALPHABET: &[u8] = b"23456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut rng = OsRng;
    let password: String = (0..20)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    set_password(data_dir, &password)?;
    Ok(Some(password))
}

/// Checks `password` against the stored hash. Read on every sign-in, so `set-password`
/// applies to a running server at once. Slow on purpose: call it off the async threads.
pub fn verify_password(data_dir: &Path, password: &str) -> Result<bool, String> {
    let path = data_dir.join(PASSWORD_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "no dashboard password is readable at {} ({e}); set one with `leasehold server set-password`",
            path.display()
        )
    })?;
    let hash = PasswordHash::new(text.trim())
        .map_err(|e| format!("{} is not an Argon2 password hash: {e}", path.display()))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok())
}

pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub use leasehold_web::same_secret;

/// A message shown once on the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashKind {
    Success,
    Error,
    Info,
}

impl Flash {
    pub fn success(text: impl Into<String>) -> Self {
        Self {
            kind: FlashKind::Success,
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self {
            kind: FlashKind::Error,
            text: text.into(),
        }
    }

    pub fn info(text: impl Into<String>) -> Self {
        Self {
            kind: FlashKind::Info,
            text: text.into(),
        }
    }
}

#[derive(Debug)]
struct SessionEntry {
    csrf: String,
    last_seen: Instant,
    flash: Option<Flash>,
}

/// The in-memory session table and the failed sign-in log. Sessions end with the process.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, SessionEntry>>,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sessions {
    /// Starts a session; returns its cookie value.
    pub fn create(&self) -> String {
        let token = random_token();
        let now = Instant::now();
        let mut s = lock(&self.sessions);
        s.retain(|_, e| now.duration_since(e.last_seen) < SESSION_IDLE);
        if s.len() >= MAX_SESSIONS {
            if let Some(oldest) = s
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| k.clone())
            {
                s.remove(&oldest);
            }
        }
        s.insert(
            token.clone(),
            SessionEntry {
                csrf: random_token(),
                last_seen: now,
                flash: None,
            },
        );
        token
    }

    /// The session's CSRF token if the session is live; marks it used.
    fn touch(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut s = lock(&self.sessions);
        let live = match s.get_mut(token) {
            Some(e) if now.duration_since(e.last_seen) < SESSION_IDLE => {
                e.last_seen = now;
                return Some(e.csrf.clone());
            }
            Some(_) => false,
            None => return None,
        };
        if !live {
            s.remove(token);
        }
        None
    }

    pub fn is_live(&self, token: &str) -> bool {
        self.touch(token).is_some()
    }

    pub fn end(&self, token: &str) {
        lock(&self.sessions).remove(token);
    }

    pub fn set_flash(&self, token: &str, flash: Flash) {
        if let Some(e) = lock(&self.sessions).get_mut(token) {
            e.flash = Some(flash);
        }
    }

    pub fn take_flash(&self, token: &str) -> Option<Flash> {
        lock(&self.sessions).get_mut(token)?.flash.take()
    }

    /// `Some(wait)` when `ip` has used up its failed sign-ins for now.
    pub fn locked_out(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut f = lock(&self.failures);
        let list = f.get_mut(&ip)?;
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
        {
            list.pop_front();
        }
        if list.is_empty() {
            f.remove(&ip);
            return None;
        }
        (list.len() >= MAX_FAILURES)
            .then(|| {
                list.front()
                    .map(|t| FAILURE_WINDOW.saturating_sub(now.duration_since(*t)))
            })
            .flatten()
    }

    pub fn record_failure(&self, ip: IpAddr) {
        let mut f = lock(&self.failures);
        // Bounded: a flood of addresses cannot grow this without limit.
        if f.len() > 10_000 {
            let now = Instant::now();
            f.retain(|_, l| {
                l.back()
                    .is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW)
            });
        }
        let list = f.entry(ip).or_default();
        list.push_back(Instant::now());
        while list.len() > MAX_FAILURES {
            list.pop_front();
        }
    }

    pub fn clear_failures(&self, ip: IpAddr) {
        lock(&self.failures).remove(&ip);
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value; `secure` (the admin listener speaks HTTPS) keeps the browser from
/// ever sending it over plain HTTP.
pub fn set_cookie(name: &str, value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/{secure}")
}

pub fn session_cookie(token: &str, secure: bool) -> String {
    set_cookie(SESSION_COOKIE, token, secure)
}

pub fn expired_cookie(name: &str, secure: bool) -> String {
    format!("{}; Max-Age=0", set_cookie(name, "", secure))
}

/// The client's address, as the listener saw it (no proxy headers: the admin listener is
/// meant to be reached directly).
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// A signed-in operator. Pages without one redirect to `/login?next=…`.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub csrf: String,
}

/// Where to go after signing in: only a path on this server, never another site. No control
/// characters: a browser drops tabs and line breaks from a URL (`/<TAB>/evil.example` is
/// `//evil.example`, another site), and the others make no `Location` header (a 500 after
/// the sign-in succeeded).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.into()
        }
        _ => "/licenses".into(),
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(token) = cookie(&parts.headers, SESSION_COOKIE) {
            if let Some(csrf) = state.dashboard.sessions.touch(token) {
                return Ok(Session {
                    token: token.to_owned(),
                    csrf,
                });
            }
        }
        // A form posted after the session ended goes back to the page it came from.
        let target = if parts.method == axum::http::Method::GET {
            parts
                .uri
                .path_and_query()
                .map_or("/licenses", |p| p.as_str())
        } else {
            parts.uri.path()
        };
        let next = if target.starts_with("/clients/table") {
            "/clients"
        } else {
            target
        };
        Err(Redirect::to(&format!("/login?next={}", url_encode(next))).into_response())
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_password_is_generated_once_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_password(dir.path()).unwrap().unwrap();
        assert!(ensure_password(dir.path()).unwrap().is_none());
        assert!(verify_password(dir.path(), &first).unwrap());
        assert!(!verify_password(dir.path(), "wrong-password").unwrap());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(PASSWORD_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(set_password(dir.path(), "short").is_err());
        set_password(dir.path(), "a new password").unwrap();
        assert!(verify_password(dir.path(), "a new password").unwrap());
        assert!(!verify_password(dir.path(), &first).unwrap());
    }

    #[test]
    fn failures_lock_out_after_the_limit() {
        let s = Sessions::default();
        let ip = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..MAX_FAILURES - 1 {
            s.record_failure(ip);
            assert!(s.locked_out(ip).is_none());
        }
        s.record_failure(ip);
        assert!(s.locked_out(ip).is_some());
        assert!(s.locked_out(IpAddr::from([10, 0, 0, 2])).is_none());
        s.clear_failures(ip);
        assert!(s.locked_out(ip).is_none());
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next(Some("/sync")), "/sync");
        assert_eq!(safe_next(Some("//evil.example")), "/licenses");
        assert_eq!(safe_next(Some("https://evil.example")), "/licenses");
        assert_eq!(safe_next(None), "/licenses");
        assert_eq!(url_encode("/a?b=c d"), "/a%3Fb%3Dc%20d");
    }

    /// Found by the `dashboard_form` fuzz target (docs/testing.md, "Fuzzing").
    #[test]
    fn next_with_control_characters_stays_on_this_server() {
        // A browser drops the tab: `//evil.example`.
        assert_eq!(safe_next(Some("/\t/evil.example")), "/licenses");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/licenses");
        // Not a valid `Location` header: the sign-in would answer 500.
        assert_eq!(safe_next(Some("/clients\u{1f}feature=tts")), "/licenses");
        assert_eq!(safe_next(Some("/sync\r\nSet-Cookie: x=y")), "/licenses");
        assert_eq!(
            safe_next(Some("/clients?feature=tts")),
            "/clients?feature=tts"
        );
    }
}
