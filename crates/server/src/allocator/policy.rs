//! How much one client is granted of one feature: what it holds and what is waiting, then
//! headroom. Pure arithmetic over the pool's totals, so the simulation and the benchmarks
//! measure exactly this.
//!
//! - While what every client wants beyond its use fits in the licenses nobody uses, each
//!   client gets all it wants.
//! - Otherwise the free licenses are shared as headroom in proportion to what each client
//!   wants beyond its use (clients size that from their call rate, so licenses go where
//!   calls arrive). A client that answers only from its cache gets its share rounded up: a
//!   license left in the pool is of no use to it before its next refresh. A client that asks
//!   before it denies (deny-wait) gets half of its share, rounded down: what stays in the pool
//!   answers any client's ask within a round trip, so as the pool fills its headroom goes to
//!   zero and allocation approaches a checkout system's.
//! - `keep` is the headroom a client may keep when calls end; beyond it, it gives licenses
//!   back at once.

/// What the allocator knows when it decides one grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Licenses of the feature on this server.
    pub count: u32,
    /// Most this client may hold: what the other clients do not hold or have reserved
    /// (within the maintenance tiers that cover it).
    pub available: u32,
    /// What the client holds now.
    pub in_use: u32,
    /// Calls of the client waiting now for a license (deny-wait).
    pub waiting: u32,
    /// What the client would like to hold: `in_use + waiting` plus the headroom it wants.
    pub want: u32,
    /// The client asks before it denies.
    pub asks: bool,
    /// Sum of `in_use` over every client (this one's new value included).
    pub pool_in_use: u64,
    /// Sum of `max(want, in_use)` over every client (this one's new value included).
    pub pool_demand: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub quota: u32,
    /// Headroom the client may keep when calls end.
    pub keep: u32,
}

/// Share of the free licenses a client that answers only from its cache gets as headroom
/// when they do not cover every want (percent): the rest stays in the pool, where an early
/// refresh of whichever client runs low draws on it.
const LOCAL_SHARE_PCT: u64 = 50;
/// Licenses kept in the pool for asks, whatever clients that ask before denying want as
/// headroom: a tenth of the count, and two.
fn ask_reserve(count: u32) -> u64 {
    u64::from(count) / 10 + 2
}

pub fn decide(d: &Demand) -> Decision {
    let must = d.in_use.saturating_add(d.waiting);
    let wanted_headroom = u64::from(d.want.saturating_sub(must));
    let free = u64::from(d.count).saturating_sub(d.pool_in_use);
    let pool_wanted = d.pool_demand.saturating_sub(d.pool_in_use);
    let headroom = if d.asks {
        let above = free.saturating_sub(ask_reserve(d.count));
        if pool_wanted <= above {
            wanted_headroom
        } else {
            (above * wanted_headroom) / pool_wanted.max(1)
        }
    } else if pool_wanted <= free {
        wanted_headroom
    } else {
        // In u128: with a count near u32::MAX the product passes u64::MAX.
        let share = (u128::from(free) * u128::from(LOCAL_SHARE_PCT) * u128::from(wanted_headroom))
            .div_ceil(100 * u128::from(pool_wanted.max(1)));
        u64::try_from(share).unwrap_or(u64::MAX)
    };
    let headroom = u32::try_from(headroom).unwrap_or(u32::MAX);
    let quota = must
        .saturating_add(headroom)
        .min(d.available)
        .max(d.in_use.min(d.available));
    Decision {
        quota,
        keep: headroom,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(in_use: u32, want: u32, asks: bool) -> Demand {
        Demand {
            count: 10,
            available: 10,
            in_use,
            waiting: 0,
            want,
            asks,
            pool_in_use: u64::from(in_use),
            pool_demand: u64::from(want.max(in_use)),
        }
    }

    #[test]
    fn everything_wanted_is_granted_while_it_fits() {
        let d = decide(&demand(2, 5, false));
        assert_eq!((d.quota, d.keep), (5, 3));
        let d = decide(&demand(2, 5, true));
        assert_eq!(
            (d.quota, d.keep),
            (5, 3),
            "asking clients too, while it fits"
        );
    }

    #[test]
    fn free_licenses_are_shared_by_wanted_headroom() {
        // 10 licenses, 6 in use elsewhere + 2 here: 2 free; this client wants 4 beyond its
        // use of 2, others want 4 beyond theirs: it gets half of the 2 free.
        let d = Demand {
            available: 4,
            pool_in_use: 8,
            pool_demand: 16,
            ..demand(2, 6, false)
        };
        assert_eq!(decide(&d), Decision { quota: 3, keep: 1 });
        // An asking client gets half its share, rounded down: none here.
        assert_eq!(
            decide(&Demand { asks: true, ..d }),
            Decision { quota: 2, keep: 0 }
        );
    }

    #[test]
    fn waiting_calls_come_before_headroom_and_nothing_exceeds_what_is_available() {
        let d = Demand {
            waiting: 2,
            available: 3,
            pool_in_use: 9,
            pool_demand: 20,
            ..demand(1, 8, true)
        };
        assert_eq!(decide(&d).quota, 3);
        // What it holds is confirmed as far as it is available, even past its want.
        let d = Demand {
            available: 2,
            ..demand(4, 0, false)
        };
        assert_eq!(decide(&d).quota, 2);
    }

    /// Found by the `allocator` fuzz target (docs/testing.md, "Fuzzing"): the share of a
    /// count near `u32::MAX` overflowed u64 (a panic in debug builds, a wrong share in
    /// release builds).
    #[test]
    fn a_count_near_the_top_of_its_type_is_shared_without_overflow() {
        let d = Demand {
            count: 4_000_000_000,
            available: 4_000_000_000,
            in_use: 1_376_256,
            waiting: 0,
            want: 4_294_918_911,
            asks: false,
            pool_in_use: 1_376_256,
            pool_demand: 4_294_918_911,
        };
        // Half of the free licenses, rounded up, as headroom: this client wants them all.
        let free: u32 = 4_000_000_000 - 1_376_256;
        let headroom = free.div_ceil(2);
        assert_eq!(
            decide(&d),
            Decision {
                quota: 1_376_256 + headroom,
                keep: headroom
            }
        );
    }
}
