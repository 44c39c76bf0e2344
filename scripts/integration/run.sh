#!/usr/bin/env bash
# The contract tests, setup included: `npm run test:integration`. Extra arguments go to mocha
# (e.g. --grep). Every service the tests start is stopped when they end; the trap below also
# covers an interrupted run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
# shellcheck source=../../.ci/node.sh
source .ci/node.sh
started=$SECONDS

cleanup() {
    local pids="$root/.cache/integration/run/pids"
    if [ -s "$pids" ]; then
        while read -r pid; do
            kill -KILL -- "-$pid" 2> /dev/null || true
        done < "$pids"
    fi
}
trap cleanup EXIT

printf '[integration] setup\n'
bash "$here/setup.sh"
printf '[integration] setup took %ss\n' "$((SECONDS - started))"

t=$SECONDS
npx mocha --config test/integration/mocharc.json "$@"
printf '[integration] tests took %ss; total %ss\n' "$((SECONDS - t))" "$((SECONDS - started))"
