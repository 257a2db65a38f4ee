//! The license server's settings file (`--config`, TOML): `FileConfig::parse` on the input
//! (as UTF-8, as `FileConfig::load` reads it). A file that parses must print (`to_toml`, what
//! the dashboard writes) to a file that parses to the same settings (unless a string holds
//! 256 quotes in a row: `leasehold_fuzz::toml_write_overflows`); then each setting gets
//! the check `server run` gives it: `check_node_url` on every node (whose normal form must
//! check to itself), `parse_address`, `parse_duration`, `ServerGuid::parse` and
//! `parse_public_key` (vendor keys given inline; key files are not read here).
#![no_main]

use leasehold_fuzz::toml_write_overflows;
use leasehold_proto::{parse_public_key, ServerGuid};
use leasehold_server::config::{
    check_node_url, check_node_urls, parse_address, parse_duration, FileConfig,
    DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = FileConfig::parse(text) else {
        return;
    };
    if !toml_write_overflows(&config) {
        let printed = config.to_toml();
        match FileConfig::parse(&printed) {
            Ok(back) => assert_eq!(back, config, "printed as {printed:?}"),
            Err(e) => panic!("{config:?} printed as {printed:?}, which does not parse: {e}"),
        }
    }

    if let Some(nodes) = &config.nodes {
        for node in nodes {
            if let Ok(url) = check_node_url(node) {
                assert_eq!(
                    check_node_url(&url).as_ref(),
                    Ok(&url),
                    "{node:?} normalized as {url:?}"
                );
            }
        }
        if let Ok(urls) = check_node_urls(nodes.iter().map(String::as_str)) {
            assert_eq!(
                check_node_urls(urls.iter().map(String::as_str)),
                Ok(urls.clone())
            );
        }
    }
    for (text, example) in [
        (&config.listen, DEFAULT_LISTEN),
        (&config.admin_listen, DEFAULT_ADMIN_LISTEN),
    ] {
        if let Some(Ok(addr)) = text.as_deref().map(|t| parse_address(t, example)) {
            assert_eq!(parse_address(&addr.to_string(), example), Ok(addr));
        }
    }
    if let Some(Ok(d)) = config.node_timeout.as_deref().map(parse_duration) {
        let printed = humantime::format_duration(d).to_string();
        assert_eq!(
            parse_duration(&printed),
            Ok(d),
            "{d:?} printed as {printed:?}"
        );
    }
    if let Some(guid) = &config.guid {
        let _ = ServerGuid::parse(guid);
    }
    for key in config.vendor_keys.iter().flatten() {
        let _ = parse_public_key(key);
    }
});
