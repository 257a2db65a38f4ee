#!/usr/bin/env bash
# A flood of fresh client ids against a license server (issue 12): `loadgen lease` with
# CLIENTS distinct ids (each asks once or twice within DURATION) from one address, and the
# server's memory at the end. SERVER_ARGS are added to `server run` (e.g. to lift the
# per-address rate limit and measure the client cap alone). Usage:
#   [SERVER_ARGS="..."] bash scripts/bench-flood.sh [CLIENTS] [CONCURRENCY] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-1000000}
CONCURRENCY=${2:-16}
DURATION=${3:-90s}
source scripts/bench-node.sh
INST=$($B vendor installation create --name flood --json | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1)
GUID=$($B vendor server add --installation "$INST" --context production --json | sed -n 's/.*"guid": *"\([^"]*\)".*/\1/p' | head -1)
$B vendor license grant --server "$GUID" --feature tts --count 100 --maintenance 2030-12-31 >/dev/null
# shellcheck disable=SC2086
$B server run --data-dir "$D/server" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --node "$NODE" --vendor-key "$PK" --guid "$GUID" --admin-token bench ${SERVER_ARGS:-} \
  >"$D/server.out" 2>"$D/server.log" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
until grep -q listening "$D/server.out"; do sleep 0.1; done
LEASE=$(sed -n 's/.*listening on \(http:[^ ]*\) .*/\1/p' "$D/server.out")
ADMIN=$(sed -n 's/.*(admin \(http:[^)]*\)).*/\1/p' "$D/server.out")
$B server sync-now --admin "$ADMIN" --token bench >/dev/null
KEY_ARGS=()
[ -f "$D/server/client-key" ] && KEY_ARGS=(--client-key-file "$D/server/client-key")
$B loadgen lease --server "$LEASE" "${KEY_ARGS[@]}" --clients "$CLIENTS" --concurrency "$CONCURRENCY" \
  --duration "$DURATION" --features tts --rss-pid "$SERVER_PID"
echo "clients the server holds: $($B server status --admin "$ADMIN" --token bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clients"])')"
