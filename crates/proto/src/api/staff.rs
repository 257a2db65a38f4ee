//! The vendor's staff at the license nodes: named accounts with a role, their personal API
//! tokens, and the audit log of every change they make (`/v1/admin/accounts`, `/tokens`,
//! `/login`, `/audit`). The rules a name, a password or a reason must follow live here, so
//! the node, the console and the CLI refuse the same input with the same words.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{AccountId, ApiTokenId, IdError, InstallationId};

/// What an account may do. Ordered by privilege: an admin may do all a support account may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything; adds servers, reassigns GUIDs, answers air-gapped syncs.
    Support,
    /// Also grants, transfers and revokes licenses, sets grace and sync intervals, creates
    /// installations, and manages accounts and their tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Support, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Support => "support",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role {0:?} is not one of support, admin")]
pub struct RoleError(pub String);

impl FromStr for Role {
    type Err = RoleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "support" => Ok(Role::Support),
            "admin" => Ok(Role::Admin),
            _ => Err(RoleError(s.chars().take(40).collect())),
        }
    }
}

/// A staff account's sign-in name: 1 to 64 of `a-z 0-9 . _ @ -`, starting with a letter or
/// digit. Case does not matter: names are kept in lower case, so `Alice` and `alice` are
/// one account.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountName(String);

impl AccountName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(input: &str) -> Result<Self, IdError> {
        let lower = input.trim().to_ascii_lowercase();
        let err = |rule| IdError {
            what: "account name",
            value: input.chars().take(80).collect(),
            rule,
        };
        if lower.is_empty() || lower.len() > Self::MAX_LEN {
            return Err(err("must be 1 to 64 characters long"));
        }
        if !lower.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(err("must start with a letter or digit"));
        }
        if !lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@'))
        {
            return Err(err("may hold only letters, digits, '.', '-', '_' and '@'"));
        }
        Ok(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountName({})", self.0)
    }
}

impl FromStr for AccountName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for AccountName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AccountName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for AccountName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::string_schema(
            "A vendor account's name: 1 to 64 of a-z, 0-9, '.', '-', '_' and '@', starting with a letter or digit (upper case is taken as lower case).",
            "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$",
            "alice@vendor.example",
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for AccountName {}

/// Shortest password a staff account may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (hashing cost grows with it).
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Whether `password` may be an account's password; the error says why not.
pub fn check_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters (it has {n})"
        ));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(format!(
            "the password must have at most {MAX_PASSWORD_CHARS} characters"
        ));
    }
    if password.chars().any(char::is_control) {
        return Err("the password must not contain control characters".into());
    }
    Ok(())
}

/// The header a change carries its reason in, percent-encoded UTF-8 (the CLI's `--reason`).
pub const REASON_HEADER: &str = "leasehold-reason";
/// Longest reason recorded.
pub const MAX_REASON_CHARS: usize = 1000;

/// The reason as recorded: trimmed, at most [`MAX_REASON_CHARS`], no control characters but
/// line breaks and tabs.
pub fn check_reason(reason: &str) -> Result<String, String> {
    let reason = reason.trim();
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(format!(
            "the reason must have at most {MAX_REASON_CHARS} characters"
        ));
    }
    if reason
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err("the reason must not contain control characters".into());
    }
    Ok(reason.to_owned())
}

/// A personal API token starts with this, followed by 64 lower-case hex digits.
pub const VENDOR_TOKEN_PREFIX: &str = "lhv_";

/// Whether `text` has the form of a personal API token (not whether it is valid).
pub fn looks_like_vendor_token(text: &str) -> bool {
    text.strip_prefix(VENDOR_TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Longest label of an API token.
pub const MAX_TOKEN_LABEL_CHARS: usize = 100;

/// A token label as stored: trimmed, 1 to 100 printable characters.
pub fn check_token_label(label: &str) -> Result<String, String> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > MAX_TOKEN_LABEL_CHARS {
        return Err(format!(
            "a token label must have 1 to {MAX_TOKEN_LABEL_CHARS} characters"
        ));
    }
    if label.chars().any(char::is_control) {
        return Err("a token label must not contain control characters".into());
    }
    Ok(label.to_owned())
}

/// A staff account, as every answer shows it (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountView {
    pub id: AccountId,
    pub name: AccountName,
    pub role: Role,
    /// A disabled account cannot sign in; its tokens and sessions stopped working when it
    /// was disabled.
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    /// Who created it: an account name, `bootstrap token` or `node database`.
    pub created_by: String,
    pub last_sign_in: Option<DateTime<Utc>>,
}

/// `GET /v1/admin/accounts`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountList {
    pub accounts: Vec<AccountView>,
}

/// `POST /v1/admin/accounts`
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub name: AccountName,
    pub role: Role,
    /// At least 12 characters.
    pub password: String,
}

impl fmt::Debug for CreateAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateAccount")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `PATCH /v1/admin/accounts/{name}`: any of the fields. An admin may change any account; an
/// account may change its own password (giving `current_password`).
#[derive(Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// `true` disables the account (its tokens and sessions end at once); `false` enables it
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// A new password (at least 12 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The present password: needed to change one's own password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
}

impl fmt::Debug for UpdateAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdateAccount")
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "current_password",
                &self.current_password.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `POST /v1/admin/login`: a name and password in, a new personal API token out.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub name: AccountName,
    pub password: String,
    /// What the token is for, shown in token lists (default `leasehold vendor login`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("label", &self.label)
            .finish()
    }
}

/// `POST /v1/admin/tokens`: a new token for the caller's own account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub label: String,
}

/// A personal API token as lists show it: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenView {
    pub id: ApiTokenId,
    pub account: AccountName,
    pub label: String,
    pub created_at: DateTime<Utc>,
    /// Updated at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The answer of a sign-in or a token creation: the token, shown this once.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewToken {
    /// `lhv_` and 64 hex digits; send it as `Authorization: Bearer …`. The node keeps only
    /// its SHA-256.
    pub token: String,
    pub info: TokenView,
    pub account: AccountView,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("token", &"<redacted>")
            .field("info", &self.info)
            .field("account", &self.account)
            .finish()
    }
}

/// `GET /v1/admin/tokens`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// How a change reached the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The admin API with a personal token (the `leasehold vendor` CLI uses it too).
    Api,
    /// The vendor console in a browser.
    Console,
    /// The node's bootstrap token, which only creates the first admin account.
    Bootstrap,
    /// `leasehold node` on the database itself (no node involved).
    Database,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Api => "api",
            Via::Console => "console",
            Via::Bootstrap => "bootstrap",
            Via::Database => "database",
        }
    }
}

impl FromStr for Via {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "api" => Ok(Via::Api),
            "console" => Ok(Via::Console),
            "bootstrap" => Ok(Via::Bootstrap),
            "database" => Ok(Via::Database),
            other => Err(format!("{other:?} is not a way a change reaches the node")),
        }
    }
}

/// `GET /v1/admin/whoami`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Whoami {
    pub account: AccountView,
    /// The token the request carried.
    pub token: Option<ApiTokenId>,
}

/// Every kind of change the audit log records, with the least role that may make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AuditAction {
    #[serde(rename = "installation.create")]
    InstallationCreate,
    #[serde(rename = "server.add")]
    ServerAdd,
    /// Grace period or sync interval.
    #[serde(rename = "server.update")]
    ServerUpdate,
    #[serde(rename = "server.reassign")]
    ServerReassign,
    /// An air-gapped sync answered from the console: an upload file in, a bundle file out.
    #[serde(rename = "server.offline_sync")]
    ServerOfflineSync,
    #[serde(rename = "license.grant")]
    LicenseGrant,
    #[serde(rename = "license.transfer")]
    LicenseTransfer,
    #[serde(rename = "license.revoke")]
    LicenseRevoke,
    #[serde(rename = "license.set_maintenance")]
    LicenseSetMaintenance,
    #[serde(rename = "account.create")]
    AccountCreate,
    /// Role, disabled or enabled.
    #[serde(rename = "account.update")]
    AccountUpdate,
    #[serde(rename = "account.set_password")]
    AccountSetPassword,
    #[serde(rename = "token.create")]
    TokenCreate,
    #[serde(rename = "token.revoke")]
    TokenRevoke,
    /// A console sign-in (a session began).
    #[serde(rename = "session.sign_in")]
    SessionSignIn,
}

impl AuditAction {
    pub const ALL: [AuditAction; 15] = [
        AuditAction::InstallationCreate,
        AuditAction::ServerAdd,
        AuditAction::ServerUpdate,
        AuditAction::ServerReassign,
        AuditAction::ServerOfflineSync,
        AuditAction::LicenseGrant,
        AuditAction::LicenseTransfer,
        AuditAction::LicenseRevoke,
        AuditAction::LicenseSetMaintenance,
        AuditAction::AccountCreate,
        AuditAction::AccountUpdate,
        AuditAction::AccountSetPassword,
        AuditAction::TokenCreate,
        AuditAction::TokenRevoke,
        AuditAction::SessionSignIn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::InstallationCreate => "installation.create",
            AuditAction::ServerAdd => "server.add",
            AuditAction::ServerUpdate => "server.update",
            AuditAction::ServerReassign => "server.reassign",
            AuditAction::ServerOfflineSync => "server.offline_sync",
            AuditAction::LicenseGrant => "license.grant",
            AuditAction::LicenseTransfer => "license.transfer",
            AuditAction::LicenseRevoke => "license.revoke",
            AuditAction::LicenseSetMaintenance => "license.set_maintenance",
            AuditAction::AccountCreate => "account.create",
            AuditAction::AccountUpdate => "account.update",
            AuditAction::AccountSetPassword => "account.set_password",
            AuditAction::TokenCreate => "token.create",
            AuditAction::TokenRevoke => "token.revoke",
            AuditAction::SessionSignIn => "session.sign_in",
        }
    }

    /// The least role that may make this change to anything (an account's own password,
    /// tokens and sign-ins are open to every role; the node checks that case itself).
    pub fn required_role(self) -> Role {
        match self {
            AuditAction::ServerAdd
            | AuditAction::ServerReassign
            | AuditAction::ServerOfflineSync
            | AuditAction::TokenCreate
            | AuditAction::SessionSignIn => Role::Support,
            AuditAction::InstallationCreate
            | AuditAction::ServerUpdate
            | AuditAction::LicenseGrant
            | AuditAction::LicenseTransfer
            | AuditAction::LicenseRevoke
            | AuditAction::LicenseSetMaintenance
            | AuditAction::AccountCreate
            | AuditAction::AccountUpdate
            | AuditAction::AccountSetPassword
            | AuditAction::TokenRevoke => Role::Admin,
        }
    }

    /// Words for people: "reassigned a GUID".
    pub fn words(self) -> &'static str {
        match self {
            AuditAction::InstallationCreate => "created an installation",
            AuditAction::ServerAdd => "added a server",
            AuditAction::ServerUpdate => "changed grace or sync interval",
            AuditAction::ServerReassign => "reassigned a GUID",
            AuditAction::ServerOfflineSync => "answered an air-gapped sync",
            AuditAction::LicenseGrant => "granted a license",
            AuditAction::LicenseTransfer => "transferred a license",
            AuditAction::LicenseRevoke => "revoked a license",
            AuditAction::LicenseSetMaintenance => "changed maintenance",
            AuditAction::AccountCreate => "created an account",
            AuditAction::AccountUpdate => "changed an account",
            AuditAction::AccountSetPassword => "set a password",
            AuditAction::TokenCreate => "created an API token",
            AuditAction::TokenRevoke => "revoked an API token",
            AuditAction::SessionSignIn => "signed in to the console",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not an audited action"))
    }
}

/// One entry of the audit log: who changed what, when, through which way, why, and the
/// thing before and after. Entries are only ever added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Rising with every entry; `GET /v1/admin/audit?before=ID` pages back from it.
    pub id: u64,
    pub at: DateTime<Utc>,
    /// The account name, or `bootstrap token` / `node database`.
    pub actor: String,
    pub role: Option<Role>,
    pub via: Via,
    pub action: AuditAction,
    /// The installations the change touched (two for a transfer between installations).
    pub installations: Vec<InstallationId>,
    /// The servers the change touched: the server changed, or the one a license was
    /// granted to, revoked on, or moved from and to.
    #[serde(default)]
    pub servers: Vec<crate::ServerGuid>,
    /// What was changed: a GUID, a license id, an installation id, an account name or a
    /// token id.
    pub target: String,
    /// Why, in the actor's words (the console asks for one on every action).
    pub reason: String,
    /// The thing before the change (none for a creation), as the API shows it.
    pub before: Option<serde_json::Value>,
    /// The thing after the change.
    pub after: Option<serde_json::Value>,
}

/// `GET /v1/admin/audit`: newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_and_follow_the_rule() {
        assert_eq!(AccountName::parse(" Alice ").unwrap().as_str(), "alice");
        assert_eq!(
            AccountName::parse("bob.smith@vendor-x.example")
                .unwrap()
                .as_str(),
            "bob.smith@vendor-x.example"
        );
        for bad in ["", "-x", "a b", "a/b", "ä", &"a".repeat(65)] {
            let e = AccountName::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("account name"), "{e}");
        }
    }

    #[test]
    fn passwords_reasons_and_labels_are_checked() {
        assert!(check_password("short").unwrap_err().contains("12"));
        assert!(check_password("twelve chars").is_ok());
        assert!(check_password("has a\u{7}bell char").is_err());
        assert!(check_password(&"x".repeat(1025)).is_err());
        assert_eq!(check_reason("  ticket 42\n").unwrap(), "ticket 42");
        assert!(check_reason("a\u{1b}[31m").is_err());
        assert!(check_reason(&"r".repeat(1001)).is_err());
        assert!(check_token_label("").is_err());
        assert_eq!(check_token_label(" ci ").unwrap(), "ci");
    }

    #[test]
    fn roles_are_ordered_and_actions_round_trip() {
        assert!(Role::Support < Role::Admin);
        assert_eq!("ADMIN".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
        for a in AuditAction::ALL {
            assert_eq!(a.as_str().parse::<AuditAction>().unwrap(), a);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.as_str()));
        }
        assert_eq!(
            AuditAction::ServerReassign.required_role(),
            Role::Support,
            "support reassigns GUIDs"
        );
        assert_eq!(AuditAction::LicenseTransfer.required_role(), Role::Admin);
    }

    #[test]
    fn token_shape() {
        assert!(looks_like_vendor_token(&format!("lhv_{}", "ab".repeat(32))));
        assert!(!looks_like_vendor_token(&format!(
            "lhv_{}",
            "AB".repeat(32)
        )));
        assert!(!looks_like_vendor_token("lhv_12"));
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = CreateAccount {
            name: AccountName::parse("a").unwrap(),
            role: Role::Admin,
            password: "hunter2hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let l = Login {
            name: AccountName::parse("a").unwrap(),
            password: "hunter2hunter2".into(),
            label: None,
        };
        assert!(!format!("{l:?}").contains("hunter2"));
    }
}
