#!/usr/bin/env bash
# The project's test command (README): every test of every crate, with nextest when it is
# installed and cargo test otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
