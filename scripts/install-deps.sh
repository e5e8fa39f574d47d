#!/usr/bin/env bash
# Installs what the tests need beyond Rust, when missing (Debian/Ubuntu packages):
# nats-server (the cluster tests and the benchmark compare against it) and Python's venv (the
# Vonage drop-in test runs the official OpenTok SDK from PyPI).
set -euo pipefail

missing=()
if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
    missing+=(nats-server)
fi
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    missing+=(python3 python3-venv)
fi
if ((${#missing[@]})); then
    echo "installing ${missing[*]}…"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
fi
