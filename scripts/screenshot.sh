#!/usr/bin/env bash
# Takes assets/screenshot.png from the real app in a live demo session, under Xvfb:
# `signalbox --demo` hosts a relay with scripted participants and joins it; the script then
# drives the control pad with the keyboard and captures the window.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in Xvfb xwd xwdtopnm pnmtopng xdotool; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    apt-get update -qq
    apt-get install -y -qq xvfb x11-apps netpbm xdotool libxkbcommon-x11-0 libgl1-mesa-dri libglx-mesa0
fi

cargo build --release --quiet
export SIGNALBOX_HOME
SIGNALBOX_HOME=$(mktemp -d)
display=:97
Xvfb "$display" -screen 0 1180x720x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
trap 'kill "$app" "$xvfb" 2>/dev/null || true; rm -rf "$SIGNALBOX_HOME"' EXIT
sleep 1
DISPLAY=$display target/release/signalbox --demo >/dev/null 2>&1 &
app=$!
sleep 6
export DISPLAY=$display
xdotool windowfocus --sync "$(xdotool search --name Signalbox | head -1)"
for key in Up Right Up; do
    xdotool key "$key"
    sleep 0.7
done
xdotool mousemove 1175 715
sleep 1.5
xwd -root -silent | xwdtopnm 2>/dev/null | pnmtopng > assets/screenshot.png
echo "wrote assets/screenshot.png"
