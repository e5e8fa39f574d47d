#!/usr/bin/env bash
# Installs what the tests need beyond Rust, when missing (Debian/Ubuntu packages):
# nats-server (the cluster tests and the benchmark compare against it), Python's venv (the
# Vonage drop-in test runs the official OpenTok SDK from PyPI), Chromium and Node (the
# browser tests), and the tools that check the .deb (dpkg-deb, desktop-file-validate,
# appstreamcli, file).
set -euo pipefail

missing=()
if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
    missing+=(nats-server)
fi
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    missing+=(python3 python3-venv)
fi
# Headless Chromium and Node drive the browser tests (scripts/browser_test.sh).
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v desktop-file-validate >/dev/null || missing+=(desktop-file-utils)
command -v appstreamcli >/dev/null || missing+=(appstream)
command -v dpkg-deb >/dev/null || missing+=(dpkg)
command -v file >/dev/null || missing+=(file)
if ((${#missing[@]})); then
    echo "installing ${missing[*]}…"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
fi
