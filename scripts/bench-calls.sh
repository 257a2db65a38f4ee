#!/usr/bin/env bash
# Allocation quality against a real license server (issue 9, docs/benchmarks.md): for each
# case, a license server with N licenses of one feature and `leasehold loadgen calls` with P
# library clients placing Poisson calls at the given load. Every case runs at the same time
# against its own server (the runs are mostly idle waiting, so they do not disturb each
# other). Loopback only, bounded in time. Usage:
#   bash scripts/bench-calls.sh [DURATION] [DENY_WAIT] [CASES...]
# DURATION is the measured time per case (default 10m), DENY_WAIT the clients' deny-wait
# (default 0s, purely local); a case is N:PROCESSES:LOAD:HOLD, e.g. 10:2:0.5:5s (load as a
# share of N). Without cases: the 5 s-hold cases of the issue and N=50, 80 %, 30 s, 4 clients.
# Prints one JSON report per case, then a table.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10m}
DENY_WAIT=${2:-0s}
shift 2 2>/dev/null || shift $#
CASES=("$@")
if [ ${#CASES[@]} -eq 0 ]; then
  for n in 10 200; do for p in 2 16; do for l in 0.5 0.9; do CASES+=("$n:$p:$l:5s"); done; done; done
  CASES+=("50:4:0.8:30s")
fi
source scripts/bench-node.sh
i=0
for c in "${CASES[@]}"; do
  IFS=: read -r n p l hold <<<"$c"
  INST=$($B vendor installation create --name "bench $c" --json | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1)
  GUID=$($B vendor server add --installation "$INST" --context production --json | sed -n 's/.*"guid": *"\([^"]*\)".*/\1/p' | head -1)
  $B vendor license grant --server "$GUID" --feature calls --count "$n" --maintenance 2030-12-31 >/dev/null
  $B server run --data-dir "$D/server$i" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --node "$NODE" --vendor-key "$PK" --guid "$GUID" --admin-token bench >"$D/server$i.out" 2>"$D/server$i.log" &
  PIDS+=($!)
  i=$((i + 1))
done
i=0
LG=()
for c in "${CASES[@]}"; do
  IFS=: read -r n p l hold <<<"$c"
  until grep -q listening "$D/server$i.out"; do sleep 0.1; done
  LEASE=$(sed -n 's/.*listening on \(http:[^ ]*\) .*/\1/p' "$D/server$i.out")
  ADMIN=$(sed -n 's/.*(admin \(http:[^)]*\)).*/\1/p' "$D/server$i.out")
  $B server sync-now --admin "$ADMIN" --token bench >/dev/null
  A=$(python3 -c "print($n*$l)")
  $B loadgen calls --server "$LEASE" --client-key-file "$D/server$i/client-key" --feature calls --licenses "$n" --processes "$p" \
    --erlangs "$A" --hold "$hold" --duration "$DURATION" --deny-wait "$DENY_WAIT" --json \
    >"$D/case$i.json" 2>"$D/case$i.log" &
  LG+=($!)
  i=$((i + 1))
done
for p in "${LG[@]}"; do wait "$p" || true; done
i=0
for c in "${CASES[@]}"; do
  cat "$D/case$i.json" 2>/dev/null || { echo "case $c failed:" >&2; cat "$D/case$i.log" >&2; }
  i=$((i + 1))
done
echo
echo "| N | processes | load | hold | calls | blocking | Erlang B | ratio | excess (pp) | false denials | max in use | asked server | wait p50 / p99 |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
i=0
for c in "${CASES[@]}"; do
  IFS=: read -r n p l hold <<<"$c"
  python3 - "$D/case$i.json" "$l" "$hold" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
ratio = "-" if r["ratio"] is None else f'{r["ratio"]:.2f}'
print(f'| {r["licenses"]} | {r["processes"]} | {float(sys.argv[2])*100:.0f} % | {sys.argv[3]} | {r["calls"]} | {r["blocking"]*100:.3f} % | {r["erlang_b"]*100:.3f} % | {ratio} | {r["excess_pp"]:+.3f} | {r["false_denial_share"]*100:.3f} % | {r["max_in_use"]} | {r["waited_share"]*100:.1f} % | {r["wait_p50_ms"]:.1f} / {r["wait_p99_ms"]:.1f} ms |')
PY
  i=$((i + 1))
done
