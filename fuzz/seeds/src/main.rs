//! Writes the seed inputs of every fuzz target into `DIR/<target>/seed-<name>` (default
//! `fuzz/corpus`): what a node, a server, a client and a browser really send, made with the
//! real types where there is a signature or a lot of structure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, TimeZone, Utc};
use leasehold_proto::{
    BundlePayload, ClientId, Context, Feature, FeatureRequest, InstallationId, InstanceId,
    LeaseRequest, License, LicenseId, ServerGuid, SyncToken, SyncUpload, UsageBucket,
    VendorSigningKey,
};

/// The GUID of the envelope target's fixture.
const FIXTURE_GUID: [u8; 16] = [0xDF; 16];

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    envelope(&dir.join("envelope"))?;
    ids(&dir.join("ids"))?;
    sync_upload(&dir.join("sync_upload"))?;
    lease_request(&dir.join("lease_request"))?;
    server_config(&dir.join("server_config"))?;
    dashboard_form(&dir.join("dashboard_form"))?;
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(format!("seed-{name}")), bytes)
}

fn feature(name: &str) -> Feature {
    Feature::parse(name).unwrap_or_else(|e| panic!("{e}"))
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

fn bundle(guid: ServerGuid, context: Context) -> BundlePayload {
    let issued = Utc
        .with_ymd_and_hms(2026, 11, 1, 12, 0, 0)
        .single()
        .unwrap_or_default();
    let license = |i: u8, name: &str, count, context, backs_up| License {
        id: LicenseId::from_random([i; 8]),
        feature: feature(name),
        count,
        context,
        maintenance_until: date(2027, 1, 1),
        expires: Some(date(2027, 12, 31)),
        backs_up,
    };
    let licenses = match context {
        Context::Backup => vec![license(
            2,
            "tts",
            10,
            Context::Backup,
            Some(LicenseId::from_random([1; 8])),
        )],
        c => vec![
            license(1, "tts", 10, c, None),
            license(3, "asr.en-US", 20, c, None),
        ],
    };
    BundlePayload {
        serial: 7,
        server_guid: guid,
        context,
        installation_id: InstallationId::from_random([3; 8]),
        issued_at: issued,
        not_after: issued + chrono::Duration::days(60),
        sync_interval_secs: 86_400,
        next_sync_token: SyncToken::from_random([9; 16]),
        acked_usage_seq: 12,
        licenses,
    }
}

fn envelope(dir: &Path) -> std::io::Result<()> {
    let key = VendorSigningKey::from_secret_bytes([7; 32]);
    let other = VendorSigningKey::from_secret_bytes([8; 32]);
    let guid = ServerGuid::from_bytes(FIXTURE_GUID);
    let production = key.sign_bundle(&bundle(guid, Context::Production));
    write(dir, "production", production.to_json())?;
    write(
        dir,
        "development",
        key.sign_bundle(&bundle(guid, Context::Development))
            .to_json(),
    )?;
    write(
        dir,
        "backup",
        key.sign_bundle(&bundle(guid, Context::Backup)).to_json(),
    )?;
    write(
        dir,
        "other-guid",
        key.sign_bundle(&bundle(
            ServerGuid::from_bytes([1; 16]),
            Context::Production,
        ))
        .to_json(),
    )?;
    write(
        dir,
        "other-key",
        other
            .sign_bundle(&bundle(guid, Context::Production))
            .to_json(),
    )?;
    // Signed, but not a bundle.
    write(
        dir,
        "not-a-bundle",
        key.sign_bytes(b"{\"serial\":1}").to_json(),
    )?;
    // As masks over the fixture's envelope: unchanged, then one byte of the signature.
    write(dir, "mask-unchanged", [0u8, 0, 0])?;
    write(dir, "mask-signature", [0xF0u8, 0x01, 0x01])?;
    Ok(())
}

fn ids(dir: &Path) -> std::io::Result<()> {
    let seeds: [(&str, String); 14] = [
        ("guid", "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}".into()),
        (
            "guid-lower-bare",
            "df9960a1-7bd5-633b-f0f4-b1470bbd0b8e".into(),
        ),
        (
            "guid-spaces",
            "  {Df9960A1-7bD5-633B-F0F4-B1470BBD0B8E}\n".into(),
        ),
        (
            "installation",
            InstallationId::from_random([3; 8]).to_string(),
        ),
        (
            "license",
            LicenseId::from_random([1, 2, 3, 4, 5, 6, 7, 0xab]).to_string(),
        ),
        ("instance", InstanceId::from_random([7; 16]).to_string()),
        ("sync-token", SyncToken::from_random([9; 16]).to_string()),
        ("client", ClientId::from_random([0xc1; 16]).to_string()),
        ("feature", "asr.en-US".into()),
        ("feature-short", "tts".into()),
        ("context", "production".into()),
        ("context-mixed", " Development ".into()),
        (
            "public-key",
            VendorSigningKey::from_secret_bytes([7; 32]).public_key_string(),
        ),
        (
            "public-key-docs",
            "UsVB4x82c31RF7-YPRoHlWb7ingL6gNrY2aA2IhD0wE".into(),
        ),
    ];
    for (name, text) in seeds {
        write(dir, name, text)?;
    }
    Ok(())
}

fn sync_upload(dir: &Path) -> std::io::Result<()> {
    let hour = |h| {
        Utc.with_ymd_and_hms(2026, 11, 2, h, 0, 0)
            .single()
            .unwrap_or_default()
    };
    let bucket = |seq, name: &str, h, peak| UsageBucket {
        seq,
        feature: feature(name),
        hour: hour(h),
        peak_in_use: peak,
        grants: 1200,
        denials: 3,
        denials_while_free: 1,
        backup_use_secs: 0,
        license_secs: u64::from(peak) * 1800,
    };
    let first = SyncUpload {
        server_guid: ServerGuid::from_bytes(FIXTURE_GUID),
        instance_id: InstanceId::from_random([7; 16]),
        sync_token: None,
        last_bundle_serial: 0,
        context: None,
        software_version: "0.1.0".into(),
        usage: Vec::new(),
    };
    let daily = SyncUpload {
        sync_token: Some(SyncToken::from_random([9; 16])),
        last_bundle_serial: 7,
        context: Some(Context::Production),
        usage: vec![
            bucket(13, "tts", 9, 4),
            bucket(14, "asr.en-US", 9, 12),
            bucket(15, "tts", 10, 6),
        ],
        ..first.clone()
    };
    let backup = SyncUpload {
        context: Some(Context::Backup),
        usage: vec![UsageBucket {
            backup_use_secs: 5400,
            ..bucket(1, "tts", 11, 2)
        }],
        ..daily.clone()
    };
    for (name, upload) in [("first", first), ("daily", daily), ("backup", backup)] {
        write(dir, name, serde_json::to_vec(&upload)?)?;
    }
    Ok(())
}

fn lease_request(dir: &Path) -> std::io::Result<()> {
    let request = |client: u8, seq, epoch, features: &[(&str, FeatureRequest)]| LeaseRequest {
        client_id: ClientId::from_random([client; 16]),
        product_release: date(2026, 9, 1),
        features: features
            .iter()
            .map(|(name, r)| (feature(name), *r))
            .collect::<BTreeMap<_, _>>(),
        failover: false,
        seq,
        epoch,
        asks: false,
        release: false,
    };
    let want = |in_use, want, quota| FeatureRequest {
        in_use,
        want,
        quota,
        ..FeatureRequest::default()
    };
    let first = request(1, 1, 0, &[("tts", want(0, 2, 0))]);
    let refresh = request(
        1,
        2,
        1,
        &[
            (
                "tts",
                FeatureRequest {
                    acquired: 40,
                    denied: 2,
                    counted_acquired: 10,
                    ..want(2, 4, 2)
                },
            ),
            ("asr.en-US", want(1, 3, 0)),
        ],
    );
    let asks = LeaseRequest {
        asks: true,
        ..request(
            2,
            1,
            1,
            &[(
                "tts",
                FeatureRequest {
                    waiting: 3,
                    ..want(5, 8, 0)
                },
            )],
        )
    };
    let failover = LeaseRequest {
        failover: true,
        ..request(3, 5, 0, &[("tts", want(3, 4, 0))])
    };
    let release = LeaseRequest {
        release: true,
        ..request(1, 3, 1, &[("tts", want(0, 0, 0))])
    };
    let newer_product = LeaseRequest {
        product_release: date(2027, 6, 1),
        ..request(
            4,
            1,
            0,
            &[("asr.en-US", want(0, 5, 0)), ("one", want(1, 1, 0))],
        )
    };
    // The target's site license (4,000,000,000): two large clients.
    let site = request(5, 1, 0, &[("site", want(150_000, 200_000, 0))]);
    let site_other = request(6, 1, 0, &[("site", want(2_000_000, 3_000_000, 0))]);
    let json = |r: &LeaseRequest| serde_json::to_string(r).unwrap_or_default();
    write(
        dir,
        "site",
        format!("{}\n{}", json(&site), json(&site_other)),
    )?;
    write(dir, "first", json(&first))?;
    write(dir, "refresh", json(&refresh))?;
    write(dir, "asks", json(&asks))?;
    write(dir, "failover", json(&failover))?;
    write(dir, "newer-product", json(&newer_product))?;
    // Several clients, one request after another, as the allocator sees them.
    let story = [&first, &asks, &refresh, &failover, &newer_product, &release]
        .map(json)
        .join("\n");
    write(dir, "story", story)?;
    Ok(())
}

fn server_config(dir: &Path) -> std::io::Result<()> {
    write(
        dir,
        "operations-example",
        r#"data_dir = "/var/lib/leasehold-server"
listen = "0.0.0.0:7569"
admin_listen = "127.0.0.1:8080"
nodes = ["https://node1.vendor.example", "https://node2.vendor.example"]
vendor_keys = ["UsVB4x82c31RF7-YPRoHlWb7ingL6gNrY2aA2IhD0wE"]
guid = "{DF9960A1-7BD5-633B-F0F4-B1470BBD0B8E}"
"#,
    )?;
    write(
        dir,
        "dashboard-written",
        r#"# leasehold license server settings (written by the dashboard).
# Flags and LEASEHOLD_SERVER_* environment variables override these.
nodes = ["http://127.0.0.1:8470"]
listen = "[::]:7569"
admin_listen = "127.0.0.1:8080"
vendor_keys = ["vendor.pub"]
admin_token = "secret-token"
node_timeout = "1m 30s"
"#,
    )?;
    write(
        dir,
        "air-gapped",
        "data_dir = \"data\"\nnodes = []\nvendor_keys = [\"keys/vendor.pub\", \
         \"UsVB4x82c31RF7-YPRoHlWb7ingL6gNrY2aA2IhD0wE\"]\n",
    )?;
    Ok(())
}

fn dashboard_form(dir: &Path) -> std::io::Result<()> {
    let key = VendorSigningKey::from_secret_bytes([7; 32]).public_key_string();
    let csrf = "csrf=Yk3xQ2f9cT1oP8uV5rN0aL6eW4sD7gH2";
    write(
        dir,
        "login",
        format!("password=correct+horse+battery&{csrf}&next=%2Fclients%3Ffeature%3Dtts"),
    )?;
    write(dir, "logout", csrf)?;
    write(
        dir,
        "setup",
        format!("{csrf}&guid=%7BDF9960A1-7BD5-633B-F0F4-B1470BBD0B8E%7D"),
    )?;
    write(
        dir,
        "config",
        format!(
            "{csrf}&nodes=https%3A%2F%2Fnode1.vendor.example%0D%0Ahttp%3A%2F%2F127.0.0.1%3A8470%2F\
             &listen=0.0.0.0%3A7569&admin_listen=127.0.0.1%3A8080&node_timeout=30s\
             &vendor_keys={key}%0D%0A"
        ),
    )?;
    write(
        dir,
        "config-errors",
        format!("{csrf}&nodes=ftp%3A%2F%2Fx&listen=localhost&admin_listen=&node_timeout=0s&vendor_keys=vendor.pub"),
    )?;
    Ok(())
}
