#!/usr/bin/env bash
# Builds the .deb (scripts/package.sh) and checks it as a distribution would: its control
# data, every file where desktops, shells, man and systemd look, the desktop entry and the
# AppStream metadata validated, and the packaged binary run from a scratch root.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/package.sh
deb=$(ls -t target/debian/signalbox_*.deb | head -1)
echo "checking $deb"
fail() { echo "package check failed: $*" >&2; exit 1; }

info=$(dpkg-deb --info "$deb")
for field in "Package: signalbox" "Section: net" "Depends: " "libxkbcommon-x11-0" "Maintainer: "; do
    grep -q "$field" <<<"$info" || fail "control lacks '$field'"
done
# Installing creates no user and starts nothing: no maintainer scripts at all.
for script in preinst postinst prerm postrm; do
    ! grep -qw "$script" <<<"$info" || fail "the package has a $script script"
done

contents=$(dpkg-deb --contents "$deb" | awk '{print $NF}')
for path in \
    ./usr/bin/signalbox \
    ./usr/share/applications/signalbox.desktop \
    ./usr/share/metainfo/io.github.signalbox.signalbox.metainfo.xml \
    ./usr/share/icons/hicolor/48x48/apps/signalbox.png \
    ./usr/share/icons/hicolor/128x128/apps/signalbox.png \
    ./usr/share/icons/hicolor/256x256/apps/signalbox.png \
    ./usr/share/icons/hicolor/scalable/apps/signalbox.svg \
    ./usr/lib/systemd/system/signalbox-relay.service \
    ./usr/lib/systemd/user/signalbox-host.service \
    ./etc/signalbox/relay.toml \
    ./usr/share/doc/signalbox/examples/relay.toml \
    ./usr/share/man/man1/signalbox.1.gz \
    ./usr/share/man/man1/signalbox-relay.1.gz \
    ./usr/share/man/man1/signalbox-listen.1.gz \
    ./usr/share/man/man1/signalbox-send.1.gz \
    ./usr/share/bash-completion/completions/signalbox \
    ./usr/share/zsh/vendor-completions/_signalbox \
    ./usr/share/fish/vendor_completions.d/signalbox.fish; do
    grep -qxF "$path" <<<"$contents" || fail "missing $path"
done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
desktop-file-validate "$root/usr/share/applications/signalbox.desktop"
appstreamcli validate --no-net "$root/usr/share/metainfo/io.github.signalbox.signalbox.metainfo.xml"
for size in 48 128 256; do
    dims=$(python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(24); print("%dx%d" % struct.unpack(">II", d[16:24]))' \
        "$root/usr/share/icons/hicolor/${size}x${size}/apps/signalbox.png")
    [ "$dims" = "${size}x${size}" ] || fail "the ${size}px icon is $dims"
done
# The shipped binary is stripped, runs, and says what it is.
file_info=$(file -b "$root/usr/bin/signalbox" 2>/dev/null || true)
[ -z "$file_info" ] || grep -q "stripped" <<<"$file_info" || fail "binary: $file_info"
! grep -q "not stripped" <<<"$file_info" || fail "the binary is not stripped"
version=$("$root/usr/bin/signalbox" --version)
grep -Eq '^signalbox [0-9.]+ \(protocol 1, commit ([0-9a-f]{12}|unknown)\)$' <<<"$version" \
    || fail "--version printed '$version'"
"$root/usr/bin/signalbox" relay --help | grep -q -- "--listen" || fail "relay --help"
man -l "$root/usr/share/man/man1/signalbox-relay.1.gz" >/dev/null 2>&1 \
    || zcat "$root/usr/share/man/man1/signalbox-relay.1.gz" | grep -q '^\.TH' \
    || fail "the relay's man page"
# The bash completion loads and completes the subcommands.
bash -c "source '$root/usr/share/bash-completion/completions/signalbox' && complete -p signalbox" \
    >/dev/null || fail "the bash completion does not load"
echo "package ok: $deb ($(du -h "$deb" | cut -f1); binary $(du -h "$root/usr/bin/signalbox" | cut -f1)); $version"
