#!/usr/bin/env bash
# Builds the Debian package with cargo-deb: the stripped release binary, then its man pages
# and shell completions (generated from the command-line definition), then the .deb
# (target/debian/signalbox_<version>-1_<arch>.deb). Installs cargo-deb when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb…"
    cargo install --locked --quiet cargo-deb
fi

cargo build --release --locked --quiet --bin signalbox
bin=target/release/signalbox
out=target/package
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bin" manpages "$out/man"
gzip -9n "$out"/man/*.1
"$bin" completions bash >"$out/completions/signalbox.bash"
"$bin" completions zsh >"$out/completions/_signalbox"
"$bin" completions fish >"$out/completions/signalbox.fish"

cargo deb --no-build --locked "$@"
