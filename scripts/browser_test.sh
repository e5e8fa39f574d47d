#!/usr/bin/env bash
# The browser SDK and the web client in headless Chromium against a real relay, over
# WebTransport and over WebSocket, with `signalbox listen`/`send` on the other side
# (tests/browser/test.mjs). SCREENSHOTS=DIR keeps the web page's screenshots.
set -euo pipefail
if [ -n "${SCREENSHOTS:-}" ]; then SCREENSHOTS="$(realpath "$SCREENSHOTS")"; export SCREENSHOTS; fi
cd "$(dirname "$0")/.."

cargo build --locked --quiet -p signalbox
export SIGNALBOX_BIN="$PWD/target/debug/signalbox"
export CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser)}"
cd tests/browser
npm ci --no-audit --no-fund --silent
node test.mjs
