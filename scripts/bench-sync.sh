#!/usr/bin/env bash
# Sync throughput of license nodes (DESIGN.md §5), same payload on each setup: one node on
# SQLite, one node on PostgreSQL, two nodes on one PostgreSQL database. Loopback only,
# bounded in time. PostgreSQL: $LEASEHOLD_TEST_POSTGRES (default
# postgres://postgres@127.0.0.1:5432/test); each run gets a fresh schema. Usage:
#   bash scripts/bench-sync.sh [SERVERS] [CONCURRENCY] [DURATION] [BUCKETS]
set -euo pipefail
cd "$(dirname "$0")/.."
SERVERS=${1:-200}
CONCURRENCY=${2:-32}
DURATION=${3:-10s}
BUCKETS=${4:-2}
PG=${LEASEHOLD_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
cargo build --release -p leasehold-cli >/dev/null
B=${LEASEHOLD_BIN:-$PWD/target/release/leasehold}
D=$(mktemp -d)
PIDS=()
SCHEMAS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for s in "${SCHEMAS[@]}"; do psql "$PG" -qc "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true; done
  rm -rf "$D"
}
trap cleanup EXIT
$B vendor keygen --out "$D/key.pem" --json >/dev/null

# start_node NAME DB: starts a node, prints its URL
start_node() {
  $B node serve --db "$2" --listen 127.0.0.1:0 --signing-key "$D/key.pem" >"$D/$1.out" 2>"$D/$1.log" &
  PIDS+=("$!")
  until grep -q listening "$D/$1.out"; do sleep 0.1; done
  sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$D/$1.out"
}

# A fresh schema on the PostgreSQL server; sets DB to its node database URL.
pg_schema() {
  local s="lh_bench_$(date +%s)_$RANDOM"
  psql "$PG" -qc "CREATE SCHEMA $s" >/dev/null
  SCHEMAS+=("$s")
  DB="$PG?options[search_path]=$s&max_connections=${PG_CONNECTIONS:-10}"
}

# admin_token DB NODE_URL: the token of an admin account "bench" on that database (made
# there once; several nodes on one database share it).
PW=bench-password-$$
admin_token() {
  echo "$PW" | $B node create-admin --db "$1" --name bench --password-stdin --reason benchmark >/dev/null 2>&1 || true
  echo "$PW" | $B vendor --node "$2" login --name bench --password-stdin --print-token
}

run() { # TITLE TOKEN --node URL...
  echo "== $1"
  local token=$2
  shift 2
  $B loadgen sync "$@" --token "$token" --servers "$SERVERS" --concurrency "$CONCURRENCY" \
    --duration "$DURATION" --buckets "$BUCKETS"
}

N1=$(start_node sqlite "sqlite://$D/node.db")
run "one node, SQLite" "$(admin_token "sqlite://$D/node.db" "$N1")" --node "$N1"

pg_schema
N2=$(start_node pg1 "$DB")
run "one node, PostgreSQL" "$(admin_token "$DB" "$N2")" --node "$N2"

pg_schema
N3=$(start_node pg2a "$DB")
N4=$(start_node pg2b "$DB")
run "two nodes, one PostgreSQL database" "$(admin_token "$DB" "$N3")" --node "$N3" --node "$N4"
