#!/usr/bin/env bash
# Regenerates the hashed lock files of the contract-test virtual environments from the *.in files.
# Run it after changing MLFLOW_VERSION or MLFLOW_PREVIOUS_RELEASE in components/versions.ts, or any pin in
# requirements/*.in.
# Not part of CI: CI installs exactly what the committed lock files say.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
req="$here/requirements"
UV_VERSION="0.13.9"

version="$(sed -n 's/^export const MLFLOW_VERSION = "\([^"]*\)";$/\1/p' "$root/components/versions.ts")"
[ -n "$version" ] || { echo "lock.sh: MLFLOW_VERSION not found in components/versions.ts" >&2; exit 1; }
sed -i "s/^mlflow\[auth\]==.*/mlflow[auth]==$version/" "$req/mlflow.in"
previous="$(sed -n 's/^export const MLFLOW_PREVIOUS_RELEASE = "\([^"]*\)";$/\1/p' "$root/components/versions.ts")"
[ -n "$previous" ] || { echo "lock.sh: MLFLOW_PREVIOUS_RELEASE not found in components/versions.ts" >&2; exit 1; }
sed -i "s/^mlflow\[auth\]==.*/mlflow[auth]==$previous/" "$req/mlflow-previous.in"

tools="$root/.cache/integration/lock-tools"
if [ ! -x "$tools/bin/uv" ] || [ "$("$tools/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet "uv==$UV_VERSION"
fi
# Names of the locks to regenerate (default: all): `lock.sh mlflow-previous` leaves the others as they are.
names=("$@")
[ "${#names[@]}" -gt 0 ] || names=(mlflow mlflow-previous moto)
for name in "${names[@]}"; do
    "$tools/bin/uv" pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
        --generate-hashes --no-header --index-url https://pypi.org/simple \
        "$req/$name.in" -o "$req/$name.txt"
    echo "locked $req/$name.txt ($(grep -c '^[a-z0-9]' "$req/$name.txt") packages)"
done
