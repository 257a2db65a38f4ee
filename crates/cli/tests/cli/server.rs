//! `leasehold server ...` end to end: `server run` as a real child process against a real
//! `leasehold node serve`, administered through the real admin commands, with leases asked
//! over HTTP as a client would. Covers online and air-gapped sync, a crash (SIGKILL) and
//! restart, the data-directory lock, contexts, and configuration errors.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use leasehold_testkit::server::{client_id, lease_request};
use leasehold_testkit::{maintenance_date, vendor_key, SERVER_TOKEN};
use serde_json::Value;

use crate::support::{leasehold, leasehold_path, read_log, Fixture, LicenseServer};

impl LicenseServer {
    /// One lease refresh of client `client` (the kit's `client_id`) as a client sends it;
    /// returns the HTTP status and the answer.
    fn lease(&self, client: u8, feature: &str, held: Held) -> (u16, Value) {
        let request = lease_request(client, feature, held.in_use, held.want, held.quota);
        let url = format!("{}/v1/lease", self.lease_url);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth(leasehold_testkit::CLIENT_KEY)
                .json(&request)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        })
    }

    /// The quota granted for `feature`, asserting the request succeeded.
    fn quota(&self, client: u8, feature: &str, held: Held) -> (u64, Value) {
        let (status, answer) = self.lease(client, feature, held);
        assert_eq!(status, 200, "{answer}");
        let quota = answer["features"][feature]["quota"].as_u64().unwrap();
        (quota, answer)
    }
}

#[derive(Debug, Clone, Copy)]
struct Held {
    in_use: u32,
    want: u32,
    quota: u32,
}

/// A node with an installation, a server of `context` and a 5-seat `asr.en-US` license on
/// it (plus a 2-seat `tts` that expires in 2028). Returns the fixture and the server GUID.
fn licensed(context: &str) -> (Fixture, String) {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    let guid = f.add_server(&inst, context);
    f.grant(&guid, "asr.en-US", 5, &[]);
    f.grant(&guid, "tts", 2, &["--expires", "2028-06-30"]);
    (f, guid)
}

fn key_args(f: &Fixture) -> Vec<String> {
    vec!["--vendor-key".into(), f.key.public_key.clone()]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn feature_row<'a>(status: &'a Value, feature: &str) -> &'a Value {
    status["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["feature"] == feature)
        .unwrap_or_else(|| panic!("no {feature} license in {status}"))
}

#[test]
fn a_server_syncs_with_a_node_and_serves_leases() {
    let (f, guid) = licensed("production");
    let maintenance = maintenance_date().to_string();
    let data = f.path("server");
    let mut args = key_args(&f);
    args.extend(["--node".into(), f.node().url.clone()]);
    let server = LicenseServer::run(&data, &strs(&args));

    let status = server.status();
    assert_eq!(status["state"], "unconfigured", "{status}");
    assert!(
        status["reason"].as_str().unwrap().contains("set-guid"),
        "{status}"
    );
    let (code, answer) = server.lease(
        1,
        "asr.en-US",
        Held {
            in_use: 0,
            want: 1,
            quota: 0,
        },
    );
    assert_eq!(
        (code, &answer["error"]),
        (503, &Value::from("not_ready")),
        "{answer}"
    );

    // A bad GUID is refused before any request.
    let stderr = server.fails(&["set-guid", "DF9960A1"]);
    assert!(stderr.contains("GUID"), "{stderr}");
    let set = server.json(&["set-guid", &guid]);
    assert_eq!(set["guid"], guid.as_str());

    let outcome = server.sync_now();
    assert_eq!(outcome["licenses"], 2, "{outcome}");
    assert!(outcome["serial"].as_u64().unwrap() >= 1, "{outcome}");
    assert_eq!(outcome["node"], f.node().url.as_str());

    let status = server.status();
    assert_eq!(status["state"], "ok", "{status}");
    assert_eq!(status["reason"], Value::Null);
    assert_eq!(status["guid"], guid.as_str());
    assert_eq!(status["context"], "production");
    assert!(status["last_sync"].is_string(), "{status}");
    assert!(status["next_sync"].is_string(), "{status}");
    assert!(status["not_after"].is_string(), "{status}");
    assert!(
        status["grace_days_left"].as_i64().unwrap() >= 59,
        "{status}"
    );
    assert_eq!(status["learning_until"], Value::Null, "{status}");
    assert_eq!(status["nodes"][0]["url"], f.node().url.as_str());
    assert!(status["nodes"][0]["last_ok"].is_string(), "{status}");
    let asr = feature_row(&status, "asr.en-US");
    assert_eq!(asr["count"], 5);
    assert_eq!(asr["maintenance_until"], maintenance.as_str());
    assert_eq!(asr["expires"], Value::Null);
    assert_eq!(feature_row(&status, "tts")["expires"], "2028-06-30");

    let (quota, answer) = server.quota(
        1,
        "asr.en-US",
        Held {
            in_use: 0,
            want: 3,
            quota: 0,
        },
    );
    assert_eq!(quota, 3, "{answer}");
    assert_eq!(answer["server_guid"], guid.as_str());
    assert_eq!(answer["context"], "production");
    assert_eq!(answer["lease_secs"], 120);
    let (quota, answer) = server.quota(
        2,
        "asr.en-US",
        Held {
            in_use: 0,
            want: 5,
            quota: 0,
        },
    );
    assert_eq!(quota, 2, "only what is left: {answer}");

    let clients = server.json(&["clients"]);
    assert_eq!(clients["clients"].as_array().unwrap().len(), 2, "{clients}");
    let table = server.text(&["clients"]);
    assert!(table.contains(client_id(1).as_str()), "{table}");

    // The text form names the state, the licenses and the node.
    let text = server.text(&["status"]);
    for needle in [
        "ok",
        &guid,
        "asr.en-US",
        &maintenance,
        "2028-06-30",
        &f.node().url,
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
    let text = server.text(&["sync-now"]);
    assert!(
        text.contains("ok") && text.contains(&f.node().url),
        "{text}"
    );

    // Admin refusals: a wrong token, no token, an unreachable server.
    let out = leasehold()
        .args([
            "server",
            "status",
            "--admin",
            &server.admin_url,
            "--token",
            "wrong",
        ])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.starts_with("error: unauthorized: "), "{stderr}");
    let out = leasehold()
        .args(["server", "status", "--admin", &server.admin_url])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("--token"), "{stderr}");
    let out = leasehold()
        .args([
            "server",
            "status",
            "--admin",
            "http://127.0.0.1:1",
            "--token",
            "t",
        ])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("cannot reach"), "{stderr}");

    // SIGTERM stops it cleanly; the token never reached the log.
    let mut server = server;
    let killed = StdCommand::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(
        server.wait_exit(Duration::from_secs(10)),
        "{}",
        read_log(&server.log)
    );
    let log = read_log(&server.log);
    assert!(log.contains("license server stopped"), "{log}");
    assert!(!log.contains(SERVER_TOKEN), "token in the log:\n{log}");
}

#[test]
fn after_a_crash_the_server_keeps_its_licenses_and_its_leases() {
    let (f, guid) = licensed("production");
    let data = f.path("server");
    let mut args = key_args(&f);
    args.extend([
        "--node".into(),
        f.node().url.clone(),
        "--guid".into(),
        guid.clone(),
    ]);
    let server = LicenseServer::run(&data, &strs(&args));
    server.sync_now();
    let before = server.status();
    assert_eq!(before["state"], "ok", "{before}");
    let serial = before["bundle_serial"].as_u64().unwrap();
    let a = 1;
    let (quota, _) = server.quota(
        a,
        "asr.en-US",
        Held {
            in_use: 0,
            want: 3,
            quota: 0,
        },
    );
    assert_eq!(quota, 3);
    let (quota, _) = server.quota(
        a,
        "asr.en-US",
        Held {
            in_use: 2,
            want: 3,
            quota: 3,
        },
    );
    assert_eq!(quota, 3);
    server.kill9();

    // Same data directory, new process: the bundle is there and verified again.
    let server = LicenseServer::run(&data, &strs(&args));
    let after = server.status();
    assert_eq!(after["state"], "ok", "{after}");
    assert_eq!(after["bundle_serial"], serial, "{after}");
    assert_eq!(after["guid"], guid.as_str());
    assert_eq!(feature_row(&after, "asr.en-US")["count"], 5);
    assert!(
        after["learning_until"].is_null(),
        "a server restarted on its own data directory restores its leases: {after}"
    );
    // Client A's lease of 3 from before the crash was on disk before A got it: it stays
    // reserved, and a new client gets the other 2 at once (no relearning).
    assert_eq!(feature_row(&after, "asr.en-US")["reserved"], 3, "{after}");
    let (quota, answer) = server.quota(
        2,
        "asr.en-US",
        Held {
            in_use: 0,
            want: 5,
            quota: 0,
        },
    );
    assert_eq!(quota, 2, "{answer}");
    let (quota, answer) = server.quota(
        a,
        "asr.en-US",
        Held {
            in_use: 2,
            want: 3,
            quota: 3,
        },
    );
    assert_eq!(quota, 3, "{answer}");
    let text = server.text(&["status"]);
    assert!(!text.contains("learning until"), "{text}");
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = vendor_key().public_key_string();
    let data = dir.path().join("server");
    let first = LicenseServer::run(&data, &["--vendor-key", &key]);
    let args: [&str; 4] = ["--vendor-key", &key, "--admin-token", "x"];
    let (cmd, log) = LicenseServer::command(&data, "127.0.0.1:0", "127.0.0.1:0", &args);
    let mut cmd = cmd;
    let status = cmd.stdout(Stdio::null()).status().unwrap();
    assert!(!status.success());
    let log = read_log(&log);
    assert!(
        log.contains("in use by another leasehold server process") && log.contains("error: "),
        "{log}"
    );
    // The first one is unharmed.
    assert_eq!(first.status()["state"], "unconfigured");
}

#[test]
fn an_air_gapped_server_syncs_through_files() {
    let (f, guid) = licensed("production");
    let data = f.path("server");
    let server = LicenseServer::run(&data, &strs(&key_args(&f)));
    server.json(&["set-guid", &guid]);

    let stderr = server.fails(&["sync-now"]);
    assert!(
        stderr.starts_with("error: sync failed: ") && stderr.contains("air-gapped"),
        "{stderr}"
    );
    assert!(server.status()["nodes"].as_array().unwrap().is_empty());

    let upload = f.path("upload-1.json");
    let printed = server.json(&["export-upload", "--out", upload.to_str().unwrap()]);
    assert_eq!(printed["server_guid"], guid.as_str());
    let exported: Value = serde_json::from_slice(&std::fs::read(&upload).unwrap()).unwrap();
    assert_eq!(exported["server_guid"], guid.as_str());
    assert_eq!(exported["last_bundle_serial"], 0);
    let bundle1 = f.path("bundle-1.json");
    f.json(&[
        "sync-file",
        "--upload",
        upload.to_str().unwrap(),
        "--out",
        bundle1.to_str().unwrap(),
    ]);
    let outcome = server.json(&["import-bundle", bundle1.to_str().unwrap()]);
    assert_eq!(outcome["ok"], true, "{outcome}");
    assert_eq!(outcome["node"], "file");
    let status = server.status();
    assert_eq!(status["state"], "ok", "{status}");
    let serial = status["bundle_serial"].as_u64().unwrap();
    assert_eq!(feature_row(&status, "asr.en-US")["count"], 5);
    let (quota, _) = server.quota(
        1,
        "tts",
        Held {
            in_use: 0,
            want: 2,
            quota: 0,
        },
    );
    assert_eq!(quota, 2);

    // The same bundle again: not newer, refused, nothing changes.
    let stderr = server.fails(&["import-bundle", bundle1.to_str().unwrap()]);
    assert!(
        stderr.starts_with("error: bad_request: ") && stderr.contains("not newer"),
        "{stderr}"
    );
    assert_eq!(server.status()["bundle_serial"], serial);

    // A second round; its bundle tampered with (more seats) is refused, the real one loads.
    let upload2 = f.path("upload-2.json");
    server.text(&["export-upload", "--out", upload2.to_str().unwrap()]);
    let exported: Value = serde_json::from_slice(&std::fs::read(&upload2).unwrap()).unwrap();
    assert_eq!(exported["last_bundle_serial"], serial);
    let bundle2 = f.path("bundle-2.json");
    f.json(&[
        "sync-file",
        "--upload",
        upload2.to_str().unwrap(),
        "--out",
        bundle2.to_str().unwrap(),
    ]);
    let mut envelope: Value = serde_json::from_slice(&std::fs::read(&bundle2).unwrap()).unwrap();
    let mut payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(envelope["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    for l in payload["licenses"].as_array_mut().unwrap() {
        l["count"] = 500.into();
    }
    envelope["payload"] = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&payload).unwrap())
        .into();
    let tampered = f.path("bundle-2-tampered.json");
    std::fs::write(&tampered, serde_json::to_vec(&envelope).unwrap()).unwrap();
    let stderr = server.fails(&["import-bundle", tampered.to_str().unwrap()]);
    assert!(
        stderr.starts_with("error: bad_request: bundle rejected"),
        "{stderr}"
    );
    let status = server.status();
    assert_eq!(status["state"], "ok", "{status}");
    assert_eq!(status["bundle_serial"], serial);
    assert_eq!(feature_row(&status, "asr.en-US")["count"], 5);

    // Not a bundle at all: refused locally.
    let stderr = server.fails(&["import-bundle", upload2.to_str().unwrap()]);
    assert!(stderr.contains("not a signed bundle"), "{stderr}");

    let text = server.text(&["import-bundle", bundle2.to_str().unwrap()]);
    assert!(text.contains("ok"), "{text}");
    let status = server.status();
    assert_eq!(status["state"], "ok", "{status}");
    assert!(
        status["bundle_serial"].as_u64().unwrap() > serial,
        "{status}"
    );
    assert!(status["last_sync"].is_string(), "{status}");
}

#[test]
fn a_development_server_gets_development_licenses_and_refuses_foreign_bundles() {
    let (f, dev) = licensed("development");
    let data = f.path("server");
    let mut args = key_args(&f);
    args.extend([
        "--node".into(),
        f.node().url.clone(),
        "--guid".into(),
        dev.clone(),
    ]);
    let server = LicenseServer::run(&data, &strs(&args));
    server.sync_now();
    let status = server.status();
    assert_eq!(status["state"], "ok", "{status}");
    assert_eq!(status["context"], "development");
    for l in status["licenses"].as_array().unwrap() {
        assert_eq!(l["context"], "development", "{status}");
    }
    let (_, answer) = server.quota(
        1,
        "asr.en-US",
        Held {
            in_use: 0,
            want: 1,
            quota: 0,
        },
    );
    assert_eq!(answer["context"], "development");
    let serial = status["bundle_serial"].as_u64().unwrap();

    // A bundle of a production server elsewhere, produced through the air-gapped path by a
    // second, air-gapped server: this server refuses it and keeps its own.
    let inst = f.create_installation("Globex");
    let prod = f.add_server(&inst, "production");
    f.grant(&prod, "asr.en-US", 50, &[]);
    let other = LicenseServer::run(&f.path("other"), &strs(&key_args(&f)));
    other.json(&["set-guid", &prod]);
    let upload = f.path("other-upload.json");
    other.json(&["export-upload", "--out", upload.to_str().unwrap()]);
    let bundle = f.path("other-bundle.json");
    let made = f.json(&[
        "sync-file",
        "--upload",
        upload.to_str().unwrap(),
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(made["context"], "production");
    let stderr = server.fails(&["import-bundle", bundle.to_str().unwrap()]);
    assert!(
        stderr.starts_with("error: bad_request: bundle rejected"),
        "{stderr}"
    );
    let status = server.status();
    assert_eq!(status["state"], "ok", "{status}");
    assert_eq!(status["context"], "development");
    assert_eq!(status["bundle_serial"], serial);
    // The server it was made for takes it.
    let outcome = other.json(&["import-bundle", bundle.to_str().unwrap()]);
    assert_eq!(outcome["ok"], true, "{outcome}");
    assert_eq!(other.status()["context"], "production");
}

#[test]
fn settings_layer_file_env_and_flags_and_a_token_is_generated_once() {
    let dir = tempfile::tempdir().unwrap();
    let signing = vendor_key();
    let key_file = dir.path().join("vendor.pub");
    std::fs::write(&key_file, format!("{}\n", signing.public_key_string())).unwrap();
    let config = dir.path().join("server.toml");
    // The file names the data directory (relative to itself), a wrong listen address the
    // flag overrides and the key file; the environment gives the GUID and admin address.
    std::fs::write(
        &config,
        r#"
data_dir = "from-file"
listen = "not-an-address"
vendor_keys = ["vendor.pub"]
guid = "{00000000-0000-0000-0000-000000000001}"
"#,
    )
    .unwrap();
    let guid = "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}";
    let log = dir.path().join("server.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut cmd = StdCommand::new(leasehold_path());
    cmd.args(["server", "run", "--config"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--agent-tick", "1s"])
        .env("LEASEHOLD_SERVER_ADMIN_LISTEN", "127.0.0.1:0")
        .env("LEASEHOLD_SERVER_GUID", guid)
        .env_remove("LEASEHOLD_SERVER_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(log_file);
    let token_path = dir.path().join("from-file").join("admin-token");
    let token = {
        // The token is generated before the server answers; read it once it is up.
        let mut server = LicenseServer::spawn(cmd, log.clone(), "");
        let token = std::fs::read_to_string(&token_path).unwrap();
        let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        server.token = token.trim().to_owned();
        let status = server.status();
        assert_eq!(
            status["guid"], guid,
            "the environment beats the file: {status}"
        );
        assert_eq!(status["state"], "not_synced", "{status}");
        // --token-file works as well as --token.
        let out = leasehold()
            .args([
                "server",
                "status",
                "--json",
                "--admin",
                &server.admin_url,
                "--token-file",
            ])
            .arg(&token_path)
            .assert()
            .success();
        let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        assert_eq!(v["guid"], guid);
        server.token.clone()
    };
    let text = read_log(&log);
    assert!(text.contains("admin-token"), "where the token is: {text}");
    assert!(
        !text.contains(&token),
        "the token itself is never logged:\n{text}"
    );

    // A restart reuses the token file.
    let mut cmd = StdCommand::new(leasehold_path());
    cmd.args(["server", "run", "--config"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env_remove("LEASEHOLD_SERVER_TOKEN")
        .env_remove("LEASEHOLD_SERVER_GUID")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("server2.log")).unwrap());
    let server = LicenseServer::spawn(cmd, dir.path().join("server2.log"), &token);
    assert_eq!(
        server.status()["guid"],
        "{00000000-0000-0000-0000-000000000001}"
    );
}

/// Runs `leasehold server run ARGS` expecting it to fail at once; returns its stderr (which
/// a server that started by mistake, killed at the timeout, would leave empty).
fn run_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = leasehold();
    cmd.args(["server", "run"])
        .args(args)
        .timeout(Duration::from_secs(10));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.assert().failure();
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

#[test]
fn bad_settings_are_refused_at_start_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let key = vendor_key().public_key_string();
    let config = dir.path().join("server.toml");
    let config_s = config.to_str().unwrap();

    std::fs::write(&config, "data_dir = \"x\"\nlisten_addr = \"127.0.0.1:1\"\n").unwrap();
    let e = run_fails(&["--config", config_s, "--vendor-key", &key], &[]);
    assert!(e.contains("listen_addr") && e.contains(config_s), "{e}");

    let e = run_fails(&["--data-dir", data], &[]);
    assert!(e.contains("--vendor-key"), "{e}");

    let e = run_fails(
        &["--data-dir", data, "--vendor-key", &key, "--guid", "nope"],
        &[],
    );
    assert!(e.contains("--guid") && e.contains("nope"), "{e}");
    let e = run_fails(
        &["--data-dir", data, "--vendor-key", &key],
        &[("LEASEHOLD_SERVER_GUID", "also-nope")],
    );
    assert!(e.contains("--guid") && e.contains("also-nope"), "{e}");

    let e = run_fails(&["--data-dir", data, "--vendor-key", "not-a-key"], &[]);
    assert!(e.contains("--vendor-key") && e.contains("not-a-key"), "{e}");
    std::fs::write(dir.path().join("garbage.pub"), "garbage\n").unwrap();
    let garbage = dir.path().join("garbage.pub");
    let e = run_fails(
        &[
            "--data-dir",
            data,
            "--vendor-key",
            garbage.to_str().unwrap(),
        ],
        &[],
    );
    assert!(e.contains("does not hold a vendor public key"), "{e}");

    std::fs::write(&config, "admin_listen = \"localhost:80\"\n").unwrap();
    let e = run_fails(
        &[
            "--config",
            config_s,
            "--vendor-key",
            &key,
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(e.contains("`admin_listen`"), "{e}");
    let e = run_fails(
        &[
            "--data-dir",
            data,
            "--vendor-key",
            &key,
            "--node",
            "lic.example",
        ],
        &[],
    );
    assert!(e.contains("--node"), "{e}");
    let e = run_fails(
        &["--config", "/no/such/server.toml", "--vendor-key", &key],
        &[],
    );
    assert!(e.contains("/no/such/server.toml"), "{e}");
    // None of these got as far as creating the data directory.
    assert!(!Path::new(data).exists());
}

#[test]
fn server_usage_prints_the_hours_as_a_table_csv_or_json_and_refuses_a_bad_period() {
    let (f, guid) = licensed("production");
    let server = LicenseServer::start(&f, "server", &guid);
    server.sync_now();
    let held = Held {
        in_use: 1,
        want: 1,
        quota: 0,
    };
    assert_eq!(server.quota(1, "asr.en-US", held).0, 1);

    // The default period: the last 30 days, this open hour included.
    let v = server.json(&["usage"]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    let row = &rows[0];
    assert_eq!(
        (
            &row["feature"],
            &row["peak_in_use"],
            &row["grants"],
            &row["open"]
        ),
        (
            &Value::from("asr.en-US"),
            &Value::from(1),
            &Value::from(1),
            &Value::from(true)
        ),
        "{v}"
    );
    assert!(row["license_hours"].is_f64(), "{v}");
    assert!(row.get("client").is_none() && row.get("client_id").is_none());

    let csv = server.text(&["usage", "--csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("hour,feature,peak_in_use,license_hours,grants,denials,denials_while_free,backup_use_hours,open"),
        "{csv}"
    );
    let line = lines.next().unwrap();
    assert!(
        line.contains(",asr.en-US,1,") && line.ends_with(",1,0,0,0.0,true"),
        "{csv}"
    );
    assert_eq!(lines.next(), None, "{csv}");

    let table = server.text(&["usage"]);
    assert!(
        table.contains("LICENSE-HOURS") && table.contains("asr.en-US") && table.contains("(open)"),
        "{table}"
    );
    let empty = server.text(&["usage", "--from", "2020-01-01", "--to", "2020-01-31"]);
    assert!(
        empty.contains("no usage recorded in this period"),
        "{empty}"
    );

    // Bad periods are refused naming what is wrong; nothing changes.
    let e = server.fails(&["usage", "--from", "2026-11-05", "--to", "2026-11-01"]);
    assert!(e.contains("is after to"), "{e}");
    let e = server.fails(&["usage", "--from", "2020-01-01", "--to", "2026-01-01"]);
    assert!(e.contains("at most 400"), "{e}");
    let e = server.fails(&["usage", "--from", "1.11.2026"]);
    assert!(e.contains("--from"), "{e}");
    let e = server.fails(&["usage", "--csv", "--json"]);
    assert!(e.contains("--csv") && e.contains("--json"), "{e}");
}
