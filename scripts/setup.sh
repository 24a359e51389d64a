#!/usr/bin/env bash
# Set up a development environment on a fresh machine (Python 3.11, Debian, no GPU):
#   - Debian packages that napari needs to render under Xvfb (only when missing; needs root/sudo)
#   - .venv with the project installed editable, dev extras, versions pinned by
#     requirements/constraints.txt (re-installed only when pyproject.toml or the pins change)
# Idempotent: a second run takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(xvfb xauth libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libdbus-1-3
  libfontconfig1 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
  libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0)

missing=()
if command -v dpkg >/dev/null 2>&1; then
  for p in "${DEB_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    :
  else
    echo "setup: WARNING: could not install ${missing[*]}; GUI tests that render will be skipped" >&2
  fi
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.napari-hrs-installed
want=$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing napari-hrs and pinned dependencies into .venv (first time: several minutes)"
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  .venv/bin/python -m pip install -q -c requirements/constraints.txt -e ".[testing]"
  echo "$want" > "$stamp"
fi
