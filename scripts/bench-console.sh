#!/usr/bin/env bash
# The vendor side's staff surfaces under load, on one node (SQLite, release build, loopback,
# bounded in time): an admin API read with a personal token (checked against the database
# on every request), the console's home page (events decided from the servers the database
# picks), an installation page (servers, licenses, usage charts) and a search. SERVERS
# simulated license servers are made and synced first (`loadgen sync`). wrk (Debian's
# package) drives each for DURATION with CONNECTIONS connections. Usage:
#   bash scripts/bench-console.sh [SERVERS] [CONNECTIONS] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
SERVERS=${1:-10000}
CONNECTIONS=${2:-8}
DURATION=${3:-10s}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 1; }
source scripts/bench-node.sh

echo "== $SERVERS simulated servers, each its own installation, synced for 5 s"
$B loadgen sync --servers "$SERVERS" --concurrency 32 --duration 5s | tail -n 3

# One installation and one server of them, by the admin API.
INSTALLATIONS=$(curl -sf -H "authorization: Bearer $LEASEHOLD_VENDOR_TOKEN" "$NODE/v1/admin/installations")
# (sed -n 1p rather than head: with pipefail, a writer cut off by head fails the script.)
INST=$(echo "$INSTALLATIONS" | grep -o '"id":"inst_[0-9a-f]*"' | sed -n 1p | sed 's/"id":"\(.*\)"/\1/')
GUID=$(echo "$INSTALLATIONS" | grep -o '"guid":"{[^}]*}"' | sed -n 1p | sed 's/"guid":"{\(.*\)}"/\1/')
NAME=$(echo "$INSTALLATIONS" | grep -o '"name":"[^"]*"' | sed -n 1p | sed 's/"name":"\(.*\)"/\1/')
echo "installation $INST, server {$GUID}"

# A console session for the bench account: the sign-in form's token, then the sign-in.
JAR=$D/cookies
FORM=$(curl -sf -c "$JAR" "$NODE/console/login")
CSRF=$(echo "$FORM" | grep -o 'name="csrf" value="[0-9a-f]*"' | sed -n 1p | sed 's/.*value="\(.*\)"/\1/')
curl -sf -b "$JAR" -c "$JAR" -o /dev/null --data-urlencode "csrf=$CSRF" \
  --data-urlencode "name=bench" --data-urlencode "password=$BENCH_PASSWORD" \
  --data-urlencode "next=/console" "$NODE/console/login"
COOKIE=$(awk '$6 == "leasehold_console" { print "leasehold_console=" $7 }' "$JAR")
[ -n "$COOKIE" ] || { echo "console sign-in failed" >&2; exit 1; }

run() { # NAME URL HEADER
  echo "== $1"
  wrk -t 2 -c "$CONNECTIONS" -d "$DURATION" --latency -H "$3" "$2" |
    grep -E 'Requests/sec|^ +50%|^ +99%|Non-2xx|Socket errors' || true
}
run "admin API: GET /v1/admin/servers/{GUID} with a personal token" \
  "$NODE/v1/admin/servers/$GUID" "authorization: Bearer $LEASEHOLD_VENDOR_TOKEN"
run "console: home page (search, events, recent changes)" "$NODE/console" "cookie: $COOKIE"
run "console: installation page (servers, licenses, usage charts)" \
  "$NODE/console/installations/$INST" "cookie: $COOKIE"
run "console: search by customer name" \
  "$NODE/console/search?q=$(echo "$NAME" | cut -c1-6 | sed 's/ /+/g')" "cookie: $COOKIE"
echo "== node RSS: $(ps -o rss= -p "$NODE_PID" | awk '{ printf "%.1f MiB", $1 / 1024 }')"
