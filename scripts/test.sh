#!/usr/bin/env bash
# Run the test suite on a fresh machine: sets itself up (scripts/setup.sh), then runs pytest
# under a virtual X server so the napari tests can render. Extra arguments go to pytest,
# e.g. `scripts/test.sh -m slow` or `scripts/test.sh tests/test_io_open.py`.
# The default run excludes tests marked slow; set HRS_TEST_ALL=1 to run everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export MPLBACKEND=Agg
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  if [ "${HRS_TEST_ALL:-0}" = 1 ]; then args=(tests); else args=(tests -m "not slow"); fi
fi
if command -v xvfb-run >/dev/null 2>&1 && [ -z "${QT_QPA_PLATFORM:-}" ]; then
  # a real (virtual) screen: napari renders with Mesa's OpenGL
  exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m pytest "${args[@]}"
else
  export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
  exec .venv/bin/python -m pytest "${args[@]}"
fi
