#!/usr/bin/env bash
# Measures license-server lease throughput, latency and memory with simulated clients
# (DESIGN.md §5). Loopback only, bounded in time. Usage:
#   bash scripts/bench-lease.sh [CLIENTS] [CONCURRENCY] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-10000}
CONCURRENCY=${2:-16}
DURATION=${3:-10s}
cargo build --release -p leasehold-cli >/dev/null
B=$PWD/target/release/leasehold
D=$(mktemp -d)
cleanup() { kill "${NODE_PID:-}" "${SERVER_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
PK=$($B vendor keygen --out "$D/key.pem" --json | sed -n 's/.*"public_key": *"\([^"]*\)".*/\1/p')
$B node serve --db "sqlite://$D/node.db" --listen 127.0.0.1:0 --signing-key "$D/key.pem" --admin-token bench >"$D/node.out" 2>"$D/node.log" &
NODE_PID=$!
until grep -q listening "$D/node.out"; do sleep 0.1; done
NODE=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$D/node.out")
export LEASEHOLD_NODE=$NODE LEASEHOLD_ADMIN_TOKEN=bench
INST=$($B vendor installation create --name bench --json | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1)
GUID=$($B vendor server add --installation "$INST" --context production --json | sed -n 's/.*"guid": *"\([^"]*\)".*/\1/p' | head -1)
for f in asr.en-US tts; do
  $B vendor license grant --server "$GUID" --feature $f --count 100000 --maintenance 2030-12-31 >/dev/null
done
$B server run --data-dir "$D/server" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --node "$NODE" --vendor-key "$PK" --guid "$GUID" --admin-token bench >"$D/server.out" 2>"$D/server.log" &
SERVER_PID=$!
until grep -q listening "$D/server.out"; do sleep 0.1; done
LEASE=$(sed -n 's/.*listening on \(http:[^ ]*\) .*/\1/p' "$D/server.out")
ADMIN=$(sed -n 's/.*(admin \(http:[^)]*\)).*/\1/p' "$D/server.out")
$B server sync-now --admin "$ADMIN" --token bench >/dev/null
$B loadgen lease --server "$LEASE" --clients "$CLIENTS" --concurrency "$CONCURRENCY" \
  --duration "$DURATION" --features asr.en-US,tts --rss-pid "$SERVER_PID"
