//! No secret in any log or in the support bundle: a node and a license server logging at
//! debug level go through everything that handles a secret (admin tokens, the node's
//! bootstrap token, vendor account passwords right and wrong, generated and changed, their
//! personal tokens from sign-in and `token create`, the client key and its rotation, the
//! dashboard password, a wrong password, a session, a proxy password, the vendor signing
//! key), then both logs and the support bundle the dashboard hands out are scanned for each
//! secret.

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use leasehold_testkit::{release_date, CLIENT_KEY, NODE_TOKEN, SERVER_TOKEN, STAFF_PASSWORD};

use crate::support::{
    keygen, leasehold, leasehold_path, login_token, read_log, Fixture, LicenseServer, Node,
};

const DASHBOARD_PASSWORD: &str = "dashboard-pa55-Wombat-7731";
const WRONG_PASSWORD: &str = "wrong-pa55-Platypus-2209";
const PROXY_PASSWORD: &str = "proxy-pa55-Quokka-4410";
const SUPPORT_PASSWORD: &str = "support-pa55-Numbat-5512";
const NEW_SUPPORT_PASSWORD: &str = "support-pa55-Dingo-6623";
const WRONG_STAFF_PASSWORD: &str = "staff-wrong-Bilby-7734";

/// The cookie `name`'s value among a response's `Set-Cookie` headers.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

#[test]
fn no_secret_appears_in_the_logs_or_the_support_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(&dir.path().join("vendor.pem"));
    let db = format!("sqlite://{}", dir.path().join("node.db").display());
    let node = Node::start_logging(dir.path(), &key.path, &db, "node", &[], "debug");
    let f = Fixture::on(dir, key, node, None);
    let inst = f.create_installation("Plant A");
    let guid = f.add_server(&inst, "production");
    f.grant(&guid, "render", 2, &[]);

    // Vendor staff: an account with a chosen password, one with a generated one, a wrong
    // password, sign-ins (one saved to the credentials file), a token for CI, a password
    // changed.
    let config = f.path("config");
    f.vendor(&["account", "add", "--name", "sam", "--role", "support"])
        .arg("--password-stdin")
        .write_stdin(format!("{SUPPORT_PASSWORD}\n"))
        .assert()
        .success();
    let added = f.json(&["account", "add", "--name", "gen", "--role", "support"]);
    let generated = added["generated_password"].as_str().unwrap().to_owned();
    f.vendor_without_token()
        .args(["login", "--name", "sam", "--password-stdin"])
        .write_stdin(format!("{WRONG_STAFF_PASSWORD}\n"))
        .assert()
        .failure();
    f.vendor_without_token()
        .env("XDG_CONFIG_HOME", &config)
        .args(["login", "--name", "sam", "--password-stdin"])
        .write_stdin(format!("{SUPPORT_PASSWORD}\n"))
        .assert()
        .success();
    let saved = std::fs::read_to_string(config.join("leasehold/vendor-credentials.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&saved).unwrap();
    let saved_token = saved["nodes"][format!("{}/", f.node().url)]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    f.vendor_without_token()
        .env("XDG_CONFIG_HOME", &config)
        .args(["account", "set-password", "--password-stdin"])
        .write_stdin(format!("{SUPPORT_PASSWORD}\n{NEW_SUPPORT_PASSWORD}\n"))
        .assert()
        .success();
    let sam_token = login_token(f.vendor_without_token(), "sam", NEW_SUPPORT_PASSWORD);
    let ci = f.json(&["token", "create", "--label", "ci"]);
    let ci_token = ci["token"].as_str().unwrap().to_owned();
    f.vendor_as(&sam_token).args(["whoami"]).assert().success();
    f.vendor_as(&ci_token).args(["whoami"]).assert().success();

    let data = f.path("server");
    std::fs::create_dir_all(&data).unwrap();
    let mut set = std::process::Command::new(leasehold_path())
        .args(["server", "set-password", "--data-dir"])
        .arg(&data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(set.stdin.take().unwrap(), "{DASHBOARD_PASSWORD}").unwrap();
    assert!(set.wait().unwrap().success());

    // A proxy with a password is configured; the node is on loopback, reached directly.
    let proxy = format!("http://leasehold:{PROXY_PASSWORD}@127.0.0.1:9");
    let mut args = vec!["--admin-token".to_owned(), SERVER_TOKEN.to_owned()];
    args.extend(f.server_args(&guid));
    args.extend(["--proxy".to_owned(), proxy]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut cmd, log) = LicenseServer::command(&data, "127.0.0.1:0", "127.0.0.1:0", &args);
    cmd.env("RUST_LOG", "debug").env("NO_PROXY", "127.0.0.1");
    let server = LicenseServer::spawn(cmd, log, SERVER_TOKEN);
    server.sync_now();

    let acquire = |key: &str| {
        leasehold()
            .args(["client", "--servers", &server.lease_url])
            .args(["--product-release", &release_date().to_string()])
            .args(["acquire", "render"])
            .env("LEASEHOLD_CLIENT_KEY", key)
            .timeout(Duration::from_secs(30))
            .assert()
            .success();
    };
    acquire(CLIENT_KEY);
    let rotated = server.json(&["client-key", "--rotate"]);
    let new_key = rotated["key"].as_str().unwrap_or_default().to_owned();
    assert!(new_key.starts_with("lhck_"), "{rotated}");
    acquire(&new_key);

    // The dashboard: a wrong password, then the right one, then the support bundle.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (session, bundle) = rt.block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let admin = &server.admin_url;
        let mut session = None;
        for password in [WRONG_PASSWORD, DASHBOARD_PASSWORD] {
            let form = http.get(format!("{admin}/login")).send().await.unwrap();
            let login_cookie = set_cookie(&form, "leasehold_login").unwrap();
            let csrf = hidden(&form.text().await.unwrap(), "csrf");
            let r = http
                .post(format!("{admin}/login"))
                .header("cookie", format!("leasehold_login={login_cookie}"))
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("password", password),
                    ("next", "/"),
                ])
                .send()
                .await
                .unwrap();
            session = set_cookie(&r, "leasehold_session").filter(|s| !s.is_empty());
        }
        let session = session.expect("signed in");
        let bundle = http
            .get(format!("{admin}/diagnostics/bundle"))
            .header("cookie", format!("leasehold_session={session}"))
            .send()
            .await
            .unwrap();
        assert!(bundle.status().is_success(), "{}", bundle.status());
        (session, bundle.text().await.unwrap())
    });
    assert!(bundle.contains("leasehold_support_bundle"), "{bundle}");
    assert!(
        bundle.contains("render"),
        "the bundle has the status: {bundle}"
    );

    let signing_key = std::fs::read_to_string(&f.key.path).unwrap();
    let signing_key_body: String = signing_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let secrets = [
        ("the node's bootstrap token", NODE_TOKEN.to_owned()),
        ("the first admin's password", STAFF_PASSWORD.to_owned()),
        ("the first admin's token", f.admin_token.clone()),
        ("a support account's password", SUPPORT_PASSWORD.to_owned()),
        ("its new password", NEW_SUPPORT_PASSWORD.to_owned()),
        ("a wrong staff password", WRONG_STAFF_PASSWORD.to_owned()),
        ("a generated account password", generated),
        ("the token saved by vendor login", saved_token),
        ("a token from vendor login --print-token", sam_token),
        ("a token from vendor token create", ci_token),
        ("the server's admin token", SERVER_TOKEN.to_owned()),
        ("the client key", CLIENT_KEY.to_owned()),
        ("the rotated client key", new_key),
        ("the dashboard password", DASHBOARD_PASSWORD.to_owned()),
        ("a wrong dashboard password", WRONG_PASSWORD.to_owned()),
        ("the proxy password", PROXY_PASSWORD.to_owned()),
        ("the dashboard session", session),
        ("the vendor signing key", signing_key_body),
    ];
    let server_log = server.log_text();
    let node_log = read_log(&f.dir.path().join("node.log"));
    assert!(
        server_log.contains("DEBUG") && node_log.contains("DEBUG"),
        "the logs are not at debug level"
    );
    for (what, secret) in &secrets {
        assert!(secret.len() >= 16, "{what} is too short to scan for");
        for (place, text) in [
            ("the server's log", &server_log),
            ("the node's log", &node_log),
            ("the support bundle", &bundle),
        ] {
            assert!(!text.contains(secret.as_str()), "{what} is in {place}");
        }
    }
}
