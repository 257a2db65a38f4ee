//! Test helpers: a license node running as a child process (killed on drop) and a way to run
//! `leasehold vendor ...` against it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

pub const TOKEN: &str = "test-admin-token-0123456789";
const READY: &str = "leasehold node listening on ";

pub fn leasehold_path() -> PathBuf {
    assert_cmd::cargo::cargo_bin("leasehold")
}

/// A `leasehold` command with no settings leaking in from the environment.
pub fn leasehold() -> Command {
    let mut cmd = Command::new(leasehold_path());
    cmd.env_remove("LEASEHOLD_NODE")
        .env_remove("LEASEHOLD_ADMIN_TOKEN")
        .env_remove("LEASEHOLD_SERVERS")
        .env_remove("LEASEHOLD_BACKUP_SERVERS")
        .env("RUST_LOG", "warn")
        .timeout(Duration::from_secs(60));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LEASEHOLD_SERVER_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Spawns `cmd` with stdout piped and waits until it prints a line starting with `ready`;
/// returns the child and the rest of that line. Stdout keeps being drained afterwards, so
/// the child never blocks on a full pipe. On exit or timeout, returns the exit status.
pub fn spawn_until_ready(
    mut cmd: StdCommand,
    ready: &str,
    timeout: Duration,
) -> Result<(Child, String), Option<std::process::ExitStatus>> {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
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
        Err(_) => {
            let status = child.try_wait().ok().flatten();
            if status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            Err(status)
        }
    }
}

/// A vendor key made with `leasehold vendor keygen`.
#[derive(Debug, Clone)]
pub struct VendorKey {
    pub path: PathBuf,
    pub kid: String,
    pub public_key: String,
}

pub fn keygen(path: &Path) -> VendorKey {
    let out = leasehold()
        .args(["vendor", "keygen", "--json", "--out"])
        .arg(path)
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    VendorKey {
        path: path.to_owned(),
        kid: v["kid"].as_str().unwrap().to_owned(),
        public_key: v["public_key"].as_str().unwrap().to_owned(),
    }
}

/// A temporary directory holding a node database and a vendor key, and the node serving
/// them while `node` is `Some`.
#[derive(Debug)]
pub struct Fixture {
    pub dir: TempDir,
    pub key: VendorKey,
    pub node: Option<Node>,
}

impl Fixture {
    /// A fresh key and database, with a node running on them.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(&dir.path().join("vendor.pem"));
        let node = Node::start(dir.path(), &key.path);
        Self {
            dir,
            key,
            node: Some(node),
        }
    }

    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("node is running")
    }

    /// Stops the node (killing it, as a crash would) and starts a new one on the same files.
    pub fn restart(&mut self) {
        drop(self.node.take());
        self.node = Some(Node::start(self.dir.path(), &self.key.path));
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `leasehold vendor --node URL --token TOKEN ARGS...`
    pub fn vendor(&self, args: &[&str]) -> Command {
        let mut cmd = leasehold();
        cmd.args(["vendor", "--node", &self.node().url, "--token", TOKEN])
            .args(args);
        cmd
    }

    /// Runs a vendor command with `--json`, expects success and returns the one JSON object.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.vendor(args).arg("--json").assert().success();
        let stdout = &out.get_output().stdout;
        serde_json::from_slice(stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no single JSON object ({e}): {}",
                String::from_utf8_lossy(stdout)
            )
        })
    }

    /// Runs a vendor command, expects failure and returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.vendor(args).assert().failure();
        String::from_utf8_lossy(&out.get_output().stderr).into_owned()
    }

    /// Runs a vendor command without `--json`, expects success and returns stdout.
    pub fn text(&self, args: &[&str]) -> String {
        let out = self.vendor(args).assert().success();
        String::from_utf8_lossy(&out.get_output().stdout).into_owned()
    }

    pub fn create_installation(&self, name: &str) -> String {
        let v = self.json(&["installation", "create", "--name", name]);
        v["id"].as_str().unwrap().to_owned()
    }

    pub fn add_server(&self, installation: &str, context: &str) -> String {
        let v = self.json(&[
            "server",
            "add",
            "--installation",
            installation,
            "--context",
            context,
        ]);
        assert_eq!(v["context"], context);
        v["guid"].as_str().unwrap().to_owned()
    }

    /// Grants a license and returns its id.
    pub fn grant(&self, server: &str, feature: &str, count: u32, extra: &[&str]) -> String {
        let count = count.to_string();
        let mut args = vec![
            "license",
            "grant",
            "--server",
            server,
            "--feature",
            feature,
            "--count",
            &count,
            "--maintenance",
            "2027-01-31",
        ];
        args.extend_from_slice(extra);
        let v = self.json(&args);
        v["id"].as_str().unwrap().to_owned()
    }
}

/// A `leasehold node serve` child process, killed when dropped.
#[derive(Debug)]
pub struct Node {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl Node {
    pub fn start(dir: &Path, signing_key: &Path) -> Self {
        let db = format!("sqlite://{}", dir.join("node.db").display());
        let log = dir.join("node.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = StdCommand::new(leasehold_path())
            .args(["node", "serve", "--db", &db, "--listen", "127.0.0.1:0"])
            .arg("--signing-key")
            .arg(signing_key)
            .args(["--admin-token", TOKEN])
            .env_remove("LEASEHOLD_NODE")
            .env_remove("LEASEHOLD_ADMIN_TOKEN")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads the ready line, then keeps draining so the node never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if let Some(url) = line.trim().strip_prefix(READY) {
                            let _ = tx.send(url.to_owned());
                            break;
                        }
                    }
                }
            }
            let _ = std::io::copy(&mut reader.into_inner(), &mut std::io::sink());
        });
        let mut node = Node {
            child,
            url: String::new(),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => node.url = url,
            Err(_) => {
                let status = node.child.try_wait().ok().flatten();
                panic!(
                    "node did not print {READY:?} (exit status {status:?}); its log:\n{}",
                    node.log_text()
                );
            }
        }
        node
    }

    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SERVER_READY: &str = "leasehold server listening on ";
pub const SERVER_TOKEN: &str = "license-server-token-0123456789";

/// A `leasehold server run` child process on free loopback ports, syncing with the fixture's
/// node under a given GUID; killed when dropped. Logs to `NAME.log` in the fixture.
#[derive(Debug)]
pub struct LicenseServer {
    child: Child,
    /// `http://127.0.0.1:PORT` of the lease API.
    pub lease_url: String,
    pub admin_url: String,
    log: PathBuf,
}

impl LicenseServer {
    /// Starts the server and waits for its ready line (it is not synced yet: see `sync`).
    pub fn start(f: &Fixture, name: &str, guid: &str) -> Self {
        let log = f.path(&format!("{name}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = StdCommand::new(leasehold_path());
        cmd.args(["server", "run", "--data-dir"])
            .arg(f.path(name))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--agent-tick", "1s", "--admin-token", SERVER_TOKEN])
            .args(["--vendor-key", &f.key.public_key])
            .args(["--node", &f.node().url, "--guid", guid])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(log_file);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LEASEHOLD_") {
                cmd.env_remove(name);
            }
        }
        match spawn_until_ready(cmd, SERVER_READY, Duration::from_secs(20)) {
            Ok((child, rest)) => {
                // "http://LEASE (admin http://ADMIN)"
                let (lease, admin) = rest
                    .strip_suffix(')')
                    .and_then(|r| r.split_once(" (admin "))
                    .unwrap_or_else(|| panic!("unexpected ready line: {rest:?}"));
                Self {
                    child,
                    lease_url: lease.to_owned(),
                    admin_url: admin.to_owned(),
                    log,
                }
            }
            Err(status) => panic!(
                "server did not print {SERVER_READY:?} (exit status {status:?}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    }

    /// `host:port` of the lease API, as a client's server list takes it.
    pub fn lease_addr(&self) -> &str {
        self.lease_url.trim_start_matches("http://")
    }

    /// `leasehold server sync-now`, expecting success.
    pub fn sync(&self) {
        let out = leasehold()
            .args(["server", "sync-now", "--json", "--admin", &self.admin_url])
            .args(["--token", SERVER_TOKEN])
            .timeout(Duration::from_secs(30))
            .assert()
            .success();
        let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        assert_eq!(v["ok"], true, "{v}\nserver log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LicenseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback address (`127.0.0.1:PORT`): bound once and released, for a process that
/// must come back on the same address after a restart. Another process could take the port
/// in between; on loopback in a test run that is rare enough.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

impl LicenseServer {
    /// Like [`LicenseServer::start`], on given lease and admin addresses (`127.0.0.1:PORT`),
    /// so that a restarted server is found where its clients look for it.
    pub fn start_on(f: &Fixture, name: &str, guid: &str, listen: &str, admin: &str) -> Self {
        let log = f.path(&format!("{name}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = StdCommand::new(leasehold_path());
        cmd.args(["server", "run", "--data-dir"])
            .arg(f.path(name))
            .args(["--listen", listen, "--admin-listen", admin])
            .args(["--agent-tick", "1s", "--admin-token", SERVER_TOKEN])
            .args(["--vendor-key", &f.key.public_key])
            .args(["--node", &f.node().url, "--guid", guid])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(log_file);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LEASEHOLD_") {
                cmd.env_remove(name);
            }
        }
        match spawn_until_ready(cmd, SERVER_READY, Duration::from_secs(20)) {
            Ok((child, rest)) => {
                let (lease, admin_url) = rest
                    .strip_suffix(')')
                    .and_then(|r| r.split_once(" (admin "))
                    .unwrap_or_else(|| panic!("unexpected ready line: {rest:?}"));
                Self {
                    child,
                    lease_url: lease.to_owned(),
                    admin_url: admin_url.to_owned(),
                    log,
                }
            }
            Err(status) => panic!(
                "server did not print {SERVER_READY:?} (exit status {status:?}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    }

    /// `leasehold server ARGS --admin URL --token TOKEN`
    pub fn admin(&self, args: &[&str]) -> Command {
        let mut cmd = leasehold();
        cmd.arg("server")
            .args(args)
            .args(["--admin", &self.admin_url, "--token", SERVER_TOKEN])
            .timeout(Duration::from_secs(30));
        cmd
    }

    /// `leasehold server status --json`.
    pub fn status(&self) -> Value {
        let out = self.admin(&["status", "--json"]).assert().success();
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    }

    /// `leasehold server sync-now --json`: the outcome when it succeeded, else its stderr.
    pub fn try_sync(&self) -> Result<Value, String> {
        let out = self.admin(&["sync-now", "--json"]).output().unwrap();
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["ok"], true, "{v}");
            Ok(v)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// SIGKILL, as a crash or power loss would; waits until the process is gone.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}
