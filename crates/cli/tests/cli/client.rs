//! `leasehold client ...` end to end: the real binary as a client of real `leasehold server
//! run` processes synced with a real `leasehold node serve`. Every wait is bounded and
//! generous; no timing is asserted.

use std::time::Duration;

use leasehold_testkit::release_date;
use serde_json::Value;

use crate::support::{leasehold, Fixture, LicenseServer};

/// A node with an installation: a production server with 5 `tts`, and a backup server with
/// the 5 `tts` that back them up. Returns the fixture and both GUIDs.
fn installation() -> (Fixture, String, String) {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    let prod = f.add_server(&inst, "production");
    let backup = f.add_server(&inst, "backup");
    let lic = f.grant(&prod, "tts", 5, &[]);
    f.grant(&backup, "tts", 5, &["--backs-up", &lic]);
    (f, prod, backup)
}

/// `leasehold client --servers SERVERS --product-release RELEASE ARGS...` (the kit's
/// release date).
fn client(servers: &str, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = leasehold();
    cmd.args(["client", "--servers", servers])
        .args(["--product-release", &release_date().to_string()])
        .args(args)
        .timeout(Duration::from_secs(30));
    cmd
}

fn json_line(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not one JSON object ({e}): {text:?}"))
}

/// The JSON lines `watch --json` printed (it exits by itself with `--duration`).
fn watch_lines(cmd: &mut assert_cmd::Command) -> Vec<Value> {
    let out = cmd.assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let lines: Vec<Value> = stdout.lines().map(json_line).collect();
    assert!(!lines.is_empty(), "watch printed nothing");
    lines
}

#[test]
fn acquire_and_watch_against_a_license_server() {
    let (f, prod, _) = installation();
    let server = LicenseServer::start(&f, "prod", &prod);
    server.sync_now();
    let addr = server.lease_addr();

    let out = client(addr, &["acquire", "tts", "--json"])
        .assert()
        .success();
    let v = json_line(String::from_utf8_lossy(&out.get_output().stdout).trim());
    assert_eq!(v["feature"], "tts", "{v}");
    assert_eq!(v["granted"], true, "{v}");
    assert_eq!(v["denial"], Value::Null, "{v}");
    assert_eq!(v["server"], "primary", "{v}");
    assert_eq!(v["server_addr"], server.lease_url.as_str(), "{v}");

    // The text form, with the servers from the environment.
    let out = leasehold()
        .args(["client", "acquire", "tts", "--refresh", "500ms"])
        .env("LEASEHOLD_SERVERS", addr)
        .timeout(Duration::from_secs(30))
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.starts_with("granted: tts") && text.contains("primary"),
        "{text}"
    );

    // A feature without a license: denied, says why, exits non-zero.
    let out = client(addr, &["acquire", "ocr", "--json"])
        .assert()
        .failure();
    let v = json_line(String::from_utf8_lossy(&out.get_output().stdout).trim());
    assert_eq!(v["granted"], false, "{v}");
    assert_eq!(v["denial"], "not_licensed", "{v}");
    assert_eq!(v["server"], "primary", "{v}");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("error: ocr: license denied") && stderr.contains("no license"),
        "{stderr}"
    );
    let out = client(addr, &["acquire", "ocr"]).assert().failure();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.starts_with("denied: ocr: not_licensed"), "{text}");

    let lines = watch_lines(&mut client(
        addr,
        &[
            "watch",
            "--feature",
            "tts",
            "--hold",
            "3",
            "--json",
            "--duration",
            "3s",
            "--refresh",
            "200ms",
        ],
    ));
    let last = lines.last().unwrap();
    assert_eq!(last["server"], "primary", "{lines:?}");
    assert_eq!(last["server_addr"], server.lease_url.as_str(), "{lines:?}");
    assert_eq!(last["held"], 3, "{lines:?}");
    assert!(last["quota"].as_u64().unwrap() >= 3, "{lines:?}");
    assert!(
        last["since_last_ok_ms"].as_u64().unwrap() < 2_000,
        "{lines:?}"
    );
    for line in &lines {
        for key in ["server", "server_addr", "quota", "held", "denied"] {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
    }
}

#[test]
fn watch_uses_the_backup_server_when_the_primary_is_dead() {
    let (f, _, backup) = installation();
    let server = LicenseServer::start(&f, "backup", &backup);
    server.sync_now();
    // A loopback port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };

    let lines = watch_lines(&mut client(
        &dead,
        &[
            "--backup-servers",
            server.lease_addr(),
            "watch",
            "--feature",
            "tts",
            "--hold",
            "2",
            "--json",
            "--duration",
            "4s",
            "--refresh",
            "200ms",
            "--failover-after",
            "600ms",
        ],
    ));
    let last = lines.last().unwrap();
    assert_eq!(
        last["server"],
        "backup",
        "{lines:?}\nserver log:\n{}",
        server.log_text()
    );
    assert_eq!(last["server_addr"], server.lease_url.as_str(), "{lines:?}");
    assert_eq!(last["held"], 2, "{lines:?}");
    assert!(
        last["last_error"].as_str().unwrap().contains(&dead),
        "why the primary is not used: {lines:?}"
    );
}

#[test]
fn without_a_reachable_server_acquire_is_denied_and_bad_settings_are_refused() {
    let out = leasehold()
        .args(["client", "acquire", "tts"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("--servers"), "{stderr}");

    let out = client("bad host", &["acquire", "tts"]).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("\"bad host\""), "{stderr}");

    let out = client(
        "127.0.0.1:9",
        &["acquire", "tts", "--refresh", "5s", "--flush-after", "1s"],
    )
    .assert()
    .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("--flush-after"), "{stderr}");

    // Nothing answers on port 9: after the bounded wait the license is denied as such.
    let out = client(
        "127.0.0.1:9",
        &["acquire", "tts", "--json", "--wait", "300ms"],
    )
    .assert()
    .failure();
    let v = json_line(String::from_utf8_lossy(&out.get_output().stdout).trim());
    assert_eq!(v["denial"], "not_connected", "{v}");
    assert_eq!(v["server"], "none", "{v}");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("127.0.0.1:9"), "the last error: {stderr}");
}

#[test]
fn only_a_client_with_the_installations_key_is_leased_and_the_key_rotates() {
    let (f, prod, _) = installation();
    let server = LicenseServer::start(&f, "prod", &prod);
    server.sync_now();
    let addr = server.lease_addr();
    let key_file = f.path("prod").join("client-key");

    // `client-key` prints the key alone on its first line, the one in the data directory.
    let text = server.text(&["client-key"]);
    let key = text.lines().next().unwrap().to_owned();
    assert_eq!(key, leasehold_testkit::CLIENT_KEY);

    // No key: refused before it asks, saying how to give one.
    let out = client(addr, &["acquire", "tts"])
        .env_remove("LEASEHOLD_CLIENT_KEY")
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("no client key") && stderr.contains("--client-key-file"),
        "{stderr}"
    );
    // A wrong key: the server refuses (401) and says so; nothing is leased.
    let wrong = f.path("wrong-key");
    std::fs::write(&wrong, "lhck_wrong\n").unwrap();
    let out = client(
        addr,
        &["--client-key-file", wrong.to_str().unwrap(), "--wait", "2s"],
    )
    .args(["acquire", "tts", "--json"])
    .env_remove("LEASEHOLD_CLIENT_KEY")
    .assert()
    .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("401") && stderr.contains("client key"),
        "{stderr}"
    );
    assert!(server.json(&["clients"])["clients"]
        .as_array()
        .unwrap()
        .is_empty());
    // The server's own key file works as LEASEHOLD_CLIENT_KEY_FILE.
    client(addr, &["acquire", "tts"])
        .env_remove("LEASEHOLD_CLIENT_KEY")
        .env("LEASEHOLD_CLIENT_KEY_FILE", &key_file)
        .assert()
        .success();

    // Rotate: a new key; the old one still works for the overlap.
    let rotated = server.json(&["client-key", "--rotate"]);
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert_eq!(rotated["previous_valid_until"].as_array().unwrap().len(), 1);
    client(addr, &["acquire", "tts"]).assert().success();
    client(addr, &["acquire", "tts"])
        .env("LEASEHOLD_CLIENT_KEY", &new_key)
        .assert()
        .success();
    // A malformed key for --set is refused and changes nothing.
    let e = server.fails(&["client-key", "--set", "lhck_short"]);
    assert!(e.contains("64 hexadecimal"), "{e}");
    assert_eq!(server.json(&["client-key"])["key"], new_key.as_str());
    // Setting the key (as a backup server is given the primary's) takes it.
    let set = server.json(&["client-key", "--set", &key]);
    assert_eq!(set["key"], key.as_str());
}

#[test]
fn server_clients_names_each_process_with_its_address_and_holdings() {
    let (f, prod, _) = installation();
    let server = LicenseServer::start(&f, "prod", &prod);
    server.sync_now();
    let addr = server.lease_addr();
    let watch = |name: Option<&str>, hold: &str| {
        let mut cmd = std::process::Command::new(crate::support::leasehold_path());
        leasehold_testkit::process::without_leasehold_env(&mut cmd);
        cmd.env("LEASEHOLD_CLIENT_KEY", leasehold_testkit::CLIENT_KEY)
            .args(["client", "--servers", addr, "--refresh", "200ms"])
            .args(["--product-release", &release_date().to_string()]);
        if let Some(name) = name {
            cmd.env("LEASEHOLD_CLIENT_NAME", name);
        }
        cmd.args([
            "watch",
            "--feature",
            "tts",
            "--hold",
            hold,
            "--duration",
            "60s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        leasehold_testkit::process::ChildGuard(cmd.spawn().unwrap())
    };
    let _named = watch(Some("render-farm-3/encoder"), "2");
    let unnamed = watch(None, "1");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let clients = loop {
        let v = server.json(&["clients"]);
        let list = v["clients"].as_array().unwrap().clone();
        let held: u64 = list
            .iter()
            .flat_map(|c| c["features"].as_array().unwrap().clone())
            .map(|f| f["in_use"].as_u64().unwrap())
            .sum();
        if list.len() == 2 && held == 3 {
            break list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "clients never held 3: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // By name: render-farm before the default name (the host name, then the program).
    let named = clients
        .iter()
        .find(|c| c["name"] == "render-farm-3/encoder")
        .unwrap_or_else(|| panic!("{clients:?}"));
    assert_eq!(named["address"], "127.0.0.1", "{named}");
    assert_eq!(
        named["product_release"],
        release_date().to_string().as_str()
    );
    assert!(named["connected_since"].is_string(), "{named}");
    let default = clients.iter().find(|c| c != &named).unwrap();
    let pid = unnamed.0.id();
    let default_name = default["name"].as_str().unwrap();
    assert!(
        default_name.ends_with(&format!("/leasehold[{pid}]")),
        "the default name is hostname/program[pid]: {default_name}"
    );

    let found = server.json(&["clients", "--search", "RENDER-farm"]);
    assert_eq!(found["clients"].as_array().unwrap().len(), 1, "{found}");
    let table = server.text(&["clients", "--sort", "in_use"]);
    let first_row = table.lines().nth(1).unwrap_or_default();
    assert!(
        first_row.starts_with("render-farm-3/encoder")
            && first_row.contains("127.0.0.1")
            && first_row.contains("tts 2/"),
        "{table}"
    );
    let out = server
        .admin(&["clients", "--sort", "size"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("sort must be one of"), "{stderr}");

    // A name the servers would refuse is caught before the client starts.
    let long = "n".repeat(leasehold_proto::MAX_CLIENT_NAME_CHARS + 1);
    let out = client(addr, &["--name", &long, "acquire", "tts"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("client name (--name)") && stderr.contains("at most"),
        "{stderr}"
    );
}
