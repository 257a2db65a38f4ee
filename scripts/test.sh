#!/usr/bin/env bash
# The project's test command (README): every Rust test of every crate (nextest when it is
# installed, cargo test otherwise), then the dashboard's browser test in headless Chromium.
# `.ci/run` installs Chromium and the browser test's npm package first; elsewhere the
# browser test runs when they are present and is skipped with a notice when not.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

cargo build -p leasehold-cli
if [ -x /usr/bin/chromium ] && [ -d tests/browser/node_modules/playwright-core ]; then
  echo "== browser test (headless Chromium); screenshots in artifacts/browser/"
  target_dir=${CARGO_TARGET_DIR:-$PWD/target}
  (cd tests/browser && LEASEHOLD_BIN="$target_dir/debug/leasehold" node --test --test-concurrency=1 dashboard.test.mjs console.test.mjs)
elif [ "${CI:-}" = "true" ]; then
  echo "browser test prerequisites missing (chromium, tests/browser/node_modules)" >&2
  exit 1
else
  echo "== browser test skipped: run 'apt-get install -y chromium && npm ci --prefix tests/browser' to enable it"
fi
