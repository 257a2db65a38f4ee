#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz + libFuzzer) for SECONDS each (default 20) on a
# copy of its committed corpus, so the run never changes the repository, and fails if any
# finds a crash, printing the input and the command that reproduces it. `.ci/run` runs it
# after the tests; docs/testing.md ("Fuzzing") says how to run a target for longer.
#
#   bash scripts/fuzz.sh [SECONDS]
#
# cargo-fuzz needs nightly flags; on a stable toolchain RUSTC_BOOTSTRAP=1 allows them (set
# here when unset). Built without a sanitizer (`-s none`): the workspace denies unsafe code,
# so AddressSanitizer would find little and doubles the build time. Overflow checks and
# debug assertions are on.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
export RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1}
target_dir=$PWD/fuzz/target
# The flags of every command below, and of the reproducers printed: other flags rebuild.
build_flags=(-s none --target-dir "$target_dir")

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
cargo fuzz --version

echo "== building the fuzz targets"
start=$(date +%s)
cargo fuzz build "${build_flags[@]}"
echo "built in $(($(date +%s) - start)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for target in $(cargo fuzz list); do
  corpus=$work/corpus/$target
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  if [ -d "fuzz/corpus/$target" ]; then
    cp -R "fuzz/corpus/$target/." "$corpus/"
  fi
  extra=()
  if [ -f "fuzz/dict/$target.dict" ]; then
    extra+=("-dict=fuzz/dict/$target.dict")
  fi
  before=$(ls "fuzz/artifacts/$target")
  echo "== fuzz $target for ${seconds} s ($(ls "$corpus" | wc -l) corpus inputs)"
  log=$work/$target.log
  # -timeout: an input that takes longer than 10 s is a finding too.
  if cargo fuzz run "${build_flags[@]}" "$target" "$corpus" -- \
      -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1; then
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec)' "$log" || true
  else
    failed+=("$target")
    tail -n 60 "$log"
    for artifact in $(comm -13 <(echo "$before") <(ls "fuzz/artifacts/$target")); do
      path=fuzz/artifacts/$target/$artifact
      echo "FINDING in $target: $path"
      echo "  reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run -s none $target $path"
      echo "  as the target sees it: RUSTC_BOOTSTRAP=1 cargo fuzz fmt -s none $target $path"
    done
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
echo "== fuzz: no findings in $(cargo fuzz list | wc -l) targets, ${seconds} s each"
