#!/usr/bin/env bash
# Regenerates docs/mlflow-ui.png: the whole contract-test run (the UI must show what a data
# scientist logged, so the picture comes from the same session), with the screenshot written into docs/.
set -euo pipefail
cd "$(dirname "$0")/../.."
MLFLOW_UI_SCREENSHOT=docs/mlflow-ui.png exec bash scripts/integration/run.sh "$@"
