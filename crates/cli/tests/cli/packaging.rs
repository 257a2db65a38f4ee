//! What the Debian package ships besides the binary: the systemd units of `deploy/systemd`
//! (checked by `systemd-analyze verify` against the built binary, and their command lines by
//! the binary's own parser), the shell completions and the man pages the binary generates.
//! `scripts/package-test.sh` installs the real package.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use crate::support::{leasehold, leasehold_path};

const UNITS: [&str; 2] = ["leasehold-node.service", "leasehold-server.service"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn unit_text(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("deploy/systemd").join(name)).unwrap()
}

/// The values of `key=` in a unit, in order.
fn unit_values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}=");
    text.lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .collect()
}

/// Where `tool` is installed, or `None` after a notice; with `CI=true` a missing tool fails.
fn required_in_ci(tool: &str, why: &str) -> Option<PathBuf> {
    let found = ["/usr/bin", "/bin", "/usr/local/bin"]
        .into_iter()
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file());
    if found.is_none() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{tool} is missing; CI must have it ({why})"
        );
        eprintln!("skipped: {tool} is not installed ({why})");
    }
    found
}

/// The stderr of a command that must fail.
fn failure(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.assert().failure();
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

/// The subcommands `leasehold ARGS --help` lists under "Commands:" (without `help`).
fn listed_subcommands(args: &[String]) -> Vec<String> {
    let out = leasehold().args(args).arg("--help").assert().success();
    let help = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        // Continuation lines of a long description are indented further.
        .filter(|line| line.starts_with("  ") && !line[2..].starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn both_service_units_pass_systemd_analyze_verify_against_the_built_binary() {
    let Some(analyze) = required_in_ci(
        "systemd-analyze",
        "apt-get install systemd; it checks deploy/systemd/*.service",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bin = leasehold_path();
    let mut units = Vec::new();
    for name in UNITS {
        let text = unit_text(name);
        // verify wants the ExecStart binary to exist: the one this test run built.
        assert!(text.contains("ExecStart=/usr/bin/leasehold "), "{name}");
        let copy = dir.path().join(name);
        std::fs::write(
            &copy,
            text.replace("/usr/bin/leasehold", bin.to_str().unwrap()),
        )
        .unwrap();
        units.push(copy);
    }
    // The man pages of Documentation= are checked once the package is installed
    // (scripts/package-test.sh); here they are not installed.
    let out = StdCommand::new(analyze)
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // An unknown key or a bad value is only a warning, with the file's name.
    for name in UNITS {
        assert!(!stderr.contains(name), "systemd-analyze verify: {stderr}");
    }
}

#[test]
fn the_units_run_as_the_leasehold_user_hardened_with_their_state_in_var_lib() {
    for name in UNITS {
        let text = unit_text(name);
        let role = name
            .trim_start_matches("leasehold-")
            .trim_end_matches(".service");
        for (key, value) in [
            ("User", "leasehold"),
            ("Group", "leasehold"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("NoNewPrivileges", "yes"),
            ("CapabilityBoundingSet", ""),
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
            ("Restart", "on-failure"),
            ("StateDirectory", &format!("leasehold/{role}")),
            ("WorkingDirectory", &format!("/var/lib/leasehold/{role}")),
        ] {
            assert_eq!(unit_values(&text, key), [value], "{name}: {key}");
        }
        // Only the server writes outside its state directory: the dashboard rewrites its
        // config file.
        let writable = unit_values(&text, "ReadWritePaths");
        match role {
            "server" => assert_eq!(writable, ["/etc/leasehold"], "{name}"),
            _ => assert!(writable.is_empty(), "{name}: {writable:?}"),
        }
        let env_files = unit_values(&text, "EnvironmentFile");
        assert_eq!(
            env_files
                .iter()
                .map(|f| f.trim_start_matches('-'))
                .collect::<Vec<_>>(),
            [format!("/etc/leasehold/{role}.env")],
            "{name}"
        );
    }
}

#[test]
fn the_units_command_lines_are_accepted_by_the_binary() {
    for name in UNITS {
        let text = unit_text(name);
        let exec = unit_values(&text, "ExecStart");
        assert_eq!(exec.len(), 1, "{name}");
        let args: Vec<&str> = exec[0].split_whitespace().skip(1).collect();
        // Every flag of the line is parsed before --help answers.
        leasehold().args(&args).arg("--help").assert().success();
        if let Some(at) = args.iter().position(|a| *a == "--config") {
            let default_config = Path::new(args[at + 1]).file_name().unwrap();
            assert!(
                repo_root()
                    .join("deploy/etc")
                    .join(default_config)
                    .is_file(),
                "{name}: the package ships no {default_config:?}"
            );
        }
    }
}

#[test]
fn the_default_server_config_is_accepted_and_keeps_the_state_in_the_units_directory() {
    let text = std::fs::read_to_string(repo_root().join("deploy/etc/server.toml")).unwrap();
    let config: leasehold_server::config::FileConfig = toml::from_str(&text).unwrap();
    assert_eq!(
        config.data_dir.as_deref(),
        Some(Path::new("/var/lib/leasehold/server"))
    );
    // Unconfigured, it does not start: no vendor key, and the error says where to put one.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("server.toml");
    std::fs::write(
        &copy,
        text.replace("/var/lib/leasehold/server", dir.path().to_str().unwrap()),
    )
    .unwrap();
    let stderr = failure(leasehold().args(["server", "run", "--config"]).arg(&copy));
    assert!(stderr.contains("no vendor key"), "{stderr}");
}

#[test]
fn completions_name_every_subcommand_and_bash_parses_the_script() {
    let top = listed_subcommands(&[]);
    for expected in ["node", "vendor", "server", "client", "completions", "man"] {
        assert!(top.iter().any(|c| c == expected), "{expected}: {top:?}");
    }
    let out = leasehold().args(["completions", "bash"]).assert().success();
    let script = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(script.contains("complete "), "{script}");
    for name in &top {
        assert!(script.contains(name.as_str()), "{name} missing");
    }
    assert!(script.contains("set-password") && script.contains("--data-dir"));
    if let Some(bash) = required_in_ci("bash", "checks the completion script's syntax") {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &script).unwrap();
        let status = StdCommand::new(bash)
            .arg("-n")
            .arg(file.path())
            .status()
            .unwrap();
        assert!(status.success(), "bash -n on the completion script");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = leasehold().args(["completions", shell]).assert().success();
        let script = String::from_utf8_lossy(&out.get_output().stdout);
        assert!(script.contains("set-password"), "{shell}: {script}");
    }
    let stderr = failure(leasehold().args(["completions", "tcsh"]));
    assert!(
        stderr.contains("tcsh") && stderr.contains("bash"),
        "{stderr}"
    );
}

#[test]
fn man_pages_are_written_for_the_command_and_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man");
    leasehold()
        .args(["man", "--out"])
        .arg(&out_dir)
        .assert()
        .success();
    // Every command line the help lists, found by walking it.
    let mut pending = vec![Vec::<String>::new()];
    let mut expected = Vec::new();
    while let Some(path) = pending.pop() {
        expected.push(
            std::iter::once("leasehold".to_owned())
                .chain(path.iter().cloned())
                .collect::<Vec<_>>()
                .join("-"),
        );
        for sub in listed_subcommands(&path) {
            pending.push(path.iter().cloned().chain([sub]).collect());
        }
    }
    assert!(expected.len() > 40, "{expected:?}");
    let mut written: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut wanted: Vec<String> = expected.iter().map(|name| format!("{name}.1")).collect();
    wanted.sort();
    assert_eq!(written, wanted);
    for name in &expected {
        let page = std::fs::read_to_string(out_dir.join(format!("{name}.1"))).unwrap();
        assert!(
            page.lines()
                .any(|l| l.starts_with(&format!(".TH {name} 1"))),
            "{name}.1 has no title line"
        );
    }
    let run = out_dir.join("leasehold-server-run.1");
    if let Some(groff) = required_in_ci("groff", "renders a man page") {
        let out = StdCommand::new(groff)
            .args(["-man", "-Tascii", "-P-cbou", "-ww"])
            .arg(&run)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("leasehold-server-run") && text.contains("--data-dir"),
            "{text}"
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A directory that cannot be made is named, and nothing is written.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let stderr = failure(leasehold().args(["man", "--out"]).arg(file.join("man")));
    assert!(
        stderr.contains("--out") && stderr.contains("a-file"),
        "{stderr}"
    );
}
