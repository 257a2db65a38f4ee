//! The C ABI over [`Client`]: an opaque client handle, licenses as plain integers, stable
//! result codes and the status as JSON. `include/leasehold.h` is generated from this file by
//! cbindgen (the `ffi` test fails when it is stale); `examples/c/example.c` shows the use.
//!
//! Every function returning `int32_t` answers 0 on success, a positive `LEASEHOLD_DENIED_*`
//! code (the numbers of [`Denied::code`]) when the cache says no, or a negative
//! `LEASEHOLD_ERR_*` code for a misuse (NULL pointer, bad UTF-8, a license not held) or an
//! internal error. No Rust panic crosses into C: each body runs under `catch_unwind`.

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::time::Duration;

use chrono::NaiveDate;

use crate::{Client, Denied, RawLicense};

/// Success.
pub const LEASEHOLD_OK: i32 = 0;
/// Every license of this client's quota is in use; the client asks for more at once, so a
/// retry shortly after may succeed.
pub const LEASEHOLD_DENIED_QUOTA_EXHAUSTED: i32 = 1;
/// No license server answered for the flush period: new requests are denied until one does.
pub const LEASEHOLD_DENIED_FLUSHED: i32 = 2;
/// No license server has answered yet since the client was created.
pub const LEASEHOLD_DENIED_NOT_CONNECTED: i32 = 3;
/// The feature was not in the client's feature list.
pub const LEASEHOLD_DENIED_NO_SUCH_FEATURE: i32 = 4;
/// The license server has no license for this feature.
pub const LEASEHOLD_DENIED_NOT_LICENSED: i32 = 5;
/// Maintenance of every license for this feature ended before the product's release date.
pub const LEASEHOLD_DENIED_MAINTENANCE_EXPIRED: i32 = 6;
/// The server serves no licenses now (not synced, suspended, backup without failover, ...);
/// the status JSON has the server's words.
pub const LEASEHOLD_DENIED_UNAVAILABLE: i32 = 7;
// The errors are written `0 - n` because cbindgen then parenthesises the C macro, as
// `#define EOF (-1)` is: a bare `-1` would turn `x-LEASEHOLD_ERR_...` into `x--1`.
/// A pointer argument that must not be NULL was NULL.
pub const LEASEHOLD_ERR_NULL_ARGUMENT: i32 = 0 - 1;
/// A string argument was not valid UTF-8.
pub const LEASEHOLD_ERR_INVALID_UTF8: i32 = 0 - 2;
/// `leasehold_release` was given a license this client does not hold.
pub const LEASEHOLD_ERR_NOT_HELD: i32 = 0 - 3;
/// An internal error (a Rust panic, caught at the boundary).
pub const LEASEHOLD_ERR_INTERNAL: i32 = 0 - 4;
/// A numeric argument was out of range (a deny-wait over 60000 ms).
pub const LEASEHOLD_ERR_OUT_OF_RANGE: i32 = 0 - 5;

/// A license client: the local cache and its background refresher thread. Opaque; created by
/// `leasehold_client_new`, destroyed by `leasehold_client_free`.
#[derive(Debug)]
pub struct LeaseholdClient {
    client: Client,
}

/// One license held: the index of its feature in the client's sorted feature list. Plain
/// data, but treat it as move-only: release it exactly once, on the client that granted it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseholdLicense {
    pub feature_index: u32,
}

/// Every denial, for the code-to-name table (kept complete by a test's exhaustive match).
const DENIALS: [Denied; 7] = [
    Denied::QuotaExhausted,
    Denied::Flushed,
    Denied::NotConnected,
    Denied::NoSuchFeature,
    Denied::NotLicensed,
    Denied::MaintenanceExpired,
    Denied::Unavailable,
];

/// [`Denied::as_str`] with a terminating NUL, for C.
fn denial_name(denied: Denied) -> &'static CStr {
    match denied {
        Denied::QuotaExhausted => c"quota_exhausted",
        Denied::Flushed => c"flushed",
        Denied::NotConnected => c"not_connected",
        Denied::NoSuchFeature => c"no_such_feature",
        Denied::NotLicensed => c"not_licensed",
        Denied::MaintenanceExpired => c"maintenance_expired",
        Denied::Unavailable => c"unavailable",
    }
}

/// Runs `f`, turning a panic into `on_panic`: unwinding into C is undefined behaviour.
fn no_unwind<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and unchanged for `'a`.
unsafe fn str_arg<'a>(p: *const c_char) -> Result<&'a str, i32> {
    if p.is_null() {
        return Err(LEASEHOLD_ERR_NULL_ARGUMENT);
    }
    // SAFETY: not NULL, and the caller promises a NUL-terminated string living for 'a.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| LEASEHOLD_ERR_INVALID_UTF8)
}

/// [`str_arg`] with a message naming the argument, for the constructor.
///
/// # Safety
/// As [`str_arg`].
unsafe fn named_str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, String> {
    // SAFETY: forwarded contract.
    unsafe { str_arg(p) }.map_err(|code| match code {
        LEASEHOLD_ERR_NULL_ARGUMENT => format!("{name} is NULL"),
        _ => format!("{name} is not valid UTF-8"),
    })
}

/// [`named_str_arg`] for an argument that may be NULL (`None`).
///
/// # Safety
/// As [`str_arg`].
unsafe fn optional_str_arg<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, String> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { named_str_arg(p, name) }.map(Some)
}

/// Copies `msg` into `buf` as a NUL-terminated string, truncated to `len - 1` bytes on a
/// character boundary. Does nothing when `buf` is NULL or `len` is 0.
///
/// # Safety
/// `buf` is NULL or valid for writes of `len` bytes.
unsafe fn write_message(buf: *mut c_char, len: usize, msg: &str) {
    if buf.is_null() || len == 0 {
        return;
    }
    let mut n = msg.len().min(len - 1);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: n < len bytes plus the NUL fit in the caller's buffer; a Rust string and the
    // caller's buffer cannot overlap.
    unsafe {
        ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n);
        buf.add(n).write(0);
    }
}

fn build(
    servers: &str,
    backup_servers: Option<&str>,
    features: &str,
    product_release: &str,
    client_key: Option<&str>,
    name: Option<&str>,
    timing: [u32; 3],
) -> Result<Client, String> {
    let date = NaiveDate::parse_from_str(product_release.trim(), "%Y-%m-%d").map_err(|e| {
        format!("product_release {product_release:?} is not a date YYYY-MM-DD: {e}")
    })?;
    let mut builder = Client::builder()
        .servers(servers)
        .product_release(date)
        .features(features.split(',').map(str::trim).filter(|f| !f.is_empty()));
    if let Some(list) = backup_servers.filter(|l| !l.trim().is_empty()) {
        builder = builder.backup_servers(list);
    }
    builder = match client_key {
        Some(key) => builder.client_key(key),
        None => builder.client_key_from_env(),
    };
    builder = match name {
        Some(name) => builder.name(name),
        None => builder.name_from_env(),
    };
    let [refresh, failover_after, flush_after] = timing.map(|ms| Duration::from_millis(ms.into()));
    if !refresh.is_zero() {
        builder = builder.refresh(refresh);
    }
    if !failover_after.is_zero() {
        builder = builder.failover_after(failover_after);
    }
    if !flush_after.is_zero() {
        builder = builder.flush_after(flush_after);
    }
    builder.build().map_err(|e| e.to_string())
}

/// Creates a client with the default timings (refresh every 2 s, failover after 10 s, flush
/// after 120 s) and starts its refresher thread, which asks the server at once. Returns NULL
/// on error, with a message in `err_buf`.
///
/// - `servers`: `;`-separated `host[:port]` list, the primary first, then backups.
/// - `backup_servers`: more backups, `;`-separated; may be NULL.
/// - `features`: every feature the program will acquire, comma-separated (`tts,asr.en-US`).
/// - `product_release`: the product's release date, `YYYY-MM-DD`.
/// - `client_key`: the installation's client key (`leasehold server client-key` prints
///   it); NULL reads `LEASEHOLD_CLIENT_KEY`, or the file `LEASEHOLD_CLIENT_KEY_FILE` names.
/// - `err_buf`, `err_len`: a buffer for the error message (NUL-terminated, truncated to
///   fit; an empty string on success); may be NULL/0.
///
/// # Safety
/// The string arguments are NULL or NUL-terminated strings valid for the call (the client
/// keeps copies). `err_buf` is NULL or valid for writes of `err_len` bytes. The returned
/// client belongs to the caller, who frees it with `leasehold_client_free`.
#[no_mangle]
pub unsafe extern "C" fn leasehold_client_new(
    servers: *const c_char,
    backup_servers: *const c_char,
    features: *const c_char,
    product_release: *const c_char,
    client_key: *const c_char,
    err_buf: *mut c_char,
    err_len: usize,
) -> *mut LeaseholdClient {
    // SAFETY: the same contract.
    unsafe {
        leasehold_client_new_with_timing(
            servers,
            backup_servers,
            features,
            product_release,
            client_key,
            0,
            0,
            0,
            err_buf,
            err_len,
        )
    }
}

/// `leasehold_client_new` with timings in milliseconds, 0 meaning the default:
/// `refresh_ms` (how often the client asks the server, default 2000), `failover_after_ms`
/// (time without the primary before using a backup, default 10000) and `flush_after_ms`
/// (time without any server before new requests are denied, default 120000; must be longer
/// than the refresh period).
///
/// # Safety
/// As `leasehold_client_new`.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // a flat C signature beats a struct C callers must fill
pub unsafe extern "C" fn leasehold_client_new_with_timing(
    servers: *const c_char,
    backup_servers: *const c_char,
    features: *const c_char,
    product_release: *const c_char,
    client_key: *const c_char,
    refresh_ms: u32,
    failover_after_ms: u32,
    flush_after_ms: u32,
    err_buf: *mut c_char,
    err_len: usize,
) -> *mut LeaseholdClient {
    // SAFETY: the same contract.
    unsafe {
        leasehold_client_new_named(
            servers,
            backup_servers,
            features,
            product_release,
            client_key,
            ptr::null(),
            refresh_ms,
            failover_after_ms,
            flush_after_ms,
            err_buf,
            err_len,
        )
    }
}

/// `leasehold_client_new_with_timing` with the name the site's operator sees for this
/// client on the license server (its Clients page, `leasehold server clients`): 1 to 128
/// characters without control characters. NULL reads `LEASEHOLD_CLIENT_NAME`, and without it
/// the name is `hostname/program[pid]`. The name stays on the customer's server.
///
/// # Safety
/// As `leasehold_client_new`; `name` is NULL or a NUL-terminated string valid for the call.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // a flat C signature beats a struct C callers must fill
pub unsafe extern "C" fn leasehold_client_new_named(
    servers: *const c_char,
    backup_servers: *const c_char,
    features: *const c_char,
    product_release: *const c_char,
    client_key: *const c_char,
    name: *const c_char,
    refresh_ms: u32,
    failover_after_ms: u32,
    flush_after_ms: u32,
    err_buf: *mut c_char,
    err_len: usize,
) -> *mut LeaseholdClient {
    let result = no_unwind(
        Err("internal error while creating the client".to_owned()),
        || {
            // SAFETY: the caller's contract on the string arguments.
            let (servers, backups, features, release, key, name) = unsafe {
                (
                    named_str_arg(servers, "servers")?,
                    optional_str_arg(backup_servers, "backup_servers")?,
                    named_str_arg(features, "features")?,
                    named_str_arg(product_release, "product_release")?,
                    optional_str_arg(client_key, "client_key")?,
                    optional_str_arg(name, "name")?,
                )
            };
            let timing = [refresh_ms, failover_after_ms, flush_after_ms];
            build(servers, backups, features, release, key, name, timing)
        },
    );
    match result {
        Ok(client) => {
            // SAFETY: the caller's contract on err_buf.
            unsafe { write_message(err_buf, err_len, "") };
            Box::into_raw(Box::new(LeaseholdClient { client }))
        }
        Err(msg) => {
            // SAFETY: the caller's contract on err_buf.
            unsafe { write_message(err_buf, err_len, &msg) };
            ptr::null_mut()
        }
    }
}

/// Stops the client: its refresher ends and the quota goes back to the server (best effort,
/// waits at most a short timeout). Licenses still held are given up with it. NULL is
/// ignored.
///
/// # Safety
/// `client` is NULL or was returned by `leasehold_client_new*` and not freed yet. Call it
/// once, after every other call on this client has returned and none will be made; the
/// pointer is dangling afterwards.
#[no_mangle]
pub unsafe extern "C" fn leasehold_client_free(client: *mut LeaseholdClient) {
    if client.is_null() {
        return;
    }
    no_unwind((), || {
        // SAFETY: made by Box::into_raw in the constructor; the caller gives it back once.
        drop(unsafe { Box::from_raw(client) });
    });
}

/// Takes one license of `feature` from the local cache: no network, no blocking, no
/// allocation. On success (0) `*out` holds the license until `leasehold_release`; otherwise
/// `*out` is unchanged and the result is a `LEASEHOLD_DENIED_*` code or a negative error.
///
/// # Safety
/// `client` is NULL or a live client; `feature` is NULL or a NUL-terminated string valid for
/// the call; `out` is NULL or valid for writing one `LeaseholdLicense`. Any number of threads
/// may call this, and every function taking a `const LeaseholdClient*`, at the same time.
#[no_mangle]
pub unsafe extern "C" fn leasehold_acquire(
    client: *const LeaseholdClient,
    feature: *const c_char,
    out: *mut LeaseholdLicense,
) -> i32 {
    no_unwind(LEASEHOLD_ERR_INTERNAL, || {
        // SAFETY: NULL or a live client, by the caller's contract.
        let Some(handle) = (unsafe { client.as_ref() }) else {
            return LEASEHOLD_ERR_NULL_ARGUMENT;
        };
        if out.is_null() {
            return LEASEHOLD_ERR_NULL_ARGUMENT;
        }
        // SAFETY: the caller's contract on `feature`.
        let feature = match unsafe { str_arg(feature) } {
            Ok(f) => f,
            Err(code) => return code,
        };
        match handle.client.acquire(feature) {
            Ok(guard) => {
                let raw = guard.into_raw();
                // SAFETY: not NULL, and writable by the caller's contract.
                unsafe {
                    out.write(LeaseholdLicense {
                        feature_index: raw.index(),
                    })
                };
                LEASEHOLD_OK
            }
            Err(denied) => i32::from(denied.code()),
        }
    })
}

/// Gives back a license from `leasehold_acquire`. Returns 0, or `LEASEHOLD_ERR_NOT_HELD` when
/// the license does not name a feature of this client of which one is held (nothing changes
/// then). Releasing a license twice gives back someone else's: release each exactly once.
///
/// # Safety
/// `client` is NULL or a live client, the one that granted the license. Thread-safe like
/// `leasehold_acquire`.
#[no_mangle]
pub unsafe extern "C" fn leasehold_release(
    client: *const LeaseholdClient,
    license: LeaseholdLicense,
) -> i32 {
    no_unwind(LEASEHOLD_ERR_INTERNAL, || {
        // SAFETY: NULL or a live client, by the caller's contract.
        let Some(handle) = (unsafe { client.as_ref() }) else {
            return LEASEHOLD_ERR_NULL_ARGUMENT;
        };
        if handle
            .client
            .release_raw(RawLicense::from_index(license.feature_index))
        {
            LEASEHOLD_OK
        } else {
            LEASEHOLD_ERR_NOT_HELD
        }
    })
}

/// Sets how long `leasehold_acquire` may wait for the server when the local quota is used up
/// (deny-wait), in milliseconds; 0 (the default) means never: every call is answered from
/// the cache. With a wait, a call that finds the quota used up asks the server at once and
/// is refused only when the server has no license to give within that time. At most 60000.
/// Returns 0, `LEASEHOLD_ERR_NULL_ARGUMENT` or `LEASEHOLD_ERR_OUT_OF_RANGE`.
///
/// # Safety
/// `client` is NULL or a live client. Thread-safe like `leasehold_acquire`.
#[no_mangle]
pub unsafe extern "C" fn leasehold_client_set_deny_wait(
    client: *const LeaseholdClient,
    ms: u32,
) -> i32 {
    no_unwind(LEASEHOLD_ERR_INTERNAL, || {
        // SAFETY: NULL or a live client, by the caller's contract.
        let Some(handle) = (unsafe { client.as_ref() }) else {
            return LEASEHOLD_ERR_NULL_ARGUMENT;
        };
        match handle
            .client
            .set_deny_wait(Duration::from_millis(u64::from(ms)))
        {
            Ok(()) => LEASEHOLD_OK,
            Err(_) => LEASEHOLD_ERR_OUT_OF_RANGE,
        }
    })
}

/// Waits (blocking) until a license server has answered, at most `timeout_ms` milliseconds,
/// for program start-up. Returns 0 when connected, else `LEASEHOLD_DENIED_NOT_CONNECTED`.
///
/// # Safety
/// `client` is NULL or a live client. Thread-safe like `leasehold_acquire`.
#[no_mangle]
pub unsafe extern "C" fn leasehold_wait_connected(
    client: *const LeaseholdClient,
    timeout_ms: u32,
) -> i32 {
    no_unwind(LEASEHOLD_ERR_INTERNAL, || {
        // SAFETY: NULL or a live client, by the caller's contract.
        let Some(handle) = (unsafe { client.as_ref() }) else {
            return LEASEHOLD_ERR_NULL_ARGUMENT;
        };
        if handle
            .client
            .wait_connected(Duration::from_millis(timeout_ms.into()))
        {
            LEASEHOLD_OK
        } else {
            LEASEHOLD_DENIED_NOT_CONNECTED
        }
    })
}

/// The client's state as a JSON object: `client_id`, `server` (`primary`, `backup` or
/// `none`), `server_addr`, `failover`, `flushed`, `last_error`, and per feature `quota`,
/// `in_use`, `held_without_lease`, `acquired`, `denied` and `reason`. Returns NULL when
/// `client` is NULL or on an internal error.
///
/// # Safety
/// `client` is NULL or a live client. Thread-safe like `leasehold_acquire`. The string
/// belongs to the caller, who frees it with `leasehold_string_free` (not `free`).
#[no_mangle]
pub unsafe extern "C" fn leasehold_status_json(client: *const LeaseholdClient) -> *mut c_char {
    no_unwind(ptr::null_mut(), || {
        // SAFETY: NULL or a live client, by the caller's contract.
        let Some(handle) = (unsafe { client.as_ref() }) else {
            return ptr::null_mut();
        };
        // serde_json escapes control characters, so the text has no NUL inside.
        serde_json::to_string(&handle.client.status())
            .ok()
            .and_then(|json| CString::new(json).ok())
            .map_or(ptr::null_mut(), CString::into_raw)
    })
}

/// Frees a string returned by this library. NULL is ignored.
///
/// # Safety
/// `s` is NULL or a string from `leasehold_status_json` not freed yet; it is dangling
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn leasehold_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    no_unwind((), || {
        // SAFETY: made by CString::into_raw; the caller gives it back once.
        drop(unsafe { CString::from_raw(s) });
    });
}

/// A stable snake_case name for a result code: `ok`, the denial names (`quota_exhausted`,
/// `not_licensed`, ...), `null_argument`, `invalid_utf8`, `not_held`, `internal_error`,
/// `out_of_range`, or `unknown`. The string is static: never free it.
#[no_mangle]
pub extern "C" fn leasehold_denial_name(code: i32) -> *const c_char {
    let name = match code {
        LEASEHOLD_OK => c"ok",
        LEASEHOLD_ERR_NULL_ARGUMENT => c"null_argument",
        LEASEHOLD_ERR_INVALID_UTF8 => c"invalid_utf8",
        LEASEHOLD_ERR_NOT_HELD => c"not_held",
        LEASEHOLD_ERR_INTERNAL => c"internal_error",
        LEASEHOLD_ERR_OUT_OF_RANGE => c"out_of_range",
        _ => DENIALS
            .iter()
            .find(|d| i32::from(d.code()) == code)
            .map_or(c"unknown", |d| denial_name(*d)),
    };
    name.as_ptr()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn name(code: i32) -> &'static str {
        // SAFETY: leasehold_denial_name returns static NUL-terminated strings.
        unsafe { CStr::from_ptr(leasehold_denial_name(code)) }
            .to_str()
            .unwrap()
    }

    /// Calls the constructor with Rust strings (`None` = NULL); returns the client or the
    /// message.
    fn new(
        servers: Option<&CStr>,
        backups: Option<&CStr>,
        features: Option<&CStr>,
        release: Option<&CStr>,
    ) -> Result<*mut LeaseholdClient, String> {
        let p = |s: Option<&CStr>| s.map_or(ptr::null(), CStr::as_ptr);
        let mut buf = [b'x' as c_char; 128];
        // SAFETY: valid strings or NULL, and a buffer of the length given.
        let client = unsafe {
            leasehold_client_new_with_timing(
                p(servers),
                p(backups),
                p(features),
                p(release),
                c"lhck_test".as_ptr(),
                50,
                0,
                0,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        // SAFETY: the constructor always NUL-terminates the buffer.
        let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_str()
            .unwrap()
            .to_owned();
        if client.is_null() {
            Err(msg)
        } else {
            assert_eq!(msg, "");
            Ok(client)
        }
    }

    #[test]
    fn codes_and_names_match_the_rust_api() {
        // An exhaustive match: a new variant fails to compile here until DENIALS has it.
        for d in DENIALS {
            match d {
                Denied::QuotaExhausted
                | Denied::Flushed
                | Denied::NotConnected
                | Denied::NoSuchFeature
                | Denied::NotLicensed
                | Denied::MaintenanceExpired
                | Denied::Unavailable => {}
            }
            assert_eq!(name(i32::from(d.code())), d.as_str());
        }
        for (constant, d) in [
            (LEASEHOLD_DENIED_QUOTA_EXHAUSTED, Denied::QuotaExhausted),
            (LEASEHOLD_DENIED_FLUSHED, Denied::Flushed),
            (LEASEHOLD_DENIED_NOT_CONNECTED, Denied::NotConnected),
            (LEASEHOLD_DENIED_NO_SUCH_FEATURE, Denied::NoSuchFeature),
            (LEASEHOLD_DENIED_NOT_LICENSED, Denied::NotLicensed),
            (
                LEASEHOLD_DENIED_MAINTENANCE_EXPIRED,
                Denied::MaintenanceExpired,
            ),
            (LEASEHOLD_DENIED_UNAVAILABLE, Denied::Unavailable),
        ] {
            assert_eq!(constant, i32::from(d.code()), "{d:?}");
        }
        assert_eq!(name(0), "ok");
        assert_eq!(name(LEASEHOLD_ERR_NULL_ARGUMENT), "null_argument");
        assert_eq!(name(LEASEHOLD_ERR_INVALID_UTF8), "invalid_utf8");
        assert_eq!(name(LEASEHOLD_ERR_NOT_HELD), "not_held");
        assert_eq!(name(LEASEHOLD_ERR_INTERNAL), "internal_error");
        assert_eq!(name(LEASEHOLD_ERR_OUT_OF_RANGE), "out_of_range");
        assert_eq!(name(99), "unknown");
        assert_eq!(name(i32::MIN), "unknown");
    }

    #[test]
    fn the_constructor_explains_bad_arguments() {
        let (s, f, d) = (Some(c"127.0.0.1:9"), Some(c"tts"), Some(c"2026-10-01"));
        let bad_utf8 = c"tt\xffs";
        for (args, expected) in [
            ((None, None, f, d), "servers is NULL"),
            ((s, None, None, d), "features is NULL"),
            ((s, None, f, None), "product_release is NULL"),
            ((Some(bad_utf8), None, f, d), "servers is not valid UTF-8"),
            (
                (s, Some(bad_utf8), f, d),
                "backup_servers is not valid UTF-8",
            ),
            ((s, None, Some(bad_utf8), d), "features is not valid UTF-8"),
            (
                (s, None, f, Some(c"1st of October")),
                "is not a date YYYY-MM-DD",
            ),
            ((s, None, f, Some(c"2026-02-30")), "\"2026-02-30\""),
            ((s, None, Some(c" , "), d), "no feature configured"),
            ((s, None, Some(c"tts,bad feature"), d), "bad feature"),
            ((Some(c""), None, f, d), "the server list is empty"),
            ((Some(c"a;bad host"), None, f, d), "bad host"),
        ] {
            let msg = new(args.0, args.1, args.2, args.3).unwrap_err();
            assert!(msg.contains(expected), "{args:?}: {msg}");
        }
    }

    #[test]
    fn the_message_is_truncated_to_the_buffer() {
        let mut buf = [b'x' as c_char; 8];
        // SAFETY: NULL servers (an error) and a buffer of 5 of its 8 bytes.
        let client = unsafe {
            leasehold_client_new(
                ptr::null(),
                ptr::null(),
                c"tts".as_ptr(),
                c"2026-10-01".as_ptr(),
                ptr::null(),
                buf.as_mut_ptr(),
                5,
            )
        };
        assert!(client.is_null());
        // SAFETY: NUL-terminated by the constructor.
        assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }, c"serv");
        assert_eq!(buf[5..], [b'x' as c_char; 3], "wrote past err_len");

        // Truncation never splits a character: "é" is two bytes.
        let mut buf = [b'x' as c_char; 3];
        // SAFETY: a buffer of its own length.
        unsafe { write_message(buf.as_mut_ptr(), buf.len(), "aé") };
        // SAFETY: NUL-terminated above.
        assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }, c"a");
        // No buffer at all is fine too.
        // SAFETY: NULL is allowed.
        unsafe { write_message(ptr::null_mut(), 10, "ignored") };
    }

    #[test]
    fn null_and_bad_arguments_are_errors_not_crashes() {
        let mut out = LeaseholdLicense { feature_index: 77 };
        let license = LeaseholdLicense { feature_index: 0 };
        // SAFETY: NULL everywhere is within every contract.
        unsafe {
            assert_eq!(
                leasehold_acquire(ptr::null(), c"tts".as_ptr(), &mut out),
                LEASEHOLD_ERR_NULL_ARGUMENT
            );
            assert_eq!(
                leasehold_release(ptr::null(), license),
                LEASEHOLD_ERR_NULL_ARGUMENT
            );
            assert_eq!(
                leasehold_wait_connected(ptr::null(), 0),
                LEASEHOLD_ERR_NULL_ARGUMENT
            );
            assert!(leasehold_status_json(ptr::null()).is_null());
            leasehold_string_free(ptr::null_mut());
            leasehold_client_free(ptr::null_mut());
        }

        // Nothing listens on port 9: the client stays unconnected.
        let client = new(
            Some(c"127.0.0.1:9"),
            None,
            Some(c"tts, asr.en-US"),
            Some(c"2026-10-01"),
        )
        .unwrap();
        let bad_utf8 = c"tt\xffs";
        // SAFETY: a live client, valid strings or NULL, a writable `out`.
        unsafe {
            assert_eq!(
                leasehold_acquire(client, ptr::null(), &mut out),
                LEASEHOLD_ERR_NULL_ARGUMENT
            );
            assert_eq!(
                leasehold_acquire(client, c"tts".as_ptr(), ptr::null_mut()),
                LEASEHOLD_ERR_NULL_ARGUMENT
            );
            assert_eq!(
                leasehold_acquire(client, bad_utf8.as_ptr(), &mut out),
                LEASEHOLD_ERR_INVALID_UTF8
            );
            assert_eq!(
                leasehold_acquire(client, c"tts".as_ptr(), &mut out),
                LEASEHOLD_DENIED_NOT_CONNECTED
            );
            assert_eq!(
                leasehold_acquire(client, c"ocr".as_ptr(), &mut out),
                LEASEHOLD_DENIED_NO_SUCH_FEATURE
            );
            assert_eq!(out.feature_index, 77, "out changed on a denial");
            assert_eq!(leasehold_release(client, license), LEASEHOLD_ERR_NOT_HELD);
            assert_eq!(
                leasehold_release(client, LeaseholdLicense { feature_index: 9 }),
                LEASEHOLD_ERR_NOT_HELD
            );
            assert_eq!(
                leasehold_wait_connected(client, 20),
                LEASEHOLD_DENIED_NOT_CONNECTED
            );

            let json = leasehold_status_json(client);
            assert!(!json.is_null());
            let status: crate::Status =
                serde_json::from_slice(CStr::from_ptr(json).to_bytes()).unwrap();
            leasehold_string_free(json);
            let features: Vec<_> = status.features.iter().map(|f| &*f.feature).collect();
            assert_eq!(features, ["asr.en-US", "tts"]);
            assert_eq!(status.features[1].denied, 1);
            leasehold_client_free(client);
        }
    }
}
