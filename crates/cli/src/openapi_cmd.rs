//! `leasehold openapi` (hidden): each HTTP listener's OpenAPI description, as the
//! repository's `docs/openapi/` holds them. `--out DIR` writes them; `--check DIR` compares
//! a directory with what the code makes and fails with a diff when they differ.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

#[derive(Debug, clap::Args)]
pub struct OpenapiArgs {
    /// Write the descriptions into DIR (created if missing), replacing what is there.
    #[arg(long, value_name = "DIR", required_unless_present = "check")]
    out: Option<PathBuf>,
    /// Compare the descriptions in DIR with what the code makes; print a diff and fail
    /// when they differ.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    check: Option<PathBuf>,
}

/// Each listener's description: its file name and its JSON.
fn descriptions() -> [(&'static str, String); 3] {
    use leasehold_web::openapi::to_json;
    [
        (
            "server-lease.json",
            to_json(&leasehold_server::lease_description()),
        ),
        (
            "server-admin.json",
            to_json(&leasehold_server::admin_description()),
        ),
        ("node.json", to_json(&leasehold_node::description())),
    ]
}

pub fn run(args: OpenapiArgs) -> anyhow::Result<()> {
    match (args.out, args.check) {
        (Some(dir), _) => write(&dir),
        (None, Some(dir)) => check(&dir),
        (None, None) => bail!("say where: --out DIR or --check DIR"),
    }
}

fn write(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, json) in descriptions() {
        let path = dir.join(name);
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn check(dir: &Path) -> anyhow::Result<()> {
    let mut differ = Vec::new();
    for (name, generated) in descriptions() {
        let path = dir.join(name);
        let committed = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if committed != generated {
            let diff = similar::TextDiff::from_lines(&committed, &generated);
            eprint!(
                "{}",
                diff.unified_diff()
                    .context_radius(3)
                    .header(&format!("{} (committed)", path.display()), "generated")
            );
            differ.push(name);
        }
    }
    if !differ.is_empty() {
        bail!(
            "{} in {} differ from what the code makes (diff above); regenerate with `leasehold openapi --out {}` and commit",
            differ.join(", "),
            dir.display(),
            dir.display()
        );
    }
    println!("the descriptions in {} match the code", dir.display());
    Ok(())
}
