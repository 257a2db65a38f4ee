//! The vendor's staff: accounts (Argon2 password hashes), personal API tokens and console
//! sessions (only their SHA-256 is stored), who a request comes from, and the audit log.
//! Argon2 runs on the blocking pool and never inside a transaction, so a sign-in does not
//! hold the database while it hashes.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng as HashRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use leasehold_proto::api::staff::{
    check_password, check_token_label, looks_like_vendor_token, AccountName, AccountView,
    AuditAction, AuditPage, CreateAccount, NewToken, Role, TokenView, UpdateAccount, Via,
};
use leasehold_proto::{AccountId, ApiTokenId, ErrorCode};
use leasehold_web::ApiError;
use sha2::{Digest, Sha256};

use super::{random, Node};
use crate::domain::audit::{Actor, Change, Entry};
use crate::store::{AccountRecord, ApiTokenRecord, AuditQuery, StoreError, StoreTx};

/// A console session unused this long is over.
pub const SESSION_IDLE: chrono::Duration = chrono::Duration::hours(12);
/// A console session ends this long after its sign-in, used or not.
pub const SESSION_MAX_AGE: chrono::Duration = chrono::Duration::days(7);
/// `last_used_at` of a token and `last_seen_at` of a session are written at most this often.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(60);
/// Most audit entries one page holds.
pub const MAX_AUDIT_PAGE: u32 = 500;

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
}

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(random::<32>()))
}

fn internal(what: impl std::fmt::Display) -> ApiError {
    ApiError::internal("license node", what)
}

/// Hashes a password with Argon2 (default parameters) off the async threads.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut HashRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(internal)
    })
    .await
    .map_err(internal)?
}

/// Whether `password` matches the Argon2 PHC string `hash`; off the async threads. With
/// no hash (no such account) a fixed hash is checked instead, so the time taken does not
/// tell whether the account exists.
async fn verify_password(hash: Option<String>, password: String) -> Result<bool, ApiError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| {
                    let salt = SaltString::generate(&mut HashRng);
                    Argon2::default()
                        .hash_password(b"no such account", &salt)
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                })
                .clone()
        });
        let parsed = PasswordHash::new(&hash).map_err(internal)?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && known)
    })
    .await
    .map_err(internal)?
}

pub(crate) fn account_view(a: &AccountRecord) -> AccountView {
    AccountView {
        id: a.id.clone(),
        name: a.name.clone(),
        role: a.role,
        disabled: a.disabled_at.is_some(),
        created_at: a.created_at,
        created_by: a.created_by.clone(),
        last_sign_in: a.last_sign_in,
    }
}

fn token_view(t: &ApiTokenRecord) -> TokenView {
    TokenView {
        id: t.id.clone(),
        account: t.account_name.clone(),
        label: t.label.clone(),
        created_at: t.created_at,
        last_used_at: t.last_used_at,
        revoked_at: t.revoked_at,
    }
}

/// A console session just begun: the cookie value (shown to the browser once) and who.
#[derive(Clone)]
pub struct NewSession {
    pub cookie: String,
    pub account: AccountView,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("cookie", &"<redacted>")
            .field("account", &self.account)
            .finish()
    }
}

/// A live console session.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub actor: Actor,
    pub account: AccountView,
    /// Every form of the session carries it.
    pub csrf: String,
    /// A message left for this page by the action before it.
    pub flash: Option<String>,
    hash: String,
}

/// Whose tokens to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokensOf {
    /// The caller's own.
    Own,
    /// One account's (an admin, or the account itself).
    Account(AccountName),
    /// Everyone's (an admin).
    All,
}

impl Node {
    /// Who carries this personal API token: `unauthorized` when it is unknown, revoked, or
    /// its account is disabled. Marks the token used (at most once a minute).
    pub async fn authenticate(&self, token: &str) -> Result<Actor, ApiError> {
        if !looks_like_vendor_token(token) {
            return Err(unauthorized(
                "the vendor admin API needs 'Authorization: Bearer lhv_…' with a vendor account's token: sign in with `leasehold vendor login`",
            ));
        }
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let Some((record, account)) = tx.api_token_by_hash(&sha256_hex(token)).await? else {
            return Err(unauthorized(
                "this token is not known to the license node (a typo, or a token of another vendor); sign in again with `leasehold vendor login`",
            ));
        };
        if let Some(at) = record.revoked_at {
            return Err(unauthorized(format!(
                "this token ({}) was revoked at {}; sign in again with `leasehold vendor login`",
                record.id,
                at.format("%Y-%m-%d %H:%M UTC")
            )));
        }
        if account.disabled_at.is_some() {
            return Err(unauthorized(format!(
                "the account {} is disabled; its tokens no longer work",
                account.name
            )));
        }
        if record.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY) {
            tx.touch_api_token(&record.id, now).await?;
            tx.commit().await?;
        }
        Ok(Actor::account(&account, Via::Api, Some(record.id)))
    }

    /// Checks a name and password: the account, or one message for "no such account" and
    /// "wrong password" alike (a disabled account is named as such only after its password
    /// matched).
    pub async fn check_credentials(
        &self,
        name: &AccountName,
        password: &str,
    ) -> Result<AccountRecord, ApiError> {
        let mut tx = self.begin().await?;
        let account = tx.account_by_name(name).await?;
        drop(tx);
        let ok = verify_password(
            account.as_ref().map(|a| a.password_hash.clone()),
            password.to_owned(),
        )
        .await?;
        match account {
            Some(a) if ok => {
                if a.disabled_at.is_some() {
                    return Err(unauthorized(format!(
                        "the account {} is disabled; ask an admin to enable it",
                        a.name
                    )));
                }
                Ok(a)
            }
            _ => Err(unauthorized("wrong account name or password")),
        }
    }

    /// `POST /v1/admin/login`: a new personal API token for the account (recorded as
    /// `token.create` by that account).
    pub async fn login(
        &self,
        name: &AccountName,
        password: &str,
        label: Option<&str>,
    ) -> Result<NewToken, ApiError> {
        let label = check_token_label(label.unwrap_or("leasehold vendor login"))
            .map_err(ApiError::bad_request)?;
        let account = self.check_credentials(name, password).await?;
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let signed_in = record_sign_in(&mut *tx, &account, now).await?;
        let actor = Actor::account(&signed_in, Via::Api, None);
        let out = issue_token(&mut *tx, Change::new(&actor, ""), &signed_in, &label, now).await?;
        tx.commit().await?;
        tracing::info!(account = %account.name, token = %out.info.id, "vendor sign-in (API token issued)");
        Ok(out)
    }

    /// A new token for the caller's own account.
    pub async fn create_token(
        &self,
        change: Change<'_>,
        label: &str,
    ) -> Result<NewToken, ApiError> {
        change.actor.require(AuditAction::TokenCreate)?;
        let label = check_token_label(label).map_err(ApiError::bad_request)?;
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let account = own_account(&mut *tx, change.actor).await?;
        let out = issue_token(&mut *tx, change, &account, &label, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Lists tokens (never the tokens themselves): one's own; an admin's of anyone.
    pub async fn tokens(&self, actor: &Actor, of: &TokensOf) -> Result<Vec<TokenView>, ApiError> {
        let mut tx = self.begin().await?;
        let account = match of {
            TokensOf::Own => Some(own_account(&mut *tx, actor).await?.id),
            TokensOf::Account(name) => {
                let a = tx
                    .account_by_name(name)
                    .await?
                    .ok_or_else(|| no_account(name))?;
                if !actor.is(&a.id) {
                    actor.require_role(Role::Admin, AuditAction::TokenRevoke)?;
                }
                Some(a.id)
            }
            TokensOf::All => {
                actor.require_role(Role::Admin, AuditAction::TokenRevoke)?;
                None
            }
        };
        let out = tx.api_tokens(account.as_ref()).await?;
        Ok(out.iter().map(token_view).collect())
    }

    /// Revokes a token: one's own, or (an admin) anyone's.
    pub async fn revoke_token(
        &self,
        change: Change<'_>,
        id: &ApiTokenId,
    ) -> Result<TokenView, ApiError> {
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let before = tx
            .api_token(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("token {id} not found")))?;
        if !change.actor.is(&before.account_id) {
            change.actor.require(AuditAction::TokenRevoke)?;
        }
        if before.revoked_at.is_some() {
            // Revoked already: nothing changes, so nothing is recorded.
            return Ok(token_view(&before));
        }
        tx.revoke_api_token(id, now).await?;
        let after = tx
            .api_token(id)
            .await?
            .ok_or_else(|| internal("a revoked token vanished"))?;
        let (before, after) = (token_view(&before), token_view(&after));
        Entry::new(AuditAction::TokenRevoke, id.as_str())
            .before(&before)
            .after(&after)
            .write(&mut *tx, change, now)
            .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Creates an account. The bootstrap token may create only the first admin, while no
    /// enabled admin account exists.
    pub async fn create_account(
        &self,
        change: Change<'_>,
        req: &CreateAccount,
    ) -> Result<AccountView, ApiError> {
        change.actor.require(AuditAction::AccountCreate)?;
        if change.actor.via == Via::Bootstrap {
            // Once an admin exists the bootstrap token is refused whatever it asks (not told
            // what a first account would need); checked again under the lock below, where two
            // nodes may race.
            let admins = enabled_admins(&mut *self.begin().await?).await?;
            if !admins.is_empty() {
                return Err(bootstrap_spent(&admins));
            }
        }
        check_password(&req.password).map_err(ApiError::bad_request)?;
        if change.actor.via == Via::Bootstrap && req.role != Role::Admin {
            return Err(ApiError::bad_request(
                "the bootstrap token creates the first account, which must be an admin (--role admin); that admin then creates the others",
            ));
        }
        let hash = hash_password(req.password.clone()).await?;
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        tx.lock_accounts().await?;
        if change.actor.via == Via::Bootstrap {
            let admins = enabled_admins(&mut *tx).await?;
            if !admins.is_empty() {
                return Err(bootstrap_spent(&admins));
            }
        }
        let account = AccountRecord {
            id: AccountId::from_random(random()),
            name: req.name.clone(),
            role: req.role,
            password_hash: hash,
            disabled_at: None,
            created_at: now,
            created_by: change.actor.name.clone(),
            last_sign_in: None,
        };
        tx.insert_account(&account).await?;
        let view = account_view(&account);
        Entry::new(AuditAction::AccountCreate, account.name.as_str())
            .after(&view)
            .write(&mut *tx, change, now)
            .await?;
        tx.commit().await?;
        tracing::info!(account = %account.name, role = %account.role, by = %change.actor.name, "vendor account created");
        Ok(view)
    }

    /// Every account, by name (support and admin may read them).
    pub async fn accounts(&self) -> Result<Vec<AccountView>, ApiError> {
        let mut tx = self.begin().await?;
        let out = tx.accounts().await?;
        Ok(out.iter().map(account_view).collect())
    }

    pub async fn account(&self, name: &AccountName) -> Result<AccountView, ApiError> {
        let mut tx = self.begin().await?;
        let a = tx
            .account_by_name(name)
            .await?
            .ok_or_else(|| no_account(name))?;
        Ok(account_view(&a))
    }

    /// Changes an account's role, disables or enables it, or sets its password. An admin
    /// may change any account, but never disable itself, nor leave the node without an
    /// enabled admin; anyone may set their own password with the present one. Disabling
    /// ends the account's tokens and sessions at once.
    pub async fn update_account(
        &self,
        change: Change<'_>,
        name: &AccountName,
        req: &UpdateAccount,
    ) -> Result<AccountView, ApiError> {
        if req.role.is_none() && req.disabled.is_none() && req.password.is_none() {
            return Err(ApiError::bad_request(
                "nothing to change: give role, disabled and/or password",
            ));
        }
        if req.role.is_some() || req.disabled.is_some() {
            change.actor.require(AuditAction::AccountUpdate)?;
        }
        let current = self
            .begin()
            .await?
            .account_by_name(name)
            .await?
            .ok_or_else(|| no_account(name))?;
        let own = change.actor.is(&current.id);
        let new_hash = match &req.password {
            None => None,
            Some(password) => {
                if own {
                    let given = req.current_password.clone().unwrap_or_default();
                    if !verify_password(Some(current.password_hash.clone()), given).await? {
                        return Err(ApiError::bad_request(
                            "to change your own password, give your present one as current_password; it did not match",
                        ));
                    }
                } else {
                    change.actor.require(AuditAction::AccountSetPassword)?;
                }
                check_password(password).map_err(ApiError::bad_request)?;
                Some(hash_password(password.clone()).await?)
            }
        };
        if own && req.disabled == Some(true) {
            return Err(ApiError::bad_request(
                "you cannot disable your own account; another admin can",
            ));
        }
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        tx.lock_accounts().await?;
        let before = tx
            .account_by_name(name)
            .await?
            .ok_or_else(|| no_account(name))?;
        let mut after = before.clone();
        if let Some(role) = req.role {
            after.role = role;
        }
        match req.disabled {
            Some(true) if before.disabled_at.is_none() => after.disabled_at = Some(now),
            Some(false) => after.disabled_at = None,
            _ => {}
        }
        let was_admin = before.role == Role::Admin && before.disabled_at.is_none();
        let is_admin = after.role == Role::Admin && after.disabled_at.is_none();
        if was_admin && !is_admin && enabled_admins(&mut *tx).await?.len() <= 1 {
            return Err(StoreError::Refused(
                ErrorCode::BadRequest,
                format!("{name} is the last enabled admin account; make another admin first, so the node is never left without one"),
            )
            .into());
        }
        if let Some(hash) = new_hash {
            after.password_hash = hash;
        }
        tx.update_account(&after).await?;
        if after.disabled_at.is_some() && before.disabled_at.is_none() {
            tx.revoke_api_tokens_of(&after.id, now).await?;
            tx.delete_sessions_of(&after.id).await?;
        }
        let (before_view, after_view) = (account_view(&before), account_view(&after));
        // A role or state asked for that the account has already changes nothing, and
        // records nothing.
        if before_view.role != after_view.role || before_view.disabled != after_view.disabled {
            Entry::new(AuditAction::AccountUpdate, name.as_str())
                .before(&before_view)
                .after(&after_view)
                .write(&mut *tx, change, now)
                .await?;
        }
        if req.password.is_some() {
            if !own {
                // A reset: whoever knew the old password is signed out, and the tokens
                // that password could have made stop working.
                tx.delete_sessions_of(&after.id).await?;
                tx.revoke_api_tokens_of(&after.id, now).await?;
            }
            Entry::new(AuditAction::AccountSetPassword, name.as_str())
                .after(&serde_json::json!({ "account": name, "password": "changed" }))
                .write(&mut *tx, change, now)
                .await?;
        }
        tx.commit().await?;
        Ok(after_view)
    }

    /// Audit entries, newest first (support and admin may read them).
    pub async fn audit(&self, mut query: AuditQuery) -> Result<AuditPage, ApiError> {
        let limit = query.limit.clamp(1, MAX_AUDIT_PAGE);
        // One more than asked: whether an older page exists at all.
        query.limit = limit + 1;
        let mut tx = self.begin().await?;
        let mut entries = tx.audit(&query).await?;
        let more = entries.len() > limit as usize;
        entries.truncate(limit as usize);
        let next_before = more.then(|| entries.last().map(|e| e.id)).flatten();
        Ok(AuditPage {
            entries,
            next_before,
        })
    }

    /// Signs in to the console: a new session (recorded as `session.sign_in`).
    pub async fn start_session(
        &self,
        name: &AccountName,
        password: &str,
    ) -> Result<NewSession, ApiError> {
        let account = self.check_credentials(name, password).await?;
        let cookie = new_secret("");
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        tx.delete_idle_sessions(now - SESSION_IDLE).await?;
        let signed_in = record_sign_in(&mut *tx, &account, now).await?;
        let actor = Actor::account(&signed_in, Via::Console, None);
        tx.insert_session(&sha256_hex(&cookie), &account.id, &new_secret(""), now)
            .await?;
        let view = account_view(&signed_in);
        Entry::new(AuditAction::SessionSignIn, account.name.as_str())
            .write(&mut *tx, Change::new(&actor, ""), now)
            .await?;
        tx.commit().await?;
        tracing::info!(account = %account.name, "vendor console sign-in");
        Ok(NewSession {
            cookie,
            account: view,
        })
    }

    /// The live session of this cookie, if any (an idle or too old one is ended); takes the
    /// session's flash message.
    pub async fn console_session(&self, cookie: &str) -> Result<Option<ConsoleSession>, ApiError> {
        if cookie.is_empty() {
            return Ok(None);
        }
        let hash = sha256_hex(cookie);
        let now = self.clock.now();
        let mut tx = self.begin().await?;
        let Some(s) = tx.session(&hash).await? else {
            return Ok(None);
        };
        if s.account.disabled_at.is_some()
            || now - s.last_seen_at >= SESSION_IDLE
            || now - s.created_at >= SESSION_MAX_AGE
        {
            tx.delete_session(&hash).await?;
            tx.commit().await?;
            return Ok(None);
        }
        let mut wrote = false;
        if now - s.last_seen_at >= TOUCH_EVERY {
            tx.touch_session(&hash, now).await?;
            wrote = true;
        }
        if s.flash.is_some() {
            tx.set_session_flash(&hash, None).await?;
            wrote = true;
        }
        if wrote {
            tx.commit().await?;
        }
        Ok(Some(ConsoleSession {
            actor: Actor::account(&s.account, Via::Console, None),
            account: account_view(&s.account),
            csrf: s.csrf,
            flash: s.flash,
            hash,
        }))
    }

    /// Leaves a message for the session's next page.
    pub async fn set_flash(&self, session: &ConsoleSession, flash: &str) -> Result<(), ApiError> {
        let mut tx = self.begin().await?;
        tx.set_session_flash(&session.hash, Some(flash)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn end_session(&self, session: &ConsoleSession) -> Result<(), ApiError> {
        let mut tx = self.begin().await?;
        tx.delete_session(&session.hash).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether any enabled admin account exists (the bootstrap token works until one does).
    pub async fn has_admin(&self) -> Result<bool, ApiError> {
        let mut tx = self.begin().await?;
        Ok(!enabled_admins(&mut *tx).await?.is_empty())
    }
}

/// The bootstrap token's refusal once `admins` (enabled admin accounts) exist.
fn bootstrap_spent(admins: &[String]) -> ApiError {
    unauthorized(format!(
        "an admin account exists ({}), so the bootstrap token no longer works; sign in with an admin account (`leasehold vendor login`) to create accounts",
        admins.join(", ")
    ))
}

fn no_account(name: &AccountName) -> ApiError {
    ApiError::not_found(format!("no account named {name}"))
}

async fn enabled_admins(tx: &mut dyn StoreTx) -> Result<Vec<String>, StoreError> {
    Ok(tx
        .accounts()
        .await?
        .into_iter()
        .filter(|a| a.role == Role::Admin && a.disabled_at.is_none())
        .map(|a| a.name.to_string())
        .collect())
}

/// Records the sign-in of `checked`, whose password was just verified outside any
/// transaction (Argon2 takes a while): the account is read again under the accounts lock,
/// so a disable, a new role or a new password that landed meanwhile is neither undone by
/// writing the old row back nor given a token or session.
async fn record_sign_in(
    tx: &mut dyn StoreTx,
    checked: &AccountRecord,
    now: DateTime<Utc>,
) -> Result<AccountRecord, ApiError> {
    tx.lock_accounts().await?;
    let Some(mut account) = tx
        .account_by_name(&checked.name)
        .await?
        .filter(|a| a.id == checked.id)
    else {
        return Err(unauthorized("wrong account name or password"));
    };
    if account.disabled_at.is_some() {
        return Err(unauthorized(format!(
            "the account {} is disabled; ask an admin to enable it",
            account.name
        )));
    }
    if account.password_hash != checked.password_hash {
        return Err(unauthorized(
            "the account's password was changed while you signed in; sign in with the new one",
        ));
    }
    account.last_sign_in = Some(now);
    tx.update_account(&account).await?;
    Ok(account)
}

async fn own_account(tx: &mut dyn StoreTx, actor: &Actor) -> Result<AccountRecord, ApiError> {
    let name = AccountName::parse(&actor.name)
        .map_err(|_| ApiError::bad_request(format!("{} has no account of its own", actor.name)))?;
    tx.account_by_name(&name)
        .await?
        .filter(|a| actor.is(&a.id))
        .ok_or_else(|| ApiError::bad_request(format!("{} has no account of its own", actor.name)))
}

async fn issue_token(
    tx: &mut dyn StoreTx,
    change: Change<'_>,
    account: &AccountRecord,
    label: &str,
    now: DateTime<Utc>,
) -> Result<NewToken, ApiError> {
    let token = new_secret(leasehold_proto::api::staff::VENDOR_TOKEN_PREFIX);
    let record = ApiTokenRecord {
        id: ApiTokenId::from_random(random()),
        account_id: account.id.clone(),
        account_name: account.name.clone(),
        label: label.to_owned(),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    tx.insert_api_token(&record, &sha256_hex(&token)).await?;
    let info = token_view(&record);
    Entry::new(AuditAction::TokenCreate, record.id.as_str())
        .after(&info)
        .write(tx, change, now)
        .await?;
    Ok(NewToken {
        token,
        info,
        account: account_view(account),
    })
}
