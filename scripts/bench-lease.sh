#!/usr/bin/env bash
# Measures license-server lease throughput, latency and memory with simulated clients
# (DESIGN.md §5). Loopback only, bounded in time. Usage:
#   bash scripts/bench-lease.sh [CLIENTS] [CONCURRENCY] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-10000}
CONCURRENCY=${2:-16}
DURATION=${3:-10s}
source scripts/bench-node.sh
INST=$($B vendor installation create --name bench --json | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1)
GUID=$($B vendor server add --installation "$INST" --context production --json | sed -n 's/.*"guid": *"\([^"]*\)".*/\1/p' | head -1)
for f in asr.en-US tts; do
  $B vendor license grant --server "$GUID" --feature $f --count 100000 --maintenance 2030-12-31 >/dev/null
done
$B server run --data-dir "$D/server" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --node "$NODE" --vendor-key "$PK" --guid "$GUID" --admin-token bench \
  --max-clients 1000000 --new-clients-per-minute 1000000 >"$D/server.out" 2>"$D/server.log" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
until grep -q listening "$D/server.out"; do sleep 0.1; done
LEASE=$(sed -n 's/.*listening on \(http:[^ ]*\) .*/\1/p' "$D/server.out")
ADMIN=$(sed -n 's/.*(admin \(http:[^)]*\)).*/\1/p' "$D/server.out")
$B server sync-now --admin "$ADMIN" --token bench >/dev/null
$B loadgen lease --server "$LEASE" --client-key-file "$D/server/client-key" --clients "$CLIENTS" --concurrency "$CONCURRENCY" \
  --duration "$DURATION" --features asr.en-US,tts --rss-pid "$SERVER_PID"
