#!/usr/bin/env bash
# Slow connections against a license server's lease listener (issue 12): opens N
# connections that send half a request line and nothing more, waits, and counts how many
# the server still holds open; then checks that a real lease request is still answered.
# Usage: bash scripts/bench-slow-connections.sh [N] [WAIT_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3000}
WAIT=${2:-15}
B=${LEASEHOLD_BIN:-$PWD/target/debug/leasehold}
[ -x "$B" ] || cargo build -p leasehold-cli >/dev/null
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
D=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$D"' EXIT
"$B" server run --data-dir "$D/server" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --admin-token bench --vendor-key "$("$B" vendor keygen --out "$D/key.pem" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["public_key"])')" \
  >"$D/server.out" 2>"$D/server.log" &
until grep -q listening "$D/server.out" 2>/dev/null; do sleep 0.1; done
LEASE=$(sed -n 's/.*listening on http:\/\/\([^ ]*\) .*/\1/p' "$D/server.out")
PID=$(jobs -p | tail -1)
python3 - "$LEASE" "$N" "$WAIT" "$D/server/client-key" "$PID" <<'PY'
import os, socket, sys, time, json, urllib.request
host, port = sys.argv[1].rsplit(":", 1)
n, wait, key_file, pid = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
socks, refused = [], 0
for _ in range(n):
    s = socket.socket()
    try:
        s.connect((host, int(port)))
        s.sendall(b"POST /v1/lease HT")
        socks.append(s)
    except OSError:
        refused += 1
        s.close()
print(f"opened {len(socks)} slow connections ({refused} refused at connect)")
fds = lambda: len(os.listdir(f"/proc/{pid}/fd"))
print(f"server open files after opening: {fds()}")
time.sleep(wait)
still = 0
for s in socks:
    s.setblocking(False)
    try:
        data = s.recv(1, socket.MSG_PEEK)
        still += 0 if data == b"" else 1  # an answer waiting (408) counts as open until read
    except BlockingIOError:
        still += 1
    except OSError:
        pass
print(f"after {wait:.0f} s: {still} of {len(socks)} still open; server open files: {fds()}")
key = open(key_file).readline().strip() if os.path.exists(key_file) else ""
req = urllib.request.Request(f"http://{host}:{port}/v1/health")
t = time.time()
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(f"a new request is answered: HTTP {r.status} in {1000*(time.time()-t):.1f} ms")
except Exception as e:
    print(f"a new request failed: {e}")
PY
