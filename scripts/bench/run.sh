#!/usr/bin/env bash
# `npm run bench` (the tracking server, bench.ts) and `npm run bench:serving` (a served model,
# serving.ts; first argument --serving): the benchmarks of docs/benchmarks.md; other arguments go to
# the script (`--help`). Needs the contract tests' environment (scripts/integration/setup.sh, run
# here when a venv is missing).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
# shellcheck source=../../.ci/node.sh
source .ci/node.sh
export BENCH_DIR="${BENCH_DIR:-$root/.cache/bench}"

# bench.ts stops its services however it ends; this covers a SIGKILL of node itself. Same trap as
# scripts/integration/run.sh, on this run's pid list.
cleanup() {
    [ -s "$BENCH_DIR/pids" ] || return 0
    while read -r pid; do kill -KILL -- "-$pid" 2> /dev/null || true; done < "$BENCH_DIR/pids"
}
trap cleanup EXIT

[ -x .cache/integration/venv-mlflow/bin/python ] && [ -x .cache/integration/venv-moto/bin/python ] || bash scripts/integration/setup.sh
started=$SECONDS
script=scripts/bench/bench.ts
if [ "${1:-}" = "--serving" ]; then
    script=scripts/bench/serving.ts
    shift
    export BENCH_DIR="$BENCH_DIR/serving"
fi
npx ts-node --transpile-only "$script" "$@"
printf '[bench] took %ss\n' "$((SECONDS - started))"
