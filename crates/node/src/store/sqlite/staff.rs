//! SQLite: staff accounts, API tokens, console sessions and the audit log.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::api::staff::{AccountName, AuditAction, AuditEntry, Role, Via};
use leasehold_proto::{AccountId, ApiTokenId, ErrorCode};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{opt_ts, parse_ts, ts, SqliteTx};
use crate::store::{
    audit_installations, audit_json, audit_servers, corrupt, i64_of, u64_of, AccountRecord,
    ApiTokenRecord, AuditQuery, NewAuditEntry, SessionRecord, StaffTx, StoreError, StoreResult,
    ACCOUNT_COLUMNS, AUDIT_COLUMNS,
};

fn account_row(r: &SqliteRow) -> StoreResult<AccountRecord> {
    let id: String = r.try_get("id")?;
    let name: String = r.try_get("name")?;
    let role: String = r.try_get("role")?;
    let created: String = r.try_get("created_at")?;
    Ok(AccountRecord {
        id: AccountId::parse(&id).map_err(|e| corrupt("account id", e))?,
        name: AccountName::parse(&name).map_err(|e| corrupt("account name", e))?,
        role: Role::from_str(&role).map_err(|e| corrupt("role", e))?,
        password_hash: r.try_get("password_hash")?,
        disabled_at: opt_ts(r.try_get("disabled_at")?)?,
        created_at: parse_ts(&created)?,
        created_by: r.try_get("created_by")?,
        last_sign_in: opt_ts(r.try_get("last_sign_in")?)?,
    })
}

fn token_row(r: &SqliteRow) -> StoreResult<ApiTokenRecord> {
    let id: String = r.try_get("id")?;
    let account: String = r.try_get("account_id")?;
    let name: String = r.try_get("account_name")?;
    let created: String = r.try_get("created_at")?;
    Ok(ApiTokenRecord {
        id: ApiTokenId::parse(&id).map_err(|e| corrupt("token id", e))?,
        account_id: AccountId::parse(&account).map_err(|e| corrupt("account id", e))?,
        account_name: AccountName::parse(&name).map_err(|e| corrupt("account name", e))?,
        label: r.try_get("label")?,
        created_at: parse_ts(&created)?,
        last_used_at: opt_ts(r.try_get("last_used_at")?)?,
        revoked_at: opt_ts(r.try_get("revoked_at")?)?,
    })
}

fn audit_row(r: &SqliteRow) -> StoreResult<AuditEntry> {
    let at: String = r.try_get("at")?;
    let role: Option<String> = r.try_get("actor_role")?;
    let via: String = r.try_get("via")?;
    let action: String = r.try_get("action")?;
    Ok(AuditEntry {
        id: u64_of(r.try_get("id")?),
        at: parse_ts(&at)?,
        actor: r.try_get("actor")?,
        role: role
            .as_deref()
            .map(Role::from_str)
            .transpose()
            .map_err(|e| corrupt("role", e))?,
        via: Via::from_str(&via).map_err(|e| corrupt("via", e))?,
        action: AuditAction::from_str(&action).map_err(|e| corrupt("audit action", e))?,
        installations: audit_installations(
            r.try_get("installation_id")?,
            r.try_get("other_installation_id")?,
        )?,
        servers: audit_servers(r.try_get("server_guid")?, r.try_get("other_server_guid")?)?,
        target: r.try_get("target")?,
        reason: r.try_get("reason")?,
        before: audit_json(r.try_get("before_json")?)?,
        after: audit_json(r.try_get("after_json")?)?,
    })
}

const TOKEN_SELECT: &str = "SELECT t.id, t.account_id, a.name AS account_name, t.label, t.created_at, t.last_used_at, t.revoked_at FROM api_tokens t JOIN vendor_accounts a ON a.id = t.account_id";

fn taken(e: sqlx::Error, what: String) -> StoreError {
    match e.as_database_error() {
        Some(d) if d.is_unique_violation() => StoreError::Refused(ErrorCode::AlreadyExists, what),
        _ => e.into(),
    }
}

#[async_trait]
impl StaffTx for SqliteTx {
    async fn lock_accounts(&mut self) -> StoreResult<()> {
        // One writer: the transaction has the database to itself.
        Ok(())
    }

    async fn insert_account(&mut self, a: &AccountRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO vendor_accounts (id, name, role, password_hash, disabled_at, created_at, created_by, last_sign_in) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(a.id.as_str())
        .bind(a.name.as_str())
        .bind(a.role.as_str())
        .bind(&a.password_hash)
        .bind(a.disabled_at.map(ts))
        .bind(ts(a.created_at))
        .bind(&a.created_by)
        .bind(a.last_sign_in.map(ts))
        .execute(&mut *self.0)
        .await
        .map_err(|e| taken(e, format!("an account named {} exists already", a.name)))?;
        Ok(())
    }

    async fn account_by_name(&mut self, name: &AccountName) -> StoreResult<Option<AccountRecord>> {
        sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM vendor_accounts WHERE name = ?"
        ))
        .bind(name.as_str())
        .fetch_optional(&mut *self.0)
        .await?
        .as_ref()
        .map(account_row)
        .transpose()
    }

    async fn accounts(&mut self) -> StoreResult<Vec<AccountRecord>> {
        sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM vendor_accounts ORDER BY name"
        ))
        .fetch_all(&mut *self.0)
        .await?
        .iter()
        .map(account_row)
        .collect()
    }

    async fn update_account(&mut self, a: &AccountRecord) -> StoreResult<()> {
        sqlx::query(
            "UPDATE vendor_accounts SET role = ?, password_hash = ?, disabled_at = ?, last_sign_in = ? WHERE id = ?",
        )
        .bind(a.role.as_str())
        .bind(&a.password_hash)
        .bind(a.disabled_at.map(ts))
        .bind(a.last_sign_in.map(ts))
        .bind(a.id.as_str())
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn insert_api_token(&mut self, t: &ApiTokenRecord, hash: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, account_id, label, created_at, last_used_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(t.id.as_str())
        .bind(hash)
        .bind(t.account_id.as_str())
        .bind(&t.label)
        .bind(ts(t.created_at))
        .bind(t.last_used_at.map(ts))
        .bind(t.revoked_at.map(ts))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn api_token_by_hash(
        &mut self,
        hash: &str,
    ) -> StoreResult<Option<(ApiTokenRecord, AccountRecord)>> {
        let Some(row) = sqlx::query(&format!("{TOKEN_SELECT} WHERE t.token_hash = ?"))
            .bind(hash)
            .fetch_optional(&mut *self.0)
            .await?
        else {
            return Ok(None);
        };
        let token = token_row(&row)?;
        let account = self
            .account_by_name(&token.account_name)
            .await?
            .ok_or_else(|| corrupt("token", "its account is gone"))?;
        Ok(Some((token, account)))
    }

    async fn api_token(&mut self, id: &ApiTokenId) -> StoreResult<Option<ApiTokenRecord>> {
        sqlx::query(&format!("{TOKEN_SELECT} WHERE t.id = ?"))
            .bind(id.as_str())
            .fetch_optional(&mut *self.0)
            .await?
            .as_ref()
            .map(token_row)
            .transpose()
    }

    async fn api_tokens(
        &mut self,
        account: Option<&AccountId>,
    ) -> StoreResult<Vec<ApiTokenRecord>> {
        sqlx::query(&format!(
            "{TOKEN_SELECT} WHERE (?1 IS NULL OR t.account_id = ?1) ORDER BY t.created_at DESC, t.id"
        ))
        .bind(account.map(AccountId::as_str))
        .fetch_all(&mut *self.0)
        .await?
        .iter()
        .map(token_row)
        .collect()
    }

    async fn revoke_api_token(&mut self, id: &ApiTokenId, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?")
            .bind(ts(at))
            .bind(id.as_str())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn revoke_api_tokens_of(
        &mut self,
        account: &AccountId,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = ? WHERE account_id = ? AND revoked_at IS NULL",
        )
        .bind(ts(at))
        .bind(account.as_str())
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn touch_api_token(&mut self, id: &ApiTokenId, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
            .bind(ts(at))
            .bind(id.as_str())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn insert_session(
        &mut self,
        hash: &str,
        account: &AccountId,
        csrf: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, account_id, csrf, created_at, last_seen_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(hash)
        .bind(account.as_str())
        .bind(csrf)
        .bind(ts(at))
        .bind(ts(at))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn session(&mut self, hash: &str) -> StoreResult<Option<SessionRecord>> {
        let Some(row) = sqlx::query(
            "SELECT s.csrf, s.created_at, s.last_seen_at, s.flash, a.name FROM console_sessions s JOIN vendor_accounts a ON a.id = s.account_id WHERE s.token_hash = ?",
        )
        .bind(hash)
        .fetch_optional(&mut *self.0)
        .await?
        else {
            return Ok(None);
        };
        let name: String = row.try_get("name")?;
        let name = AccountName::parse(&name).map_err(|e| corrupt("account name", e))?;
        let created: String = row.try_get("created_at")?;
        let seen: String = row.try_get("last_seen_at")?;
        let Some(account) = self.account_by_name(&name).await? else {
            return Ok(None);
        };
        Ok(Some(SessionRecord {
            account,
            csrf: row.try_get("csrf")?,
            created_at: parse_ts(&created)?,
            last_seen_at: parse_ts(&seen)?,
            flash: row.try_get("flash")?,
        }))
    }

    async fn touch_session(&mut self, hash: &str, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE console_sessions SET last_seen_at = ? WHERE token_hash = ?")
            .bind(ts(at))
            .bind(hash)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn set_session_flash(&mut self, hash: &str, flash: Option<&str>) -> StoreResult<()> {
        sqlx::query("UPDATE console_sessions SET flash = ? WHERE token_hash = ?")
            .bind(flash)
            .bind(hash)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn delete_session(&mut self, hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = ?")
            .bind(hash)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn delete_sessions_of(&mut self, account: &AccountId) -> StoreResult<()> {
        sqlx::query("DELETE FROM console_sessions WHERE account_id = ?")
            .bind(account.as_str())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn delete_idle_sessions(&mut self, before: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("DELETE FROM console_sessions WHERE last_seen_at < ?")
            .bind(ts(before))
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn insert_audit(&mut self, e: &NewAuditEntry<'_>) -> StoreResult<u64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, actor_role, via, action, installation_id, other_installation_id, server_guid, other_server_guid, target, reason, before_json, after_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(ts(e.at))
        .bind(e.actor)
        .bind(e.role.map(Role::as_str))
        .bind(e.via.as_str())
        .bind(e.action.as_str())
        .bind(e.installation.map(|i| i.as_str().to_owned()))
        .bind(e.other_installation.map(|i| i.as_str().to_owned()))
        .bind(e.server.map(|g| g.to_string()))
        .bind(e.other_server.map(|g| g.to_string()))
        .bind(e.target)
        .bind(e.reason)
        .bind(e.before.as_deref())
        .bind(e.after.as_deref())
        .fetch_one(&mut *self.0)
        .await?;
        Ok(u64_of(id))
    }

    async fn audit(&mut self, q: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log \
             WHERE (?1 IS NULL OR installation_id = ?1 OR other_installation_id = ?1) \
               AND (?2 IS NULL OR actor = ?2) \
               AND (?3 IS NULL OR target = ?3) \
               AND (?4 IS NULL OR at >= ?4) \
               AND (?5 IS NULL OR id < ?5) \
               AND (?7 IS NULL OR target = ?7 OR server_guid = ?7 OR other_server_guid = ?7) \
             ORDER BY id DESC LIMIT ?6"
        ))
        .bind(q.installation.as_ref().map(|i| i.as_str().to_owned()))
        .bind(q.actor.as_deref())
        .bind(q.target.as_deref())
        .bind(q.since.map(ts))
        .bind(q.before_id.map(i64_of))
        .bind(i64::from(q.limit))
        .bind(q.server.map(|g| g.to_string()))
        .fetch_all(&mut *self.0)
        .await?
        .iter()
        .map(audit_row)
        .collect()
    }
}
