//! The simulated application clients: one thread each, a real library client placing
//! calls at random.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::NaiveDate;
use leasehold_client::{Client, LicenseGuard, ServerRole};
use rand::Rng as _;

use super::FEATURES;

/// Most licenses one simulated client holds at once.
pub(super) const MAX_HELD_PER_CLIENT: usize = 4;
/// The demo's application processes: one thread per simulated client, each a real library
/// client placing calls; `roles` tells the console which server each one uses.
pub(super) struct SimulatedClients {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) roles: Arc<Vec<AtomicU8>>,
    pub(super) threads: Vec<std::thread::JoinHandle<()>>,
}

pub(super) fn start_clients(
    servers: &str,
    client_key: &str,
    count: u32,
    today: NaiveDate,
) -> anyhow::Result<SimulatedClients> {
    let stop_clients = Arc::new(AtomicBool::new(false));
    let roles: Arc<Vec<AtomicU8>> =
        Arc::new((0..count).map(|_| AtomicU8::new(ROLE_NONE)).collect());
    let mut client_threads = Vec::new();
    for i in 0..count {
        let (servers, key, stop, roles) = (
            servers.to_owned(),
            client_key.to_owned(),
            stop_clients.clone(),
            roles.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("demo-client-{i}"))
            .spawn(move || {
                simulated_client(&servers, &key, today, &stop, &roles[i as usize]);
            })
            .context("cannot start a simulated client thread")?;
        client_threads.push(thread);
    }
    Ok(SimulatedClients {
        stop: stop_clients,
        roles,
        threads: client_threads,
    })
}

pub(super) const ROLE_NONE: u8 = 0;
pub(super) const ROLE_PRIMARY: u8 = 1;
pub(super) const ROLE_BACKUP: u8 = 2;

/// One application: takes a license of a random feature now and then, holds it 1 to 5 s,
/// pauses at random, until `stop`. Notes which server it uses in `role`.
pub(super) fn simulated_client(
    servers: &str,
    client_key: &str,
    release: NaiveDate,
    stop: &AtomicBool,
    role: &AtomicU8,
) {
    let client = match Client::builder()
        .servers(servers)
        .client_key(client_key)
        .product_release(release)
        .features(FEATURES.iter().map(|(f, _)| *f))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a simulated client");
            return;
        }
    };
    let mut rng = rand::thread_rng();
    let mut held: Vec<(LicenseGuard<'_>, Instant)> = Vec::new();
    let mut paused_until = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        held.retain(|(_, until)| *until > now);
        if now >= paused_until && held.len() < MAX_HELD_PER_CLIENT && rng.gen_bool(0.3) {
            let feature = if rng.gen_bool(0.6) {
                FEATURES[0].0
            } else {
                FEATURES[1].0
            };
            if let Ok(license) = client.acquire(feature) {
                held.push((
                    license,
                    now + Duration::from_millis(rng.gen_range(1_000..=5_000)),
                ));
            }
            if rng.gen_bool(0.1) {
                paused_until = now + Duration::from_millis(rng.gen_range(1_000..=4_000));
            }
        }
        let r = match client.status().server {
            ServerRole::Primary => ROLE_PRIMARY,
            ServerRole::Backup => ROLE_BACKUP,
            ServerRole::None => ROLE_NONE,
        };
        role.store(r, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
    }
    // Licenses first, then the client (which gives its quota back to the server).
    drop(held);
    drop(client);
}

impl SimulatedClients {
    /// Stops every client (each gives its licenses back) and waits for them.
    pub(super) async fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}
