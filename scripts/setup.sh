#!/usr/bin/env bash
# One-time (idempotent) set-up of the Python side: the virtual environment with the pinned packages of
# requirements.lock (the package's extras ml, server, postgres and dev included), then the package itself.
# Re-running is fast: it skips what is already there. The Debian packages only the tests need (Chromium,
# PostgreSQL) are scripts/install_system.sh's job: scripts/test.sh runs it, the demo does not.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$candidate; break
    fi
  done
fi
[[ -n "$PY" ]] || { echo "error: Python 3.11 is needed (torch 2.14.1 wheels for it lie on this machine)"; exit 1; }

stamp=.venv/.installed-$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [[ ! -f $stamp ]]; then
  # the pinned torch is a 6 GB build: a full disk would otherwise surface as an OSError deep in pip
  free_gb=$(df -Pk . "${TMPDIR:-/tmp}" | awk 'NR > 1 {print int($4 / 1048576)}' | sort -n | head -1)
  if (( free_gb < 12 )); then
    echo "error: installing the environment needs about 12 GB free disk (here and in ${TMPDIR:-/tmp}); ${free_gb} GB free"
    exit 1
  fi
  [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
  echo "installing pinned Python packages into .venv (a few minutes the first time)"
  .venv/bin/pip install -q -r requirements.lock 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import torch, torchvision, segmentation_models_pytorch, label_studio, annotator" \
    || { echo "error: the environment does not import; see the pip output above"; exit 1; }
  rm -f .venv/.installed-*
  touch "$stamp"
fi
