#!/usr/bin/env bash
# The test command: set-up (idempotent), then the whole suite, real servers included (Label Studio,
# the ML backend, PostgreSQL, headless Chromium), on the sample set in ../shared/data/cxr.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_system.sh  # Chromium and PostgreSQL: the tests' servers (the demo needs neither)
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 REQUIRE_POSTGRES=1
export ANNOTATOR_SAMPLE_DATA=${ANNOTATOR_SAMPLE_DATA:-$(cd .. && pwd)/shared/data/cxr}
exec .venv/bin/python -m pytest -q "$@"
