//! What the CLI tests need of the `leasehold` binary itself, on the test kit's process
//! helpers: the command with no settings leaking in, a vendor key made with `vendor keygen`,
//! `node serve` (with a first admin account made through the bootstrap token, whose own
//! token the vendor commands carry) and `server run` child processes (killed on drop) with
//! the commands that drive them.

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use leasehold_testkit::process::{log_file, spawn_until_ready, without_leasehold_env, ChildGuard};
use leasehold_testkit::{
    maintenance_date, share_client_key, CLIENT_KEY, NODE_ADMIN, NODE_TOKEN, SERVER_TOKEN,
    STAFF_PASSWORD,
};
use serde_json::Value;
use tempfile::TempDir;

const NODE_READY: &str = "leasehold node listening on ";
const SERVER_READY: &str = "leasehold server listening on ";

pub fn leasehold_path() -> PathBuf {
    assert_cmd::cargo::cargo_bin("leasehold")
}

/// A `leasehold` command with no settings leaking in from the environment.
pub fn leasehold() -> Command {
    let mut cmd = Command::new(leasehold_path());
    cmd.env_remove("LEASEHOLD_NODE")
        .env_remove("LEASEHOLD_ADMIN_TOKEN")
        .env_remove("LEASEHOLD_VENDOR_TOKEN")
        // No credentials saved by a developer's `vendor login` are found; a test that signs
        // in sets its own directory.
        .env("XDG_CONFIG_HOME", "/nonexistent/leasehold-cli-tests")
        .env_remove("LEASEHOLD_SERVERS")
        .env_remove("LEASEHOLD_BACKUP_SERVERS")
        .env_remove("LEASEHOLD_CLIENT_KEY_FILE")
        .env_remove("LEASEHOLD_CLIENT_NAME")
        // Every test server's data directory holds this key (see `LicenseServer::command`).
        .env("LEASEHOLD_CLIENT_KEY", CLIENT_KEY)
        .env("RUST_LOG", "warn")
        .timeout(Duration::from_secs(60));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LEASEHOLD_SERVER_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// The text of a child's log file (empty when there is none yet).
pub fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
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

/// Creates the node's first admin account, [`NODE_ADMIN`] with [`STAFF_PASSWORD`], with
/// the bootstrap token (`vendor account add`), signs in as it (`vendor login
/// --print-token`) and returns its personal token. `ca_file`: an HTTPS node's authority.
pub fn bootstrap_admin(url: &str, ca_file: Option<&Path>) -> String {
    let vendor = || {
        let mut cmd = leasehold();
        cmd.args(["vendor", "--node", url]);
        if let Some(ca) = ca_file {
            cmd.env("SSL_CERT_FILE", ca);
        }
        cmd
    };
    vendor()
        .args(["--token", NODE_TOKEN, "--reason", "first admin"])
        .args(["account", "add", "--name", NODE_ADMIN, "--role", "admin"])
        .arg("--password-stdin")
        .write_stdin(format!("{STAFF_PASSWORD}\n"))
        .assert()
        .success();
    login_token(vendor(), NODE_ADMIN, STAFF_PASSWORD)
}

/// `vendor login --name NAME --password-stdin --print-token` on `vendor` (a `leasehold
/// vendor --node URL` command): the new token.
pub fn login_token(mut vendor: Command, name: &str, password: &str) -> String {
    let out = vendor
        .args(["login", "--name", name, "--password-stdin", "--print-token"])
        .write_stdin(format!("{password}\n"))
        .assert()
        .success();
    let token = String::from_utf8(out.get_output().stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    assert!(token.starts_with("lhv_"), "{token}");
    token
}

/// A temporary directory holding a node database and a vendor key, and the node serving
/// them while `node` is `Some`.
#[derive(Debug)]
pub struct Fixture {
    pub dir: TempDir,
    pub key: VendorKey,
    pub node: Option<Node>,
    /// The authority of an HTTPS node's certificate, which the vendor commands are told to
    /// trust (`SSL_CERT_FILE`).
    pub ca_file: Option<PathBuf>,
    /// The personal token of the node's first admin ([`NODE_ADMIN`]), which the vendor
    /// commands carry.
    pub admin_token: String,
}

impl Fixture {
    /// A fresh key and database, with a node running on them and its first admin.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(&dir.path().join("vendor.pem"));
        let node = Node::start(dir.path(), &key.path);
        Self::on(dir, key, node, None)
    }

    /// The fixture of a node just started on `dir` and `key`: its first admin is made now.
    pub fn on(dir: TempDir, key: VendorKey, node: Node, ca_file: Option<PathBuf>) -> Self {
        let admin_token = bootstrap_admin(&node.url, ca_file.as_deref());
        Self {
            dir,
            key,
            node: Some(node),
            ca_file,
            admin_token,
        }
    }

    /// Like [`Fixture::start`] with the node serving HTTPS: a certificate for 127.0.0.1
    /// issued by the returned authority.
    pub fn start_https() -> (Self, leasehold_testkit::tls::TestCa) {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(&dir.path().join("vendor.pem"));
        let ca = leasehold_testkit::tls::TestCa::new(dir.path(), "vendor");
        let leaf = ca.issue(dir.path(), "node");
        let db = format!("sqlite://{}", dir.path().join("node.db").display());
        let node = Node::start_args(
            dir.path(),
            &key.path,
            &db,
            "node",
            &[
                "--tls-cert",
                leaf.cert_file.to_str().unwrap(),
                "--tls-key",
                leaf.key_file.to_str().unwrap(),
            ],
        );
        let f = Self::on(dir, key, node, Some(ca.ca_file.clone()));
        (f, ca)
    }

    pub fn node(&self) -> &Node {
        self.node.as_ref().expect("node is running")
    }

    /// Stops the node (killing it, as a crash would) and starts a new one on the same files.
    pub fn restart(&mut self) {
        drop(self.node.take());
        self.node = Some(Node::start(self.dir.path(), &self.key.path));
    }

    /// The `server run` flags that make a server of this fixture's: trusting its key,
    /// syncing with its node under `guid` (no admin token: [`LicenseServer::run`] adds one).
    pub fn server_args(&self, guid: &str) -> Vec<String> {
        [
            "--vendor-key",
            &self.key.public_key,
            "--node",
            &self.node().url,
            "--guid",
            guid,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `leasehold vendor --node URL --token ADMIN_TOKEN ARGS...` (the first admin's token)
    pub fn vendor(&self, args: &[&str]) -> Command {
        let mut cmd = self.vendor_as(&self.admin_token);
        cmd.args(args);
        cmd
    }

    /// `leasehold vendor --node URL --token TOKEN`, for more arguments.
    pub fn vendor_as(&self, token: &str) -> Command {
        let mut cmd = self.vendor_without_token();
        cmd.args(["--token", token]);
        cmd
    }

    /// `leasehold vendor --node URL`, for more arguments (a token of its own, or none).
    pub fn vendor_without_token(&self) -> Command {
        let mut cmd = leasehold();
        cmd.args(["vendor", "--node", &self.node().url]);
        if let Some(ca) = &self.ca_file {
            cmd.env("SSL_CERT_FILE", ca);
        }
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

    /// Runs a vendor command with `token`, expects failure and returns its stderr.
    pub fn fails_as(&self, token: &str, args: &[&str]) -> String {
        let out = self.vendor_as(token).args(args).assert().failure();
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

    /// Grants a license (maintenance to the kit's date) and returns its id.
    pub fn grant(&self, server: &str, feature: &str, count: u32, extra: &[&str]) -> String {
        let count = count.to_string();
        let maintenance = maintenance_date().to_string();
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
            &maintenance,
        ];
        args.extend_from_slice(extra);
        let v = self.json(&args);
        v["id"].as_str().unwrap().to_owned()
    }
}

/// A `leasehold node serve` child process, killed when dropped.
#[derive(Debug)]
pub struct Node {
    child: ChildGuard,
    pub url: String,
    pub log: PathBuf,
}

impl Node {
    pub fn start(dir: &Path, signing_key: &Path) -> Self {
        let db = format!("sqlite://{}", dir.join("node.db").display());
        Self::start_db(dir, signing_key, &db, "node")
    }

    /// A node on database `db`, logging to `dir/NAME.log`.
    pub fn start_db(dir: &Path, signing_key: &Path, db: &str, name: &str) -> Self {
        Self::start_args(dir, signing_key, db, name, &[])
    }

    /// [`Node::start_db`] with more flags of `node serve`.
    pub fn start_args(
        dir: &Path,
        signing_key: &Path,
        db: &str,
        name: &str,
        extra: &[&str],
    ) -> Self {
        Self::start_logging(dir, signing_key, db, name, extra, "info")
    }

    /// [`Node::start_args`] logging at `rust_log` (`RUST_LOG`).
    pub fn start_logging(
        dir: &Path,
        signing_key: &Path,
        db: &str,
        name: &str,
        extra: &[&str],
        rust_log: &str,
    ) -> Self {
        let mut all = vec!["--admin-token", NODE_TOKEN];
        all.extend_from_slice(extra);
        Self::start_flags(dir, signing_key, db, name, &all, rust_log)
    }

    /// A node on `db` with exactly these flags besides its database, address and key: no
    /// bootstrap token unless they hold `--admin-token`.
    pub fn start_flags(
        dir: &Path,
        signing_key: &Path,
        db: &str,
        name: &str,
        extra: &[&str],
        rust_log: &str,
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let mut cmd = StdCommand::new(leasehold_path());
        cmd.args(["node", "serve", "--db", db, "--listen", "127.0.0.1:0"])
            .arg("--signing-key")
            .arg(signing_key)
            .args(extra)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stderr(log_file(&log));
        without_leasehold_env(&mut cmd);
        match spawn_until_ready(cmd, NODE_READY, Duration::from_secs(60)) {
            Ok((child, url)) => Node { child, url, log },
            Err(status) => panic!(
                "node did not print {NODE_READY:?} (exit status {status:?}); its log:\n{}",
                read_log(&log)
            ),
        }
    }
}

impl Node {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }
}

/// A `leasehold server run` child process, killed when dropped. Logs to `DATA_DIR.log`.
#[derive(Debug)]
pub struct LicenseServer {
    child: ChildGuard,
    /// `http://127.0.0.1:PORT` of the lease API.
    pub lease_url: String,
    pub admin_url: String,
    pub log: PathBuf,
    /// The admin token its admin commands are sent with.
    pub token: String,
    /// The authority its admin commands trust (`SSL_CERT_FILE`), when it serves HTTPS.
    pub ca_file: Option<PathBuf>,
}

impl LicenseServer {
    /// `leasehold server run --data-dir DIR --listen LISTEN --admin-listen ADMIN --agent-tick 1s
    /// ARGS` (flushing, and recording that it is alive, at every tick from the start), with
    /// stderr appended to `DIR.log`; returns the command and the log's path.
    pub fn command(
        data_dir: &Path,
        listen: &str,
        admin: &str,
        args: &[&str],
    ) -> (StdCommand, PathBuf) {
        let log = data_dir.with_extension("log");
        share_client_key(data_dir);
        let mut cmd = StdCommand::new(leasehold_path());
        cmd.args(["server", "run", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", listen, "--admin-listen", admin])
            .args(["--agent-tick", "1s"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(log_file(&log));
        without_leasehold_env(&mut cmd);
        (cmd, log)
    }

    /// Spawns `cmd` and waits for its ready line; `token` is what its admin commands send.
    pub fn spawn(cmd: StdCommand, log: PathBuf, token: &str) -> Self {
        match spawn_until_ready(cmd, SERVER_READY, Duration::from_secs(20)) {
            Ok((child, rest)) => {
                // "http://LEASE (admin http://ADMIN)"
                let (lease, admin) = rest
                    .strip_suffix(')')
                    .and_then(|r| r.split_once(" (admin "))
                    .unwrap_or_else(|| panic!("unexpected ready line: {rest:?}"));
                let loopback = |u: &str| {
                    u.starts_with("http://127.0.0.1:") || u.starts_with("https://127.0.0.1:")
                };
                assert!(loopback(lease) && loopback(admin), "{rest}");
                Self {
                    child,
                    lease_url: lease.to_owned(),
                    admin_url: admin.to_owned(),
                    log,
                    token: token.to_owned(),
                    ca_file: None,
                }
            }
            Err(status) => panic!(
                "server did not print {SERVER_READY:?} (exit status {status:?}); its log:\n{}",
                read_log(&log)
            ),
        }
    }

    /// A server on `data_dir` and free loopback ports with [`SERVER_TOKEN`] and `args`.
    pub fn run(data_dir: &Path, args: &[&str]) -> Self {
        let mut all = vec!["--admin-token", SERVER_TOKEN];
        all.extend_from_slice(args);
        let (cmd, log) = Self::command(data_dir, "127.0.0.1:0", "127.0.0.1:0", &all);
        Self::spawn(cmd, log, SERVER_TOKEN)
    }

    /// A server on the fixture's `name` directory and free loopback ports, trusting its key
    /// and syncing with its node under `guid` (it is not synced yet: see `sync_now`).
    pub fn start(f: &Fixture, name: &str, guid: &str) -> Self {
        Self::start_on(f, name, guid, "127.0.0.1:0", "127.0.0.1:0")
    }

    /// Like [`LicenseServer::start`], on given lease and admin addresses (`127.0.0.1:PORT`),
    /// so that a restarted server is found where its clients look for it.
    pub fn start_on(f: &Fixture, name: &str, guid: &str, listen: &str, admin: &str) -> Self {
        let mut args = vec!["--admin-token".to_owned(), SERVER_TOKEN.to_owned()];
        args.extend(f.server_args(guid));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (cmd, log) = Self::command(&f.path(name), listen, admin, &args);
        Self::spawn(cmd, log, SERVER_TOKEN)
    }

    /// `host:port` of the lease API, as a client's server list takes it.
    pub fn lease_addr(&self) -> &str {
        self.lease_url.trim_start_matches("http://")
    }

    /// Every command of this server's is told to trust `ca_file` (an HTTPS server's).
    pub fn trusting(mut self, ca_file: &Path) -> Self {
        self.ca_file = Some(ca_file.to_path_buf());
        self
    }

    /// `leasehold server ARGS --admin URL --token TOKEN`
    pub fn admin(&self, args: &[&str]) -> Command {
        let mut cmd = leasehold();
        cmd.arg("server")
            .args(args)
            .args(["--admin", &self.admin_url, "--token", &self.token])
            .timeout(Duration::from_secs(30));
        if let Some(ca) = &self.ca_file {
            cmd.env("SSL_CERT_FILE", ca);
        }
        cmd
    }

    /// Runs an admin command with `--json`, expects success and returns the one JSON object.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.admin(args).arg("--json").assert().success();
        let stdout = &out.get_output().stdout;
        serde_json::from_slice(stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no single JSON object ({e}): {}\nserver log:\n{}",
                String::from_utf8_lossy(stdout),
                self.log_text()
            )
        })
    }

    /// Runs an admin command without `--json`, expects success and returns stdout.
    pub fn text(&self, args: &[&str]) -> String {
        let out = self.admin(args).assert().success();
        String::from_utf8_lossy(&out.get_output().stdout).into_owned()
    }

    /// Runs an admin command, expects failure and returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.admin(args).assert().failure();
        String::from_utf8_lossy(&out.get_output().stderr).into_owned()
    }

    /// `leasehold server status --json`.
    pub fn status(&self) -> Value {
        self.json(&["status"])
    }

    /// `leasehold server sync-now --json`, expecting a successful sync; its outcome.
    pub fn sync_now(&self) -> Value {
        let v = self.json(&["sync-now"]);
        assert_eq!(v["ok"], true, "{v}\nserver log:\n{}", self.log_text());
        v
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

    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit and returns whether it exited successfully.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash or power loss would; waits until the process is gone.
    pub fn kill9(self) {
        self.child.kill9();
    }
}
