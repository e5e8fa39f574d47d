#!/usr/bin/env bash
# What CI runs: formatting, lints (warnings are errors), the tests, and the docs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

echo "== browsers: the JavaScript SDK and the web page in headless Chromium"
scripts/browser_test.sh

echo "== the official OpenTok Python SDK against a relay"
scripts/vonage_sdk_test.sh

echo "== the Debian package"
scripts/check-package.sh

echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

echo "all checks passed"
