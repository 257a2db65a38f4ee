# Sourced by the bench scripts: builds the release binary, makes a scratch directory $D
# (removed on exit, with every process in PIDS and the node), a vendor key ($PK is its
# public key) and starts a license node on loopback ($NODE) with an admin account "bench"
# made on its database, signed in: LEASEHOLD_NODE and LEASEHOLD_VENDOR_TOKEN are exported
# for `leasehold vendor`.
cargo build --release -p leasehold-cli >/dev/null
B=${LEASEHOLD_BIN:-$PWD/target/release/leasehold}
D=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}" "${NODE_PID:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
PK=$($B vendor keygen --out "$D/key.pem" --json | sed -n 's/.*"public_key": *"\([^"]*\)".*/\1/p')
BENCH_PASSWORD=bench-password-$$
echo "$BENCH_PASSWORD" | $B node create-admin --db "sqlite://$D/node.db" --name bench --password-stdin --reason benchmark >/dev/null
$B node serve --db "sqlite://$D/node.db" --listen 127.0.0.1:0 --signing-key "$D/key.pem" >"$D/node.out" 2>"$D/node.log" &
NODE_PID=$!
until grep -q listening "$D/node.out"; do sleep 0.1; done
NODE=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$D/node.out")
LEASEHOLD_VENDOR_TOKEN=$(echo "$BENCH_PASSWORD" | $B vendor --node "$NODE" login --name bench --password-stdin --print-token)
export LEASEHOLD_NODE=$NODE LEASEHOLD_VENDOR_TOKEN
