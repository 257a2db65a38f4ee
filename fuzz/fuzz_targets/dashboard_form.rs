//! The dashboard's forms (`application/x-www-form-urlencoded` POST bodies), decoded by the
//! extractor the handlers use (`axum::extract::Form`) into each form type, then checked as
//! the handlers check them:
//! - sign-in: where `safe_next` sends the browser afterwards must be a valid `Location`
//!   (else the sign-in answers 500) that a browser resolves to this dashboard, never to
//!   another site (resolved with the `url` crate, which follows the WHATWG URL rules
//!   browsers use);
//! - setup: the GUID field as `setup_post` parses it, printed and parsed back;
//! - configuration: `check_config_form`; when it accepts, the settings written into a
//!   `FileConfig` print and parse back to the same file, and checking that file's settings
//!   again (what `server run` does at its next start) gives the same settings. Key file names
//!   are resolved in a directory that does not exist, and a form naming a key file by an
//!   absolute path or through `..` is not checked, so the target never reads this machine's
//!   files.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{Form, FromRequest};
use axum::http::{header, HeaderValue, Request};
use leasehold_fuzz::toml_write_overflows;
use leasehold_proto::{ServerGuid, TrustedKeys};
use leasehold_server::config::{
    check_node_urls, load_vendor_key, parse_address, parse_duration, FileConfig,
    DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN,
};
use leasehold_server::dashboard::auth::safe_next;
use leasehold_server::dashboard::{
    check_config_form, lines, ConfigPost, CsrfOnly, LoginForm, SetupForm,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

/// Where key files named in the form are looked up: nowhere.
const KEY_DIR: &str = "/nonexistent/leasehold-fuzz";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}

/// The body through axum's `Form` extractor, as a POST of the dashboard receives it.
fn decode<T: DeserializeOwned + Send + 'static>(body: &[u8]) -> Option<T> {
    let req = Request::builder()
        .method("POST")
        .uri("/config")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_vec()))
        .unwrap();
    runtime()
        .block_on(Form::<T>::from_request(req, &()))
        .ok()
        .map(|Form(form)| form)
}

fn check_login(form: &LoginForm) {
    let next = safe_next(Some(&form.next));
    assert!(
        HeaderValue::try_from(next.clone()).is_ok(),
        "next {:?}: the redirect after sign-in is not a valid Location header (500)",
        form.next
    );
    let base = url::Url::parse("http://dashboard.invalid/login").unwrap();
    if let Ok(target) = base.join(&next) {
        assert_eq!(
            target.origin(),
            base.origin(),
            "next {:?}: the sign-in sends the browser to {target}",
            form.next
        );
    }
}

fn check_setup(form: &SetupForm) {
    if let Ok(guid) = ServerGuid::parse(form.guid.trim()) {
        assert_eq!(ServerGuid::parse(&guid.to_string()), Ok(guid));
    }
}

fn check_config(form: &ConfigPost) {
    let reads_files = lines(&form.vendor_keys)
        .iter()
        .any(|l| l.starts_with('/') || l.contains(".."));
    if reads_files {
        return;
    }
    let dir = Path::new(KEY_DIR);
    let Ok(checked) = check_config_form(form, Some(dir)) else {
        return;
    };
    let mut file = FileConfig::default();
    checked.write_into(&mut file);
    if !toml_write_overflows(&file) {
        let printed = file.to_toml();
        assert_eq!(
            FileConfig::parse(&printed).as_ref(),
            Ok(&file),
            "written as {printed:?}"
        );
    }

    // What `server run` makes of the file the dashboard wrote.
    let nodes = file.nodes.clone().unwrap_or_default();
    assert_eq!(
        check_node_urls(nodes.iter().map(String::as_str)),
        Ok(checked.nodes.clone())
    );
    let listen = file.listen.as_deref().unwrap_or_default();
    assert_eq!(parse_address(listen, DEFAULT_LISTEN), Ok(checked.listen));
    let admin_listen = file.admin_listen.as_deref().unwrap_or_default();
    assert_eq!(
        parse_address(admin_listen, DEFAULT_ADMIN_LISTEN),
        Ok(checked.admin_listen)
    );
    let timeout = file.node_timeout.as_deref().unwrap_or_default();
    assert_eq!(parse_duration(timeout), Ok(checked.node_timeout));
    let mut keys = TrustedKeys::new();
    let key_ids = file
        .vendor_keys
        .iter()
        .flatten()
        .map(|k| load_vendor_key(&mut keys, k, Some(dir)).map(|kid| kid.as_str().to_owned()))
        .collect::<Result<_, _>>();
    assert_eq!(key_ids, Ok(checked.key_ids.clone()));
}

fuzz_target!(|data: &[u8]| {
    if let Some(form) = decode::<LoginForm>(data) {
        check_login(&form);
    }
    if let Some(form) = decode::<SetupForm>(data) {
        check_setup(&form);
    }
    let _ = decode::<CsrfOnly>(data);
    if let Some(form) = decode::<ConfigPost>(data) {
        check_config(&form);
    }
});
