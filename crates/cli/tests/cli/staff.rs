//! The vendor's staff through the real binary against a real node: the first admin made
//! with the bootstrap token (and only the first), `vendor login` saving a token (mode 0600)
//! that later commands use, `whoami`, `logout`, support and admin accounts and what each may
//! do, tokens revoked and accounts disabled, the audit log with reasons, before and after,
//! its filters and CSV, and `node create-admin` on a fresh database.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use leasehold_testkit::{NODE_ADMIN, NODE_TOKEN, STAFF_PASSWORD};
use serde_json::Value;

use crate::support::{keygen, leasehold, login_token, Fixture, Node};

const SAM_PASSWORD: &str = "sam-support-password-1";

/// Runs `cmd`, expects success and returns the one JSON object it printed with `--json`.
fn json_of(cmd: &mut assert_cmd::Command) -> Value {
    let out = cmd.arg("--json").assert().success();
    let stdout = &out.get_output().stdout;
    serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "no single JSON object ({e}): {}",
            String::from_utf8_lossy(stdout)
        )
    })
}

fn stderr_of(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.assert().failure();
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

fn stdout_of(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.assert().success();
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

/// A support account `sam` made by the fixture's admin; its token.
fn support_account(f: &Fixture) -> String {
    f.vendor(&["account", "add", "--name", "sam", "--role", "support"])
        .arg("--password-stdin")
        .write_stdin(format!("{SAM_PASSWORD}\n"))
        .assert()
        .success();
    login_token(f.vendor_without_token(), "sam", SAM_PASSWORD)
}

/// `leasehold vendor --node URL` with its credentials file in `config`.
fn signed_in(f: &Fixture, config: &Path) -> assert_cmd::Command {
    let mut cmd = f.vendor_without_token();
    cmd.env("XDG_CONFIG_HOME", config);
    cmd
}

fn credentials_file(config: &Path) -> PathBuf {
    config.join("leasehold").join("vendor-credentials.json")
}

fn entries(page: &Value) -> Vec<Value> {
    page["entries"].as_array().unwrap().clone()
}

#[test]
fn the_bootstrap_token_makes_the_first_admin_and_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(&dir.path().join("vendor.pem"));
    let node = Node::start(dir.path(), &key.path);
    let bootstrap = || {
        let mut cmd = leasehold();
        cmd.args(["vendor", "--node", &node.url])
            .env("LEASEHOLD_VENDOR_TOKEN", NODE_TOKEN);
        cmd
    };
    // The node says at start how to make the first admin.
    assert!(
        node.log_text().contains("no admin account yet"),
        "{}",
        node.log_text()
    );

    // The first account must be an admin.
    let stderr = stderr_of(
        bootstrap()
            .args(["account", "add", "--name", "sam", "--role", "support"])
            .arg("--password-stdin")
            .write_stdin(format!("{SAM_PASSWORD}\n")),
    );
    assert!(stderr.contains("must be an admin"), "{stderr}");
    // A short password is refused before any request.
    let stderr = stderr_of(
        bootstrap()
            .args(["account", "add", "--name", "alice", "--role", "admin"])
            .arg("--password-stdin")
            .write_stdin("short\n"),
    );
    assert!(stderr.contains("at least 12"), "{stderr}");

    let created = json_of(
        bootstrap()
            .args(["account", "add", "--name", "Alice", "--role", "admin"])
            .arg("--password-stdin")
            .write_stdin(format!("{STAFF_PASSWORD}\n")),
    );
    assert_eq!(created["name"], "alice", "{created}");
    assert_eq!(created["role"], "admin");
    assert_eq!(created["created_by"], "bootstrap token");
    assert!(created.get("generated_password").is_none(), "{created}");

    // A second bootstrap is refused, and the token still opens nothing else.
    let stderr = stderr_of(
        bootstrap()
            .args(["account", "add", "--name", "mallory", "--role", "admin"])
            .arg("--password-stdin")
            .write_stdin(format!("{STAFF_PASSWORD}\n")),
    );
    assert!(
        stderr.contains("unauthorized") && stderr.contains("an admin account exists (alice)"),
        "{stderr}"
    );
    let stderr = stderr_of(bootstrap().args(["installation", "list"]));
    assert!(stderr.contains("bootstrap token only creates"), "{stderr}");
    assert!(!stderr.contains(NODE_TOKEN), "{stderr}");

    // The admin it made signs in and works.
    let mut vendor = leasehold();
    vendor.args(["vendor", "--node", &node.url]);
    let token = login_token(vendor, "alice", STAFF_PASSWORD);
    let list = json_of(
        leasehold()
            .args(["vendor", "--node", &node.url, "--token", &token])
            .args(["account", "list"]),
    );
    let names: Vec<&str> = list["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice"], "{list}");
}

#[test]
fn login_saves_a_private_token_that_later_commands_use_until_logout() {
    let f = Fixture::start();
    let config = f.path("config");

    // A wrong password: refused, nothing saved.
    let stderr = stderr_of(
        signed_in(&f, &config)
            .args(["login", "--name", NODE_ADMIN, "--password-stdin"])
            .write_stdin("not the password at all\n"),
    );
    assert!(stderr.contains("unauthorized"), "{stderr}");
    assert!(!credentials_file(&config).exists());

    let text = stdout_of(
        signed_in(&f, &config)
            .args(["login", "--name", NODE_ADMIN, "--password-stdin"])
            .args(["--label", "laptop"])
            .write_stdin(format!("{STAFF_PASSWORD}\n")),
    );
    assert!(
        text.contains(&format!("signed in to {}/ as admin (admin)", f.node().url)),
        "{text}"
    );
    assert!(!text.contains("lhv_"), "the token is not printed: {text}");
    let file = credentials_file(&config);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let entry = &saved["nodes"][format!("{}/", f.node().url)];
    assert_eq!(entry["account"], "admin", "{saved}");
    let first_token = entry["token"].as_str().unwrap().to_owned();
    let first_id = entry["token_id"].as_str().unwrap().to_owned();
    assert!(first_token.starts_with("lhv_"), "{saved}");

    // Later commands need no --token.
    let who = json_of(signed_in(&f, &config).arg("whoami"));
    assert_eq!(who["account"]["name"], "admin", "{who}");
    assert_eq!(who["account"]["role"], "admin");
    assert_eq!(who["token_id"], first_id.as_str());
    assert!(
        who["token_from"]
            .as_str()
            .unwrap()
            .contains("vendor-credentials.json"),
        "{who}"
    );
    let text = stdout_of(signed_in(&f, &config).arg("whoami"));
    assert!(text.contains("admin") && text.contains(&first_id), "{text}");
    let inst = json_of(signed_in(&f, &config).args(["installation", "create", "--name", "ACME"]));
    assert!(inst["id"].as_str().unwrap().starts_with("inst_"), "{inst}");
    let tokens = json_of(signed_in(&f, &config).args(["token", "list"]));
    assert!(
        tokens["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == first_id.as_str() && t["label"] == "laptop"),
        "{tokens}"
    );

    // Signing in again replaces the saved token and revokes the old one.
    let again = json_of(
        signed_in(&f, &config)
            .args(["login", "--name", NODE_ADMIN, "--password-stdin"])
            .write_stdin(format!("{STAFF_PASSWORD}\n")),
    );
    assert_eq!(again["replaced"], first_id.as_str(), "{again}");
    let stderr = stderr_of(f.vendor_as(&first_token).arg("whoami"));
    assert!(stderr.contains("revoked"), "{stderr}");
    let second_id = again["token_id"].as_str().unwrap().to_owned();

    // Logout revokes the token at the node and forgets it here.
    let out = json_of(signed_in(&f, &config).arg("logout"));
    assert_eq!(out["revoked"], true, "{out}");
    assert_eq!(out["token_id"], second_id.as_str());
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(saved["nodes"].as_object().unwrap().is_empty(), "{saved}");
    let stderr = stderr_of(signed_in(&f, &config).arg("whoami"));
    assert!(
        stderr.contains("vendor login") && stderr.contains("LEASEHOLD_VENDOR_TOKEN"),
        "{stderr}"
    );
    let stderr = stderr_of(signed_in(&f, &config).arg("logout"));
    assert!(stderr.contains("not signed in"), "{stderr}");
    let listed = f.json(&["token", "list"]);
    let second = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == second_id.as_str())
        .unwrap()
        .clone();
    assert!(second["revoked_at"].is_string(), "{second}");
}

#[test]
fn a_support_account_reads_and_adds_servers_but_is_refused_a_transfer() {
    let f = Fixture::start();
    let inst = f.create_installation("ACME");
    let production = f.add_server(&inst, "production");
    let other = f.add_server(&f.create_installation("Globex"), "production");
    let lic = f.grant(&production, "tts", 3, &[]);

    // `account add` without --password-stdin generates a strong password, shown once.
    let gen = f.json(&["account", "add", "--name", "gen", "--role", "support"]);
    let generated = gen["generated_password"].as_str().unwrap().to_owned();
    assert!(generated.len() >= 16, "{gen}");
    login_token(f.vendor_without_token(), "gen", &generated);
    let text = f.text(&["account", "add", "--name", "gen2", "--role", "support"]);
    assert!(
        text.contains("password: ") && text.contains("shown this once"),
        "{text}"
    );

    let sam = support_account(&f);
    let who = json_of(f.vendor_as(&sam).arg("whoami"));
    assert_eq!(who["account"]["role"], "support", "{who}");

    // Reads everything; adds a server.
    json_of(f.vendor_as(&sam).args(["server", "show", &production]));
    json_of(f.vendor_as(&sam).args(["license", "show", &lic]));
    json_of(f.vendor_as(&sam).args(["account", "list"]));
    let backup = json_of(f.vendor_as(&sam).args([
        "server",
        "add",
        "--installation",
        &inst,
        "--context",
        "backup",
    ]));
    assert_eq!(backup["context"], "backup", "{backup}");

    // Refused an admin's change, with `forbidden`, and the license did not move.
    let stderr = stderr_of(
        f.vendor_as(&sam)
            .args(["license", "transfer", &lic, "--to", &other]),
    );
    assert!(
        stderr.contains("forbidden") && stderr.contains("sam is a support account"),
        "{stderr}"
    );
    let shown = f.json(&["license", "show", &lic]);
    assert_eq!(shown["server"], production.as_str(), "{shown}");
    let stderr = stderr_of(
        f.vendor_as(&sam)
            .args(["account", "add", "--name", "eve", "--role", "admin"]),
    );
    assert!(stderr.contains("forbidden"), "{stderr}");
    let stderr = stderr_of(f.vendor_as(&sam).args(["token", "list", "--all"]));
    assert!(stderr.contains("forbidden"), "{stderr}");
    let names: Vec<String> = f.json(&["account", "list"])["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!names.contains(&"eve".to_owned()), "{names:?}");

    // Made an admin, the same token may transfer.
    let after = f.json(&["account", "set-role", "sam", "--role", "admin"]);
    assert_eq!(after["role"], "admin", "{after}");
    let moved = json_of(
        f.vendor_as(&sam)
            .args(["license", "transfer", &lic, "--to", &other]),
    );
    assert_eq!(moved["server"], other.as_str(), "{moved}");
}

#[test]
fn reasons_before_and_after_show_in_the_audit_log_with_its_filters_and_csv() {
    let f = Fixture::start();
    let acme = f.create_installation("ACME");
    let production = f.add_server(&acme, "production");
    let globex = f.create_installation("Globex");
    let other = f.add_server(&globex, "production");
    let lic = f.grant(&production, "tts", 3, &[]);
    let reason = "ticket 4711: customer moved the load, Zürich";
    f.vendor(&["license", "transfer", &lic, "--to", &other])
        .args(["--reason", reason])
        .assert()
        .success();

    // The table: time, actor, role, via, action, target, reason, installations.
    let table = f.text(&["audit"]);
    let line = table
        .lines()
        .find(|l| l.contains("license.transfer"))
        .unwrap_or_else(|| panic!("{table}"));
    for part in ["admin", "api", &lic, reason, &acme, &globex] {
        assert!(line.contains(part), "{part} not in {line:?}\n{table}");
    }
    assert!(
        table.contains("account.create") && table.contains("bootstrap token"),
        "{table}"
    );
    assert!(
        table.contains("first admin"),
        "the bootstrap's reason: {table}"
    );

    // Before and after, on request.
    let detail = f.text(&["audit", "--target", &lic, "--detail"]);
    assert!(detail.contains("transferred a license"), "{detail}");
    let before = detail.find("before:").unwrap();
    let after = detail.find("after:").unwrap();
    assert!(detail[before..after].contains(&production), "{detail}");
    assert!(detail[after..].contains(&other), "{detail}");

    let page = f.json(&["audit", "--target", &lic]);
    let e = entries(&page);
    assert_eq!(e.len(), 2, "grant and transfer: {page}");
    let transfer = &e[0];
    assert_eq!(transfer["action"], "license.transfer");
    assert_eq!(transfer["actor"], "admin");
    assert_eq!(transfer["role"], "admin");
    assert_eq!(transfer["via"], "api");
    assert_eq!(transfer["reason"], reason);
    assert_eq!(
        transfer["before"]["server"],
        production.as_str(),
        "{transfer}"
    );
    assert_eq!(transfer["after"]["server"], other.as_str(), "{transfer}");
    assert_eq!(e[1]["action"], "license.grant");
    assert_eq!(e[1]["reason"], "", "no --reason, no reason");

    // --installation: only what touched it.
    let of_globex = entries(&f.json(&["audit", "--installation", &globex]));
    let actions: Vec<&str> = of_globex
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["license.transfer", "server.add", "installation.create"],
        "{of_globex:?}"
    );
    // --server: the server's own changes and its licenses' (granted, moved away).
    let of_server = entries(&f.json(&["audit", "--server", &production]));
    let actions: Vec<&str> = of_server
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["license.transfer", "license.grant", "server.add"],
        "{of_server:?}"
    );
    // --since: today holds everything, tomorrow nothing.
    let today = chrono::Utc::now().date_naive();
    let all = entries(&f.json(&["audit", "--since", &today.to_string()]));
    assert!(all.len() >= 7, "{all:?}");
    let tomorrow = today.succ_opt().unwrap().to_string();
    assert!(entries(&f.json(&["audit", "--since", &tomorrow])).is_empty());
    // --actor, --limit and --all.
    let by_bootstrap = entries(&f.json(&["audit", "--actor", "bootstrap token"]));
    assert_eq!(by_bootstrap.len(), 1, "{by_bootstrap:?}");
    let one = f.json(&["audit", "--limit", "1"]);
    assert_eq!(entries(&one).len(), 1, "{one}");
    assert!(one["next_before"].is_u64(), "{one}");
    assert!(f.text(&["audit", "--limit", "1"]).contains("--all"));
    let every = f.json(&["audit", "--all"]);
    assert_eq!(entries(&every).len(), all.len(), "{every}");

    // CSV: one line per entry, quoted where needed.
    let csv_text = f.text(&["audit", "--csv", "--target", &lic]);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "id");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "{csv_text}");
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    assert_eq!(&rows[0][col("reason")], reason);
    assert_eq!(&rows[0][col("action")], "license.transfer");
    let after: Value = serde_json::from_str(&rows[0][col("after")]).unwrap();
    assert_eq!(after["server"], other.as_str());

    // A reason the node could not record is refused before any request.
    let stderr = stderr_of(
        f.vendor(&["license", "revoke", &lic])
            .args(["--reason", "bell \u{7}"]),
    );
    assert!(stderr.contains("--reason"), "{stderr}");
    assert!(f.json(&["license", "show", &lic])["revoked_at"].is_null());
    // A malformed filter is refused by the parser.
    let stderr = f.fails(&["audit", "--installation", "acme"]);
    assert!(stderr.contains("installation id"), "{stderr}");
}

#[test]
fn a_revoked_token_and_a_disabled_account_stop_working_at_once() {
    let f = Fixture::start();
    // A token for CI, printed once, listed without its secret, revoked.
    let created = f.json(&["token", "create", "--label", "ci deploy"]);
    let ci = created["token"].as_str().unwrap().to_owned();
    let ci_id = created["info"]["id"].as_str().unwrap().to_owned();
    assert!(ci.starts_with("lhv_"), "{created}");
    json_of(f.vendor_as(&ci).arg("whoami"));
    let list = f.text(&["token", "list"]);
    assert!(
        list.contains(&ci_id) && list.contains("ci deploy"),
        "{list}"
    );
    assert!(!list.contains(&ci), "{list}");
    let revoked = f.json(&["token", "revoke", &ci_id]);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let stderr = stderr_of(f.vendor_as(&ci).args(["installation", "list"]));
    assert!(
        stderr.contains("unauthorized") && stderr.contains("revoked"),
        "{stderr}"
    );

    // Disabling an account ends its tokens; enabling it again does not revive them.
    let sam = support_account(&f);
    json_of(f.vendor_as(&sam).arg("whoami"));
    let disabled = f.json(&["account", "disable", "sam"]);
    assert_eq!(disabled["disabled"], true, "{disabled}");
    let stderr = stderr_of(f.vendor_as(&sam).args(["installation", "list"]));
    assert!(stderr.contains("unauthorized"), "{stderr}");
    let mut login = f.vendor_without_token();
    login
        .args([
            "login",
            "--name",
            "sam",
            "--password-stdin",
            "--print-token",
        ])
        .write_stdin(format!("{SAM_PASSWORD}\n"));
    let stderr = stderr_of(&mut login);
    assert!(stderr.contains("disabled"), "{stderr}");
    let table = f.text(&["account", "list"]);
    let line = table.lines().find(|l| l.starts_with("sam ")).unwrap();
    assert!(line.contains("disabled"), "{table}");
    // An admin cannot disable itself.
    let stderr = f.fails(&["account", "disable", NODE_ADMIN]);
    assert!(stderr.contains("cannot disable your own"), "{stderr}");

    f.json(&["account", "enable", "sam"]);
    assert!(stderr_of(f.vendor_as(&sam).arg("whoami")).contains("revoked"));
    let sam = login_token(f.vendor_without_token(), "sam", SAM_PASSWORD);

    // Passwords: one's own with the present one; an admin sets another's (generated).
    let stderr = stderr_of(
        f.vendor_as(&sam)
            .args(["account", "set-password", "--password-stdin"])
            .write_stdin("wrong present password\nsam-new-password-22\n"),
    );
    assert!(stderr.contains("did not match"), "{stderr}");
    f.vendor_as(&sam)
        .args(["account", "set-password", "--password-stdin"])
        .write_stdin(format!("{SAM_PASSWORD}\nsam-new-password-22\n"))
        .assert()
        .success();
    login_token(f.vendor_without_token(), "sam", "sam-new-password-22");
    let reset = f.json(&["account", "set-password", "sam"]);
    let generated = reset["generated_password"].as_str().unwrap();
    // A reset ends the tokens signed in with the old password.
    assert!(stderr_of(f.vendor_as(&sam).arg("whoami")).contains("revoked"));
    let sam = login_token(f.vendor_without_token(), "sam", generated);
    let stderr = stderr_of(
        f.vendor_as(&sam)
            .args(["account", "set-password", NODE_ADMIN, "--password-stdin"])
            .write_stdin("admin-new-password-1\n"),
    );
    assert!(stderr.contains("forbidden"), "{stderr}");
}

#[test]
fn node_create_admin_makes_an_admin_on_a_fresh_database_without_any_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(&dir.path().join("vendor.pem"));
    let db = format!("sqlite://{}", dir.path().join("fresh.db").display());
    let out = leasehold()
        .args(["node", "create-admin", "--db", &db, "--name", "root"])
        .args(["--password-stdin", "--reason", "new node"])
        .write_stdin(format!("{STAFF_PASSWORD}\n"))
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("admin account root created"), "{text}");
    assert!(!text.contains(STAFF_PASSWORD), "{text}");
    // The name is taken now; a generated password for another is printed once.
    let out = leasehold()
        .args(["node", "create-admin", "--db", &db, "--name", "root"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("already_exists"), "{stderr}");
    let out = leasehold()
        .args(["node", "create-admin", "--db", &db, "--name", "spare"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let generated = text
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap_or_else(|| panic!("{text}"))
        .to_owned();

    // A node without a bootstrap token: the admins sign in and find their creation audited.
    let node = Node::start_flags(dir.path(), &key.path, &db, "node", &[], "info");
    assert!(
        !node.log_text().contains("no admin account yet"),
        "{}",
        node.log_text()
    );
    let mut vendor = leasehold();
    vendor.args(["vendor", "--node", &node.url]);
    login_token(vendor, "spare", &generated);
    let mut vendor = leasehold();
    vendor.args(["vendor", "--node", &node.url]);
    let token = login_token(vendor, "root", STAFF_PASSWORD);
    let page = json_of(
        leasehold()
            .args(["vendor", "--node", &node.url, "--token", &token])
            .args(["audit", "--target", "root"]),
    );
    let created = entries(&page)
        .into_iter()
        .find(|e| e["action"] == "account.create")
        .unwrap_or_else(|| panic!("{page}"));
    assert_eq!(created["actor"], "node database", "{created}");
    assert_eq!(created["via"], "database");
    assert_eq!(created["reason"], "new node");
    assert_eq!(created["after"]["role"], "admin");
    // No bootstrap token: the shared token is nothing to this node.
    let stderr = stderr_of(
        leasehold()
            .args(["vendor", "--node", &node.url, "--token", NODE_TOKEN])
            .args(["account", "add", "--name", "x", "--role", "admin"]),
    );
    assert!(stderr.contains("unauthorized"), "{stderr}");
}

#[test]
fn a_node_without_admin_or_bootstrap_token_says_how_to_make_the_first_admin() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(&dir.path().join("vendor.pem"));
    let db = format!("sqlite://{}", dir.path().join("node.db").display());
    let node = Node::start_flags(dir.path(), &key.path, &db, "node", &[], "info");
    let log = node.log_text();
    assert!(
        log.contains("no admin account yet") && log.contains("leasehold node create-admin"),
        "{log}"
    );
}

/// `node serve --admin-listen`: the address license servers reach serves sync and no admin
/// API; staff use the admin listener for every vendor command, `sync-file` included.
#[test]
fn an_admin_listener_of_its_own_keeps_the_admin_api_off_the_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(&dir.path().join("key.pem"));
    let db = format!("sqlite://{}", dir.path().join("node.db").display());
    let node = Node::start_args(
        dir.path(),
        &key.path,
        &db,
        "node",
        &["--admin-listen", "127.0.0.1:0"],
    );
    // "http://PUBLIC (admin http://ADMIN)"
    let (public, admin) = node
        .url
        .split_once(" (admin ")
        .map(|(p, a)| (p.to_owned(), a.trim_end_matches(')').to_owned()))
        .unwrap_or_else(|| panic!("no admin address in {:?}", node.url));
    let vendor = |url: &str| {
        let mut cmd = leasehold();
        cmd.args(["vendor", "--node", url]);
        cmd
    };
    // Through the public address the bootstrap is refused, and the message says where to go.
    let e = stderr_of(
        vendor(&public)
            .args(["--token", NODE_TOKEN, "account", "add", "--name", "alice"])
            .args(["--role", "admin", "--password-stdin"])
            .write_stdin(format!("{STAFF_PASSWORD}\n")),
    );
    assert!(e.contains("--admin-listen"), "{e}");
    // Through the admin address: the first admin, a sign-in, an installation and a server.
    let token = crate::support::bootstrap_admin(&admin, None);
    let as_admin = |args: &[&str]| json_of(vendor(&admin).args(["--token", &token]).args(args));
    let inst = as_admin(&["installation", "create", "--name", "Split"]);
    let server = as_admin(&[
        "server",
        "add",
        "--installation",
        inst["id"].as_str().unwrap(),
        "--context",
        "production",
    ]);
    let guid = server["guid"].as_str().unwrap();
    // An air-gapped sync through the admin address (staff have only that one), and a
    // license server's sync through the public one: both served.
    let upload = serde_json::json!({
        "server_guid": guid,
        "instance_id": format!("inst-{}", "ab".repeat(16)),
        "sync_token": null,
        "last_bundle_serial": 0,
        "context": null,
        "software_version": "test",
        "usage": [],
    });
    let upload_file = dir.path().join("upload.json");
    std::fs::write(&upload_file, upload.to_string()).unwrap();
    let out = json_of(
        vendor(&admin)
            .args(["--token", &token, "sync-file", "--upload"])
            .arg(&upload_file)
            .arg("--out")
            .arg(dir.path().join("bundle.json")),
    );
    assert_eq!(out["serial"], 1, "{out}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let status = |request: reqwest::RequestBuilder| {
        runtime.block_on(async move { request.send().await.unwrap().status().as_u16() })
    };
    // The bundle names the instance: a second instance's sync of the bound GUID is refused
    // as `guid_in_use` (409) — the public address serves sync and decides it.
    let mut other = upload.clone();
    other["instance_id"] = serde_json::json!(format!("inst-{}", "cd".repeat(16)));
    assert_eq!(
        status(http.post(format!("{public}/v1/sync")).json(&other)),
        409,
        "the public address syncs"
    );
    // The console is on the admin address only.
    assert_eq!(status(http.get(format!("{admin}/console/login"))), 200);
    assert_eq!(status(http.get(format!("{public}/console/login"))), 404);
}
