//! The sync-token chain that tells one server instance from a copy of it (DESIGN.md §4.4).
//!
//! Every bundle carries a fresh token; the next sync presents it. Presenting the newest
//! token advances the chain. Presenting an older one (a lost response, or a server restored
//! from a backup) starts a new branch and revokes every later token. Presenting a revoked
//! token means two copies are syncing: the second is refused until the vendor reassigns
//! the GUID. A restored server therefore keeps working, and a running clone is refused at
//! its next sync after the other copy's.

use leasehold_proto::{ErrorCode, InstanceId};

/// What the store found for the token the upload presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLookup {
    /// The upload carried no token (before its first bundle).
    Absent,
    /// The upload carried a token this server never issued.
    Unknown,
    Found {
        generation: u64,
        revoked: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainStep {
    /// First sync of a free GUID: bind it to the uploader.
    Bind,
    /// The newest token: extend the chain.
    Advance,
    /// An older token: revoke every token after `from_generation` and continue from there.
    Branch { from_generation: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// True when the refusal is a detected fork, which the node records.
    pub fork: bool,
}

pub fn decide(
    bound: Option<&InstanceId>,
    head_generation: u64,
    uploader: &InstanceId,
    token: TokenLookup,
) -> Result<ChainStep, Refusal> {
    let Some(bound) = bound else {
        return Ok(ChainStep::Bind);
    };
    let in_use = |message: String, fork: bool| Refusal {
        code: ErrorCode::GuidInUse,
        message,
        fork,
    };
    if bound != uploader {
        return Err(in_use(
            "this GUID is bound to another license server instance; only one instance may use a GUID at a time. Ask the vendor to reassign the GUID if this server replaces the old one".into(),
            false,
        ));
    }
    match token {
        TokenLookup::Absent => Ok(ChainStep::Branch { from_generation: 0 }),
        TokenLookup::Found { revoked: true, .. } => Err(in_use(
            "this server's sync token was superseded by another copy of the same server (a copied data directory or cloned VM); only one instance may use a GUID at a time. Ask the vendor to reassign the GUID".into(),
            true,
        )),
        TokenLookup::Found { generation, .. } if generation == head_generation => {
            Ok(ChainStep::Advance)
        }
        TokenLookup::Found { generation, .. } if generation < head_generation => {
            Ok(ChainStep::Branch {
                from_generation: generation,
            })
        }
        TokenLookup::Found { .. } | TokenLookup::Unknown => Err(in_use(
            "the sync token this server presented was not issued for this GUID; ask the vendor to reassign the GUID".into(),
            false,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(b: u8) -> InstanceId {
        InstanceId::from_random([b; 16])
    }

    #[test]
    fn free_guid_binds_any_instance() {
        assert_eq!(
            decide(None, 0, &inst(1), TokenLookup::Absent),
            Ok(ChainStep::Bind)
        );
        assert_eq!(
            decide(None, 9, &inst(1), TokenLookup::Unknown),
            Ok(ChainStep::Bind)
        );
    }

    #[test]
    fn another_instance_is_refused() {
        let r = decide(
            Some(&inst(1)),
            3,
            &inst(2),
            TokenLookup::Found {
                generation: 3,
                revoked: false,
            },
        );
        assert_eq!(r.unwrap_err().code, ErrorCode::GuidInUse);
    }

    #[test]
    fn chain_steps() {
        let me = inst(1);
        let f = |generation, revoked| TokenLookup::Found {
            generation,
            revoked,
        };
        assert_eq!(
            decide(Some(&me), 3, &me, f(3, false)),
            Ok(ChainStep::Advance)
        );
        assert_eq!(
            decide(Some(&me), 3, &me, f(1, false)),
            Ok(ChainStep::Branch { from_generation: 1 })
        );
        assert_eq!(
            decide(Some(&me), 3, &me, TokenLookup::Absent),
            Ok(ChainStep::Branch { from_generation: 0 })
        );
        let fork = decide(Some(&me), 3, &me, f(2, true)).unwrap_err();
        assert!(fork.fork);
        assert_eq!(fork.code, ErrorCode::GuidInUse);
        assert!(
            !decide(Some(&me), 3, &me, TokenLookup::Unknown)
                .unwrap_err()
                .fork
        );
        assert!(decide(Some(&me), 3, &me, f(4, false)).is_err());
    }
}
