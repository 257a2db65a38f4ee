//! The C ABI from outside: the checked-in header is what cbindgen makes of `src/ffi.rs`, the
//! example C program compiles against it and the cdylib and works against a real server, and
//! acquire/release through the C functions never allocate.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use leasehold_client::ffi::*;
use leasehold_client::{ServerRole, Status};
use leasehold_testkit::blocking::{wait_for, Env};
use leasehold_testkit::release_date;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn the_checked_in_header_is_generated_from_the_source() {
    let dir = Path::new(MANIFEST_DIR);
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/ffi.rs"))
        .generate()
        .unwrap()
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = dir.join("include/leasehold.h");
    if std::env::var_os("LEASEHOLD_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is stale: run `LEASEHOLD_UPDATE_HEADER=1 cargo test -p leasehold-client --test ffi` \
         and commit it",
        path.display()
    );
    for function in [
        "leasehold_client_new(",
        "leasehold_client_new_with_timing(",
        "leasehold_client_new_named(",
        "leasehold_client_free(",
        "leasehold_acquire(",
        "leasehold_release(",
        "leasehold_status_json(",
        "leasehold_string_free(",
        "leasehold_denial_name(",
        "leasehold_client_set_deny_wait(",
        "leasehold_wait_connected(",
    ] {
        assert!(generated.contains(function), "{function} missing");
    }
    assert!(generated.contains("#define LEASEHOLD_H"));
}

/// The cdylib cargo built with this test: the library target is compiled once with all its
/// crate types, so `libleasehold_client.so` sits beside this test binary in `deps/` (and is
/// copied one level up by `cargo build`). Builds it when a runner did not.
fn cdylib_dir() -> PathBuf {
    let file = format!(
        "{}leasehold_client{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    let candidates = [deps.clone(), deps.parent().unwrap().to_path_buf()];
    if let Some(dir) = candidates.iter().find(|d| d.join(&file).is_file()) {
        return dir.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "leasehold-client", "--lib"])
        .current_dir(MANIFEST_DIR)
        .status()
        .unwrap();
    assert!(status.success(), "cargo build of the cdylib failed");
    candidates
        .into_iter()
        .find(|d| d.join(&file).is_file())
        .unwrap_or_else(|| panic!("no {file} beside {}", exe.display()))
}

/// Compiles `examples/c/example.c` with the system C compiler (`$CC`, else `cc`), strictly.
fn compile_example() -> PathBuf {
    let lib_dir = cdylib_dir();
    let src = Path::new(MANIFEST_DIR);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("leasehold-c-example");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let output = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"])
        .arg("-I")
        .arg(src.join("include"))
        .arg(src.join("examples/c/example.c"))
        .arg("-o")
        .arg(&out)
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lleasehold_client")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc}: {e}"));
    assert!(
        output.status.success(),
        "{cc} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(example: &Path, args: &[&str]) -> Run {
    let output = Command::new(example)
        .args(args)
        .env_remove("LEASEHOLD_SERVERS")
        .env("LEASEHOLD_CLIENT_KEY", leasehold_testkit::CLIENT_KEY)
        .env("LEASEHOLD_CLIENT_NAME", "c-example/ffi-test")
        // Cargo points this at target/debug too, where a stale copy of the library may lie;
        // it would win over the rpath given at link time.
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("DYLD_LIBRARY_PATH")
        .output()
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[cfg(unix)]
#[test]
fn the_c_example_takes_a_license_from_a_real_server() {
    let example = compile_example();
    let env = Env::new();
    let server = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let addr = server.addr();

    let granted = run(&example, &[&addr, "tts, asr.en-US", "tts"]);
    assert_eq!(granted.code, Some(0), "stderr: {}", granted.stderr);
    let status: Status = serde_json::from_str(granted.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}", granted.stdout));
    assert_eq!(status.server, ServerRole::Primary);
    assert_eq!(
        status.name, "c-example/ffi-test",
        "LEASEHOLD_CLIENT_NAME names it"
    );
    let tts = status.features.iter().find(|f| f.feature == "tts").unwrap();
    assert_eq!((tts.in_use, tts.acquired), (1, 1), "{tts:?}");
    assert!(tts.quota >= 1, "{tts:?}");
    // Freeing the client gave its quota back: the server forgot it.
    wait_for(
        "the example's lease to be released",
        Duration::from_secs(5),
        || {
            (!server
                .clients()
                .iter()
                .any(|c| c.client.to_string() == status.client_id))
            .then_some(())
        },
    );

    let unlicensed = run(&example, &[&addr, "tts,ocr", "ocr"]);
    assert_eq!(unlicensed.code, Some(LEASEHOLD_DENIED_NOT_LICENSED));
    assert!(
        unlicensed.stderr.contains("not_licensed"),
        "{}",
        unlicensed.stderr
    );
    assert_eq!(unlicensed.stdout, "");

    let unknown = run(&example, &[&addr, "tts", "ocr"]);
    assert_eq!(unknown.code, Some(LEASEHOLD_DENIED_NO_SUCH_FEATURE));
    assert!(
        unknown.stderr.contains("no_such_feature"),
        "{}",
        unknown.stderr
    );

    let bad = run(&example, &[&addr, "tts", ""]);
    assert_eq!(bad.code, Some(LEASEHOLD_DENIED_NO_SUCH_FEATURE));
    let bad = run(&example, &["bad host", "tts", "tts"]);
    assert_eq!(bad.code, Some(65));
    assert!(bad.stderr.contains("\"bad host\""), "{}", bad.stderr);
    env.stop_server(server);
}

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn acquire_and_release_through_the_c_abi_never_allocate() {
    let env = Env::new();
    let server = env.start_server(&env.server_dir("p"), env.installation.production, None);
    let mut err = [0 as std::ffi::c_char; 256];
    let servers = std::ffi::CString::new(server.addr()).unwrap();
    let release = std::ffi::CString::new(release_date().to_string()).unwrap();
    let key = std::ffi::CString::new(leasehold_testkit::CLIENT_KEY).unwrap();
    // SAFETY: valid strings, a buffer of the length given.
    let client = unsafe {
        leasehold_client_new_named(
            servers.as_ptr(),
            std::ptr::null(),
            c"tts,ocr".as_ptr(),
            release.as_ptr(),
            key.as_ptr(),
            c"abi-test/unit[1]".as_ptr(),
            100,
            500,
            5_000,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    // SAFETY: NUL-terminated by the constructor.
    let msg = unsafe { CStr::from_ptr(err.as_ptr()) };
    assert!(!client.is_null(), "{msg:?}");
    let mut license = LeaseholdLicense { feature_index: 99 };
    // SAFETY: a live client until the free at the end, valid strings, writable out.
    unsafe {
        assert_eq!(leasehold_wait_connected(client, 10_000), LEASEHOLD_OK);
        wait_for("a first license", Duration::from_secs(10), || {
            (leasehold_acquire(client, c"tts".as_ptr(), &mut license) == LEASEHOLD_OK).then_some(())
        });
        assert_eq!(license.feature_index, 1, "features sort: ocr, tts");
        let names: Vec<_> = server
            .clients()
            .into_iter()
            .filter_map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            ["abi-test/unit[1]"],
            "the server shows the name given"
        );
        assert_eq!(leasehold_release(client, license), LEASEHOLD_OK);
        assert_eq!(leasehold_release(client, license), LEASEHOLD_ERR_NOT_HELD);

        let before = allocations();
        for _ in 0..10_000 {
            assert_eq!(
                leasehold_acquire(client, c"tts".as_ptr(), &mut license),
                LEASEHOLD_OK
            );
            assert_eq!(leasehold_release(client, license), LEASEHOLD_OK);
            assert_eq!(
                leasehold_acquire(client, c"ocr".as_ptr(), &mut license),
                LEASEHOLD_DENIED_NOT_LICENSED
            );
            assert_eq!(
                leasehold_acquire(client, c"nope".as_ptr(), &mut license),
                LEASEHOLD_DENIED_NO_SUCH_FEATURE
            );
        }
        assert_eq!(allocations() - before, 0, "the C acquire/release allocated");

        let json = leasehold_status_json(client);
        let status: Status = serde_json::from_slice(CStr::from_ptr(json).to_bytes()).unwrap();
        leasehold_string_free(json);
        assert_eq!(status.features[1].acquired, 10_001);
        assert_eq!(status.features[1].in_use, 0);
        leasehold_client_free(client);
    }
    env.stop_server(server);
}
