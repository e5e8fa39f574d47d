#!/usr/bin/env bash
# Runs the side-by-side benchmark (Signalbox relay, nats-server plain and TLS, a bare quinn
# forwarder) and writes bench/results/<date>.json and .md.
#   scripts/bench.sh            the full matrix and the cluster rows (about 40 minutes on 2 cores)
#   scripts/bench.sh --quick    the headline rows (under two minutes)
# Servers run pinned to core 0, the load generator to core 1. Extra flags go to
# signalbox-bench (see `cargo run --profile profiling -p signalbox-bench -- --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
    echo "installing nats-server (Debian package)…"
    apt-get update -qq && apt-get install -y -qq nats-server
fi
command -v taskset >/dev/null || { apt-get update -qq && apt-get install -y -qq util-linux; }

cargo build --profile profiling -p signalbox-bench --quiet
cores=$(nproc)
pin=(taskset -c 1)
server=(--server-core 0)
if [ "$cores" -lt 2 ]; then
    pin=()
    server=(--no-pin)
fi
"${pin[@]}" target/profiling/signalbox-bench "${server[@]}" --out bench/results "$@"
