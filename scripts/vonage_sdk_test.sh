#!/usr/bin/env bash
# Runs tests/vonage/test_opentok_sdk.py: the official OpenTok Python SDK (from PyPI, in a
# virtualenv kept under target/) against the `signalbox` binary.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/opentok-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -c "import opentok" 2>/dev/null || "$venv/bin/pip" install --quiet "opentok>=3.15,<4"
cargo build --quiet --bin signalbox
"$venv/bin/python" tests/vonage/test_opentok_sdk.py target/debug/signalbox
