#!/usr/bin/env bash
# The main job on embedded defaults: SQLite in ./workspace, a Label Studio server the tool starts itself,
# the sample set in ../shared/data/cxr.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
export ANNOTATOR_SAMPLE_DATA=${ANNOTATOR_SAMPLE_DATA:-$(cd .. && pwd)/shared/data/cxr}
exec .venv/bin/annotator --workspace "${ANNOTATOR_WORKSPACE:-workspace}" demo "$@"
