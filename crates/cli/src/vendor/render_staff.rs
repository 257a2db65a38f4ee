//! The human form of what the staff commands print (sign-in, accounts, tokens, the audit
//! log), the audit log as CSV, and the answers that exist only on this side (who is signed
//! in where, a generated password).

use std::path::PathBuf;

use leasehold_proto::api::staff::{
    AccountList, AccountView, AuditEntry, AuditPage, NewToken, TokenList, TokenView,
};
use leasehold_proto::ApiTokenId;
use serde::Serialize;

use super::output::{key_values, or_dash, Human, Table};
use super::render::time;

fn status(a: &AccountView) -> &'static str {
    if a.disabled {
        "disabled"
    } else {
        "enabled"
    }
}

fn account_pairs(a: &AccountView) -> Vec<(&'static str, String)> {
    vec![
        ("name", a.name.to_string()),
        ("role", a.role.to_string()),
        ("status", status(a).to_owned()),
        ("id", a.id.to_string()),
        (
            "created",
            format!("{} by {}", time(&a.created_at), a.created_by),
        ),
        (
            "last sign-in",
            a.last_sign_in.as_ref().map_or_else(|| "never".into(), time),
        ),
    ]
}

impl Human for AccountView {
    fn human(&self) -> String {
        key_values(&account_pairs(self))
    }
}

impl Human for AccountList {
    fn human(&self) -> String {
        if self.accounts.is_empty() {
            return "no accounts\n".into();
        }
        let mut table = Table::new(&["NAME", "ROLE", "STATUS", "CREATED", "BY", "LAST SIGN-IN"]);
        for a in &self.accounts {
            table.row(vec![
                a.name.to_string(),
                a.role.to_string(),
                status(a).to_owned(),
                time(&a.created_at),
                a.created_by.clone(),
                or_dash(a.last_sign_in.as_ref().map(time)),
            ]);
        }
        table.render()
    }
}

/// An account just created or given a new password, with the password when this command
/// generated it (shown this once).
#[derive(Debug, Serialize)]
pub struct AccountWithPassword {
    #[serde(flatten)]
    pub account: AccountView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_password: Option<String>,
    /// What was done, for people: "created", "password set".
    #[serde(skip)]
    pub done: &'static str,
}

impl Human for AccountWithPassword {
    fn human(&self) -> String {
        let a = &self.account;
        let mut text = format!("account {} ({}) {}\n", a.name, a.role, self.done);
        if let Some(pw) = &self.generated_password {
            text.push_str(&format!(
                "password: {pw}\n(generated and shown this once: hand it over safely; `leasehold vendor account set-password` changes it)\n"
            ));
        }
        if a.created_by == "bootstrap token" && self.done == "created" {
            text.push_str(&format!(
                "the bootstrap token's work is done: sign in with `leasehold vendor login --name {}`\n",
                a.name
            ));
        }
        text
    }
}

impl Human for TokenView {
    fn human(&self) -> String {
        key_values(&[
            ("id", self.id.to_string()),
            ("account", self.account.to_string()),
            ("label", self.label.clone()),
            ("created", time(&self.created_at)),
            (
                "last used",
                self.last_used_at
                    .as_ref()
                    .map_or_else(|| "never".into(), time),
            ),
            (
                "revoked",
                self.revoked_at.as_ref().map_or_else(|| "no".into(), time),
            ),
        ])
    }
}

impl Human for TokenList {
    fn human(&self) -> String {
        if self.tokens.is_empty() {
            return "no tokens\n".into();
        }
        let mut table = Table::new(&["ID", "ACCOUNT", "LABEL", "CREATED", "LAST USED", "REVOKED"]);
        for t in &self.tokens {
            table.row(vec![
                t.id.to_string(),
                t.account.to_string(),
                t.label.clone(),
                time(&t.created_at),
                or_dash(t.last_used_at.as_ref().map(time)),
                or_dash(t.revoked_at.as_ref().map(time)),
            ]);
        }
        table.render()
    }
}

impl Human for NewToken {
    fn human(&self) -> String {
        let mut text = key_values(&[
            ("token", self.token.clone()),
            ("id", self.info.id.to_string()),
            ("account", self.account.name.to_string()),
            ("label", self.info.label.clone()),
        ]);
        text.push_str(
            "(shown this once: the node keeps only its hash; use it as LEASEHOLD_VENDOR_TOKEN)\n",
        );
        text
    }
}

/// What `vendor login` prints (never the token: it went to the credentials file).
#[derive(Debug, Serialize)]
pub struct LoginOutput {
    pub node: String,
    pub account: AccountView,
    pub token_id: ApiTokenId,
    pub saved_to: PathBuf,
    /// The token saved for this node before, revoked now.
    pub replaced: Option<ApiTokenId>,
}

impl Human for LoginOutput {
    fn human(&self) -> String {
        let mut text = format!(
            "signed in to {} as {} ({})\ntoken {} saved in {}\n",
            self.node,
            self.account.name,
            self.account.role,
            self.token_id,
            self.saved_to.display()
        );
        if let Some(old) = &self.replaced {
            text.push_str(&format!("the token saved before ({old}) is revoked\n"));
        }
        text
    }
}

/// What `vendor logout` prints.
#[derive(Debug, Serialize)]
pub struct LogoutOutput {
    pub node: String,
    pub token_id: Option<ApiTokenId>,
    /// The node revoked the token now (false: it no longer worked anyway).
    pub revoked: bool,
    /// The credentials file the token was removed from.
    pub forgotten_in: Option<PathBuf>,
}

impl Human for LogoutOutput {
    fn human(&self) -> String {
        let id = or_dash(self.token_id.as_ref());
        let mut text = if self.revoked {
            format!("token {id} revoked at {}\n", self.node)
        } else {
            format!("token {id} no longer worked at {}\n", self.node)
        };
        if let Some(path) = &self.forgotten_in {
            text.push_str(&format!("signed out: removed from {}\n", path.display()));
        }
        text
    }
}

/// What `vendor whoami` prints.
#[derive(Debug, Serialize)]
pub struct WhoamiOutput {
    pub node: String,
    pub account: AccountView,
    pub token_id: Option<ApiTokenId>,
    /// Where the token came from: `--token` or the credentials file.
    pub token_from: String,
}

impl Human for WhoamiOutput {
    fn human(&self) -> String {
        let mut pairs = vec![("node", self.node.clone())];
        pairs.extend(account_pairs(&self.account));
        pairs.push(("token", or_dash(self.token_id.as_ref())));
        pairs.push(("token from", self.token_from.clone()));
        key_values(&pairs)
    }
}

/// The audit log as `vendor audit` prints it: a table, or (`detail`) each entry in full.
#[derive(Debug, Serialize)]
pub struct AuditOutput {
    #[serde(flatten)]
    pub page: AuditPage,
    #[serde(skip)]
    pub detail: bool,
}

/// A cell of one line: line breaks shown as ` / `, long text cut with `…`.
fn one_line(text: &str, max: usize) -> String {
    let flat = text
        .split(['\n', '\r'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn installations(e: &AuditEntry) -> String {
    e.installations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn json_or_dash(v: Option<&serde_json::Value>) -> String {
    v.map_or_else(
        || "-".into(),
        |v| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()),
    )
}

impl Human for AuditOutput {
    fn human(&self) -> String {
        let entries = &self.page.entries;
        let mut text = if entries.is_empty() {
            "no audit entries match\n".to_owned()
        } else if self.detail {
            let mut text = String::new();
            for e in entries {
                text.push_str(&key_values(&[
                    ("entry", e.id.to_string()),
                    ("time", time(&e.at)),
                    ("actor", e.actor.clone()),
                    ("role", or_dash(e.role)),
                    ("via", e.via.as_str().to_owned()),
                    ("action", format!("{} ({})", e.action, e.action.words())),
                    ("target", e.target.clone()),
                    (
                        "installations",
                        if e.installations.is_empty() {
                            "-".into()
                        } else {
                            installations(e)
                        },
                    ),
                    (
                        "reason",
                        if e.reason.is_empty() {
                            "-".into()
                        } else {
                            e.reason.clone()
                        },
                    ),
                ]));
                for (label, value) in [("before", e.before.as_ref()), ("after", e.after.as_ref())] {
                    text.push_str(&format!("{label}:\n"));
                    for line in json_or_dash(value).lines() {
                        text.push_str(&format!("  {line}\n"));
                    }
                }
                text.push('\n');
            }
            text
        } else {
            let mut table = Table::new(&[
                "TIME",
                "ACTOR",
                "ROLE",
                "VIA",
                "ACTION",
                "TARGET",
                "REASON",
                "INSTALLATIONS",
            ]);
            for e in entries {
                table.row(vec![
                    time(&e.at),
                    e.actor.clone(),
                    or_dash(e.role),
                    e.via.as_str().to_owned(),
                    e.action.to_string(),
                    e.target.clone(),
                    if e.reason.is_empty() {
                        "-".into()
                    } else {
                        one_line(&e.reason, 60)
                    },
                    if e.installations.is_empty() {
                        "-".into()
                    } else {
                        installations(e)
                    },
                ]);
            }
            table.render()
        };
        if self.page.next_before.is_some() {
            text.push_str("(older entries follow: raise --limit or pass --all)\n");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_proto::api::staff::{AuditAction, Role, Via};

    fn entry() -> AuditEntry {
        AuditEntry {
            id: 7,
            at: chrono::DateTime::parse_from_rfc3339("2026-11-02T10:00:00Z")
                .unwrap()
                .with_timezone(&chrono::Utc),
            actor: "alice".into(),
            role: Some(Role::Admin),
            via: Via::Api,
            action: AuditAction::LicenseTransfer,
            installations: vec![],
            servers: vec![],
            target: "lic_0101010101010101".into(),
            reason: "ticket 42, \"urgent\"\nsecond line".into(),
            before: Some(serde_json::json!({"server": "{A}"})),
            after: Some(serde_json::json!({"server": "{B}"})),
        }
    }

    #[test]
    fn the_table_keeps_a_reason_on_one_line_and_detail_shows_before_and_after() {
        let page = AuditPage {
            entries: vec![entry()],
            next_before: Some(7),
        };
        let table = AuditOutput {
            page: page.clone(),
            detail: false,
        }
        .human();
        assert!(
            table.contains("ticket 42, \"urgent\" / second line"),
            "{table}"
        );
        assert!(table.contains("raise --limit"), "{table}");
        let detail = AuditOutput { page, detail: true }.human();
        assert!(
            detail.contains("\"{A}\"") && detail.contains("\"{B}\""),
            "{detail}"
        );
        assert!(detail.contains("transferred a license"), "{detail}");
        assert_eq!(one_line(&"x".repeat(100), 10).chars().count(), 10);
    }
}
