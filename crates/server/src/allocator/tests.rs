use super::*;
use proptest::prelude::*;

fn f(name: &str) -> Feature {
    Feature::parse(name).unwrap()
}

fn client(n: u8) -> ClientId {
    ClientId::from_random([n; 16])
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn lic(feature: &str, count: u32, maint: NaiveDate) -> PoolLicense {
    PoolLicense {
        feature: f(feature),
        count,
        maintenance_until: maint,
    }
}

fn ask(
    a: &mut Allocator,
    now: u64,
    c: &ClientId,
    feature: &str,
    in_use: u32,
    want: u32,
    quota: u32,
) -> FeatureQuota {
    let mut features = BTreeMap::new();
    features.insert(
        f(feature),
        FeatureRequest {
            in_use,
            want,
            quota,
            acquired: 0,
            denied: 0,
        },
    );
    let req = ClientRequest {
        client: c,
        product_release: d(2026, 6, 1),
        features: &features,
        failover: false,
    };
    let (mut answers, _) = a.request(now, &req, &Serving::Yes);
    a.check_consistency().unwrap();
    answers.remove(&f(feature)).unwrap()
}

#[test]
fn grants_what_is_wanted_while_it_fits() {
    let mut a = Allocator::new(0, false, false);
    a.set_licenses(&[lic("tts", 10, d(2027, 1, 1))]);
    assert_eq!(ask(&mut a, 0, &client(1), "tts", 0, 4, 0).quota, 4);
    assert_eq!(ask(&mut a, 0, &client(2), "tts", 0, 6, 0).quota, 6);
    let q = ask(&mut a, 0, &client(3), "tts", 0, 1, 0);
    assert_eq!(q.quota, 0);
    assert!(q.reason.unwrap().contains("in use or promised"));
    assert_eq!(a.reserved(&f("tts")), 10);
}

#[test]
fn contention_converges_to_fair_shares() {
    let mut a = Allocator::new(0, false, false);
    a.set_licenses(&[lic("tts", 10, d(2027, 1, 1))]);
    assert_eq!(ask(&mut a, 0, &client(1), "tts", 0, 10, 0).quota, 10);
    // A second client wants 10 too: nothing is free until client 1 shrinks, and client 1's
    // old grant stays reserved until it expires even after it shrinks.
    assert_eq!(ask(&mut a, 1_000, &client(2), "tts", 0, 10, 0).quota, 0);
    assert_eq!(ask(&mut a, 2_000, &client(1), "tts", 2, 10, 10).quota, 5);
    assert_eq!(ask(&mut a, 3_000, &client(2), "tts", 0, 10, 0).quota, 0);
    // Once the old grant of 10 has run out, client 2 gets its share.
    let later = HOLD_MS + 1;
    assert_eq!(ask(&mut a, later, &client(1), "tts", 2, 10, 5).quota, 5);
    assert_eq!(ask(&mut a, later, &client(2), "tts", 0, 10, 0).quota, 5);
}

#[test]
fn each_client_keeps_what_it_uses() {
    let mut a = Allocator::new(0, false, false);
    a.set_licenses(&[lic("tts", 10, d(2027, 1, 1))]);
    assert_eq!(ask(&mut a, 0, &client(1), "tts", 0, 9, 0).quota, 9);
    assert_eq!(ask(&mut a, 0, &client(2), "tts", 0, 10, 0).quota, 1);
    // Client 1 uses 8 of its 9: under contention it keeps at least 8.
    assert_eq!(ask(&mut a, 1_000, &client(1), "tts", 8, 10, 9).quota, 8);
}

#[test]
fn leases_expire_after_hold_and_release_frees_at_once() {
    let mut a = Allocator::new(0, false, false);
    a.set_licenses(&[lic("tts", 3, d(2027, 1, 1))]);
    assert_eq!(ask(&mut a, 0, &client(1), "tts", 0, 3, 0).quota, 3);
    a.expire(HOLD_MS - 1);
    assert_eq!(a.reserved(&f("tts")), 3);
    assert_eq!(a.client_count(), 1);
    a.expire(HOLD_MS);
    assert_eq!(a.reserved(&f("tts")), 0);
    assert_eq!(a.client_count(), 0);
    assert_eq!(ask(&mut a, HOLD_MS, &client(2), "tts", 0, 3, 0).quota, 3);
    assert!(a.release(&client(2)));
    assert_eq!(a.reserved(&f("tts")), 0);
    assert!(!a.release(&client(2)));
}

#[test]
fn learning_mode_only_confirms_what_is_held_under_a_valid_lease() {
    let mut a = Allocator::new(1_000, true, false);
    a.set_licenses(&[lic("tts", 10, d(2027, 1, 1))]);
    assert!(a.is_learning(1_000));
    let q = ask(&mut a, 2_000, &client(1), "tts", 3, 8, 6);
    assert_eq!(q.quota, 3);
    assert!(q.reason.unwrap().contains("restarted"));
    // Held without a valid lease: not confirmed.
    assert_eq!(ask(&mut a, 2_000, &client(2), "tts", 4, 4, 0).quota, 0);
    assert_eq!(ask(&mut a, 2_000, &client(3), "tts", 0, 2, 0).quota, 0);
    let after = 1_000 + HOLD_MS;
    assert!(!a.is_learning(after));
    // Client 2's unleased 4 counts against the pool first: 10 - 3 - 4 = 3 left.
    assert_eq!(ask(&mut a, after, &client(3), "tts", 0, 5, 0).quota, 3);
}

#[test]
fn maintenance_tiers_limit_newer_products() {
    let mut a = Allocator::new(0, false, false);
    // 4 licenses cover releases up to 2026-12-31, 2 more cover up to 2027-12-31.
    a.set_licenses(&[
        lic("asr", 4, d(2026, 12, 31)),
        lic("asr", 2, d(2027, 12, 31)),
    ]);
    let mut features = BTreeMap::new();
    features.insert(
        f("asr"),
        FeatureRequest {
            in_use: 0,
            want: 5,
            quota: 0,
            acquired: 0,
            denied: 0,
        },
    );
    let new_product = ClientRequest {
        client: &client(1),
        product_release: d(2027, 6, 1),
        features: &features,
        failover: false,
    };
    let (ans, _) = a.request(0, &new_product, &Serving::Yes);
    assert_eq!(ans[&f("asr")].quota, 2);
    let too_new = ClientRequest {
        client: &client(2),
        product_release: d(2028, 1, 1),
        ..new_product.clone()
    };
    let (ans, _) = a.request(0, &too_new, &Serving::Yes);
    assert_eq!(ans[&f("asr")].quota, 0);
    assert!(ans[&f("asr")]
        .reason
        .as_deref()
        .unwrap()
        .contains("maintenance"));
    // An older product can use the remaining 4.
    assert_eq!(ask(&mut a, 0, &client(3), "asr", 0, 6, 0).quota, 4);
    a.check_consistency().unwrap();
}

#[test]
fn backup_grants_only_in_failover_and_not_serving_grants_nothing() {
    let mut a = Allocator::new(0, false, true);
    a.set_licenses(&[lic("tts", 5, d(2027, 1, 1))]);
    let q = ask(&mut a, 0, &client(1), "tts", 0, 2, 0);
    assert_eq!(q.quota, 0);
    assert!(q.reason.unwrap().contains("failover"));
    let mut features = BTreeMap::new();
    features.insert(
        f("tts"),
        FeatureRequest {
            in_use: 0,
            want: 2,
            quota: 0,
            acquired: 0,
            denied: 0,
        },
    );
    let req = ClientRequest {
        client: &client(2),
        product_release: d(2026, 1, 1),
        features: &features,
        failover: true,
    };
    assert_eq!(a.request(0, &req, &Serving::Yes).0[&f("tts")].quota, 2);
    let (ans, _) = a.request(0, &req, &Serving::No("licenses expired".into()));
    assert_eq!(ans[&f("tts")].quota, 0);
    assert_eq!(ans[&f("tts")].reason.as_deref(), Some("licenses expired"));
    let q = ask(&mut a, 0, &client(3), "nope", 0, 1, 0);
    assert!(q.reason.unwrap().contains("no license"));
}

#[test]
fn usage_counts_are_running_totals_counted_once() {
    let mut a = Allocator::new(0, false, false);
    a.set_licenses(&[lic("tts", 5, d(2027, 1, 1))]);
    let run = |a: &mut Allocator, now, acquired, denied| {
        let mut features = BTreeMap::new();
        features.insert(
            f("tts"),
            FeatureRequest {
                in_use: 1,
                want: 2,
                quota: 1,
                acquired,
                denied,
            },
        );
        let req = ClientRequest {
            client: &client(1),
            product_release: d(2026, 1, 1),
            features: &features,
            failover: false,
        };
        a.request(now, &req, &Serving::Yes)
            .1
            .remove(&f("tts"))
            .unwrap()
    };
    assert_eq!(run(&mut a, 0, 5, 1).acquired, 5);
    assert_eq!(run(&mut a, 1, 5, 1).acquired, 0);
    let delta = run(&mut a, 2, 9, 3);
    assert_eq!((delta.acquired, delta.denied), (4, 2));
    // The lease lapses and the client comes back: it continues from its totals.
    a.expire(2 + HOLD_MS);
    assert_eq!(a.client_count(), 0);
    assert_eq!(run(&mut a, 3 + HOLD_MS, 10, 3).acquired, 1);
    // A restarted server only takes the baseline.
    let mut b = Allocator::new(0, true, false);
    b.set_licenses(&[lic("tts", 5, d(2027, 1, 1))]);
    assert_eq!(run(&mut b, 1, 12, 3).acquired, 0);
    assert_eq!(run(&mut b, 2, 13, 3).acquired, 1);
}

// ---------------------------------------------------------------------------------------
// Property test: random requests, lost answers, delays, releases, crashes, restarts and
// time jumps; after every step the quotas of leases still valid on the clients' side,
// including answers that were lost on the way, never exceed the count.

#[derive(Debug, Clone)]
enum Op {
    Request {
        client: usize,
        want: u32,
        use_delta: i32,
        delay_ms: u64,
        lost: bool,
    },
    Advance(u64),
    Release(usize),
    Crash(usize),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..5usize, 0..12u32, -3..4i32, 0..3_000u64, prop::bool::weighted(0.15))
            .prop_map(|(client, want, use_delta, delay_ms, lost)| Op::Request { client, want, use_delta, delay_ms, lost }),
        3 => prop_oneof![0..5_000u64, 0..150_000u64].prop_map(Op::Advance),
        1 => (0..5usize).prop_map(Op::Release),
        1 => (0..5usize).prop_map(Op::Crash),
        1 => Just(Op::Restart),
    ]
}

#[derive(Debug, Clone, Default)]
struct ModelClient {
    id: u8,
    /// Every grant the server made to this client: (quota, valid on the client until).
    issued: Vec<(u32, u64)>,
    /// The lease the client believes it has: (quota, until).
    lease: Option<(u32, u64)>,
    in_use: u32,
}

impl ModelClient {
    fn valid_quota(&self, now: u64) -> u32 {
        self.lease.filter(|l| now < l.1).map_or(0, |l| l.0)
    }
}

fn check_bound(
    clients: &[ModelClient],
    at: u64,
    count: u32,
    top_class: &[bool],
    top_count: u32,
) -> Result<(), TestCaseError> {
    let live = |c: &ModelClient| {
        c.issued
            .iter()
            .filter(|g| g.1 > at)
            .map(|g| g.0)
            .max()
            .unwrap_or(0)
    };
    let total: u32 = clients.iter().map(live).sum();
    prop_assert!(
        total <= count,
        "at {at} ms: quotas of unexpired leases {total} > count {count}"
    );
    let top: u32 = clients
        .iter()
        .zip(top_class)
        .filter(|(_, t)| **t)
        .map(|(c, _)| live(c))
        .sum();
    prop_assert!(
        top <= top_count,
        "at {at} ms: newer products hold {top} > {top_count} licenses that cover them"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn quotas_of_unexpired_leases_never_exceed_the_count(
        old_count in 0..6u32,
        new_count in 1..6u32,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let licenses = [lic("tts", old_count, d(2026, 12, 31)), lic("tts", new_count, d(2027, 12, 31))];
        let count = old_count + new_count;
        // Clients 3 and 4 run a newer product that only the second license covers.
        let releases = [d(2026, 1, 1), d(2026, 1, 1), d(2026, 1, 1), d(2027, 6, 1), d(2027, 6, 1)];
        let top_class: Vec<bool> = releases.iter().map(|r| *r > d(2026, 12, 31)).collect();
        let mut now: u64 = 0;
        let mut alloc = Allocator::new(now, false, false);
        alloc.set_licenses(&licenses);
        let mut clients: Vec<ModelClient> = (0..5).map(|i| ModelClient { id: i as u8 + 1, ..Default::default() }).collect();
        for op in ops {
            match op {
                Op::Request { client, want, use_delta, delay_ms, lost } => {
                    let c = &mut clients[client];
                    let sent = now;
                    // The client acquires only within its valid quota, releases any time.
                    let quota_now = c.valid_quota(sent);
                    let target = (i64::from(c.in_use) + i64::from(use_delta)).max(0) as u32;
                    c.in_use = if target > c.in_use { target.min(quota_now.max(c.in_use)) } else { target };
                    now += delay_ms;
                    let mut features = BTreeMap::new();
                    features.insert(f("tts"), FeatureRequest { in_use: c.in_use, want, quota: quota_now, acquired: 0, denied: 0 });
                    let id = ClientId::from_random([c.id; 16]);
                    let req = ClientRequest { client: &id, product_release: releases[client], features: &features, failover: false };
                    let (answers, _) = alloc.request(now, &req, &Serving::Yes);
                    prop_assert!(alloc.check_consistency().is_ok());
                    let q = answers[&f("tts")].quota;
                    if q > 0 {
                        c.issued.push((q, sent + LEASE_MS));
                    }
                    if !lost {
                        c.lease = Some((q, sent + LEASE_MS));
                    }
                }
                Op::Advance(ms) => {
                    // Check the instants just before the jump lands, too.
                    for step in [ms / 3, 2 * ms / 3] {
                        check_bound(&clients, now + step, count, &top_class, new_count)?;
                    }
                    now += ms;
                    alloc.expire(now);
                }
                Op::Release(i) => {
                    let c = &mut clients[i];
                    c.lease = None;
                    c.in_use = 0;
                    // It stopped using its grants before telling the server.
                    c.issued.clear();
                    alloc.release(&ClientId::from_random([c.id; 16]));
                }
                Op::Crash(i) => {
                    // The process dies: it uses nothing more, but its leases stay counted
                    // until they expire. It comes back as a new process with a new id.
                    let c = &mut clients[i];
                    c.lease = None;
                    c.in_use = 0;
                    c.id = c.id.wrapping_add(16);
                }
                Op::Restart => {
                    alloc = Allocator::new(now, true, false);
                    alloc.set_licenses(&licenses);
                }
            }
            check_bound(&clients, now, count, &top_class, new_count)?;
        }
    }
}

#[test]
fn a_late_release_does_not_free_a_newer_grant() {
    let mut a = Allocator::new(0, false, false);
    a.set_licenses(&[lic("tts", 5, d(2027, 1, 1))]);
    let c = client(1);
    let mut features = BTreeMap::new();
    features.insert(
        f("tts"),
        FeatureRequest {
            in_use: 0,
            want: 3,
            quota: 0,
            acquired: 0,
            denied: 0,
        },
    );
    let req = ClientRequest {
        client: &c,
        product_release: d(2026, 1, 1),
        features: &features,
        failover: true,
    };
    a.request_with_seq(0, &req, &Serving::Yes, 7);
    // A release covering requests up to 5 was sent before request 7: ignored.
    assert!(!a.release_upto(&c, 5));
    assert_eq!(a.reserved(&f("tts")), 3);
    // One covering request 7 frees it.
    assert!(a.release_upto(&c, 7));
    assert_eq!(a.reserved(&f("tts")), 0);
    assert!(!a.release_upto(&c, 7));
}
