//! Allocation quality in the simulation: the cases of issue 9 as [`CallsLoad`]s, run over
//! several seeds, and summarised as blocking against Erlang B (docs/benchmarks.md).

use crate::{run, CallsLoad, Config, Failure};
use leasehold_proto::traffic::{blocking_ratio, erlang_b};

/// One case: N licenses, P client processes, load as a share of N, mean hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Case {
    pub licenses: u32,
    pub processes: usize,
    pub load: f64,
    pub hold_ms: u64,
}

impl Case {
    pub fn erlangs(&self) -> f64 {
        f64::from(self.licenses) * self.load
    }

    /// `N:P:LOAD:HOLD`, e.g. `10:2:0.5:5s` (hold in s or ms).
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split(':');
        let licenses = it.next()?.parse().ok()?;
        let processes = it.next()?.parse().ok()?;
        let load: f64 = it.next()?.parse().ok()?;
        let hold = it.next()?;
        let hold_ms = if let Some(ms) = hold.strip_suffix("ms") {
            ms.parse().ok()?
        } else {
            hold.strip_suffix('s')?.parse::<u64>().ok()? * 1000
        };
        if it.next().is_some()
            || processes == 0
            || licenses == 0
            || load.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || hold_ms == 0
        {
            return None;
        }
        Some(Self {
            licenses,
            processes,
            load,
            hold_ms,
        })
    }

    /// Counted calls per seed for a tight estimate at a bearable cost: 2,000 per license,
    /// at least 20,000 (small pools block often and need few calls; large ones block rarely).
    pub fn default_calls(&self) -> u64 {
        (2_000 * u64::from(self.licenses)).max(20_000)
    }

    pub fn load(&self, calls: u64, deny_wait_ms: u64) -> CallsLoad {
        CallsLoad {
            deny_wait_ms,
            licenses: self.licenses,
            processes: self.processes,
            erlangs: self.erlangs(),
            hold_ms: self.hold_ms,
            warmup_ms: 2 * self.hold_ms,
            calls,
        }
    }
}

/// The cases of issue 9: every combination of 2 and 16 processes, load 50 % and 90 %, N = 10
/// and 200, mean hold 5 s and 60 s; plus N = 50, 80 %, 30 s holds, 4 processes.
pub fn issue_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for hold_ms in [5_000, 60_000] {
        for licenses in [10, 200] {
            for processes in [2, 16] {
                for load in [0.5, 0.9] {
                    v.push(Case {
                        licenses,
                        processes,
                        load,
                        hold_ms,
                    });
                }
            }
        }
    }
    v.push(Case {
        licenses: 50,
        processes: 4,
        load: 0.8,
        hold_ms: 30_000,
    });
    v
}

/// A case measured over several seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub case: Case,
    pub seeds: u64,
    pub calls: u64,
    pub denied: u64,
    /// Pooled blocking (denied / calls over every seed).
    pub blocking: f64,
    /// Half-width of a 95 % confidence interval of the blocking, from the spread between
    /// seeds (each seed is an independent run).
    pub ci95: f64,
    pub erlang_b: f64,
    pub false_denials: u64,
    /// Calls that asked the server (deny-wait).
    pub waited: u64,
    pub max_in_use: u32,
}

impl Measured {
    /// blocking / Erlang B, where Erlang B is at least 0.1 % (below, the excess in
    /// percentage points is the figure that means something).
    pub fn ratio(&self) -> Option<f64> {
        blocking_ratio(self.blocking, self.erlang_b)
    }

    pub fn waited_share(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.waited as f64 / self.calls as f64
        }
    }

    pub fn excess_pp(&self) -> f64 {
        (self.blocking - self.erlang_b) * 100.0
    }

    pub fn false_denial_share(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.false_denials as f64 / self.calls as f64
        }
    }
}

/// Runs `case` for `seeds` seeds of `calls` counted calls each, the clients with a deny-wait
/// of `deny_wait_ms` (0: purely local), with `base` as the rest of the configuration (fixes,
/// planted bug).
pub fn measure(
    case: Case,
    calls: u64,
    seeds: u64,
    deny_wait_ms: u64,
    base: &Config,
) -> Result<Measured, Box<Failure>> {
    let mut per_seed = Vec::new();
    let mut m = Measured {
        case,
        seeds,
        calls: 0,
        denied: 0,
        blocking: 0.0,
        ci95: 0.0,
        erlang_b: erlang_b(case.licenses, case.erlangs()),
        false_denials: 0,
        waited: 0,
        max_in_use: 0,
    };
    for seed in 0..seeds {
        let cfg = Config {
            fixes: base.fixes,
            planted_bug: base.planted_bug,
            ..Config::for_calls(case.load(calls, deny_wait_ms))
        };
        let s = run(seed, &cfg)?;
        m.calls += s.calls;
        m.denied += s.denied;
        m.false_denials += s.false_denials;
        m.waited += s.waited;
        m.max_in_use = m.max_in_use.max(s.max_in_use);
        per_seed.push(s.blocking());
    }
    m.blocking = if m.calls == 0 {
        0.0
    } else {
        m.denied as f64 / m.calls as f64
    };
    let n = per_seed.len() as f64;
    if n > 1.0 {
        let mean = per_seed.iter().sum::<f64>() / n;
        let var = per_seed.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / (n - 1.0);
        m.ci95 = 1.96 * (var / n).sqrt();
    }
    Ok(m)
}

/// A markdown table row: N, processes, load, hold, calls, blocking ± CI, Erlang B, ratio,
/// excess, false denials, max in use.
pub fn table_row(m: &Measured) -> String {
    format!(
        "| {} | {} | {:.0} % | {} s | {} | {:.3} % ± {:.3} | {:.3} % | {} | {:+.3} | {:.3} % | {:.1} % | {} |",
        m.case.licenses,
        m.case.processes,
        m.case.load * 100.0,
        m.case.hold_ms / 1000,
        m.calls,
        m.blocking * 100.0,
        m.ci95 * 100.0,
        m.erlang_b * 100.0,
        m.ratio().map_or("-".into(), |r| format!("{r:.2}")),
        m.excess_pp(),
        m.false_denial_share() * 100.0,
        m.waited_share() * 100.0,
        m.max_in_use
    )
}

pub const TABLE_HEADER: &str = "| N | processes | load | hold | calls | blocking | Erlang B | ratio | excess (pp) | false denials | asked the server | max in use |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_parse() {
        assert_eq!(
            Case::parse("10:2:0.5:5s"),
            Some(Case {
                licenses: 10,
                processes: 2,
                load: 0.5,
                hold_ms: 5_000
            })
        );
        assert_eq!(Case::parse("10:2:0.5:500ms").map(|c| c.hold_ms), Some(500));
        for bad in [
            "",
            "10:2:0.5",
            "10:0:0.5:5s",
            "10:2:0:5s",
            "10:2:0.5:5",
            "10:2:0.5:5s:1",
        ] {
            assert_eq!(Case::parse(bad), None, "{bad}");
        }
        assert_eq!(issue_cases().len(), 17);
    }
}
