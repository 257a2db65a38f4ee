#!/usr/bin/env bash
# A restart must not stop the calls (issue 9, docs/benchmarks.md): 4 library clients place
# Poisson calls on 10 licenses (7 Erlangs, 5 s mean holds) through a primary with a backup.
# Two runs at the same time, each against its own pair of servers: in one the primary is
# killed with SIGKILL 20 s in and restarted 1 s later on the same data directory and
# addresses; the other runs undisturbed. Blocking is counted over the 3 minutes from the kill.
# Loopback only, bounded in time. Usage:
#   bash scripts/bench-restart.sh [DENY_WAIT]     (e.g. 50ms; default: purely local)
set -euo pipefail
cd "$(dirname "$0")/.."
DENY_WAIT=${1:-}
source scripts/bench-node.sh
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_server() { # name guid lease_port admin_port
  $B server run --data-dir "$D/$1" --listen "127.0.0.1:$3" --admin-listen "127.0.0.1:$4" \
    --node "$NODE" --vendor-key "$PK" --guid "$2" --admin-token bench >"$D/$1.out" 2>>"$D/$1.log" &
  echo $!
}
for run in restart steady; do
  INST=$($B vendor installation create --name "bench $run" --json | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1)
  P=$($B vendor server add --installation "$INST" --context production --json | sed -n 's/.*"guid": *"\([^"]*\)".*/\1/p' | head -1)
  BK=$($B vendor server add --installation "$INST" --context backup --json | sed -n 's/.*"guid": *"\([^"]*\)".*/\1/p' | head -1)
  L=$($B vendor license grant --server "$P" --feature calls --count 10 --maintenance 2030-12-31 --json | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1)
  $B vendor license grant --server "$BK" --feature calls --count 10 --maintenance 2030-12-31 --backs-up "$L" >/dev/null
  # One client key for both servers of the installation, as an operator shares it.
  KEY=$(python3 -c 'import secrets; print("lhck_" + secrets.token_hex(32))')
  for s in p b; do
    mkdir -p "$D/$run-$s"
    (umask 077; echo "$KEY" >"$D/$run-$s/client-key")
  done
  for s in p b; do
    lp=$(free_port); ap=$(free_port)
    guid=$P; [ $s = b ] && guid=$BK
    pid=$(start_server "$run-$s" "$guid" "$lp" "$ap")
    PIDS+=("$pid")
    eval "${run}_${s}_pid=$pid ${run}_${s}_lease=$lp ${run}_${s}_admin=$ap ${run}_${s}_guid=$guid"
    until grep -q listening "$D/$run-$s.out"; do sleep 0.1; done
    $B server sync-now --admin "http://127.0.0.1:$ap" --token bench >/dev/null
  done
done
LG=()
for run in restart steady; do
  eval "pl=\$${run}_p_lease bl=\$${run}_b_lease"
  $B loadgen calls --server "127.0.0.1:$pl" --backup-servers "127.0.0.1:$bl" --client-key-file "$D/$run-p/client-key" --feature calls \
    --licenses 10 --processes 4 --erlangs 7 --hold 5s --warmup 20s --duration 180s \
    ${DENY_WAIT:+--deny-wait "$DENY_WAIT"} --json >"$D/$run.json" 2>"$D/$run.lg.log" &
  LG+=($!)
done
sleep 20
kill -9 "$restart_p_pid"
sleep 1
newpid=$(start_server restart-p "$restart_p_guid" "$restart_p_lease" "$restart_p_admin")
PIDS+=("$newpid")
until grep -q listening "$D/restart-p.out"; do sleep 0.1; done
echo "primary killed at 20 s and restarted at 21 s; state after the restart:" >&2
$B server status --admin "http://127.0.0.1:$restart_p_admin" --token bench --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print("  learning_until:", s["learning_until"], "licenses:", [(l["feature"], l["count"], l["reserved"]) for l in s["licenses"]])' >&2
for p in "${LG[@]}"; do wait "$p" || true; done
for run in restart steady; do
  python3 - "$D/$run.json" "$run" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f'{sys.argv[2]:8} {r["calls"]} calls, blocking {r["blocking"]*100:.2f} % (Erlang B {r["erlang_b"]*100:.2f} %), false denials {r["false_denial_share"]*100:.2f} %, denials {r["denials_by_reason"]}, max in use {r["max_in_use"]}')
PY
done
