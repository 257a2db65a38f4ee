//! Teletraffic figures that allocation quality is measured against (DESIGN.md §4.2a): a
//! checkout system that asks the server for every call denies one only when all `n`
//! licenses are busy, with probability Erlang B(n, a) for an offered load of `a` Erlangs.

/// Erlang B: the probability that a call offered to `n` servers with offered load `a`
/// Erlangs (arrival rate × mean hold) finds all of them busy. Computed with the stable
/// recursion `B(0) = 1, B(k) = a·B(k-1) / (k + a·B(k-1))`.
pub fn erlang_b(n: u32, a: f64) -> f64 {
    if !(a.is_finite() && a > 0.0) {
        return if n == 0 { 1.0 } else { 0.0 };
    }
    let mut b = 1.0_f64;
    for k in 1..=n {
        let ab = a * b;
        b = ab / (f64::from(k) + ab);
    }
    b
}

/// Below this Erlang B a ratio to it means nothing (a handful of denials in millions of
/// calls would read as "1000×"); the excess in percentage points is the figure there.
pub const RATIO_FLOOR: f64 = 0.001;

/// Blocking as a multiple of Erlang B, or `None` where Erlang B is below [`RATIO_FLOOR`].
pub fn blocking_ratio(blocking: f64, erlang_b: f64) -> Option<f64> {
    (erlang_b >= RATIO_FLOOR).then(|| blocking / erlang_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_left_out_where_erlang_b_is_negligible() {
        assert_eq!(blocking_ratio(0.02, 0.01), Some(2.0));
        assert_eq!(blocking_ratio(0.0001, 1e-9), None);
    }

    #[test]
    fn erlang_b_matches_published_tables() {
        // Values from standard Erlang B tables.
        let close = |x: f64, y: f64| (x - y).abs() < 5e-5;
        assert!(close(erlang_b(1, 1.0), 0.5));
        assert!(close(erlang_b(2, 1.0), 0.2));
        assert!(close(erlang_b(10, 5.0), 0.018_38), "{}", erlang_b(10, 5.0));
        assert!(
            close(erlang_b(20, 12.0), 0.009_78),
            "{}",
            erlang_b(20, 12.0)
        );
        assert!(close(erlang_b(10, 7.0), 0.078_75), "{}", erlang_b(10, 7.0));
        assert_eq!(erlang_b(0, 3.0), 1.0);
        assert_eq!(erlang_b(5, 0.0), 0.0);
        assert_eq!(erlang_b(5, f64::NAN), 0.0);
        // Large n stays finite and tiny at low load.
        let b = erlang_b(200, 100.0);
        assert!((0.0..1e-12).contains(&b), "{b}");
    }
}
