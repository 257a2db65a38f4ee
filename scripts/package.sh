#!/usr/bin/env bash
# Builds the Debian package `leasehold` with cargo-deb (metadata: crates/cli/Cargo.toml,
# [package.metadata.deb]): the binary, both systemd units (deploy/systemd), the default
# settings (deploy/etc, conffiles under /etc/leasehold), the maintainer scripts
# (deploy/debian), and the man pages and shell completions the binary generates of itself.
# Prints the .deb's path as its last line.
#
#   bash scripts/package.sh           # from a release build: the package to ship
#   bash scripts/package.sh --debug   # from the debug build (stripped, lighter compression),
#                                     # as CI's package test does: no second build
#                                     # of the workspace
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
profile_dir=release
options=()
case "${1:-}" in
  "") ;;
  --debug) profile=dev profile_dir=debug options=(--strip --fast) ;;
  *) echo "usage: bash scripts/package.sh [--debug]" >&2; exit 2 ;;
esac
if ! cargo deb --version >/dev/null 2>&1; then
  echo "cargo-deb is not installed: cargo install --locked cargo-deb" >&2
  exit 1
fi

cargo build --locked --profile "$profile" -p leasehold-cli >&2
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target_dir/$profile_dir/leasehold
# cargo-deb reads these through the `target/release/package/...` assets, which it maps to
# the profile's directory.
assets=$target_dir/$profile_dir/package
rm -rf "$assets"
mkdir -p "$assets/completions"
"$bin" man --out "$assets/man" >/dev/null
# Debian policy wants man pages compressed; cargo-deb compresses only files it did not
# find under target/.
gzip -9n "$assets"/man/*.1
"$bin" completions bash >"$assets/completions/leasehold.bash"
"$bin" completions zsh >"$assets/completions/_leasehold"
"$bin" completions fish >"$assets/completions/leasehold.fish"

cargo deb -p leasehold-cli --no-build --profile "$profile" "${options[@]}"
