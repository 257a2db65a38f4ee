//! HTTPS on a listener (rustls): a certificate chain and its private key from PEM files,
//! re-read when they change so a renewed certificate is served without a restart. The files
//! are checked every [`RELOAD_CHECK_EVERY`] and at once on SIGHUP; a new pair that does not
//! load (half written, key not matching the certificate) is logged once and the pair in
//! service is kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// How often a serving process looks at its certificate and key files.
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Where a listener's certificate chain (leaf first) and private key are, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Both flags or neither: `Ok(None)` for neither, an error naming the missing one.
    pub fn from_flags(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        cert_flag: &str,
        key_flag: &str,
    ) -> Result<Option<Self>, TlsError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(Self { cert, key })),
            (Some(_), None) => Err(TlsError(format!(
                "{cert_flag} is given without {key_flag}: HTTPS needs the certificate and its private key"
            ))),
            (None, Some(_)) => Err(TlsError(format!(
                "{key_flag} is given without {cert_flag}: HTTPS needs the certificate and its private key"
            ))),
        }
    }
}

/// A certificate or key that cannot be loaded; the message names the file and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The TLS side of one or more listeners; clones share the certificate in service.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

#[derive(Debug)]
struct Resolver {
    current: RwLock<Loaded>,
    /// Digest of the last pair that failed to load, so it is reported once.
    failed: RwLock<Option<[u8; 32]>>,
}

#[derive(Debug, Clone)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// SHA-256 of both files' bytes: a change of either is a new pair.
    files_digest: [u8; 32],
    /// SHA-256 of the leaf certificate (DER), as browsers and `openssl x509 -fingerprint
    /// -sha256` show it.
    fingerprint: String,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(read(&self.current).key.clone())
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn write<T>(lock: &RwLock<T>, value: T) {
    match lock.write() {
        Ok(mut g) => *g = value,
        Err(p) => *p.into_inner() = value,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    /// Loads the pair; an error names the file and the problem.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let loaded = load_pair(&files)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(loaded),
            failed: RwLock::new(None),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("TLS set-up: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            files,
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// SHA-256 of the certificate in service (hex, upper case, colon-separated).
    pub fn fingerprint(&self) -> String {
        read(&self.resolver.current).fingerprint
    }

    /// Re-reads the files. `Ok(true)`: a new pair is in service; `Ok(false)`: the files are
    /// unchanged; an error: the new files do not load and the pair in service stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let digest = files_digest(&self.files)?;
        if digest == read(&self.resolver.current).files_digest {
            return Ok(false);
        }
        match load_pair(&self.files) {
            Ok(loaded) => {
                write(&self.resolver.current, loaded);
                write(&self.resolver.failed, None);
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Looks at the files every `every` and at each SIGHUP, and puts a changed pair in
    /// service; `name` labels the logs and the `leasehold_tls_reloads_total` counter.
    pub fn spawn_reloader(&self, name: &'static str, every: Duration) -> JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                #[cfg(unix)]
                let hup = async {
                    match hangup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let hup = std::future::pending::<()>();
                tokio::select! {
                    _ = tick.tick() => {}
                    () = hup => tracing::info!(listener = name, "SIGHUP: re-reading the TLS certificate and key"),
                }
                tls.reload_and_report(name);
            }
        })
    }

    fn reload_and_report(&self, name: &'static str) {
        match self.reload() {
            Ok(false) => {}
            Ok(true) => {
                ::metrics::counter!("leasehold_tls_reloads_total", "listener" => name, "result" => "loaded")
                    .increment(1);
                tracing::info!(listener = name, fingerprint = %self.fingerprint(), cert = %self.files.cert.display(), "new TLS certificate in service");
            }
            Err(e) => {
                let digest = files_digest(&self.files).ok();
                if digest.is_some() && read(&self.resolver.failed) == digest {
                    return;
                }
                write(&self.resolver.failed, digest);
                ::metrics::counter!("leasehold_tls_reloads_total", "listener" => name, "result" => "failed")
                    .increment(1);
                tracing::warn!(listener = name, error = %e, fingerprint = %self.fingerprint(), "the TLS files changed but do not load; the certificate in service stays");
            }
        }
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| {
        TlsError(format!(
            "cannot read the TLS {what} {}: {e}",
            path.display()
        ))
    })
}

fn files_digest(files: &TlsFiles) -> Result<[u8; 32], TlsError> {
    let mut h = Sha256::new();
    h.update(read_file(&files.cert, "certificate")?);
    h.update([0]);
    h.update(read_file(&files.key, "key")?);
    Ok(h.finalize().into())
}

/// Every certificate in a PEM file, leaf first; an error names the file.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path, "certificate")?;
    certificates_from_pem(&bytes, path)
}

fn certificates_from_pem(
    bytes: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TlsError(format!(
                "{}: not a PEM certificate file ({e:?})",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate in it (expected PEM blocks \"-----BEGIN CERTIFICATE-----\")",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_pair(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let cert_bytes = read_file(&files.cert, "certificate")?;
    let key_bytes = read_file(&files.key, "key")?;
    let chain = certificates_from_pem(&cert_bytes, &files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        TlsError(format!(
            "{}: no private key in it (expected a PEM \"PRIVATE KEY\" block: PKCS#8, PKCS#1 or SEC1): {e:?}",
            files.key.display()
        ))
    })?;
    let fingerprint = fingerprint_of(&chain[0]);
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        TlsError(format!(
            "{} does not go with {}: {e}",
            files.key.display(),
            files.cert.display()
        ))
    })?;
    let mut h = Sha256::new();
    h.update(&cert_bytes);
    h.update([0]);
    h.update(&key_bytes);
    Ok(Loaded {
        key: Arc::new(key),
        files_digest: h.finalize().into(),
        fingerprint,
    })
}

/// SHA-256 of a certificate's DER, upper-case hex pairs joined by colons.
pub fn fingerprint_of(cert: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(cert.as_ref());
    let hex = hex::encode_upper(digest);
    hex.as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap_or("??"))
        .collect::<Vec<_>>()
        .join(":")
}
