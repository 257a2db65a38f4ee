//! TLS on every hop, with the real binaries: a node serving HTTPS itself, a license server
//! that trusts only the vendor's authority (`--node-ca`) and syncs through a real CONNECT
//! proxy (Debian's tinyproxy, with credentials), serving its own clients and dashboard over
//! HTTPS with Secure cookies; and a node's renewed certificate served after SIGHUP with no
//! restart.

use std::time::Duration;

use leasehold_testkit::process::Tinyproxy;
use leasehold_testkit::release_date;
use leasehold_testkit::tls::TestCa;

use crate::support::{leasehold, Fixture, LicenseServer};

const PROXY_USER: &str = "leasehold";
const PROXY_PASSWORD: &str = "pr0xy-pa55word";

#[test]
fn a_server_syncs_with_an_https_node_through_a_connect_proxy_and_serves_https_itself() {
    let (f, ca) = Fixture::start_https();
    let node_url = f.node().url.clone();
    assert!(node_url.starts_with("https://127.0.0.1:"), "{node_url}");
    let node_port = node_url.rsplit(':').next().unwrap().to_owned();
    let inst = f.create_installation("Plant A");
    let guid = f.add_server(&inst, "production");
    f.grant(&guid, "render", 3, &[]);
    // Trusting the system's roots only, the vendor's private authority is unknown: no sync,
    // and the error says why.
    let args = f.server_args(&guid);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let untrusting = LicenseServer::run(&f.path("untrusting"), &args);
    let e = untrusting.try_sync().unwrap_err();
    assert!(
        e.contains("certificate") || e.contains("UnknownIssuer"),
        "{e}\n{}",
        untrusting.log_text()
    );
    drop(untrusting);

    // Trusting the vendor's authority, through the proxy named by HTTPS_PROXY (with
    // credentials), with HTTPS on its own listeners.
    let proxy_dir = f.path("proxy");
    std::fs::create_dir_all(&proxy_dir).unwrap();
    let proxy = Tinyproxy::start(&proxy_dir, Some((PROXY_USER, PROXY_PASSWORD)));
    let site_ca = TestCa::new(f.dir.path(), "site");
    let site = site_ca.issue(f.dir.path(), "server");
    let mut args = f.server_args(&guid);
    args.extend(
        [
            "--admin-token",
            leasehold_testkit::SERVER_TOKEN,
            "--node-ca",
            ca.ca_file.to_str().unwrap(),
            "--tls-cert",
            site.cert_file.to_str().unwrap(),
            "--tls-key",
            site.key_file.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let data = f.path("server");
    let (mut cmd, log) = LicenseServer::command(&data, "127.0.0.1:0", "127.0.0.1:0", &args);
    let proxy_with_credentials = proxy.url.replacen(
        "http://",
        &format!("http://{PROXY_USER}:{PROXY_PASSWORD}@"),
        1,
    );
    cmd.env("HTTPS_PROXY", &proxy_with_credentials);
    let server =
        LicenseServer::spawn(cmd, log, leasehold_testkit::SERVER_TOKEN).trusting(&site_ca.ca_file);
    assert!(
        server.lease_url.starts_with("https://") && server.admin_url.starts_with("https://"),
        "{} {}",
        server.lease_url,
        server.admin_url
    );
    server.sync_now();
    let status = server.status();
    assert_eq!(status["licenses"][0]["feature"], "render", "{status}");
    let tunnels = proxy.log_text();
    assert!(
        tunnels.contains(&format!("CONNECT 127.0.0.1:{node_port}")),
        "the sync did not go through the proxy:\n{tunnels}"
    );
    assert!(
        !server.log_text().contains(PROXY_PASSWORD),
        "the proxy password is in the server's log"
    );

    // An application over HTTPS, trusting the site's authority.
    let out = leasehold()
        .args(["client", "--servers", &server.lease_url])
        .args(["--product-release", &release_date().to_string()])
        .args(["acquire", "render"])
        .env("SSL_CERT_FILE", &site_ca.ca_file)
        .timeout(Duration::from_secs(30))
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.starts_with("granted: render"), "{text}");

    // The dashboard's cookies never travel over plain HTTP.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cookie = rt.block_on(async {
        let r = site_ca
            .client()
            .get(format!("{}/login", server.admin_url))
            .send()
            .await
            .unwrap();
        r.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    });
    assert!(!cookie.is_empty(), "no cookie set by the sign-in page");
    assert!(cookie.iter().all(|c| c.contains("; Secure")), "{cookie:?}");
}

#[test]
fn a_node_serves_its_renewed_certificate_after_sighup_without_a_restart() {
    let (mut f, old_ca) = Fixture::start_https();
    let url = format!("{}/v1/health", f.node().url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let healthy = |ca: &TestCa| {
        rt.block_on(async {
            ca.client()
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
    };
    assert!(healthy(&old_ca));

    let new_ca = TestCa::new(f.dir.path(), "renewed");
    new_ca.issue(f.dir.path(), "node");
    let pid = f.node().pid().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    let mut served = false;
    for _ in 0..200 {
        if healthy(&new_ca) {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        served,
        "the renewed certificate was not served:\n{}",
        f.node().log_text()
    );
    assert!(!healthy(&old_ca), "the old certificate is still served");
    assert!(
        f.node()
            .log_text()
            .contains("new TLS certificate in service"),
        "{}",
        f.node().log_text()
    );
    // Same process: the vendor commands, trusting the new authority, still work against it.
    f.ca_file = Some(new_ca.ca_file.clone());
    f.create_installation("after renewal");
}
