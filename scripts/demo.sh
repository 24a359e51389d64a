#!/usr/bin/env bash
# The main job: set up (scripts/setup.sh), then run the napari-hrs demo on the bundled synthetic
# sample acquisition and the bundled model: open napari, detect round spermatids, quantify
# PRM1 / PNA, show the result. Without a display (a server, CI) it runs under Xvfb and saves a
# screenshot to out/demo.png instead of opening a window. Extra arguments go to `napari-hrs demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mkdir -p out
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  exec .venv/bin/napari-hrs demo "$@"
elif command -v xvfb-run >/dev/null 2>&1; then
  echo "demo: no display; running under Xvfb, screenshot -> out/demo.png"
  exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/napari-hrs demo --screenshot out/demo.png --exit "$@"
else
  echo "demo: no display and no xvfb-run; running headless (no screenshot)"
  exec .venv/bin/napari-hrs demo --headless "$@"
fi
