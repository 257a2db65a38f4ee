//! Who may use the dashboard: the password (an Argon2 PHC string in the data directory),
//! sessions (random cookie, idle expiry), CSRF tokens for every form, and the limit on
//! failed sign-ins per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng as HashRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

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
    // Read off a terminal and typed.
    let password = leasehold_web::browser::generated_password();
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

pub use leasehold_web::browser::{
    client_ip, cookie, expired_cookie, random_token, set_cookie, url_encode, Flash, FlashKind,
    LoginThrottle, FAILURE_WINDOW, MAX_FAILURES,
};
pub use leasehold_web::same_secret;

/// Where to go after signing in: a path on this server, else the Licenses page.
pub fn safe_next(next: Option<&str>) -> String {
    leasehold_web::browser::safe_next(next, "/licenses")
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
    failures: LoginThrottle,
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
        self.failures.locked_out(ip)
    }

    pub fn record_failure(&self, ip: IpAddr) {
        self.failures.record_failure(ip);
    }

    pub fn clear_failures(&self, ip: IpAddr) {
        self.failures.clear(ip);
    }
}

pub fn session_cookie(token: &str, secure: bool) -> String {
    set_cookie(SESSION_COOKIE, token, secure)
}

/// A signed-in operator. Pages without one redirect to `/login?next=…`.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub csrf: String,
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
}
