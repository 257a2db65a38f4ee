//! For tests of the real binaries: a child process started and waited for until it prints
//! that it is ready, killed when the test is done with it, with no `LEASEHOLD_*` settings
//! leaking in from the environment the tests run in.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Removes every `LEASEHOLD_*` variable from what `cmd` inherits.
pub fn without_leasehold_env(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        // A proxy of the developer's machine would take the tests' loopback traffic.
        let proxy = n.to_ascii_lowercase().ends_with("_proxy");
        if n.starts_with("LEASEHOLD_") || proxy || n == "SSL_CERT_FILE" || n == "SSL_CERT_DIR" {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// A log file for a child's stderr, appended to across restarts.
pub fn log_file(path: &Path) -> File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// Spawns `cmd` with stdout piped and waits until it prints a line starting with `ready`;
/// returns the child and the rest of that line. Stdout keeps being drained afterwards, so
/// the child never blocks on a full pipe. On exit or timeout, returns the exit status (the
/// child is killed if it was still running).
pub fn spawn_until_ready(
    mut cmd: Command,
    ready: &str,
    timeout: Duration,
) -> Result<(ChildGuard, String), Option<ExitStatus>> {
    let mut child = ChildGuard(cmd.stdout(Stdio::piped()).spawn().unwrap());
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if let Some(rest) = line.trim().strip_prefix(ready.as_str()) {
                        let _ = tx.send(rest.to_owned());
                        break;
                    }
                }
            }
        }
        let _ = std::io::copy(&mut reader.into_inner(), &mut std::io::sink());
    });
    match rx.recv_timeout(timeout) {
        Ok(rest) => Ok((child, rest)),
        // Dropping the guard kills a child still running.
        Err(_) => Err(child.try_wait().ok().flatten()),
    }
}

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
/// Derefs to the [`Child`].
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// SIGKILL, as a crash or power loss would; waits until the process is gone.
    pub fn kill9(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Deref for ChildGuard {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback address (`127.0.0.1:PORT`): bound once and released, for a process that
/// must come back on the same address after a restart. Another process could take the port
/// in between; on loopback in a test run that is rare enough.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A real HTTP/CONNECT proxy (Debian's `tinyproxy`) on a free loopback port, logging every
/// request it passes, killed when dropped.
#[derive(Debug)]
pub struct Tinyproxy {
    _child: ChildGuard,
    /// `http://127.0.0.1:PORT`, credentials not included.
    pub url: String,
    pub log: std::path::PathBuf,
}

impl Tinyproxy {
    /// Starts one with its files in `dir`; with `basic_auth`, it answers 407 to requests
    /// without those credentials.
    pub fn start(dir: &Path, basic_auth: Option<(&str, &str)>) -> Self {
        let bin = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!("tinyproxy is not installed (apt-get install tinyproxy; .ci/run installs it): the proxy tests need a real CONNECT proxy")
            });
        let addr = free_addr();
        let port = addr.rsplit(':').next().unwrap_or_default().to_owned();
        let log = dir.join("tinyproxy.log");
        let conf = dir.join("tinyproxy.conf");
        let auth = basic_auth
            .map(|(u, p)| format!("BasicAuth {u} {p}\n"))
            .unwrap_or_default();
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 50\nAllow 127.0.0.1\n{auth}",
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log_file(&dir.join("tinyproxy.stderr")))
            .spawn()
            .unwrap();
        let guard = ChildGuard(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "tinyproxy did not listen on {addr}: {}",
                std::fs::read_to_string(dir.join("tinyproxy.stderr")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            _child: guard,
            url: format!("http://{addr}"),
            log,
        }
    }

    /// What it logged: one `Request ... CONNECT host:port` line per tunnel.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
