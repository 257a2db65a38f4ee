//! The staff commands of `leasehold vendor`: which token a command uses, sign-in and
//! sign-out, accounts, tokens and the audit log. Passwords are read without echo from the
//! terminal (or from stdin when asked), generated when an admin sets one for someone else,
//! and never logged; a token is printed only where the user asked for it.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use leasehold_api_client::{AuditFilter, NodeClient, Url};
use leasehold_proto::api::staff::{
    check_password, check_token_label, AccountName, AuditPage, CreateAccount, Login, UpdateAccount,
};

use super::credentials::{self, Credentials, Saved};
use super::output::emit;
use super::render_staff::{
    AccountWithPassword, AuditOutput, LoginOutput, LogoutOutput, WhoamiOutput,
};
use super::{AccountCommand, AuditArgs, LoginArgs, TokenCommand, VendorCommand};
use crate::http_util::Secret;

/// Most entries the node returns in one page.
const AUDIT_PAGE: u32 = 500;

/// The token a command sends, and where it came from.
#[derive(Debug)]
pub enum TokenInUse {
    None,
    /// `--token` or `LEASEHOLD_VENDOR_TOKEN`.
    Given(Secret),
    /// Saved by `vendor login` for this node.
    Saved {
        saved: Saved,
        path: PathBuf,
    },
}

impl TokenInUse {
    pub fn secret(&self) -> Option<&str> {
        match self {
            TokenInUse::None => None,
            TokenInUse::Given(s) => Some(s.as_str()),
            TokenInUse::Saved { saved, .. } => Some(&saved.token),
        }
    }
}

/// `--token` / `LEASEHOLD_VENDOR_TOKEN` when given, else the token `vendor login` saved for
/// `node`. `login` itself sends none.
pub fn token_in_use(
    node: &Url,
    given: Option<Secret>,
    command: &VendorCommand,
) -> anyhow::Result<TokenInUse> {
    if matches!(command, VendorCommand::Login(_)) {
        return Ok(TokenInUse::None);
    }
    if let Some(token) = given {
        return Ok(TokenInUse::Given(token));
    }
    let path = credentials::path()?;
    if let Some(saved) = Credentials::load(&path)?.get(node.as_str()) {
        return Ok(TokenInUse::Saved {
            saved: saved.clone(),
            path,
        });
    }
    let needs_token = !matches!(
        command,
        VendorCommand::SyncFile(_) | VendorCommand::Keygen(_)
    );
    if needs_token && std::env::var("LEASEHOLD_ADMIN_TOKEN").is_ok_and(|t| !t.trim().is_empty()) {
        bail!(
            "not signed in to {node}: `leasehold vendor` no longer reads LEASEHOLD_ADMIN_TOKEN (the node's bootstrap token, which only creates the first admin account: `LEASEHOLD_VENDOR_TOKEN=… leasehold vendor account add --role admin ...`); sign in with `leasehold vendor login`, or pass --token / set LEASEHOLD_VENDOR_TOKEN to a vendor account's token"
        );
    }
    Ok(TokenInUse::None)
}

/// One line of stdin, without its line break.
fn stdin_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("cannot read {what} from stdin"))?;
    if n == 0 {
        bail!("stdin ended before {what}");
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Asks on the terminal without echo.
fn ask_password(prompt: &str) -> anyhow::Result<String> {
    rpassword::prompt_password(prompt).map_err(|e| {
        anyhow!("cannot ask for a password on the terminal ({e}); pass --password-stdin and give it on stdin")
    })
}

/// A new password: checked, asked twice on the terminal.
fn ask_new_password(whose: &str) -> anyhow::Result<String> {
    let first = ask_password(&format!("new password for {whose}: "))?;
    check_password(&first).map_err(|e| anyhow!(e))?;
    let again = ask_password("the same again: ")?;
    if again != first {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

pub async fn login(client: &NodeClient, json: bool, a: LoginArgs) -> anyhow::Result<()> {
    let node = client.base().clone();
    let name = match a.name {
        Some(n) => n,
        None => {
            eprint!("account name at {node}: ");
            std::io::stderr().flush()?;
            let line = stdin_line("the account name")?;
            AccountName::parse(&line).map_err(|e| anyhow!(e))?
        }
    };
    let password = if a.password_stdin {
        stdin_line("the password")?
    } else {
        ask_password(&format!("password of {name} at {node}: "))?
    };
    let label = a
        .label
        .as_deref()
        .map(check_token_label)
        .transpose()
        .map_err(|e| anyhow!("--label: {e}"))?;
    let new = client
        .login(&Login {
            name,
            password,
            label,
        })
        .await?;
    if a.print_token {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", new.token)?;
        out.flush()?;
        return Ok(());
    }
    let path = credentials::path()?;
    let mut creds = Credentials::load(&path)?;
    let previous = creds.nodes.insert(
        node.to_string(),
        Saved {
            account: new.account.name.clone(),
            token: new.token.clone(),
            token_id: new.info.id.clone(),
            saved_at: chrono::Utc::now(),
        },
    );
    creds.save(&path)?;
    // The token saved before is replaced: it is revoked with itself (anyone may revoke their
    // own), so no forgotten token stays valid.
    let mut replaced = None;
    if let Some(old) = previous.filter(|old| old.token_id != new.info.id) {
        match client
            .with_token(Some(old.token.clone()))
            .revoke_token(&old.token_id)
            .await
        {
            Ok(_) => replaced = Some(old.token_id),
            Err(e) if e.status() == Some(401) => {}
            Err(e) => eprintln!(
                "note: the token saved before ({}) could not be revoked: {e}; `leasehold vendor token revoke {}` does it",
                old.token_id, old.token_id
            ),
        }
    }
    emit(
        json,
        &LoginOutput {
            node: node.to_string(),
            account: new.account,
            token_id: new.info.id,
            saved_to: path,
            replaced,
        },
    )
}

pub async fn logout(client: &NodeClient, json: bool, token: &TokenInUse) -> anyhow::Result<()> {
    let node = client.base().to_string();
    let (id, saved_in) = match token {
        TokenInUse::None => bail!(
            "not signed in to {node}: no --token, no LEASEHOLD_VENDOR_TOKEN and nothing saved by `leasehold vendor login`"
        ),
        TokenInUse::Given(_) => {
            let who = client.whoami().await?;
            let id = who
                .token
                .context("the node did not say which token this is")?;
            (id, None)
        }
        TokenInUse::Saved { saved, path } => (saved.token_id.clone(), Some(path.clone())),
    };
    let revoked = match client.revoke_token(&id).await {
        Ok(_) => true,
        // Revoked already, or its account disabled: forgetting it is all that is left.
        Err(e) if e.status() == Some(401) && saved_in.is_some() => false,
        Err(e) => {
            return Err(anyhow::Error::new(e).context(match &saved_in {
                Some(path) => format!(
                    "the token stays saved in {}; try again when the node answers",
                    path.display()
                ),
                None => "revoking the token".to_owned(),
            }))
        }
    };
    // Forget it here, whichever way it was given, if it is the one saved for this node.
    let path = credentials::path()?;
    let mut creds = Credentials::load(&path)?;
    let forgotten_in = match creds.nodes.get(&node) {
        Some(saved) if saved.token_id == id => {
            creds.nodes.remove(&node);
            creds.save(&path)?;
            Some(path)
        }
        _ => None,
    };
    emit(
        json,
        &LogoutOutput {
            node,
            token_id: Some(id),
            revoked,
            forgotten_in,
        },
    )
}

pub async fn whoami(client: &NodeClient, json: bool, token: &TokenInUse) -> anyhow::Result<()> {
    let who = client.whoami().await?;
    let token_from = match token {
        TokenInUse::None => "none".to_owned(),
        TokenInUse::Given(_) => "--token or LEASEHOLD_VENDOR_TOKEN".to_owned(),
        TokenInUse::Saved { path, .. } => format!("{} (vendor login)", path.display()),
    };
    emit(
        json,
        &WhoamiOutput {
            node: client.base().to_string(),
            account: who.account,
            token_id: who.token,
            token_from,
        },
    )
}

pub async fn account(client: &NodeClient, json: bool, cmd: AccountCommand) -> anyhow::Result<()> {
    match cmd {
        AccountCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            let (password, generated) = if password_stdin {
                let pw = stdin_line("the password")?;
                check_password(&pw).map_err(|e| anyhow!(e))?;
                (pw, false)
            } else {
                (leasehold_web::browser::generated_password(), true)
            };
            client.require_token()?;
            let account = client
                .create_account(&CreateAccount {
                    name,
                    role,
                    password: password.clone(),
                })
                .await?;
            emit(
                json,
                &AccountWithPassword {
                    account,
                    generated_password: generated.then_some(password),
                    done: "created",
                },
            )
        }
        AccountCommand::List => emit(json, &client.accounts().await?),
        AccountCommand::Show { name } => emit(json, &client.account(&name).await?),
        AccountCommand::Disable { name } => {
            let u = UpdateAccount {
                disabled: Some(true),
                ..UpdateAccount::default()
            };
            emit(json, &client.update_account(&name, &u).await?)
        }
        AccountCommand::Enable { name } => {
            let u = UpdateAccount {
                disabled: Some(false),
                ..UpdateAccount::default()
            };
            emit(json, &client.update_account(&name, &u).await?)
        }
        AccountCommand::SetRole { name, role } => {
            let u = UpdateAccount {
                role: Some(role),
                ..UpdateAccount::default()
            };
            emit(json, &client.update_account(&name, &u).await?)
        }
        AccountCommand::SetPassword {
            name,
            password_stdin,
        } => set_password(client, json, name, password_stdin).await,
    }
}

async fn set_password(
    client: &NodeClient,
    json: bool,
    name: Option<AccountName>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    client.require_token()?;
    let me = client.whoami().await?.account.name;
    let name = name.unwrap_or_else(|| me.clone());
    let own = name == me;
    let (current, password, generated) = match (own, password_stdin) {
        (true, true) => (
            Some(stdin_line("the present password (first line)")?),
            stdin_line("the new password (second line)")?,
            false,
        ),
        (true, false) => (
            Some(ask_password(&format!("present password of {name}: "))?),
            ask_new_password(name.as_str())?,
            false,
        ),
        (false, true) => (None, stdin_line("the new password")?, false),
        (false, false) => (None, leasehold_web::browser::generated_password(), true),
    };
    check_password(&password).map_err(|e| anyhow!(e))?;
    let account = client
        .update_account(
            &name,
            &UpdateAccount {
                password: Some(password.clone()),
                current_password: current,
                ..UpdateAccount::default()
            },
        )
        .await?;
    emit(
        json,
        &AccountWithPassword {
            account,
            generated_password: generated.then_some(password),
            done: "has a new password",
        },
    )
}

pub async fn token(client: &NodeClient, json: bool, cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::List { account, all } => {
            emit(json, &client.tokens(account.as_ref(), all).await?)
        }
        TokenCommand::Create { label } => {
            let label = check_token_label(&label).map_err(|e| anyhow!("--label: {e}"))?;
            emit(json, &client.create_token(&label).await?)
        }
        TokenCommand::Revoke { id } => emit(json, &client.revoke_token(&id).await?),
    }
}

pub async fn audit(client: &NodeClient, json: bool, a: AuditArgs) -> anyhow::Result<()> {
    let target = a
        .target
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let actor = a
        .actor
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let mut filter = AuditFilter {
        installation: a.installation,
        server: a.server,
        target,
        actor,
        since: a.since,
        before: None,
        limit: None,
    };
    let want = (!a.all).then_some(a.limit as usize);
    let mut entries = Vec::new();
    let next_before = loop {
        let left = want.map_or(AUDIT_PAGE as usize, |w| w - entries.len());
        filter.limit = Some(left.min(AUDIT_PAGE as usize) as u32);
        let page = client.audit(&filter).await?;
        entries.extend(page.entries);
        match page.next_before {
            Some(before) if want.is_none_or(|w| entries.len() < w) => {
                filter.before = Some(before);
            }
            next => break next,
        }
    };
    let page = AuditPage {
        entries,
        next_before,
    };
    if a.csv {
        let mut out = std::io::stdout().lock();
        write!(out, "{}", leasehold_node::export::audit_csv(&page.entries))?;
        out.flush()?;
        return Ok(());
    }
    emit(
        json,
        &AuditOutput {
            page,
            detail: a.detail,
        },
    )
}
