//! The demo directory: its vendor key, node database, installation, GUIDs and licenses
//! (made at the first start, reused after), the vendor console's admin account, and the
//! dashboard and console passwords.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::NaiveDate;
use leasehold_node::api::GrantLicense;
use leasehold_node::{Actor, Change, Node};
use leasehold_proto::api::staff::{AccountName, CreateAccount, Role, UpdateAccount};
use leasehold_proto::{
    Context, Feature, InstallationId, ServerGuid, SystemClock, VendorSigningKey,
};
use leasehold_server::RunningServer;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use super::processes::ServerSpec;
use super::FEATURES;

pub(super) const STATE_FILE: &str = "demo.json";
pub(super) const KEY_FILE: &str = "vendor-key.pem";
pub(super) const NODE_DB: &str = "node.db";
pub(super) const PASSWORDS_FILE: &str = "demo-passwords.txt";
/// The vendor console's admin account the demo makes, and its line in [`PASSWORDS_FILE`].
pub(super) const CONSOLE_ADMIN: &str = "admin";
pub(super) const CONSOLE_PASSWORD_KEY: &str = "console-admin";
/// The reason the audit log records for what the demo sets up.
const DEMO_REASON: &str = "demo provisioning";
/// What `DIR/demo.json` keeps between starts (a node admin token that older demos kept is
/// ignored: the demo's node has no bootstrap token, its admin account is made directly).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct DemoState {
    pub(super) installation: InstallationId,
    pub(super) production: ServerGuid,
    #[serde(default)]
    pub(super) backup: Option<ServerGuid>,
}

/// What the demo runs on: its directory's vendor key, node database, installation and GUIDs,
/// created on the first start and reused after.
pub(super) struct Provisioned {
    pub(super) created: bool,
    pub(super) key: VendorSigningKey,
    pub(super) node: Arc<Node>,
    pub(super) state: DemoState,
    pub(super) production_view: leasehold_proto::api::node::ServerView,
    /// The password of the console's [`CONSOLE_ADMIN`] account.
    pub(super) console_password: String,
}

/// Reuses the demo in `dir` or creates one: the vendor key, the node's database with one
/// installation, a production server with licenses and (unless `with_backup` is off) a
/// backup server with licenses backing them up.
pub(super) async fn provision(
    dir: &Path,
    with_backup: bool,
    today: NaiveDate,
) -> anyhow::Result<Provisioned> {
    // The directory: reuse a demo, or create one.
    let existing = read_state(dir)?;
    let created = existing.is_none();
    if created {
        refuse_partial_demo(dir)?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    }
    let key = if created {
        create_key(&dir.join(KEY_FILE))?
    } else {
        crate::node_cmd::load_signing_key(&dir.join(KEY_FILE))?
    };

    // The license node, in this process.
    let db = format!("sqlite://{}", dir.join(NODE_DB).display());
    let store = leasehold_node::store::open(&db)
        .await
        .with_context(|| format!("cannot open the node database {db}"))?;
    let node = Arc::new(Node::new(store, key.clone(), Arc::new(SystemClock)));
    let mut state = match existing {
        Some(s) => s,
        None => {
            let installation = node
                .create_installation(
                    Change::new(&Actor::database(), DEMO_REASON),
                    "Leasehold demo",
                )
                .await
                .map_err(|e| anyhow::anyhow!("creating the installation: {e}"))?;
            let production = node
                .add_server(
                    Change::new(&Actor::database(), DEMO_REASON),
                    &installation.id,
                    Context::Production,
                )
                .await
                .map_err(|e| anyhow::anyhow!("adding the production server: {e}"))?;
            grant(&node, production.guid, today).await?;
            DemoState {
                installation: installation.id,
                production: production.guid,
                backup: None,
            }
        }
    };
    let production_view = node.server(state.production).await.map_err(|e| {
        anyhow::anyhow!(
            "the node database in {} does not know the production server {} ({e}); remove the directory to start a new demo",
            dir.display(),
            state.production
        )
    })?;
    if with_backup && state.backup.is_none() {
        let backup = node
            .add_server(
                Change::new(&Actor::database(), DEMO_REASON),
                &state.installation,
                Context::Backup,
            )
            .await
            .map_err(|e| anyhow::anyhow!("adding the backup server: {e}"))?;
        // Backup licenses parallel the production ones: same feature and count.
        for l in &production_view.licenses {
            node.grant_license(
                Change::new(&Actor::database(), DEMO_REASON),
                &GrantLicense {
                    server: backup.guid,
                    feature: l.feature.clone(),
                    count: l.count,
                    context: None,
                    maintenance_until: maintenance(today),
                    expires: None,
                    backs_up: Some(l.id.clone()),
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("granting a backup license: {e}"))?;
        }
        state.backup = Some(backup.guid);
    }
    write_state(dir, &state)?;
    let console_password = console_admin(dir, &node).await?;

    Ok(Provisioned {
        created,
        key,
        node,
        state,
        production_view,
        console_password,
    })
}

/// The vendor console's admin account: made with a random password at the first start (or
/// given a new one when the password noted in the directory is gone); the password is noted
/// in [`PASSWORDS_FILE`].
async fn console_admin(dir: &Path, node: &Node) -> anyhow::Result<String> {
    let mut passwords = read_passwords(dir)?;
    let name = AccountName::parse(CONSOLE_ADMIN)?;
    let exists = match node.account(&name).await {
        Ok(_) => true,
        Err(e) if e.code == leasehold_proto::ErrorCode::NotFound => false,
        Err(e) => bail!("reading the console's admin account: {e}"),
    };
    if exists {
        if let Some(password) = passwords.get(CONSOLE_PASSWORD_KEY) {
            return Ok(password.clone());
        }
    }
    let password = random_token()[..20].to_owned();
    let actor = Actor::database();
    let change = Change::new(&actor, DEMO_REASON);
    if exists {
        let update = UpdateAccount {
            password: Some(password.clone()),
            ..UpdateAccount::default()
        };
        node.update_account(change, &name, &update)
            .await
            .map_err(|e| anyhow::anyhow!("setting the console admin's password: {e}"))?;
    } else {
        let account = CreateAccount {
            name,
            role: Role::Admin,
            password: password.clone(),
        };
        node.create_account(change, &account)
            .await
            .map_err(|e| anyhow::anyhow!("creating the console's admin account: {e}"))?;
    }
    passwords.insert(CONSOLE_PASSWORD_KEY.to_owned(), password.clone());
    write_passwords(dir, &passwords)?;
    Ok(password)
}

/// The dashboard password of each running server: the one it generated at its first start,
/// the one noted in the demo directory, or a new one set now. Noted in the directory.
pub(super) async fn dashboard_passwords(
    dir: &Path,
    servers: [(Option<&ServerSpec>, Option<&RunningServer>); 2],
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut passwords = read_passwords(dir)?;
    for (spec, running) in servers {
        if let (Some(spec), Some(running)) = (spec, running) {
            let password = match (&running.dashboard_password, passwords.get(spec.name)) {
                (Some(generated), _) => generated.clone(),
                (None, Some(stored)) => stored.clone(),
                // Set before, but not noted here: set a new one the demo knows.
                (None, None) => {
                    let password = random_token()[..16].to_owned();
                    let (data_dir, p) = (spec.data_dir.clone(), password.clone());
                    tokio::task::spawn_blocking(move || {
                        leasehold_server::dashboard::set_password(&data_dir, &p)
                    })
                    .await?
                    .map_err(|e| anyhow::anyhow!(e))?;
                    password
                }
            };
            passwords.insert(spec.name.to_owned(), password);
        }
    }
    write_passwords(dir, &passwords)?;
    Ok(passwords)
}

pub(super) fn maintenance(today: NaiveDate) -> NaiveDate {
    today
        .checked_add_days(chrono::Days::new(365))
        .unwrap_or(today)
}

/// The production licenses.
pub(super) async fn grant(node: &Node, server: ServerGuid, today: NaiveDate) -> anyhow::Result<()> {
    for (feature, count) in FEATURES {
        node.grant_license(
            Change::new(&Actor::database(), DEMO_REASON),
            &GrantLicense {
                server,
                feature: Feature::parse(feature)?,
                count,
                context: None,
                maintenance_until: maintenance(today),
                expires: None,
                backs_up: None,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("granting {feature}: {e}"))?;
    }
    Ok(())
}

pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes a file only its owner can read; `new` refuses to replace one.
pub(super) fn write_private(path: &Path, text: &str, new: bool) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

pub(super) fn create_key(path: &Path) -> anyhow::Result<VendorSigningKey> {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key = VendorSigningKey::from_secret_bytes(secret);
    secret.fill(0);
    let pem = key
        .to_pkcs8_pem()
        .context("cannot encode the signing key")?;
    write_private(path, &pem, true)?;
    Ok(key)
}

pub(super) fn read_state(dir: &Path) -> anyhow::Result<Option<DemoState>> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "{} is not a demo state file; remove the directory to start a new demo",
                path.display()
            )
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}

pub(super) fn write_state(dir: &Path, state: &DemoState) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    write_private(&tmp, &format!("{text}\n"), false)?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// A directory with demo files but no state file was left half made: do not guess.
pub(super) fn refuse_partial_demo(dir: &Path) -> anyhow::Result<()> {
    for name in [KEY_FILE, NODE_DB, "production", "backup", PASSWORDS_FILE] {
        if dir.join(name).exists() {
            bail!(
                "{} holds {name} but no {STATE_FILE}: a demo that did not finish starting; remove the directory (or choose another --dir) to start a new demo",
                dir.display()
            );
        }
    }
    Ok(())
}

/// `DIR/demo-passwords.txt`: one `NAME PASSWORD` line per server.
pub(super) fn read_passwords(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let path = dir.join(PASSWORDS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| l.trim().split_once(' '))
            .map(|(name, pw)| (name.to_owned(), pw.trim().to_owned()))
            .collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}

pub(super) fn write_passwords(
    dir: &Path,
    passwords: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let text: String = passwords
        .iter()
        .map(|(name, pw)| format!("{name} {pw}\n"))
        .collect();
    write_private(&dir.join(PASSWORDS_FILE), &text, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut pw = BTreeMap::new();
        pw.insert("production".to_owned(), "abc def".to_owned());
        pw.insert("backup".to_owned(), "xyz".to_owned());
        write_passwords(dir.path(), &pw).unwrap();
        assert_eq!(read_passwords(dir.path()).unwrap(), pw);
        let mode = std::fs::metadata(dir.path().join(PASSWORDS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_half_made_demo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        refuse_partial_demo(dir.path()).unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "x").unwrap();
        let e = refuse_partial_demo(dir.path()).unwrap_err().to_string();
        assert!(e.contains("demo.json"), "{e}");
    }
}
