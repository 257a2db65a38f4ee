#!/usr/bin/env bash
# The Debian package, installed for real (as root; `.ci/run` runs it after the tests):
# builds it from the debug build (scripts/package.sh --debug), installs it with dpkg -i,
# checks that the files land where the units expect them, that the `leasehold` user exists
# and nothing was started, runs `systemd-analyze verify` on the installed units, then runs
# the installed binary as the `leasehold` user the way each unit does (its ExecStart,
# EnvironmentFile and WorkingDirectory) until it answers /v1/health, stops it with SIGTERM,
# reinstalls over it (settings kept), removes and purges it and checks what is left.
# Needs: dpkg, adduser, systemd (systemd-analyze), man-db, curl, cargo-deb.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "package test: $*" >&2
  exit 1
}
[ "$(id -u)" = 0 ] || fail "installs a package: run it as root"
package_status() { dpkg-query -W -f='${Status}' leasehold 2>/dev/null || true; }
if [ -n "$(package_status)" ] && [ "$(package_status)" != "unknown ok not-installed" ]; then
  fail "the leasehold package is installed on this machine already; dpkg --purge leasehold first"
fi
for tool in dpkg-deb systemd-analyze man curl setpriv adduser; do
  command -v "$tool" >/dev/null || fail "$tool is missing (.ci/run installs it)"
done

work=$(mktemp -d)
# What this test adds to the machine beyond the package, removed at the end.
user_existed=$(getent passwd leasehold >/dev/null && echo yes || echo no)
state_existed=$([ -e /var/lib/leasehold ] && echo yes || echo no)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  case "$(package_status)" in "" | *not-installed) ;; *) dpkg --purge leasehold >/dev/null 2>&1 || true ;; esac
  rm -f /etc/leasehold/vendor-key.pem
  rmdir /etc/leasehold 2>/dev/null || true
  [ "$state_existed" = yes ] || rm -rf /var/lib/leasehold
  [ "$user_existed" = yes ] || deluser --system leasehold >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== package test: build"
started=$SECONDS
deb=$(bash scripts/package.sh --debug | tail -n 1)
[ -f "$deb" ] || fail "scripts/package.sh printed no package path (got: $deb)"
echo "built $deb ($(du -h "$deb" | cut -f1)) in $((SECONDS - started)) s"
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)
for f in /etc/leasehold/server.toml /etc/leasehold/server.env /etc/leasehold/node.env; do
  grep -qx "$f" <<<"$conffiles" || fail "$f is not a conffile: $conffiles"
done

echo "== package test: dpkg -i"
dpkg -i "$deb"
version=$(dpkg-deb -f "$deb" Version)

unit_dir=/usr/lib/systemd/system
[ -f "$unit_dir/leasehold-server.service" ] || unit_dir=/lib/systemd/system
check_file() { [ -e "$1" ] || fail "$1 is missing after dpkg -i"; }
for f in /usr/bin/leasehold "$unit_dir/leasehold-server.service" "$unit_dir/leasehold-node.service" \
  /etc/leasehold/server.toml /etc/leasehold/server.env /etc/leasehold/node.env \
  /usr/share/man/man1/leasehold.1.gz /usr/share/man/man1/leasehold-server-run.1.gz \
  /usr/share/man/man1/leasehold-node-serve.1.gz \
  /usr/share/bash-completion/completions/leasehold /usr/share/zsh/vendor-completions/_leasehold \
  /usr/share/fish/vendor_completions.d/leasehold.fish /usr/share/doc/leasehold/copyright; do
  check_file "$f"
done
[ "$(command -v leasehold)" = /usr/bin/leasehold ] || fail "leasehold on PATH is $(command -v leasehold)"
# The Debian version is the crate version with a revision.
[ "$(leasehold --version)" = "leasehold ${version%-*}" ] || fail "leasehold --version: $(leasehold --version)"
IFS=: read -r _ _ _ _ _ home shell <<<"$(getent passwd leasehold)" || fail "no leasehold user"
[ "$home:$shell" = "/var/lib/leasehold:/usr/sbin/nologin" ] || fail "leasehold user: home $home, shell $shell"
expect_stat() {
  [ "$(stat -c '%U:%G %a' "$1")" = "$2" ] || fail "$1 is $(stat -c '%U:%G %a' "$1"), expected $2"
}
expect_stat /etc/leasehold "root:leasehold 770"
expect_stat /etc/leasehold/server.toml "root:leasehold 640"
expect_stat /etc/leasehold/server.env "root:leasehold 640"
expect_stat /etc/leasehold/node.env "root:leasehold 640"
expect_stat /var/lib/leasehold/server "leasehold:leasehold 750"
expect_stat /var/lib/leasehold/node "leasehold:leasehold 750"
# Nothing enabled, nothing running.
if ls /etc/systemd/system/*.wants/leasehold-* >/dev/null 2>&1; then
  fail "a unit was enabled at installation"
fi
if [ -n "$(find /proc -maxdepth 1 -regex '/proc/[0-9]+' -user leasehold)" ]; then
  fail "a process of the leasehold user runs after dpkg -i"
fi

echo "== package test: systemd-analyze verify (installed units, their binary and man pages)"
analyzed=$(systemd-analyze verify "$unit_dir/leasehold-server.service" "$unit_dir/leasehold-node.service" 2>&1) ||
  fail "systemd-analyze verify: $analyzed"
if grep -q leasehold <<<"$analyzed"; then fail "systemd-analyze verify: $analyzed"; fi

# Runs what the unit runs, as the unit would: its user, no new privileges, a clean
# environment from its EnvironmentFile, its working directory and umask. Sets last_pid.
unit_value() { sed -n "s/^$2=//p" "$unit_dir/$1"; }
start_as_unit() {
  local unit=$1 out=$2 env_file exec_start dir
  env_file=$(unit_value "$unit" EnvironmentFile)
  env_file=${env_file#-}
  exec_start=$(unit_value "$unit" ExecStart)
  dir=$(unit_value "$unit" WorkingDirectory)
  [ "$(unit_value "$unit" User)" = leasehold ] || fail "$unit does not run as leasehold"
  mapfile -t env_lines < <(grep -v '^[[:space:]]*\(#\|$\)' "$env_file")
  (
    cd "$dir"
    umask "$(unit_value "$unit" UMask)"
    # shellcheck disable=SC2086 # ExecStart is a plain word list
    exec setpriv --reuid=leasehold --regid=leasehold --init-groups --no-new-privs \
      env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${env_lines[@]}" $exec_start
  ) >"$out" 2>"$out.log" &
  last_pid=$!
  pids+=("$last_pid")
}
wait_for_line() {
  local out=$1 prefix=$2
  for _ in $(seq 1 300); do
    if grep -q "^$prefix" "$out"; then return 0; fi
    sleep 0.1
  done
  fail "no '$prefix' line within 30 s: $(cat "$out" "$out.log")"
}
stop() {
  local pid=$1 what=$2
  kill -TERM "$pid"
  wait "$pid" || fail "$what did not stop cleanly on SIGTERM (exit status $?)"
  local running=()
  for p in "${pids[@]}"; do [ "$p" = "$pid" ] || running+=("$p"); done
  pids=("${running[@]}")
}
health() {
  local answer
  answer=$(curl -fsS "$1/v1/health") || fail "GET $1/v1/health failed"
  echo "GET $1/v1/health: $answer"
}

echo "== package test: the server, as leasehold-server.service runs it"
# The dashboard saves server.toml as a new file renamed over the old one: the service's user
# can do that in /etc/leasehold.
runuser -u leasehold -- sh -c 'cp /etc/leasehold/server.toml /etc/leasehold/.server.toml.probe &&
  mv /etc/leasehold/.server.toml.probe /etc/leasehold/server.toml' ||
  fail "the leasehold user cannot rewrite /etc/leasehold/server.toml"
# What an operator sets: the vendor's public key; loopback ports for this test.
public_key=$(leasehold vendor keygen --json --out "$work/vendor.pem" | sed -n 's/.*"public_key": *"\([^"]*\)".*/\1/p')
[ -n "$public_key" ] || fail "vendor keygen printed no public key"
cat >>/etc/leasehold/server.env <<EOF
LEASEHOLD_SERVER_VENDOR_KEY=$public_key
LEASEHOLD_SERVER_LISTEN=127.0.0.1:0
LEASEHOLD_SERVER_ADMIN_LISTEN=127.0.0.1:0
EOF
start_as_unit leasehold-server.service "$work/server.out"
server_pid=$last_pid
wait_for_line "$work/server.out" "leasehold server listening on "
grep -q '^dashboard password: ' "$work/server.out" || fail "the first start printed no dashboard password"
line=$(grep '^leasehold server listening on ' "$work/server.out")
lease_url=$(sed -n 's/^leasehold server listening on \([^ ]*\) .*/\1/p' <<<"$line")
admin_url=$(sed -n 's/.*(admin \([^)]*\)).*/\1/p' <<<"$line")
health "$lease_url"
health "$admin_url"
leasehold server status --admin "$admin_url" --token-file /var/lib/leasehold/server/admin-token >/dev/null ||
  fail "server status with the generated token file failed"
[ "$(stat -c %U "/proc/$server_pid")" = leasehold ] || fail "the server does not run as leasehold"
for f in admin-token client-key dashboard-password server.db; do
  expect_stat "/var/lib/leasehold/server/$f" "leasehold:leasehold 600"
done
stop "$server_pid" "the server"

echo "== package test: the node, as leasehold-node.service runs it"
# The documented way to make the signing key: as the leasehold user, into /etc/leasehold.
runuser -u leasehold -- leasehold vendor keygen --out /etc/leasehold/vendor-key.pem >/dev/null
expect_stat /etc/leasehold/vendor-key.pem "leasehold:leasehold 600"
sed -i 's/^LEASEHOLD_NODE_LISTEN=.*/LEASEHOLD_NODE_LISTEN=127.0.0.1:0/' /etc/leasehold/node.env
echo "LEASEHOLD_ADMIN_TOKEN=package-test-token" >>/etc/leasehold/node.env
start_as_unit leasehold-node.service "$work/node.out"
node_pid=$last_pid
wait_for_line "$work/node.out" "leasehold node listening on "
node_url=$(sed -n 's/^leasehold node listening on \([^ ]*\).*/\1/p' "$work/node.out")
health "$node_url"
check_file /var/lib/leasehold/node/leasehold-node.db
# The first admin through the bootstrap token, then signed in with its own token.
echo "package-test-password" | LEASEHOLD_VENDOR_TOKEN=package-test-token \
  leasehold vendor --node "$node_url" account add --name pkg-admin --role admin --password-stdin >/dev/null ||
  fail "the bootstrap token did not create the first admin"
vendor_token=$(echo "package-test-password" | leasehold vendor --node "$node_url" login --name pkg-admin --password-stdin --print-token) ||
  fail "the first admin cannot sign in"
LEASEHOLD_VENDOR_TOKEN=$vendor_token leasehold vendor --node "$node_url" installation create --name "package test" >/dev/null ||
  fail "the admin's token does not work"
if LEASEHOLD_VENDOR_TOKEN=package-test-token leasehold vendor --node "$node_url" installation list >/dev/null 2>&1; then
  fail "the bootstrap token still works beyond the first admin"
fi
stop "$node_pid" "the node"
# Recovery with every admin password lost: an admin made on the database by the unit's user.
echo "package-recovery-pw" | runuser -u leasehold -- leasehold node create-admin \
  --db sqlite:///var/lib/leasehold/node/leasehold-node.db --name recovery --password-stdin >/dev/null ||
  fail "node create-admin failed on the unit's database"

echo "== package test: dpkg -i again (an upgrade keeps the settings)"
dpkg -i "$deb" >/dev/null
grep -q "^LEASEHOLD_SERVER_VENDOR_KEY=$public_key" /etc/leasehold/server.env || fail "reinstalling replaced server.env"
check_file /var/lib/leasehold/server/server.db

echo "== package test: dpkg -r, then --purge"
dpkg -r leasehold >/dev/null
for f in /usr/bin/leasehold "$unit_dir/leasehold-server.service" "$unit_dir/leasehold-node.service" \
  /usr/share/man/man1/leasehold.1.gz; do
  [ ! -e "$f" ] || fail "$f is still there after dpkg -r"
done
check_file /etc/leasehold/server.toml # conffiles stay until purge
dpkg --purge leasehold >/dev/null
for f in /etc/leasehold/server.toml /etc/leasehold/server.env /etc/leasehold/node.env; do
  [ ! -e "$f" ] || fail "$f is still there after dpkg --purge"
done
if dpkg-statoverride --list '/etc/leasehold*' >/dev/null; then fail "statoverrides left after purge"; fi
# Never deleted by the package: the signing key, the data, the user.
check_file /etc/leasehold/vendor-key.pem
check_file /var/lib/leasehold/server/server.db
getent passwd leasehold >/dev/null || fail "purge removed the leasehold user"
echo "package test: passed ($((SECONDS - started)) s)"
