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
        if name.to_string_lossy().starts_with("LEASEHOLD_") {
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
