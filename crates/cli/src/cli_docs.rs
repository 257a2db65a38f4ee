//! `leasehold completions SHELL` and `leasehold man --out DIR`: shell completion scripts and
//! man pages generated from the clap definition of the whole CLI, so they never drift from
//! the flags. The Debian package ships both (scripts/package.sh).

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory the pages are written into (created if missing; pages there are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Writes the completion script for `args.shell` to stdout.
pub fn completions(args: &CompletionsArgs, mut cli: clap::Command) -> anyhow::Result<()> {
    let name = cli.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, name, &mut script);
    print(&script).context("cannot write the completion script to stdout")
}

/// Writes one man page for the top command and one for every visible subcommand, each
/// named after its command line (`leasehold-server-run.1`), and lists them on stdout.
pub fn man(args: &ManArgs, cli: clap::Command) -> anyhow::Result<()> {
    let dir = &args.out;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--out {}: cannot create the directory", dir.display()))?;
    // Building the command gives every subcommand its full name (`leasehold-server-run`).
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    let source = format!("leasehold {}", env!("CARGO_PKG_VERSION"));
    let mut written = Vec::new();
    write_pages(&cli, dir, &source, &mut written)
        .with_context(|| format!("--out {}: cannot write the man pages", dir.display()))?;
    let list: String = written
        .iter()
        .map(|page| format!("{}\n", page.display()))
        .collect();
    print(list.as_bytes()).context("cannot write the list of pages to stdout")
}

/// Writes to stdout; a reader that stopped reading (`leasehold man ... | head`) is no error.
fn print(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        written => written,
    }
}

fn write_pages(
    cmd: &clap::Command,
    dir: &Path,
    source: &str,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    written.push(
        clap_mangen::Man::new(cmd.clone())
            .source(source)
            .manual("Leasehold")
            .generate_to(dir)?,
    );
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, source, written)?;
    }
    Ok(())
}
