//! Who makes a change, and the audit entry every change writes in its own transaction: the
//! actor (an account, through the API or the console; the bootstrap token; or the node's
//! own command line on the database), the reason, and the thing before and after.

use chrono::{DateTime, Utc};
use leasehold_proto::api::staff::{AuditAction, Role, Via};
use leasehold_proto::{AccountId, ApiTokenId, ErrorCode, InstallationId, ServerGuid};
use serde::Serialize;

use crate::store::{AccountRecord, NewAuditEntry, StoreError, StoreResult, StoreTx};

/// Who is asking. Built by the HTTP layer from a token or a console session, never from
/// anything the request body says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The account name, or `bootstrap token` / `node database`.
    pub name: String,
    pub account: Option<AccountId>,
    pub role: Role,
    pub via: Via,
    /// The API token the request carried.
    pub token: Option<ApiTokenId>,
}

/// The actor name recorded for the node's bootstrap token.
pub const BOOTSTRAP_ACTOR: &str = "bootstrap token";
/// The actor name recorded for `leasehold node …` on the database, and for in-process
/// provisioning (the demo).
pub const DATABASE_ACTOR: &str = "node database";

impl Actor {
    pub fn account(account: &AccountRecord, via: Via, token: Option<ApiTokenId>) -> Self {
        Self {
            name: account.name.to_string(),
            account: Some(account.id.clone()),
            role: account.role,
            via,
            token,
        }
    }

    /// The node's bootstrap token: it may only create the first admin account.
    pub fn bootstrap() -> Self {
        Self {
            name: BOOTSTRAP_ACTOR.into(),
            account: None,
            role: Role::Admin,
            via: Via::Bootstrap,
            token: None,
        }
    }

    /// Someone with the database itself in hand (`leasehold node create-admin`, the demo's
    /// provisioning): an admin by construction.
    pub fn database() -> Self {
        Self {
            name: DATABASE_ACTOR.into(),
            account: None,
            role: Role::Admin,
            via: Via::Database,
            token: None,
        }
    }

    /// Refuses, with `forbidden` and nothing changed, an action the actor's role does not
    /// allow. The bootstrap token is refused everything but creating an account (whose
    /// own checks then allow only the first admin).
    pub fn require(&self, action: AuditAction) -> StoreResult<()> {
        if self.via == Via::Bootstrap && action != AuditAction::AccountCreate {
            return Err(StoreError::Refused(
                ErrorCode::Unauthorized,
                "the node's bootstrap token only creates the first admin account (`leasehold vendor account add --role admin`); sign in with that account (`leasehold vendor login`) and use its own token".into(),
            ));
        }
        self.require_role(action.required_role(), action)
    }

    /// Refuses unless the actor has at least `role` (for `action`, named in the message).
    pub fn require_role(&self, role: Role, action: AuditAction) -> StoreResult<()> {
        if self.role >= role {
            return Ok(());
        }
        Err(StoreError::Refused(
            ErrorCode::Forbidden,
            format!(
                "{} is a {} account; \"{}\" needs the {} role, so nothing was changed",
                self.name,
                self.role,
                action.words(),
                role
            ),
        ))
    }

    pub fn is(&self, account: &AccountId) -> bool {
        self.account.as_ref() == Some(account)
    }
}

/// A change about to be made: by whom and why.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub actor: &'a Actor,
    /// Checked with [`leasehold_proto::api::staff::check_reason`]; may be empty.
    pub reason: &'a str,
}

impl<'a> Change<'a> {
    pub fn new(actor: &'a Actor, reason: &'a str) -> Self {
        Self { actor, reason }
    }
}

/// The audit entry of one change, filled in as the change learns what it touched.
#[derive(Debug, Clone)]
pub struct Entry {
    action: AuditAction,
    installation: Option<InstallationId>,
    other_installation: Option<InstallationId>,
    server: Option<ServerGuid>,
    other_server: Option<ServerGuid>,
    target: String,
    before: Option<String>,
    after: Option<String>,
}

fn json(v: &impl Serialize) -> Option<String> {
    serde_json::to_string(v).ok()
}

impl Entry {
    pub fn new(action: AuditAction, target: impl Into<String>) -> Self {
        Self {
            action,
            installation: None,
            other_installation: None,
            server: None,
            other_server: None,
            target: target.into(),
            before: None,
            after: None,
        }
    }

    pub fn installation(mut self, id: &InstallationId) -> Self {
        match &self.installation {
            None => self.installation = Some(id.clone()),
            Some(first) if first != id => self.other_installation = Some(id.clone()),
            Some(_) => {}
        }
        self
    }

    /// A server the change touched (a second one, for a transfer, is kept too).
    pub fn server(mut self, guid: ServerGuid) -> Self {
        match self.server {
            None => self.server = Some(guid),
            Some(first) if first != guid => self.other_server = Some(guid),
            Some(_) => {}
        }
        self
    }

    pub fn before(mut self, value: &impl Serialize) -> Self {
        self.before = json(value);
        self
    }

    pub fn after(mut self, value: &impl Serialize) -> Self {
        self.after = json(value);
        self
    }

    /// Appends the entry in `tx`, beside the change it records.
    pub async fn write(
        self,
        tx: &mut dyn StoreTx,
        change: Change<'_>,
        at: DateTime<Utc>,
    ) -> StoreResult<u64> {
        tx.insert_audit(&NewAuditEntry {
            at,
            actor: &change.actor.name,
            role: (change.actor.via != Via::Bootstrap).then_some(change.actor.role),
            via: change.actor.via,
            action: self.action,
            installation: self.installation.as_ref(),
            other_installation: self.other_installation.as_ref(),
            server: self.server,
            other_server: self.other_server,
            target: &self.target,
            reason: change.reason,
            before: self.before,
            after: self.after,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn support() -> Actor {
        Actor {
            name: "sam".into(),
            account: None,
            role: Role::Support,
            via: Via::Api,
            token: None,
        }
    }

    #[test]
    fn roles_allow_what_their_table_says() {
        let s = support();
        assert!(s.require(AuditAction::ServerReassign).is_ok());
        assert!(s.require(AuditAction::ServerAdd).is_ok());
        let e = s.require(AuditAction::LicenseTransfer).unwrap_err();
        match e {
            StoreError::Refused(ErrorCode::Forbidden, m) => {
                assert!(m.contains("sam is a support account"), "{m}");
                assert!(m.contains("admin role"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        let admin = Actor {
            role: Role::Admin,
            ..support()
        };
        for a in AuditAction::ALL {
            assert!(admin.require(a).is_ok(), "{a}");
        }
    }

    #[test]
    fn the_bootstrap_token_only_creates_accounts() {
        let b = Actor::bootstrap();
        assert!(b.require(AuditAction::AccountCreate).is_ok());
        for a in AuditAction::ALL {
            if a != AuditAction::AccountCreate {
                assert!(
                    matches!(
                        b.require(a),
                        Err(StoreError::Refused(ErrorCode::Unauthorized, _))
                    ),
                    "{a}"
                );
            }
        }
    }

    #[test]
    fn a_transfer_names_both_installations_once() {
        let a = InstallationId::from_random([1; 8]);
        let b = InstallationId::from_random([2; 8]);
        let e = Entry::new(AuditAction::LicenseTransfer, "lic")
            .installation(&a)
            .installation(&a)
            .installation(&b);
        assert_eq!(e.installation.as_ref(), Some(&a));
        assert_eq!(e.other_installation.as_ref(), Some(&b));
    }
}
