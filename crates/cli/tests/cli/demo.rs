//! `leasehold demo` end to end: the real binary runs a node, a production and a backup
//! server and simulated clients; the test reads what it prints, asks the production server
//! for its status with the printed command, opens the dashboard, stops the primary with
//! `p` on stdin, sees the clients reach the backup, and quits with `q`. Every wait is
//! bounded; no timing is asserted beyond them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{ChildStdin, Command as StdCommand, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use leasehold_testkit::process::{without_leasehold_env, ChildGuard};
use serde_json::Value;

use crate::support::{leasehold, leasehold_path};

/// Five consecutive free loopback ports (checked by binding them; another process may still
/// take one before the demo does, which would fail the test with a clear error).
fn free_port_base() -> u16 {
    let start = 20_000 + (std::process::id() % 8_000) as u16 * 5;
    let mut base = start;
    loop {
        let bound: Vec<_> = (0..5)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if bound.len() == 5 {
            return base;
        }
        base = if base >= 60_000 { 20_000 } else { base + 5 };
        assert_ne!(base, start, "no five consecutive free ports");
    }
}

/// The demo process, killed if the test ends early.
struct Demo {
    child: ChildGuard,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: std::path::PathBuf,
}

impl Demo {
    /// Waits for a printed line containing `text` and returns it.
    fn wait_line(&mut self, text: &str, timeout: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(text)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "the demo did not print {text:?} within {timeout:?}; it printed:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                ),
            }
        }
    }

    fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
}

/// `leasehold server status --json --admin URL --token TOKEN`, as the demo suggests.
fn status(admin: &str, token: &str) -> Value {
    let out = leasehold()
        .args([
            "server", "status", "--json", "--admin", admin, "--token", token,
        ])
        .timeout(Duration::from_secs(20))
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

fn clients(admin: &str, token: &str) -> u64 {
    status(admin, token)["clients"].as_u64().unwrap()
}

/// Polls `check` every 500 ms until it holds, at most `timeout`.
fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The word after `key` in `line`.
fn after<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_once(key)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {key:?} in {line:?}"))
}

#[test]
fn the_demo_runs_a_whole_system_and_fails_over_on_p() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_base();
    let stderr = dir.path().join("demo.stderr");
    let mut cmd = StdCommand::new(leasehold_path());
    cmd.arg("demo")
        .arg("--dir")
        .arg(dir.path().join("demo"))
        .args(["--listen-base", &base.to_string(), "--clients", "3"])
        .args(["--duration", "40s"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap());
    without_leasehold_env(&mut cmd);
    let mut child = ChildGuard(cmd.spawn().unwrap());
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut demo = Demo {
        child,
        stdin,
        lines,
        seen: Vec::new(),
        stderr,
    };

    // What it prints: both dashboards with their passwords, the node, the GUIDs, the keys.
    let dashboard = demo.wait_line("production dashboard: ", Duration::from_secs(30));
    let admin = after(&dashboard, "production dashboard:").to_owned();
    assert_eq!(
        admin,
        format!("http://127.0.0.1:{}", base + 2),
        "{dashboard}"
    );
    assert!(!after(&dashboard, "password:").is_empty(), "{dashboard}");
    let backup_dashboard = demo.wait_line("backup dashboard: ", Duration::from_secs(5));
    let backup_admin = after(&backup_dashboard, "backup dashboard:").to_owned();
    assert_eq!(backup_admin, format!("http://127.0.0.1:{}", base + 4));
    demo.wait_line("Press p + Enter", Duration::from_secs(5));
    let banner = demo.seen.join("\n");
    let node_line = demo
        .seen
        .iter()
        .find(|l| l.trim_start().starts_with("license node"))
        .unwrap_or_else(|| panic!("no node line in:\n{banner}"));
    assert!(
        node_line.contains(&format!("http://127.0.0.1:{base}")),
        "{banner}"
    );
    // The vendor console's address and its admin account, which signs in with the CLI too.
    let console = demo.wait_line("vendor console: ", Duration::from_secs(1));
    assert_eq!(
        after(&console, "vendor console:"),
        format!("http://127.0.0.1:{base}/console"),
        "{console}"
    );
    assert_eq!(after(&console, "account:"), "admin", "{console}");
    let console_password = after(&console, "password:").to_owned();
    let node_url = format!("http://127.0.0.1:{base}");
    let noted = std::fs::read_to_string(dir.path().join("demo/demo-passwords.txt")).unwrap();
    assert!(
        noted.contains(&format!("console-admin {console_password}")),
        "{noted}"
    );
    let out = leasehold()
        .args(["vendor", "--node", &node_url, "login", "--name", "admin"])
        .args(["--password-stdin", "--print-token"])
        .write_stdin(format!("{console_password}\n"))
        .assert()
        .success();
    let vendor_token = String::from_utf8_lossy(&out.get_output().stdout)
        .trim()
        .to_owned();
    let shown = leasehold()
        .args(["vendor", "--node", &node_url, "--token", &vendor_token])
        .args(["installation", "list", "--json"])
        .assert()
        .success();
    let shown: Value = serde_json::from_slice(&shown.get_output().stdout).unwrap();
    assert_eq!(
        shown["installations"][0]["name"], "Leasehold demo",
        "{shown}"
    );
    let server_line = |name: &str| {
        demo.seen
            .iter()
            .find(|l| l.trim_start().starts_with(&format!("{name} server")))
            .unwrap_or_else(|| panic!("no {name} server line in:\n{banner}"))
            .clone()
    };
    let (production, backup) = (server_line("production"), server_line("backup"));
    assert!(production.contains('{') && backup.contains('{'), "{banner}");
    let backup_token = after(&backup, "admin token:").to_owned();
    let try_line = demo.wait_line("  leasehold server status --admin ", Duration::from_secs(1));
    let token = after(&try_line, "--token").to_owned();
    assert_eq!(token, after(&production, "admin token:"), "{banner}");

    // The production server is synced with both licenses, and the clients use it.
    let s = status(&admin, &token);
    assert_eq!(s["state"], "ok", "{s}");
    assert_eq!(s["licenses"].as_array().unwrap().len(), 2, "{s}");
    assert_eq!(s["context"], "production", "{s}");
    let b = status(&backup_admin, &backup_token);
    assert_eq!(b["state"], "ok", "{b}");
    assert_eq!(b["context"], "backup", "{b}");
    eventually(
        Duration::from_secs(15),
        "clients on the production server",
        || clients(&admin, &token) > 0,
    );

    // The dashboard answers its sign-in page.
    let mut conn = TcpStream::connect(("127.0.0.1", base + 2)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // p stops the primary; the clients move to the backup.
    demo.send("p\n");
    demo.wait_line("production server stopped", Duration::from_secs(20));
    eventually(
        Duration::from_secs(25),
        "clients on the backup server",
        || clients(&backup_admin, &backup_token) > 0,
    );

    // q stops everything cleanly.
    demo.send("q\n");
    demo.wait_line("stopping the demo", Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not exit after q");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        exit.success(),
        "exit {exit:?}; it printed:\n{}\nstderr:\n{}",
        demo.seen.join("\n"),
        std::fs::read_to_string(&demo.stderr).unwrap_or_default()
    );
    demo.wait_line("demo stopped", Duration::from_secs(5));
}
