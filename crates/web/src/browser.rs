//! What the two server-rendered web interfaces share (the license server's dashboard and the
//! node's vendor console): cookies, where to go after signing in, random tokens, the
//! client's address, the limit on failed sign-ins per address, one-time flash messages and
//! the stylesheet. Each keeps its own sessions (the dashboard in memory, the console in the
//! node's database, shared by every node).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use rand::rngs::OsRng;
use rand::RngCore;

/// The stylesheet of both interfaces: states in words and icons as well as colour, tables
/// that turn into cards on a phone.
pub const STYLESHEET: &str = include_str!("../assets/dashboard.css");

/// `GET /static/dashboard.css` (or the console's copy).
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        STYLESHEET,
    )
}

/// The headers every page of both interfaces carries: no framing by another site
/// (clickjacking), forms that post only to this origin, no MIME sniffing, no address sent to
/// other sites. `axum::middleware::map_response(security_headers)` on a router.
pub async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::HeaderValue;
    let h = response.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// "in 3 h 5 min" / "12 min ago", for a time near `now`.
pub fn relative(t: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> String {
    let secs = (t - now).num_seconds();
    let text = span(secs.unsigned_abs());
    if secs >= 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A duration in words: "45 s", "12 min", "3 h 5 min", "1 day", "9 days".
pub fn span(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => {
            let days = secs / 86_400;
            format!("{days} day{}", if days == 1 { "" } else { "s" })
        }
    }
}

/// A mark for a date that ends something (`what`): ended, ending within 30 days, or none.
pub fn date_mark(date: chrono::NaiveDate, today: chrono::NaiveDate, what: &str) -> Option<String> {
    let days = (date - today).num_days();
    if days < 0 {
        Some(format!("✖ {what} ended {}", date.format("%Y-%m-%d")))
    } else if days <= 30 {
        Some(format!(
            "⚠ {what} ends in {days} day{}",
            if days == 1 { "" } else { "s" }
        ))
    } else {
        None
    }
}

/// A password made for a person to read off a screen and type: 20 letters and digits
/// (about 117 bits), without 0, O, 1, l and I.
pub fn generated_password() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"23456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut rng = OsRng;
    (0..20)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// 32 random bytes in hex: session cookies and CSRF tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
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

/// A `Set-Cookie` value; `secure` (the listener speaks HTTPS) keeps the browser from ever
/// sending it over plain HTTP.
pub fn set_cookie(name: &str, value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/{secure}")
}

pub fn expired_cookie(name: &str, secure: bool) -> String {
    format!("{}; Max-Age=0", set_cookie(name, "", secure))
}

/// The client's address, as the listener saw it (no proxy headers: the listener is meant
/// to be reached directly).
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// Where to go after signing in: only a path on this server, never another site, else
/// `default`. No control characters: a browser drops tabs and line breaks from a URL
/// (`/<TAB>/evil.example` is `//evil.example`, another site), and the others make no
/// `Location` header (a 500 after the sign-in succeeded).
pub fn safe_next(next: Option<&str>, default: &str) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.into()
        }
        _ => default.into(),
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

    /// One line to store (`ok:`, `error:` or `info:` and the text).
    pub fn encode(&self) -> String {
        let kind = match self.kind {
            FlashKind::Success => "ok",
            FlashKind::Error => "error",
            FlashKind::Info => "info",
        };
        format!("{kind}:{}", self.text)
    }

    /// What [`Flash::encode`] wrote; anything else is shown as a note.
    pub fn decode(stored: &str) -> Self {
        match stored.split_once(':') {
            Some(("ok", t)) => Self::success(t),
            Some(("error", t)) => Self::error(t),
            Some(("info", t)) => Self::info(t),
            _ => Self::info(stored),
        }
    }

    /// The CSS class and the words in front of the text.
    pub fn look(&self) -> (&'static str, &'static str) {
        match self.kind {
            FlashKind::Success => ("flash-ok", "✔ Done:"),
            FlashKind::Error => ("flash-error", "✖ Failed:"),
            FlashKind::Info => ("flash-info", "ℹ Note:"),
        }
    }
}

/// A flash message as a page shows it: its CSS class, the words in front, the text.
#[derive(Debug, Clone)]
pub struct FlashView {
    pub class: &'static str,
    pub label: &'static str,
    pub text: String,
}

impl From<Flash> for FlashView {
    fn from(f: Flash) -> Self {
        let (class, label) = f.look();
        Self {
            class,
            label,
            text: f.text,
        }
    }
}

/// One entry of a page's navigation.
#[derive(Debug, Clone)]
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The navigation of `items` (`(href, label)`), `current` marked.
pub fn nav(items: &[(&'static str, &'static str)], current: &str) -> Vec<NavItem> {
    items
        .iter()
        .map(|(href, label)| NavItem {
            href,
            label,
            current: *href == current,
        })
        .collect()
}

/// A rendered page with `status`; when rendering failed, a plain 500 that names `what`
/// (the error is logged once, never sent).
pub fn html_page<E: std::fmt::Display>(
    status: axum::http::StatusCode,
    rendered: Result<String, E>,
    what: &str,
) -> axum::response::Response {
    match rendered {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a {what} page failed");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("the {what} could not render this page; see its log"),
            )
                .into_response()
        }
    }
}

/// At most this many failed sign-ins per address within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Failed sign-ins per client address, in memory: after [`MAX_FAILURES`] within
/// [`FAILURE_WINDOW`] an address must wait.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl LoginThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Some(wait)` when `ip` has used up its failed sign-ins for now.
    pub fn locked_out(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut f = self.lock();
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
        let mut f = self.lock();
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

    pub fn clear(&self, ip: IpAddr) {
        self.lock().remove(&ip);
    }
}

/// "Try again in 3 minutes", for a lockout of `wait`.
pub fn wait_words(wait: Duration) -> String {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_spans_read_well() {
        use chrono::TimeZone;
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
        assert_eq!(
            date_mark(day(2), today, "maintenance").as_deref(),
            Some("⚠ maintenance ends in 1 day")
        );
        assert!(date_mark(
            chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
            today,
            "x"
        )
        .unwrap()
        .starts_with('✖'));
        assert_eq!(
            date_mark(
                chrono::NaiveDate::from_ymd_opt(2027, 6, 1).unwrap(),
                today,
                "x"
            ),
            None
        );
        assert_eq!(
            date_mark(
                chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
                today,
                "license"
            )
            .as_deref(),
            Some("✖ license ended 2026-11-01")
        );
        assert_eq!(span(59), "59 s");
        assert_eq!(span(3700), "1 h 1 min");
        assert_eq!(span(86_400), "1 day");
        assert_eq!(span(3 * 86_400), "3 days");
        let now = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        assert_eq!(
            relative(now - chrono::Duration::minutes(5), now),
            "5 min ago"
        );
        assert_eq!(
            relative(now + chrono::Duration::hours(2), now),
            "in 2 h 0 min"
        );
    }

    #[test]
    fn generated_passwords_are_long_distinct_unambiguous_and_acceptable() {
        let a = generated_password();
        let b = generated_password();
        assert_eq!(a.chars().count(), 20);
        assert_ne!(a, b);
        assert!(leasehold_proto::api::staff::check_password(&a).is_ok());
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert!(!a.contains(['0', 'O', '1', 'l', 'I']), "{a}");
    }

    #[test]
    fn failures_lock_out_after_the_limit() {
        let s = LoginThrottle::default();
        let ip = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..MAX_FAILURES - 1 {
            s.record_failure(ip);
            assert!(s.locked_out(ip).is_none());
        }
        s.record_failure(ip);
        assert!(s.locked_out(ip).is_some());
        assert!(s.locked_out(IpAddr::from([10, 0, 0, 2])).is_none());
        s.clear(ip);
        assert!(s.locked_out(ip).is_none());
    }

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next(Some("/sync"), "/licenses"), "/sync");
        assert_eq!(safe_next(Some("//evil.example"), "/licenses"), "/licenses");
        assert_eq!(safe_next(Some("https://evil.example"), "/x"), "/x");
        assert_eq!(safe_next(None, "/licenses"), "/licenses");
        assert_eq!(url_encode("/a?b=c d"), "/a%3Fb%3Dc%20d");
    }

    /// Found by the `dashboard_form` fuzz target (docs/testing.md, "Fuzzing").
    #[test]
    fn next_with_control_characters_stays_on_this_server() {
        // A browser drops the tab: `//evil.example`.
        assert_eq!(safe_next(Some("/\t/evil.example"), "/d"), "/d");
        assert_eq!(safe_next(Some("/\n/evil.example"), "/d"), "/d");
        // Not a valid `Location` header: the sign-in would answer 500.
        assert_eq!(safe_next(Some("/clients\u{1f}feature=tts"), "/d"), "/d");
        assert_eq!(safe_next(Some("/sync\r\nSet-Cookie: x=y"), "/d"), "/d");
        assert_eq!(
            safe_next(Some("/clients?feature=tts"), "/d"),
            "/clients?feature=tts"
        );
    }

    #[test]
    fn flashes_round_trip_and_cookies_are_found() {
        for f in [Flash::success("a:b"), Flash::error("x"), Flash::info("")] {
            assert_eq!(Flash::decode(&f.encode()), f);
        }
        assert_eq!(Flash::decode("plain"), Flash::info("plain"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1;  b=2".parse().unwrap());
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(set_cookie("s", "v", true).ends_with("; Secure"));
        assert_eq!(wait_words(Duration::from_secs(61)), "2 minutes");
    }
}
