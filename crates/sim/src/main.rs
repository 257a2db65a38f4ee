//! `leasehold-sim`: runs seeded simulations of a whole Leasehold system.
//!
//! ```text
//! cargo run -p leasehold-sim --release -- --seeds 100000            # soak: seeds 0..100000
//! cargo run -p leasehold-sim --release -- --seeds 1000 --start 5000  # seeds 5000..6000
//! cargo run -p leasehold-sim --release -- --seed 42                  # replay one, verbose
//! cargo run -p leasehold-sim --release -- --seeds 200 --planted-bug hold-100s
//! cargo run -p leasehold-sim --release -- --bench                    # blocking vs Erlang B
//! cargo run -p leasehold-sim --release -- --case 50:4:0.8:30s        # one calls case
//! ```

use std::process::ExitCode;
use std::time::Instant;

use leasehold_sim::calls::{issue_cases, measure, table_row, Case, TABLE_HEADER};
use leasehold_sim::{run, Config, Fixes, PlantedBug};

const USAGE: &str = "\
leasehold-sim: deterministic simulation of a whole Leasehold system (node, primary, backup,
clients) with partitions, delays, drops, crashes, restarts and clock drift. Checks the
invariants of DESIGN.md §4 after every event; a failing seed prints how to replay it.

USAGE:
    leasehold-sim [--seeds N] [--start S] [--seed S] [--steps N] [--minutes M]
                  [--planted-bug hold-100s] [--fix LIST] [--keep-going] [--quiet]
    leasehold-sim --bench | --case N:P:LOAD:HOLD ... [--calls K] [--seeds N] [--deny-wait MS]

OPTIONS:
    --seeds N         run N seeds, from --start (default 1000)
    --start S         first seed of --seeds (default 0)
    --seed S          run one seed and print every event (replay)
    --steps N         stop each run after N events (default 200000)
    --minutes M       simulated minutes per run (default 30)
    --planted-bug B   break the system on purpose to show the simulation finds it:
                      hold-100s = servers free leases after 100 s instead of 120 s + margin
                      free-on-answer = the allocator frees a shrunk grant before the
                      client acknowledged it
    --fix LIST        which fixes of the modelled server to keep (comma-separated):
                      none = without them (the code before the fixes)
                      sync-delay-after-restart = a restarted server waits out the longest
                      network delay before its first sync
                      all = all of the above (the default)
    --keep-going      with --seeds: report every failing seed, not just the first
    --quiet           with --seed: do not print every event
    --bench           allocation quality: every case of issue 9 as a calls load (Poisson
                      calls, exponential holds, no faults), blocking against Erlang B
    --case C          one calls case N:P:LOAD:HOLD (licenses, client processes, load as a
                      share of N, mean hold), e.g. 50:4:0.8:30s; repeatable
    --calls K         counted calls per seed of a calls case (default 2000 per license,
                      at least 20000); with
                      --bench or --case, --seeds is the number of seeds per case (default 10)
    --deny-wait MS    with --bench or --case: the clients ask the server and wait at most
                      MS milliseconds before denying (default 0: purely local)
    -h, --help        this text
";

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<ExitCode, String> {
    let mut args = std::env::args().skip(1);
    let mut cfg = Config::default();
    let mut seeds: u64 = 1000;
    let mut start: u64 = 0;
    let mut one: Option<u64> = None;
    let mut quiet = false;
    let mut keep_going = false;
    let mut cases: Vec<Case> = Vec::new();
    let mut calls: Option<u64> = None;
    let mut seeds_given = false;
    let mut deny_wait_ms: u64 = 0;
    let num = |v: Option<String>, flag: &str| -> Result<u64, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| format!("{flag}: {v:?} is not a non-negative integer"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seeds" => {
                seeds = num(args.next(), "--seeds")?;
                seeds_given = true;
            }
            "--bench" => cases.extend(issue_cases()),
            "--case" => {
                let v = args.next().ok_or("--case needs a value")?;
                cases.push(Case::parse(&v).ok_or_else(|| {
                    format!("--case: {v:?} is not N:P:LOAD:HOLD (e.g. 50:4:0.8:30s)")
                })?);
            }
            "--calls" => calls = Some(num(args.next(), "--calls")?),
            "--deny-wait" => deny_wait_ms = num(args.next(), "--deny-wait")?,
            "--start" => start = num(args.next(), "--start")?,
            "--seed" => one = Some(num(args.next(), "--seed")?),
            "--steps" => cfg.steps = num(args.next(), "--steps")?,
            "--minutes" => cfg.duration_ms = num(args.next(), "--minutes")? * 60_000,
            "--planted-bug" => {
                let v = args.next().ok_or("--planted-bug needs a value")?;
                cfg.planted_bug = Some(PlantedBug::parse(&v).ok_or_else(|| {
                    format!("--planted-bug: unknown bug {v:?} (known: hold-100s, free-on-answer)")
                })?);
            }
            "--fix" => {
                let v = args.next().ok_or("--fix needs a value")?;
                cfg.fixes = Fixes::parse(&v).ok_or_else(|| {
                    format!(
                        "--fix: unknown fix in {v:?} (known: none, sync-delay-after-restart, all)"
                    )
                })?;
            }
            "--quiet" => quiet = true,
            "--keep-going" => keep_going = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }

    if let (Some(seed), Some(case)) = (one, cases.first()) {
        // Replay one seed of a calls case, every event printed.
        let calls = calls.unwrap_or_else(|| case.default_calls());
        let cfg = Config {
            verbose: !quiet,
            ..Config::for_calls(case.load(calls, deny_wait_ms))
        };
        return Ok(replay(seed, &cfg));
    }
    if !cases.is_empty() {
        let seeds = if seeds_given { seeds } else { 10 };
        println!("{TABLE_HEADER}");
        let started = Instant::now();
        for case in cases {
            let calls = calls.unwrap_or_else(|| case.default_calls());
            match measure(case, calls, seeds, deny_wait_ms, &cfg) {
                Ok(m) => println!("{}", table_row(&m)),
                Err(f) => {
                    eprintln!("{f}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        eprintln!("{:.1} s", started.elapsed().as_secs_f64());
        return Ok(ExitCode::SUCCESS);
    }

    if let Some(seed) = one {
        cfg.verbose = !quiet;
        return Ok(replay(seed, &cfg));
    }

    let started = Instant::now();
    let mut failed = 0u64;
    let mut steps = 0u64;
    let mut sim_ms = 0u64;
    let report_every = (seeds / 20).max(1);
    let mut ran = 0u64;
    for (i, seed) in (start..start.saturating_add(seeds)).enumerate() {
        ran += 1;
        match run(seed, &cfg) {
            Ok(stats) => {
                steps += stats.steps;
                sim_ms += stats.sim_ms;
            }
            Err(f) => {
                failed += 1;
                eprintln!("{f}\n");
                if !keep_going {
                    break;
                }
            }
        }
        let done = i as u64 + 1;
        if done.is_multiple_of(report_every) {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{done}/{seeds} seeds, {failed} failed, {:.1} seeds/s",
                done as f64 / secs.max(1e-9)
            );
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "seeds {start}..{}: {failed} failed; {ran} runs, {steps} events, {:.1} simulated hours in {secs:.1} s ({:.1} seeds/s, {:.0} events/s)",
        start.saturating_add(seeds),
        sim_ms as f64 / 3.6e6,
        ran as f64 / secs,
        steps as f64 / secs
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs one seed with every event printed (unless quiet) and says whether it passed.
fn replay(seed: u64, cfg: &Config) -> ExitCode {
    match run(seed, cfg) {
        Ok(stats) => {
            println!("seed {seed} passed: {stats:#?}");
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("{f}");
            ExitCode::FAILURE
        }
    }
}
