#!/usr/bin/env bash
# Usage storage at scale (issue 11, docs/scaling.md): loads a year of synthetic usage for
# SERVERS license servers (each its own installation) with FEATURES features into a fresh
# PostgreSQL schema, as the node keeps it (the last HOURLY_DAYS days hourly in day
# partitions, older days rolled up into usage_daily), then times, through a real node:
# the vendor's installation report over the whole year, syncs while the table is that big,
# and the roll-up of one day. PostgreSQL: $LEASEHOLD_TEST_POSTGRES (default
# postgres://postgres@127.0.0.1:5432/test); the schema is dropped at the end unless KEEP=1.
# Usage:
#   bash scripts/bench-usage-scale.sh [SERVERS] [FEATURES] [DAYS] [HOURLY_DAYS]
set -euo pipefail
cd "$(dirname "$0")/.."
SERVERS=${1:-10000}
FEATURES=${2:-2}
DAYS=${3:-365}
HOURLY_DAYS=${4:-90}
REPORTS=${REPORTS:-20}
PG=${LEASEHOLD_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
cargo build --release -p leasehold-cli >/dev/null
B=${LEASEHOLD_BIN:-$PWD/target/release/leasehold}
D=$(mktemp -d)
S="lh_scale_$(date +%s)_$RANDOM"
NODE_PID=
cleanup() {
  [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || psql "$PG" -qc "DROP SCHEMA IF EXISTS $S CASCADE" >/dev/null 2>&1 || true
  rm -rf "$D"
}
trap cleanup EXIT
psql "$PG" -qc "CREATE SCHEMA $S" >/dev/null
DB="$PG?options[search_path]=$S"
q() { psql "$PG" -v ON_ERROR_STOP=1 -qAt -c "SET search_path TO $S" -c "$1"; }
now_ms() { date +%s%3N; }

echo "== $SERVERS servers x $FEATURES features, $DAYS days ($HOURLY_DAYS hourly), schema $S"
$B node migrate --db "$DB" >/dev/null
$B node maintain --db "$DB" --usage-hourly-days "$HOURLY_DAYS"

t=$(now_ms)
q "INSERT INTO installations (id, name, created_at)
     SELECT 'inst_' || lpad(to_hex(i), 16, '0'), 'Customer ' || i, now() - interval '2 years'
     FROM generate_series(1, $SERVERS) i;
   INSERT INTO servers (guid, installation_id, context, instance_id, created_at)
     SELECT '{' || upper(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-' || substr(h, 17, 4) || '-' || substr(h, 21, 12)) || '}',
            'inst_' || lpad(to_hex(i), 16, '0'), 'production', 'inst-' || md5('instance' || i), now() - interval '2 years'
     FROM generate_series(1, $SERVERS) i, md5('server' || i) h;"
echo "servers: $(( $(now_ms) - t )) ms"

# Hourly rows: every hour of every feature of the last HOURLY_DAYS days, up to the last
# full hour; peaks and counts vary with the hour of the day.
t=$(now_ms)
q "INSERT INTO usage (server_guid, instance_id, seq, feature, hour, peak_in_use, grants, denials, denials_while_free, backup_use_secs, received_at)
     SELECT s.guid, s.instance_id, (extract(epoch FROM h.hour)::bigint / 3600) * $FEATURES + f, 'feature' || f, h.hour,
            p.peak, p.peak * 3, p.peak / 5, 0, 0, h.hour + interval '1 hour'
     FROM servers s
     CROSS JOIN generate_series(date_trunc('day', now()) - interval '$HOURLY_DAYS days', date_trunc('hour', now()) - interval '1 hour', interval '1 hour') AS h(hour)
     CROSS JOIN generate_series(0, $FEATURES - 1) AS f
     CROSS JOIN LATERAL (SELECT (4 + 4 * sin(extract(hour FROM h.hour) / 4.0) + (f % 3))::bigint AS peak) p"
HOURLY=$(q "SELECT count(*) FROM usage")
echo "hourly rows: $HOURLY in $(( $(now_ms) - t )) ms"

# Daily rows for the older days, as the roll-up writes them.
t=$(now_ms)
q "INSERT INTO usage_daily (server_guid, feature, day, peak_in_use, license_hours, grants, denials, denials_while_free, backup_use_secs)
     SELECT s.guid, 'feature' || f, d::date, 8 + (f % 3), 120 + 10 * (f % 3), 360, 24, 0, 0
     FROM servers s
     CROSS JOIN generate_series(current_date - $DAYS + 1, current_date - $HOURLY_DAYS - 1, interval '1 day') AS d
     CROSS JOIN generate_series(0, $FEATURES - 1) AS f"
DAILY=$(q "SELECT count(*) FROM usage_daily")
echo "daily rows: $DAILY in $(( $(now_ms) - t )) ms"
t=$(now_ms)
q "ANALYZE"
echo "analyze: $(( $(now_ms) - t )) ms"
q "SELECT 'hourly partitions: ' || count(*) || ', ' || pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '$S.usage'::regclass"
q "SELECT 'default partition rows: ' || count(*) FROM usage_default"
q "SELECT 'usage_daily: ' || pg_size_pretty(pg_total_relation_size('usage_daily'))"

$B vendor keygen --out "$D/key.pem" --json >/dev/null
PW=bench-password-$$
echo "$PW" | $B node create-admin --db "$DB" --name bench --password-stdin --reason benchmark >/dev/null
$B node serve --db "$DB" --listen 127.0.0.1:0 --signing-key "$D/key.pem" \
  --usage-hourly-days "$HOURLY_DAYS" >"$D/node.out" 2>"$D/node.log" &
NODE_PID=$!
until grep -q listening "$D/node.out"; do sleep 0.1; done
NODE=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$D/node.out")
TOKEN=$(echo "$PW" | $B vendor --node "$NODE" login --name bench --password-stdin --print-token)

echo "== the installation report over $DAYS days ($REPORTS installations, through the CLI)"
FROM=$(date -u -d "-$((DAYS - 1)) days" +%F)
TO=$(date -u +%F)
times=()
for id in $(q "SELECT id FROM installations ORDER BY random() LIMIT $REPORTS"); do
  t=$(date +%s%N)
  out=$($B vendor usage --node "$NODE" --token "$TOKEN" --installation "$id" --from "$FROM" --to "$TO" --json)
  times+=($(( ($(date +%s%N) - t) / 1000 )))
done
days=$(echo "$out" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["days"]))')
printf '%s\n' "${times[@]}" | sort -n | awk -v d="$days" '{a[NR]=$1} END {printf "report: %d rows of days each; median %.1f ms, max %.1f ms (CLI process included)\n", d, a[int((NR+1)/2)]/1000, a[NR]/1000}'

echo "== syncs while the usage table holds $HOURLY hourly rows (24 buckets a sync)"
$B loadgen sync --node "$NODE" --token "$TOKEN" --servers 200 --concurrency 32 --duration "${SYNC_DURATION:-10s}" --buckets 24

echo "== roll-up of the oldest hourly day ($((SERVERS * FEATURES * 24)) rows)"
$B node maintain --db "$DB" --usage-hourly-days $((HOURLY_DAYS - 1)) --usage-retention-days $((DAYS + 1))
