//! `leasehold vendor ...` end to end: every command through the real binary against a real
//! node child process, with `--json` shapes, refusals and their error codes, table output,
//! and a node restart that must keep everything.

use std::os::unix::fs::PermissionsExt;

use leasehold_proto::{
    parse_public_key, Context, License, ServerGuid, SignedEnvelope, TrustedKeys, VendorSigningKey,
};
use leasehold_testkit::{maintenance_date, NODE_TOKEN};
use serde_json::{json, Value};

use crate::support::{keygen, leasehold, Fixture};

fn licenses_of(server: &Value) -> Vec<Value> {
    server["licenses"].as_array().unwrap().clone()
}

fn license_in<'a>(server: &'a Value, id: &str) -> Option<&'a Value> {
    server["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id)
}

/// Writes a sync upload as a customer's server would and returns its path.
fn write_upload(f: &Fixture, name: &str, upload: &Value) -> String {
    let path = f.path(name);
    std::fs::write(&path, serde_json::to_vec_pretty(upload).unwrap()).unwrap();
    path.display().to_string()
}

fn instance_id() -> String {
    format!("inst-{}", "ab".repeat(16))
}

#[test]
fn keygen_writes_a_private_key_readable_only_by_its_owner_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vendor.pem");
    let key = keygen(&path);

    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let loaded = VendorSigningKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(loaded.public_key_string(), key.public_key);
    assert_eq!(loaded.kid().as_str(), key.kid);
    // The printed public key is what servers are configured with.
    parse_public_key(&key.public_key).unwrap();

    let out = leasehold()
        .args(["vendor", "keygen", "--out"])
        .arg(&path)
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        pem,
        "key file changed"
    );

    // Without --json: readable lines that hold the public key.
    let other = dir.path().join("other.pem");
    let out = leasehold()
        .args(["vendor", "keygen", "--out"])
        .arg(&other)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout);
    let second =
        VendorSigningKey::from_pkcs8_pem(&std::fs::read_to_string(&other).unwrap()).unwrap();
    assert!(stdout.contains(&second.public_key_string()), "{stdout}");
    assert_ne!(second.public_key_string(), key.public_key);
}

#[test]
fn installations_are_created_and_listed() {
    let f = Fixture::start();
    let created = f.json(&["installation", "create", "--name", "ACME Berlin"]);
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("inst_"), "{created}");
    assert_eq!(created["name"], "ACME Berlin");
    let second = f.create_installation("Globex");

    let list = f.json(&["installation", "list"]);
    let all = list["installations"].as_array().unwrap();
    assert_eq!(all.len(), 2, "{list}");
    assert!(all
        .iter()
        .any(|i| i["id"] == id && i["name"] == "ACME Berlin"));
    assert!(all.iter().any(|i| i["id"] == second.as_str()));

    let table = f.text(&["installation", "list"]);
    assert!(
        table.contains("ACME Berlin") && table.contains(id),
        "{table}"
    );
    assert!(table.contains(&second), "{table}");
    let text = f.text(&["installation", "create", "--name", "Initech"]);
    assert!(text.contains("Initech") && text.contains("inst_"), "{text}");

    let stderr = f.fails(&["installation", "create", "--name", "  "]);
    assert!(stderr.contains("--name"), "{stderr}");
}

#[test]
fn servers_follow_the_installation_shape() {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    let production = f.add_server(&inst, "production");
    ServerGuid::parse(&production).unwrap();
    assert!(production.starts_with('{') && production.ends_with('}'));

    let stderr = f.fails(&[
        "server",
        "add",
        "--installation",
        &inst,
        "--context",
        "production",
    ]);
    assert!(stderr.contains("installation_shape"), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    let stderr = f.fails(&[
        "server",
        "add",
        "--installation",
        &inst,
        "--context",
        "development",
    ]);
    assert!(stderr.contains("installation_shape"), "{stderr}");

    let backup = f.add_server(&inst, "backup");
    let backup2 = f.add_server(&inst, "backup");
    assert_ne!(backup, backup2);

    let list = f.json(&["installation", "list"]);
    let servers = list["installations"][0]["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3, "{list}");
    assert!(servers
        .iter()
        .any(|s| s["guid"] == production.as_str() && s["context"] == "production"));

    let stderr = f.fails(&[
        "server",
        "add",
        "--installation",
        "inst_0000000000000000",
        "--context",
        "backup",
    ]);
    assert!(stderr.contains("not_found"), "{stderr}");
    let stderr = f.fails(&[
        "server",
        "add",
        "--installation",
        &inst,
        "--context",
        "prod",
    ]);
    assert!(
        stderr.contains("production, backup, development"),
        "{stderr}"
    );
}

#[test]
fn server_show_has_the_documented_json_shape_and_a_table() {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    let guid = f.add_server(&inst, "production");
    let lic = f.grant(&guid, "asr.en-US", 4, &["--expires", "2028-06-30"]);

    let show = f.json(&["server", "show", &guid]);
    assert_eq!(show["guid"], guid.as_str());
    assert_eq!(show["context"], "production");
    assert_eq!(show["installation"], inst.as_str());
    assert_eq!(show["last_sync"], Value::Null);
    assert_eq!(show["instance_id"], Value::Null);
    assert_eq!(show["grace_days"], 60);
    assert_eq!(show["sync_interval_secs"], 86_400);
    assert_eq!(
        show["licenses"],
        json!([{
            "id": lic,
            "feature": "asr.en-US",
            "count": 4,
            "context": "production",
            "maintenance_until": maintenance_date().to_string(),
            "expires": "2028-06-30",
            "backs_up": null,
        }])
    );
    for key in ["bundle_serial", "acked_usage_seq", "forks_detected"] {
        assert!(show[key].is_u64(), "{key} in {show}");
    }

    // Either GUID spelling reaches the same server.
    let bare = guid.trim_matches(|c| c == '{' || c == '}').to_lowercase();
    assert_eq!(f.json(&["server", "show", &bare])["guid"], guid.as_str());

    let table = f.text(&["server", "show", &guid]);
    for value in [
        guid.as_str(),
        inst.as_str(),
        lic.as_str(),
        "asr.en-US",
        "2028-06-30",
        "production",
    ] {
        assert!(table.contains(value), "{value} missing from:\n{table}");
    }

    let unknown = "{00000000-0000-0000-0000-000000000001}";
    let stderr = f.fails(&["server", "show", unknown]);
    assert!(
        stderr.contains("not_found") || stderr.contains("unknown_server"),
        "{stderr}"
    );
}

#[test]
fn licenses_are_granted_with_context_and_backup_rules() {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    let production = f.add_server(&inst, "production");
    let backup = f.add_server(&inst, "backup");
    let other_inst = f.create_installation("Globex");
    let other_production = f.add_server(&other_inst, "production");

    let granted = f.json(&[
        "license",
        "grant",
        "--server",
        &production,
        "--feature",
        "tts",
        "--count",
        "5",
        "--maintenance",
        "2027-01-31",
        "--expires",
        "2028-12-31",
    ]);
    let lic = granted["id"].as_str().unwrap().to_owned();
    assert!(lic.starts_with("lic_"), "{granted}");
    assert_eq!(granted["server"], production.as_str());
    assert_eq!(granted["context"], "production");
    assert_eq!(granted["count"], 5);
    assert_eq!(granted["feature"], "tts");
    assert_eq!(granted["maintenance_until"], "2027-01-31");
    assert_eq!(granted["expires"], "2028-12-31");
    assert_eq!(granted["revoked_at"], Value::Null);

    // A license of another context than its server's is refused.
    let stderr = f.fails(&[
        "license",
        "grant",
        "--server",
        &production,
        "--feature",
        "tts",
        "--count",
        "1",
        "--maintenance",
        "2027-01-31",
        "--context",
        "development",
    ]);
    assert!(stderr.contains("context_mismatch"), "{stderr}");

    // A backup license must name a production license of its own installation.
    let stderr = f.fails(&[
        "license",
        "grant",
        "--server",
        &backup,
        "--feature",
        "tts",
        "--count",
        "5",
        "--maintenance",
        "2027-01-31",
    ]);
    assert!(
        stderr.contains("bad_request") && stderr.contains("backs_up"),
        "{stderr}"
    );
    let foreign = f.grant(&other_production, "tts", 5, &[]);
    let stderr = f.fails(&[
        "license",
        "grant",
        "--server",
        &backup,
        "--feature",
        "tts",
        "--count",
        "5",
        "--maintenance",
        "2027-01-31",
        "--backs-up",
        &foreign,
    ]);
    assert!(stderr.contains("installation_shape"), "{stderr}");
    let stderr = f.fails(&[
        "license",
        "grant",
        "--server",
        &backup,
        "--feature",
        "tts",
        "--count",
        "5",
        "--maintenance",
        "2027-01-31",
        "--backs-up",
        "lic_00000000000000ff",
    ]);
    assert!(
        stderr.contains("installation_shape") && stderr.contains("lic_00000000000000ff"),
        "{stderr}"
    );
    let stderr = f.fails(&[
        "license",
        "grant",
        "--server",
        &production,
        "--feature",
        "tts",
        "--count",
        "5",
        "--maintenance",
        "2027-01-31",
        "--backs-up",
        &lic,
    ]);
    assert!(stderr.contains("bad_request"), "{stderr}");

    let backup_lic = f.json(&[
        "license",
        "grant",
        "--server",
        &backup,
        "--feature",
        "tts",
        "--count",
        "5",
        "--maintenance",
        "2027-01-31",
        "--backs-up",
        &lic,
    ]);
    assert_eq!(backup_lic["context"], "backup");
    assert_eq!(backup_lic["backs_up"], lic.as_str());
    assert_eq!(backup_lic["expires"], Value::Null);

    // Refused grants changed nothing.
    assert_eq!(
        licenses_of(&f.json(&["server", "show", &production])).len(),
        1
    );
    assert_eq!(licenses_of(&f.json(&["server", "show", &backup])).len(), 1);

    let shown = f.json(&["license", "show", &lic]);
    assert_eq!(shown, granted);
    let text = f.text(&["license", "show", &lic]);
    assert!(text.contains(&lic) && text.contains("2028-12-31"), "{text}");
}

#[test]
fn bad_local_input_is_refused_before_any_request() {
    // No node listens on port 9: a request would fail with a connection error instead.
    let run = |args: &[&str]| {
        let out = leasehold()
            .args([
                "vendor",
                "--node",
                "http://127.0.0.1:9",
                "--token",
                "lhv_not-checked-before-the-request",
            ])
            .args(args)
            .assert()
            .failure();
        String::from_utf8_lossy(&out.get_output().stderr).into_owned()
    };
    let guid = "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}";
    let stderr = run(&["server", "show", "DF9960A1-nope"]);
    assert!(stderr.contains("server GUID"), "{stderr}");
    let grant = |count: &str, date: &str| {
        run(&[
            "license",
            "grant",
            "--server",
            guid,
            "--feature",
            "tts",
            "--count",
            count,
            "--maintenance",
            date,
        ])
    };
    let stderr = grant("0", "2027-01-31");
    assert!(stderr.contains("at least 1"), "{stderr}");
    let stderr = grant("2", "31/01/2027");
    assert!(stderr.contains("YYYY-MM-DD"), "{stderr}");
    let stderr = run(&[
        "license",
        "set-maintenance",
        "lic_0000000000000001",
        "--until",
        "2027-13-01",
    ]);
    assert!(stderr.contains("YYYY-MM-DD"), "{stderr}");
    let stderr = run(&["server", "set", guid]);
    assert!(
        stderr.contains("--grace-days") && stderr.contains("--sync-interval"),
        "{stderr}"
    );
    let stderr = run(&["server", "set", guid, "--sync-interval", "often"]);
    assert!(stderr.contains("duration"), "{stderr}");
    let stderr = run(&["license", "revoke", "LIC-1"]);
    assert!(stderr.contains("license id"), "{stderr}");
    let stderr = run(&[
        "sync-file",
        "--upload",
        "/nonexistent/upload.json",
        "--out",
        "/tmp/x",
    ]);
    assert!(stderr.contains("/nonexistent/upload.json"), "{stderr}");
    assert!(!stderr.contains("cannot reach"), "{stderr}");

    // The node address is named when it cannot be reached.
    let stderr = run(&["server", "show", guid]);
    assert!(
        stderr.contains("cannot reach") && stderr.contains("127.0.0.1:9"),
        "{stderr}"
    );
}

#[test]
fn admin_commands_need_the_right_token() {
    let f = Fixture::start();
    let url = &f.node().url;

    let out = leasehold()
        .args(["vendor", "--node", url, "installation", "list"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(
        stderr.contains("--token")
            && stderr.contains("LEASEHOLD_VENDOR_TOKEN")
            && stderr.contains("vendor login"),
        "{stderr}"
    );

    // The node's shared token, where it used to be given, is named for what it is now.
    let out = leasehold()
        .env("LEASEHOLD_ADMIN_TOKEN", NODE_TOKEN)
        .args(["vendor", "--node", url, "installation", "list"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(
        stderr.contains("no longer reads LEASEHOLD_ADMIN_TOKEN") && stderr.contains("bootstrap"),
        "{stderr}"
    );
    // Given as a vendor token, it works only to create the first admin, and says so.
    let stderr = f.fails_as(NODE_TOKEN, &["installation", "list"]);
    assert!(
        stderr.contains("unauthorized") && stderr.contains("bootstrap token only creates"),
        "{stderr}"
    );
    assert!(!stderr.contains(NODE_TOKEN), "{stderr}");

    let out = leasehold()
        .args([
            "vendor",
            "--node",
            url,
            "--token",
            "wrong",
            "installation",
            "list",
        ])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("unauthorized"), "{stderr}");
    assert!(
        !stderr.contains("wrong"),
        "the token must not be echoed: {stderr}"
    );

    // The environment works as well as the flags.
    let out = leasehold()
        .env("LEASEHOLD_NODE", url)
        .env("LEASEHOLD_VENDOR_TOKEN", &f.admin_token)
        .args(["vendor", "installation", "list", "--json"])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["installations"], json!([]));
}

#[test]
fn transfer_revoke_and_maintenance_show_on_the_servers() {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    let production = f.add_server(&inst, "production");
    let backup = f.add_server(&inst, "backup");
    let other = f.create_installation("Globex");
    let other_production = f.add_server(&other, "production");

    let moved = f.grant(&production, "tts", 3, &[]);
    let kept = f.grant(&production, "asr.en-US", 2, &[]);
    let revoked = f.grant(&production, "asr.de-DE", 1, &[]);

    let view = f.json(&["license", "transfer", &moved, "--to", &other_production]);
    assert_eq!(view["server"], other_production.as_str());
    let p = f.json(&["server", "show", &production]);
    assert!(license_in(&p, &moved).is_none(), "{p}");
    let o = f.json(&["server", "show", &other_production]);
    assert!(license_in(&o, &moved).is_some(), "{o}");

    // A production license cannot move to a backup server.
    let stderr = f.fails(&["license", "transfer", &kept, "--to", &backup]);
    assert!(stderr.contains("context_mismatch"), "{stderr}");
    assert!(license_in(&f.json(&["server", "show", &production]), &kept).is_some());

    let view = f.json(&["license", "revoke", &revoked]);
    assert!(view["revoked_at"].is_string(), "{view}");
    let p = f.json(&["server", "show", &production]);
    assert!(license_in(&p, &revoked).is_none(), "{p}");

    let view = f.json(&["license", "set-maintenance", &kept, "--until", "2029-03-31"]);
    assert_eq!(view["maintenance_until"], "2029-03-31");
    let p = f.json(&["server", "show", &production]);
    assert_eq!(
        license_in(&p, &kept).unwrap()["maintenance_until"],
        "2029-03-31"
    );

    let text = f.text(&["license", "set-maintenance", &kept, "--until", "2029-04-30"]);
    assert!(
        text.contains("2029-04-30") && text.contains(&kept),
        "{text}"
    );

    let stderr = f.fails(&["license", "revoke", "lic_00000000000000ff"]);
    assert!(stderr.contains("not_found"), "{stderr}");
}

#[test]
fn server_settings_are_checked_and_shown() {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    let guid = f.add_server(&inst, "production");

    let stderr = f.fails(&["server", "set", &guid, "--grace-days", "59"]);
    assert!(stderr.contains("bad_request"), "{stderr}");
    assert_eq!(f.json(&["server", "show", &guid])["grace_days"], 60);

    let view = f.json(&["server", "set", &guid, "--grace-days", "90"]);
    assert_eq!(view["grace_days"], 90);
    let view = f.json(&["server", "set", &guid, "--sync-interval", "6h 30m"]);
    assert_eq!(view["sync_interval_secs"], 23_400);
    assert_eq!(view["grace_days"], 90, "an unset flag keeps its value");
    let show = f.json(&["server", "show", &guid]);
    assert_eq!(show["grace_days"], 90);
    assert_eq!(show["sync_interval_secs"], 23_400);
    let text = f.text(&[
        "server",
        "set",
        &guid,
        "--grace-days",
        "120",
        "--sync-interval",
        "1day",
    ]);
    assert!(text.contains("120") && text.contains("1day"), "{text}");
}

#[test]
fn sync_file_returns_a_bundle_signed_by_the_vendor_key_and_usage_shows_up() {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    let guid = f.add_server(&inst, "production");
    let lic = f.grant(&guid, "tts", 3, &[]);

    let usage = f.json(&["usage", "--server", &guid]);
    assert_eq!(usage["server"], guid.as_str());
    assert_eq!(usage["rows"], json!([]));
    let text = f.text(&["usage", "--server", &guid]);
    assert!(text.contains("no usage"), "{text}");

    let upload = write_upload(
        &f,
        "upload-1.json",
        &json!({
            "server_guid": guid,
            "instance_id": instance_id(),
            "sync_token": null,
            "last_bundle_serial": 0,
            "context": null,
            "software_version": "test",
            "usage": [],
        }),
    );
    let out = f.path("bundle-1.json");
    let printed = f.json(&[
        "sync-file",
        "--upload",
        &upload,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(printed["out"], out.to_str().unwrap());
    assert_eq!(printed["server_guid"], guid.as_str());

    let trusted = TrustedKeys::new().with(parse_public_key(&f.key.public_key).unwrap());
    let envelope = SignedEnvelope::from_json(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(envelope.kid.as_str(), f.key.kid);
    let guid_value = ServerGuid::parse(&guid).unwrap();
    let bundle = envelope
        .open_bundle(&trusted, guid_value, Some(Context::Production))
        .unwrap();
    assert_eq!(printed["serial"], bundle.serial);
    assert_eq!(bundle.installation_id.as_str(), inst);
    let ids: Vec<&str> = bundle
        .licenses
        .iter()
        .map(|l: &License| l.id.as_str())
        .collect();
    assert_eq!(ids, [lic.as_str()]);
    assert!(bundle.not_after - bundle.issued_at >= chrono::Duration::days(60));

    let show = f.json(&["server", "show", &guid]);
    assert_eq!(show["instance_id"], instance_id());
    assert!(show["last_sync"].is_string(), "{show}");
    assert_eq!(show["software_version"], "test");

    // The next sync carries the token of the last bundle and one usage bucket.
    let second = json!({
        "server_guid": guid,
        "instance_id": instance_id(),
        "sync_token": bundle.next_sync_token,
        "last_bundle_serial": bundle.serial,
        "context": "production",
        "software_version": "test",
        "usage": [{
            "seq": 1,
            "feature": "tts",
            "hour": "2026-03-02T10:00:00Z",
            "peak_in_use": 2,
            "grants": 17,
            "denials": 1,
            "backup_use_secs": 0,
        }],
    });
    let upload = write_upload(&f, "upload-2.json", &second);
    let out2 = f.path("bundle-2.json");
    let text = f.text(&[
        "sync-file",
        "--upload",
        &upload,
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(text.contains(out2.to_str().unwrap()), "{text}");
    let bundle2 = SignedEnvelope::from_json(&std::fs::read(&out2).unwrap())
        .unwrap()
        .open_bundle(&trusted, guid_value, Some(Context::Production))
        .unwrap();
    assert!(bundle2.serial > bundle.serial);
    assert_eq!(bundle2.acked_usage_seq, 1);

    let usage = f.json(&["usage", "--server", &guid]);
    let rows = usage["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{usage}");
    assert_eq!(rows[0]["feature"], "tts");
    assert_eq!(rows[0]["peak_in_use"], 2);
    assert_eq!(rows[0]["grants"], 17);
    assert_eq!(rows[0]["denials"], 1);
    let table = f.text(&["usage", "--server", &guid]);
    assert!(
        table.contains("2026-03-02T10:00:00Z") && table.contains("17"),
        "{table}"
    );

    // A malformed upload is refused locally, an unknown server by the node; neither writes.
    let bad = f.path("bad.json");
    std::fs::write(&bad, b"{\"server_guid\": 1}").unwrap();
    let out3 = f.path("bundle-3.json");
    let stderr = f.fails(&[
        "sync-file",
        "--upload",
        bad.to_str().unwrap(),
        "--out",
        out3.to_str().unwrap(),
    ]);
    assert!(stderr.contains("bad.json"), "{stderr}");
    let mut unknown = second.clone();
    unknown["server_guid"] = json!("{00000000-0000-0000-0000-00000000000A}");
    let upload = write_upload(&f, "upload-unknown.json", &unknown);
    let stderr = f.fails(&[
        "sync-file",
        "--upload",
        &upload,
        "--out",
        out3.to_str().unwrap(),
    ]);
    assert!(stderr.contains("unknown_server"), "{stderr}");
    assert!(!out3.exists());
}

#[test]
fn reassign_releases_the_guid_from_its_instance() {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    let guid = f.add_server(&inst, "production");
    let upload = |name: &str, instance: &str| {
        write_upload(
            &f,
            name,
            &json!({
                "server_guid": guid,
                "instance_id": instance,
                "sync_token": null,
                "last_bundle_serial": 0,
                "context": null,
                "software_version": "test",
                "usage": [],
            }),
        )
    };
    let first = upload("a.json", &instance_id());
    f.json(&[
        "sync-file",
        "--upload",
        &first,
        "--out",
        f.path("a.bundle").to_str().unwrap(),
    ]);
    assert_eq!(
        f.json(&["server", "show", &guid])["instance_id"],
        instance_id()
    );

    // A second instance (a cloned VM) is refused until the vendor reassigns the GUID.
    let clone_instance = format!("inst-{}", "cd".repeat(16));
    let second = upload("b.json", &clone_instance);
    let stderr = f.fails(&[
        "sync-file",
        "--upload",
        &second,
        "--out",
        f.path("b.bundle").to_str().unwrap(),
    ]);
    assert!(stderr.contains("guid_in_use"), "{stderr}");

    let view = f.json(&["server", "reassign", &guid]);
    assert_eq!(view["guid"], guid.as_str());
    assert_eq!(view["instance_id"], Value::Null, "{view}");
    let text = f.text(&["server", "reassign", &guid]);
    assert!(text.contains(&guid), "{text}");

    f.json(&[
        "sync-file",
        "--upload",
        &second,
        "--out",
        f.path("b.bundle").to_str().unwrap(),
    ]);
    assert_eq!(
        f.json(&["server", "show", &guid])["instance_id"],
        clone_instance
    );
}

#[test]
fn a_restarted_node_keeps_everything() {
    let mut f = Fixture::start();
    let inst = f.create_installation("ACME");
    let production = f.add_server(&inst, "production");
    let backup = f.add_server(&inst, "backup");
    let lic = f.grant(&production, "tts", 3, &["--expires", "2030-01-01"]);
    let backup_lic = f.grant(&backup, "tts", 3, &["--backs-up", &lic]);
    f.json(&["server", "set", &production, "--grace-days", "75"]);
    let before_production = f.json(&["server", "show", &production]);
    let before_backup = f.json(&["server", "show", &backup]);
    let before_list = f.json(&["installation", "list"]);

    f.restart();
    assert_eq!(f.json(&["server", "show", &production]), before_production);
    assert_eq!(f.json(&["server", "show", &backup]), before_backup);
    assert_eq!(f.json(&["installation", "list"]), before_list);
    let p = f.json(&["server", "show", &production]);
    assert_eq!(p["grace_days"], 75);
    assert!(license_in(&p, &lic).is_some());
    let b = f.json(&["server", "show", &backup]);
    assert_eq!(
        license_in(&b, &backup_lic).unwrap()["backs_up"],
        lic.as_str()
    );
    // And it still takes changes.
    let stderr = f.fails(&[
        "server",
        "add",
        "--installation",
        &inst,
        "--context",
        "production",
    ]);
    assert!(stderr.contains("installation_shape"), "{stderr}");
}

#[test]
fn the_installation_usage_report_prints_as_a_table_json_or_csv_and_refuses_bad_periods() {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    f.add_server(&inst, "production");
    let period = ["--from", "2026-11-01", "--to", "2026-11-30"];
    let mut args = vec!["usage", "--installation", inst.as_str()];
    args.extend(period);
    let v = f.json(&args);
    assert_eq!(v["installation"], inst.as_str(), "{v}");
    assert_eq!(v["from"], "2026-11-01", "{v}");
    assert_eq!(v["days"], json!([]), "{v}");
    assert_eq!(v["simultaneous"], json!([]), "{v}");
    let text = f.text(&args);
    assert!(text.contains("no usage reported in this period"), "{text}");
    assert!(
        text.contains("never used beside the production ones"),
        "{text}"
    );
    let mut csv = args.clone();
    csv.push("--csv");
    let out = f.text(&csv);
    assert!(out.starts_with("kind,day_or_hour,feature,"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    // Bad periods and flags are refused, naming what is wrong.
    let e = f.fails(&[
        "usage",
        "--installation",
        &inst,
        "--from",
        "2026-11-30",
        "--to",
        "2026-11-01",
    ]);
    assert!(e.contains("must run forwards"), "{e}");
    let e = f.fails(&["usage", "--installation", &inst, "--from", "30.11.2026"]);
    assert!(e.contains("--from"), "{e}");
    let e = f.fails(&["usage"]);
    assert!(
        e.contains("--server") && e.contains("--installation"),
        "{e}"
    );
}

#[test]
fn events_say_when_there_is_nothing_to_look_at_and_list_as_json() {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    f.add_server(&inst, "production");
    let v = f.json(&["events", "--silent-days", "3"]);
    assert_eq!(v["silent_days"], 3, "{v}");
    assert_eq!(v["events"], json!([]), "{v}");
    let text = f.text(&["events"]);
    assert!(text.contains("nothing to look at"), "{text}");
    let e = f.fails(&["events", "--silent-days", "soon"]);
    assert!(e.contains("--silent-days"), "{e}");
}
