//! The Leasehold client library: every application that needs licenses links it.
//!
//! ```no_run
//! use leasehold_client::Client;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .servers("10.0.0.5;10.0.0.6:7569") // primary, then backups
//!     .client_key_file("/etc/myapp/leasehold-client-key") // or LEASEHOLD_CLIENT_KEY
//!     .product_release(chrono::NaiveDate::from_ymd_opt(2026, 10, 1).unwrap())
//!     .feature("asr.en-US")
//!     .build()?;
//! match client.acquire("asr.en-US") {
//!     Ok(license) => { /* work; dropping `license` releases it */ drop(license) }
//!     Err(denied) => eprintln!("{denied}"),
//! }
//! # Ok(()) }
//! ```
//!
//! How it behaves (DESIGN.md §3.2, §4.1, §4.2, §4.2a):
//! - [`Client::acquire`] answers from the local cache: a lookup in an immutable sorted table
//!   of the configured features, a monotonic clock read and a compare-and-swap loop on the
//!   feature's atomics. No network, no await, no allocation, no lock; safe from any number of
//!   threads. When headroom runs low, or calls end and more is held than the server lets the
//!   client keep, it wakes the refresher (an atomic flag and a notification) but never waits
//!   for it.
//! - With [`ClientBuilder::deny_wait`] set (default 0: never), a call that finds the quota
//!   used up asks the server at once and waits at most that long for more, so it is refused
//!   only when the server has none to give: one round trip on the exhausted path, blocking
//!   close to a checkout system's.
//! - A background thread owned by the client (its own current-thread tokio runtime; callers
//!   need no runtime) runs the client [`policy`]: `POST /v1/lease` every `refresh` (2 s),
//!   early when headroom runs low, and giving back what it does not need. A quota is used
//!   only until `send time + min(lease, flush_after)` by [`std::time::Instant`], so the cache
//!   never grants after the server could have freed it.
//! - An answer within the request timeout (at most 10 s) is good, however slow. After
//!   `failover_after` (10 s) without a good answer from the primary the client moves to the
//!   first backup that answers, says `failover: true` there, keeps probing the primary and
//!   returns to it when it answers (then gives the backup its grant back).
//! - After `flush_after` (120 s) without any server, counted from the send time of the last
//!   good request, the cache is flushed: new requests are denied with [`Denied::Flushed`],
//!   licenses held stay held (they show as `held_without_lease` in [`Client::status`] and are
//!   reported as in use when a server answers again), and service resumes at the next good
//!   answer.
//! - Dropping the [`Client`] stops the refresher and gives the quota back
//!   (`DELETE /v1/lease/{client_id}`, best effort, short timeout).
//!
//! For a C ABI: `Client` is `Send + Sync`; a guard becomes a plain [`RawLicense`] with
//! [`LicenseGuard::into_raw`], released by [`Client::release_raw`]; [`Client::acquire_index`]
//! skips the name lookup, and [`Denied::code`] gives stable numbers. The [`ffi`] module is
//! that C ABI (header `include/leasehold.h`); it is the only place `unsafe` is allowed.
#![deny(unsafe_code)]

mod cache;
#[allow(unsafe_code)]
pub mod ffi;
pub mod policy;
mod refresher;
pub mod servers;
mod status;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use leasehold_proto::{ClientId, Feature, IdError};

pub use cache::{Denied, LicenseGuard, RawLicense};
pub use servers::{parse_server_list, Scheme, ServerAddr, ServerListError, DEFAULT_PORT};
pub use status::{FeatureStatus, ServerRole, Status};

use cache::{Asks, Shared, Slot, Wake};
use refresher::{Config, Info, Refresher};

/// Environment variable with the server list (first = primary, rest = backups).
pub const ENV_SERVERS: &str = "LEASEHOLD_SERVERS";
/// Environment variable with more backup servers.
pub const ENV_BACKUP_SERVERS: &str = "LEASEHOLD_BACKUP_SERVERS";
/// Environment variable with the installation's client key.
pub const ENV_CLIENT_KEY: &str = "LEASEHOLD_CLIENT_KEY";
/// Environment variable with the path of a file holding the client key (its first line; the
/// server's `DATA_DIR/client-key` itself will do).
pub const ENV_CLIENT_KEY_FILE: &str = "LEASEHOLD_CLIENT_KEY_FILE";
/// Environment variable with the name this client shows the site's operator (default
/// `hostname/program[pid]`).
pub const ENV_CLIENT_NAME: &str = "LEASEHOLD_CLIENT_NAME";

/// Default refresh period (the seed's two seconds).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(2);
/// Default time without a good answer from the primary before using a backup.
pub const DEFAULT_FAILOVER_AFTER: Duration = Duration::from_secs(10);
/// Default time without any server before the cache is flushed (the seed's two minutes).
pub const DEFAULT_FLUSH_AFTER: Duration = Duration::from_secs(leasehold_proto::LEASE_SECS);

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("no license server configured: call .servers(..) or set {ENV_SERVERS}")]
    NoServers,
    #[error("{source} (in {origin})")]
    Servers {
        /// Where the list came from: `servers`, `backup_servers` or an environment variable.
        origin: String,
        #[source]
        source: ServerListError,
    },
    #[error("no client key: call .client_key(..) or .client_key_file(..), or set {ENV_CLIENT_KEY} or {ENV_CLIENT_KEY_FILE} (`leasehold server client-key` prints the installation's key)")]
    NoClientKey,
    #[error("client key ({origin}): {reason}")]
    ClientKey { origin: String, reason: String },
    #[error("client name ({origin}): {reason}")]
    Name { origin: String, reason: String },
    #[error("the product release date is not set: call .product_release(..)")]
    NoProductRelease,
    #[error("no feature configured: call .feature(..) for every feature the application uses")]
    NoFeatures,
    #[error(transparent)]
    Feature(#[from] IdError),
    #[error("{0}")]
    Timing(String),
    #[error("cannot start the license refresher: {0}")]
    Start(String),
}

/// Configures and starts a [`Client`].
#[derive(Clone, Default)]
pub struct ClientBuilder {
    servers: Vec<(String, String)>,
    /// Where the key came from, and the key or why it could not be read.
    client_key: Option<(String, Result<String, String>)>,
    backups: Vec<(String, String)>,
    /// Where the name came from, and the name.
    name: Option<(String, String)>,
    product_release: Option<NaiveDate>,
    features: Vec<String>,
    refresh: Option<Duration>,
    failover_after: Option<Duration>,
    flush_after: Option<Duration>,
    request_timeout: Option<Duration>,
    deny_wait: Duration,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("servers", &self.servers)
            .field("backups", &self.backups)
            .field(
                "client_key",
                &self.client_key.as_ref().map(|(origin, _)| origin),
            )
            .field("name", &self.name)
            .field("product_release", &self.product_release)
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

/// The key in a key file: its first line that is neither empty nor a comment.
fn key_from_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .ok_or_else(|| format!("{} holds no key", path.display()))
}

impl ClientBuilder {
    /// The installation's client key, sent with every request (`Authorization: Bearer`).
    /// Required; replaces an earlier key.
    pub fn client_key(mut self, key: &str) -> Self {
        self.client_key = Some(("client_key".into(), Ok(key.trim().to_owned())));
        self
    }

    /// Reads the client key from the first line of `path` (the server's `DATA_DIR/client-key`
    /// will do). Replaces an earlier key; an unreadable file fails [`ClientBuilder::build`].
    pub fn client_key_file(mut self, path: impl AsRef<std::path::Path>) -> Self {
        let path = path.as_ref();
        self.client_key = Some((path.display().to_string(), key_from_file(path)));
        self
    }

    /// The server list, `;`-separated (see [`servers`]): the first is the primary, the rest
    /// are backups. Replaces an earlier list. Parsed by [`ClientBuilder::build`].
    pub fn servers(mut self, list: &str) -> Self {
        self.servers = vec![("servers".into(), list.into())];
        self
    }

    /// Backup servers, `;`-separated, tried after those of [`ClientBuilder::servers`], in
    /// order. Replaces an earlier backup list.
    pub fn backup_servers(mut self, list: &str) -> Self {
        self.backups = vec![("backup_servers".into(), list.into())];
        self
    }

    /// The name the site's operator sees for this client on the license server (its Clients
    /// page, `leasehold server clients`), beside the source address: 1 to 128 characters
    /// without control characters, e.g. `media-7/transcoder`. Default
    /// `hostname/program[pid]`. It stays on the customer's server: usage reports carry
    /// counts only.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(("name".into(), name.trim().to_owned()));
        self
    }

    /// Reads the name from [`ENV_CLIENT_NAME`]; leaves the name given so far when unset.
    pub fn name_from_env(self) -> Self {
        self.name_from_env_with(|k| std::env::var(k).ok())
    }

    fn name_from_env_with(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        if let Some(v) = var(ENV_CLIENT_NAME).filter(|v| !v.trim().is_empty()) {
            self.name = Some((ENV_CLIENT_NAME.into(), v.trim().to_owned()));
        }
        self
    }

    /// Reads the key from [`ENV_CLIENT_KEY`], else from the file [`ENV_CLIENT_KEY_FILE`]
    /// names; leaves the key given so far when neither is set.
    pub fn client_key_from_env(self) -> Self {
        self.client_key_from_env_with(|k| std::env::var(k).ok())
    }

    fn client_key_from_env_with(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        if let Some(v) = var(ENV_CLIENT_KEY).filter(|v| !v.trim().is_empty()) {
            self.client_key = Some((ENV_CLIENT_KEY.into(), Ok(v.trim().to_owned())));
        } else if let Some(v) = var(ENV_CLIENT_KEY_FILE).filter(|v| !v.trim().is_empty()) {
            let read = key_from_file(std::path::Path::new(v.trim()));
            self.client_key = Some((format!("{ENV_CLIENT_KEY_FILE}={v}"), read));
        }
        self
    }

    /// Reads [`ENV_SERVERS`], [`ENV_BACKUP_SERVERS`], [`ENV_CLIENT_NAME`] and the client key
    /// (see [`ClientBuilder::client_key_from_env`]); each one set replaces what was given
    /// so far (environment over code, as operators expect).
    pub fn from_env(self) -> Self {
        self.from_env_with(|k| std::env::var(k).ok())
    }

    /// [`ClientBuilder::from_env`] with another source of variables (tests, config files).
    pub fn from_env_with(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        if let Some(v) = var(ENV_SERVERS).filter(|v| !v.trim().is_empty()) {
            self.servers = vec![(ENV_SERVERS.into(), v)];
        }
        if let Some(v) = var(ENV_BACKUP_SERVERS).filter(|v| !v.trim().is_empty()) {
            self.backups = vec![(ENV_BACKUP_SERVERS.into(), v)];
        }
        self.name_from_env_with(&var).client_key_from_env_with(var)
    }

    /// The product's release date, for the server's maintenance check. Required.
    pub fn product_release(mut self, date: NaiveDate) -> Self {
        self.product_release = Some(date);
        self
    }

    /// A feature the application will acquire (e.g. `asr.en-US`); call once per feature.
    /// The set is fixed at build so that `acquire` needs no lock.
    pub fn feature(mut self, feature: &str) -> Self {
        self.features.push(feature.into());
        self
    }

    /// Several features at once.
    pub fn features<I, S>(mut self, features: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.features
            .extend(features.into_iter().map(|f| f.as_ref().to_owned()));
        self
    }

    /// Refresh period (default 2 s).
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = Some(every);
        self
    }

    /// Time without a good answer from the primary before using a backup (default 10 s).
    pub fn failover_after(mut self, after: Duration) -> Self {
        self.failover_after = Some(after);
        self
    }

    /// Time without any server before the cache is flushed (default 120 s). The cache also
    /// never outlives the lease the server granted, whichever is shorter.
    pub fn flush_after(mut self, after: Duration) -> Self {
        self.flush_after = Some(after);
        self
    }

    /// Timeout of one lease request (default `min(failover_after, 10 s)`, at most 10 s): an
    /// answer within it is good however slow; a slower one counts as a failure.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// How long `acquire` may wait for the server when the local quota is used up (default
    /// 0: never; every request is answered from the cache in nanoseconds). With a wait set,
    /// such a call asks the server at once and is refused only when the server has no
    /// license to give within that time. See [`Client::set_deny_wait`].
    pub fn deny_wait(mut self, wait: Duration) -> Self {
        self.deny_wait = wait;
        self
    }

    /// The `Authorization` header every request of the client sends, marked sensitive
    /// (never in logs): for tools that speak the lease API themselves with the key this
    /// builder was given.
    pub fn authorization(&self) -> Result<reqwest::header::HeaderValue, BuildError> {
        let (origin, key) = self.client_key.as_ref().ok_or(BuildError::NoClientKey)?;
        let bad = |reason: String| BuildError::ClientKey {
            origin: origin.clone(),
            reason,
        };
        let key = key.as_ref().map_err(|e| bad(e.clone()))?;
        if key.is_empty() || key.len() > 512 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "a client key is 1 to 512 printable ASCII characters without spaces".into(),
            ));
        }
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|e| bad(e.to_string()))?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// The name to send: the one given, checked, or `hostname/program[pid]`.
    fn client_name(&self) -> Result<String, BuildError> {
        match &self.name {
            Some((origin, name)) => {
                leasehold_proto::check_client_name(name).map_err(|reason| BuildError::Name {
                    origin: origin.clone(),
                    reason,
                })?;
                Ok(name.clone())
            }
            None => Ok(default_name()),
        }
    }

    fn server_list(&self) -> Result<Vec<ServerAddr>, BuildError> {
        let mut out = Vec::new();
        for (origin, list) in self.servers.iter().chain(&self.backups) {
            let parsed = parse_server_list(list).map_err(|source| BuildError::Servers {
                origin: origin.clone(),
                source,
            })?;
            for s in parsed {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        if self.servers.is_empty() || out.is_empty() {
            return Err(BuildError::NoServers);
        }
        Ok(out)
    }

    /// Checks the configuration and starts the refresher thread, which sends its first
    /// request at once.
    pub fn build(self) -> Result<Client, BuildError> {
        let servers = self.server_list()?;
        let authorization = self.authorization()?;
        let name = self.client_name()?;
        let product_release = self.product_release.ok_or(BuildError::NoProductRelease)?;
        let mut features = self
            .features
            .iter()
            .map(|f| Feature::parse(f.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        features.sort();
        features.dedup();
        if features.is_empty() {
            return Err(BuildError::NoFeatures);
        }
        if features.len() > u32::MAX as usize {
            return Err(BuildError::Timing("too many features".into()));
        }
        let refresh = self.refresh.unwrap_or(DEFAULT_REFRESH);
        let failover_after = self.failover_after.unwrap_or(DEFAULT_FAILOVER_AFTER);
        let flush_after = self.flush_after.unwrap_or(DEFAULT_FLUSH_AFTER);
        let max_timeout = Duration::from_millis(policy::MAX_REQUEST_TIMEOUT_MS);
        let request_timeout = self
            .request_timeout
            .unwrap_or_else(|| failover_after.min(max_timeout));
        if request_timeout > max_timeout {
            return Err(BuildError::Timing(format!(
                "the request timeout may be at most {max_timeout:?} (the server's safety margin for answers it gave)"
            )));
        }
        let deny_wait_ms = deny_wait_millis(self.deny_wait).map_err(BuildError::Timing)?;
        if refresh < Duration::from_millis(10) {
            return Err(BuildError::Timing("refresh must be at least 10 ms".into()));
        }
        if request_timeout < Duration::from_millis(10) {
            return Err(BuildError::Timing(
                "the request timeout must be at least 10 ms".into(),
            ));
        }
        let day = Duration::from_secs(24 * 3600);
        if refresh > Duration::from_secs(3600)
            || failover_after > day
            || flush_after > day
            || request_timeout > day
        {
            return Err(BuildError::Timing(
                "refresh may be at most 1 h; failover_after, flush_after and the request timeout at most 24 h".into(),
            ));
        }
        if flush_after <= refresh {
            return Err(BuildError::Timing(format!(
                "flush_after ({flush_after:?}) must be longer than refresh ({refresh:?})"
            )));
        }

        let mut bytes = [0u8; ClientId::RANDOM_BYTES];
        rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..]);
        let client_id = ClientId::from_random(bytes);
        // The secret the servers bind the client id to: another process that learns the id
        // (from the admin API, say) cannot release or take over this one's licenses.
        let mut secret = [0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), &mut secret[..]);
        let mut client_secret = reqwest::header::HeaderValue::from_str(&hex_encode(&secret))
            .map_err(|e| BuildError::Start(e.to_string()))?;
        client_secret.set_sensitive(true);
        let name_header =
            reqwest::header::HeaderValue::from_str(&leasehold_proto::encode_client_name(&name))
                .map_err(|e| BuildError::Start(e.to_string()))?;

        let shared = Arc::new(Shared {
            slots: features.into_iter().map(Slot::new).collect(),
            epoch: Instant::now(),
            connected: AtomicBool::new(false),
            wake: AtomicU8::new(0),
            wake_notify: tokio::sync::Notify::new(),
            stop: AtomicBool::new(false),
            deny_wait_ms: AtomicU32::new(deny_wait_ms),
            asks: Asks::default(),
        });
        let info = Arc::new(Mutex::new(Info {
            reasons: vec![None; shared.slots.len()],
            ..Info::default()
        }));
        let cfg = Arc::new(Config {
            servers,
            product_release,
            client_id: client_id.clone(),
            name,
            refresh,
            failover_after,
            flush_after,
            request_timeout,
        });
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .no_proxy()
            .user_agent(concat!("leasehold-client/", env!("CARGO_PKG_VERSION")))
            .default_headers(reqwest::header::HeaderMap::from_iter([
                (reqwest::header::AUTHORIZATION, authorization),
                (
                    reqwest::header::HeaderName::from_static(leasehold_proto::CLIENT_SECRET_HEADER),
                    client_secret,
                ),
                (
                    reqwest::header::HeaderName::from_static(leasehold_proto::CLIENT_NAME_HEADER),
                    name_header,
                ),
            ]))
            .build()
            .map_err(|e| BuildError::Start(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BuildError::Start(e.to_string()))?;
        let refresher = Refresher::new(shared.clone(), info.clone(), cfg.clone(), http);
        let thread = std::thread::Builder::new()
            .name("leasehold-refresh".into())
            .spawn(move || refresher.run(rt))
            .map_err(|e| BuildError::Start(e.to_string()))?;
        tracing::debug!(client = %client_id, name = %cfg.name, servers = cfg.servers.len(), "license client started");
        Ok(Client {
            shared,
            info,
            cfg,
            thread: Some(thread),
        })
    }
}

/// A license client: the local cache and its background refresher. Cheap to share by
/// reference across threads (`Send + Sync`); dropping it stops the refresher and gives the
/// quota back to the server.
#[derive(Debug)]
pub struct Client {
    shared: Arc<Shared>,
    info: Arc<Mutex<Info>>,
    cfg: Arc<Config>,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Takes one license of `feature` from the local cache. Without deny-wait it never
    /// touches the network and never blocks; with it, a call that finds the quota used up
    /// asks the server and waits at most the deny-wait for more. The license is held until
    /// the guard is dropped.
    pub fn acquire(&self, feature: &str) -> Result<LicenseGuard<'_>, Denied> {
        match self.shared.index_of(feature) {
            Some(i) => self.acquire_at(i),
            None => Err(Denied::NoSuchFeature),
        }
    }

    /// [`Client::acquire`] by feature index (position in [`Client::features`]), skipping the
    /// name lookup.
    pub fn acquire_index(&self, index: u32) -> Result<LicenseGuard<'_>, Denied> {
        let i = usize::try_from(index).map_err(|_| Denied::NoSuchFeature)?;
        if i >= self.shared.slots.len() {
            return Err(Denied::NoSuchFeature);
        }
        self.acquire_at(i)
    }

    fn acquire_at(&self, i: usize) -> Result<LicenseGuard<'_>, Denied> {
        let slot = &self.shared.slots[i];
        let wait = self.shared.deny_wait_ms.load(Ordering::Relaxed);
        // `build` refuses more than u32::MAX features.
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        match self.shared.try_acquire(slot, wait > 0) {
            Ok(()) => Ok(LicenseGuard {
                shared: &self.shared,
                index,
                waited: false,
            }),
            Err(Denied::QuotaExhausted) if wait > 0 => {
                self.shared
                    .ask_and_wait(slot, Duration::from_millis(u64::from(wait)))?;
                Ok(LicenseGuard {
                    shared: &self.shared,
                    index,
                    waited: true,
                })
            }
            Err(d) => Err(d),
        }
    }

    /// Changes how long `acquire` may wait for the server when the quota is used up (0:
    /// never). Takes effect for the next calls; at most one minute.
    pub fn set_deny_wait(&self, wait: Duration) -> Result<(), BuildError> {
        let ms = deny_wait_millis(wait).map_err(BuildError::Timing)?;
        self.shared.deny_wait_ms.store(ms, Ordering::Relaxed);
        self.shared.wake(Wake::EARLY);
        Ok(())
    }

    /// The current deny-wait.
    pub fn deny_wait(&self) -> Duration {
        Duration::from_millis(u64::from(self.shared.deny_wait_ms.load(Ordering::Relaxed)))
    }

    /// Gives back a license kept with [`LicenseGuard::into_raw`]. Returns false (and changes
    /// nothing) when the handle does not name a feature of this client or none is held.
    pub fn release_raw(&self, raw: RawLicense) -> bool {
        usize::try_from(raw.index())
            .ok()
            .and_then(|i| self.shared.slots.get(i))
            .is_some_and(|s| s.release_one(&self.shared))
    }

    /// The configured features, sorted; a feature's position is its index.
    pub fn features(&self) -> impl Iterator<Item = &str> + '_ {
        self.shared.slots.iter().map(|s| &*s.name)
    }

    /// The index of a configured feature.
    pub fn feature_index(&self, feature: &str) -> Option<u32> {
        self.shared
            .index_of(feature)
            .and_then(|i| u32::try_from(i).ok())
    }

    /// This client's random id, as the servers see it.
    pub fn client_id(&self) -> &ClientId {
        &self.cfg.client_id
    }

    /// The name the servers show for this client.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The servers, primary first.
    pub fn servers(&self) -> &[ServerAddr] {
        &self.cfg.servers
    }

    /// Asks the refresher to refresh now (it still keeps a minimum gap of refresh/8 between
    /// two refreshes); does not wait.
    pub fn refresh_now(&self) {
        self.shared.wake(Wake::EARLY);
    }

    /// Waits (blocking, polling) until a server has answered, at most `timeout`. For
    /// application start-up; `acquire` itself never waits.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.shared.connected.load(Ordering::Acquire) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A snapshot of the client's state.
    pub fn status(&self) -> Status {
        let now = Instant::now();
        let info = refresher::lock(&self.info);
        let valid = info.valid_until.is_some_and(|v| now < v);
        let flushed = info.valid_until.is_some() && !valid;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let current = info.current.filter(|_| valid);
        let features = self
            .shared
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let in_use = s.in_use();
                let quota = s.quota();
                FeatureStatus {
                    feature: s.name.to_string(),
                    quota,
                    in_use,
                    held_without_lease: if valid {
                        in_use.saturating_sub(quota)
                    } else {
                        in_use
                    },
                    acquired: s.acquired.load(Ordering::Relaxed),
                    denied: s.denied.load(Ordering::Relaxed),
                    waited: s.waited.load(Ordering::Relaxed),
                    reason: info.reasons.get(i).cloned().flatten(),
                }
            })
            .collect();
        Status {
            client_id: self.cfg.client_id.to_string(),
            name: self.cfg.name.clone(),
            server: match current {
                None => ServerRole::None,
                Some(0) => ServerRole::Primary,
                Some(_) => ServerRole::Backup,
            },
            server_addr: current.map(|i| self.cfg.servers[i].to_string()),
            server_guid: info.server_guid.clone(),
            server_context: info.server_context.clone(),
            failover: info.failover,
            last_good_refresh_ms_ago: info.last_good_send.map(|t| ms(now - t)),
            time_to_flush_ms: info
                .valid_until
                .map(|v| ms(v.saturating_duration_since(now))),
            flushed,
            last_error: info.last_error.clone(),
            features,
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake(Wake::STOP);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the license refresher thread panicked");
            }
        }
    }
}

/// A deny-wait in whole milliseconds, at most a minute.
fn deny_wait_millis(wait: Duration) -> Result<u32, String> {
    if wait > Duration::from_secs(60) {
        return Err(format!("deny_wait may be at most 60 s, not {wait:?}"));
    }
    // Sub-millisecond waits round up: a wait was asked for.
    let ms = wait.as_micros().div_ceil(1000);
    Ok(u32::try_from(ms).unwrap_or(60_000))
}

// Keep the types the fast path uses honest about their cost.
const _: () = {
    assert!(std::mem::size_of::<LicenseGuard<'static>>() <= 16);
    // Slots are cache-line aligned so features do not share lines.
    assert!(std::mem::align_of::<Slot>() == 64);
};

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Client>();
    is::<LicenseGuard<'static>>();
    is::<Status>();
}

/// Lower-case hex of `bytes`.
/// `hostname/program[pid]`, cut to the longest name a server takes.
fn default_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| std::env::args().next())
        .unwrap_or_else(|| "program".into());
    let name = format!("{host}/{program}[{}]", std::process::id());
    let name: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(leasehold_proto::MAX_CLIENT_NAME_CHARS)
        .collect();
    if name.trim().is_empty() {
        format!("pid {}", std::process::id())
    } else {
        name
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| pairs.iter().find(|p| p.0 == k).map(|p| p.1.clone())
    }

    #[test]
    fn server_lists_from_code_and_env() {
        let b = Client::builder().servers("a;b:1").backup_servers("c;a");
        let urls: Vec<String> = b
            .server_list()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(urls, ["http://a:7569", "http://b:1", "http://c:7569"]);

        let b = Client::builder().servers("x").from_env_with(env(&[
            (ENV_SERVERS, "10.0.0.5;10.0.0.6:7569"),
            (ENV_BACKUP_SERVERS, "[fd00::7]"),
        ]));
        let urls: Vec<String> = b
            .server_list()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            urls,
            [
                "http://10.0.0.5:7569",
                "http://10.0.0.6:7569",
                "http://[fd00::7]:7569"
            ]
        );

        // Unset or blank variables leave the code's list alone.
        let b = Client::builder()
            .servers("x")
            .from_env_with(env(&[(ENV_SERVERS, "  ")]));
        assert_eq!(b.server_list().unwrap()[0].host(), "x");

        let e = Client::builder()
            .from_env_with(env(&[(ENV_SERVERS, "ok;bad host")]))
            .server_list()
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("\"bad host\"") && text.contains(ENV_SERVERS),
            "{text}"
        );

        let e = Client::builder()
            .from_env_with(env(&[(ENV_BACKUP_SERVERS, "b")]))
            .server_list()
            .unwrap_err();
        assert!(matches!(e, BuildError::NoServers), "{e}");
        assert!(Client::builder()
            .from_env_with(env(&[]))
            .server_list()
            .is_err());
    }

    #[test]
    fn the_name_comes_from_code_then_the_environment_else_host_program_and_pid() {
        let default = Client::builder().client_name().unwrap();
        let pid = std::process::id().to_string();
        assert!(
            default.contains('/') && default.ends_with(&format!("[{pid}]")),
            "{default}"
        );
        assert!(leasehold_proto::check_client_name(&default).is_ok());

        let b = Client::builder().name(" media-7/transcoder ");
        assert_eq!(b.client_name().unwrap(), "media-7/transcoder");
        let b = b.from_env_with(env(&[(ENV_CLIENT_NAME, "site-override")]));
        assert_eq!(b.client_name().unwrap(), "site-override");
        let b = Client::builder()
            .name("kept")
            .from_env_with(env(&[(ENV_CLIENT_NAME, "  ")]));
        assert_eq!(b.client_name().unwrap(), "kept");

        let long = "x".repeat(leasehold_proto::MAX_CLIENT_NAME_CHARS + 1);
        let e = Client::builder().name(&long).client_name().unwrap_err();
        assert!(e.to_string().starts_with("client name (name): "), "{e}");
        let e = Client::builder()
            .from_env_with(env(&[(ENV_CLIENT_NAME, "a\u{7}b")]))
            .client_name()
            .unwrap_err();
        assert!(
            e.to_string().contains(ENV_CLIENT_NAME) && e.to_string().contains("control"),
            "{e}"
        );
    }

    #[test]
    fn build_checks_the_configuration() {
        let date = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let e = Client::builder()
            .servers("a")
            .product_release(date)
            .feature("tts")
            .build()
            .unwrap_err();
        assert!(matches!(e, BuildError::NoClientKey), "{e}");
        let e = Client::builder()
            .servers("a")
            .client_key("has space")
            .product_release(date)
            .feature("tts")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("client key (client_key)"), "{e}");
        let e = Client::builder()
            .servers("a")
            .client_key_file("/no/such/key-file")
            .product_release(date)
            .feature("tts")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("/no/such/key-file"), "{e}");
        let e = Client::builder()
            .servers("a")
            .from_env_with(env(&[(ENV_CLIENT_KEY_FILE, "/no/such/env-file")]))
            .product_release(date)
            .feature("tts")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains(ENV_CLIENT_KEY_FILE), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client-key");
        std::fs::write(&file, "# a comment\n\nlhck_abc\nprevious x until y\n").unwrap();
        let b = Client::builder().client_key_file(&file);
        let v = b.authorization().unwrap();
        assert!(v.is_sensitive());
        assert_eq!(v.to_str().unwrap(), "Bearer lhck_abc");
        let b = Client::builder()
            .client_key_file(&file)
            .from_env_with(env(&[(ENV_CLIENT_KEY, "lhck_env")]));
        assert_eq!(
            b.authorization().unwrap().to_str().unwrap(),
            "Bearer lhck_env"
        );
        assert!(
            !format!("{b:?}").contains("lhck_env"),
            "the key is not in Debug"
        );
        let e = Client::builder()
            .servers("a")
            .client_key("k")
            .feature("tts")
            .build()
            .unwrap_err();
        assert!(matches!(e, BuildError::NoProductRelease), "{e}");
        let e = Client::builder()
            .servers("a")
            .client_key("k")
            .product_release(date)
            .build()
            .unwrap_err();
        assert!(matches!(e, BuildError::NoFeatures), "{e}");
        let e = Client::builder()
            .servers("a")
            .client_key("k")
            .product_release(date)
            .feature("bad feature")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("bad feature"), "{e}");
        let e = Client::builder()
            .servers("a")
            .client_key("k")
            .product_release(date)
            .feature("tts")
            .refresh(Duration::from_secs(5))
            .flush_after(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert!(matches!(e, BuildError::Timing(_)), "{e}");
    }

    #[test]
    fn an_unreachable_server_leaves_the_cache_empty_and_acquire_fast() {
        // Port 9 on loopback: nothing listens; connection refused at once.
        let client = Client::builder()
            .servers("127.0.0.1:9")
            .client_key("k")
            .product_release(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap())
            .features(["tts", "asr.en-US"])
            .refresh(Duration::from_millis(50))
            .build()
            .unwrap();
        assert_eq!(client.features().collect::<Vec<_>>(), ["asr.en-US", "tts"]);
        assert_eq!(client.feature_index("tts"), Some(1));
        assert_eq!(client.acquire("tts").unwrap_err(), Denied::NotConnected);
        assert_eq!(client.acquire("nope").unwrap_err(), Denied::NoSuchFeature);
        assert_eq!(client.acquire_index(7).unwrap_err(), Denied::NoSuchFeature);
        assert!(!client.release_raw(RawLicense::from_index(1)));
        assert!(!client.wait_connected(Duration::from_millis(100)));
        let s = client.status();
        assert_eq!(s.server, ServerRole::None);
        assert!(!s.flushed);
        assert_eq!(s.features[1].denied, 1);
        let start = Instant::now();
        drop(client);
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
