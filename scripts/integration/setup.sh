#!/usr/bin/env bash
# Prepares everything the contract tests run, idempotently:
#   - Debian packages: PostgreSQL's server binaries, bubblewrap (the container sandbox), Chromium;
#   - etcd and kube-apiserver, built from the Go module proxy once per machine (kube-apiserver.sh);
#   - three Python 3.11 virtual environments under .cache/integration/, installed from the hashed lock
#     files in requirements/: one mirrors the MLflow image, one the previous MLflow release's (the
#     upgrade test starts from it), one runs the moto emulator.
# A venv is rebuilt when its lock file changes. Fails when the MLflow pin of the lock differs from
# MLFLOW_VERSION in components/versions.ts, or when the installed MLflow reports another version.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="$root/.cache/integration"
mkdir -p "$cache"
t0=$SECONDS
step() { printf '[setup t+%ss] %s\n' "$((SECONDS - t0))" "$1"; }

# --- Debian packages ----------------------------------------------------------------------------
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || missing+=(postgresql-15)
command -v bwrap > /dev/null || missing+=(bubblewrap)
command -v chromium > /dev/null || missing+=(chromium)
command -v openssl > /dev/null || missing+=(openssl)
command -v psql > /dev/null || missing+=(postgresql-client-15)
if [ "${#missing[@]}" -gt 0 ]; then
    step "installing Debian packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup.sh: missing ${missing[*]}; install them (as root: apt-get install ${missing[*]})" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" > "$cache/apt.log" 2>&1 || { tail -20 "$cache/apt.log" >&2; exit 1; }
fi

# --- MLflow version pin --------------------------------------------------------------------------
version="$(sed -n 's/^export const MLFLOW_VERSION = "\([^"]*\)";$/\1/p' "$root/components/versions.ts")"
[ -n "$version" ] || { echo "setup.sh: MLFLOW_VERSION not found in components/versions.ts" >&2; exit 1; }
locked="$(sed -n 's/^mlflow==\([^ ]*\) .*/\1/p' "$here/requirements/mlflow.txt")"
if [ "$locked" != "$version" ]; then
    echo "setup.sh: components/versions.ts pins MLflow $version but requirements/mlflow.txt locks '$locked';" \
        "run scripts/integration/lock.sh" >&2
    exit 1
fi
previous="$(sed -n 's/^export const MLFLOW_PREVIOUS_RELEASE = "\([^"]*\)";$/\1/p' "$root/components/versions.ts")"
locked_previous="$(sed -n 's/^mlflow==\([^ ]*\) .*/\1/p' "$here/requirements/mlflow-previous.txt")"
if [ -z "$previous" ] || [ "$locked_previous" != "$previous" ]; then
    echo "setup.sh: components/versions.ts names MLflow '$previous' as the previous release but" \
        "requirements/mlflow-previous.txt locks '$locked_previous'; run scripts/integration/lock.sh mlflow-previous" >&2
    exit 1
fi

# --- virtual environments ------------------------------------------------------------------------
# Built side by side (downloads and byte-compiling overlap on two cores); each is reused while its
# lock file is unchanged.
build_venv() {
    local name="$1" lock="$here/requirements/$1.txt" dir="$cache/venv-$1"
    local want
    want="$(sha256sum "$lock" | cut -d' ' -f1)"
    if [ -f "$dir/.lock-sha256" ] && [ "$(cat "$dir/.lock-sha256")" = "$want" ]; then
        return 0
    fi
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check --no-input --no-cache-dir \
        --require-hashes --no-deps --only-binary :all: -r "$lock" > "$cache/pip-$name.log" 2>&1 \
        || { tail -30 "$cache/pip-$name.log" >&2; return 1; }
    echo "$want" > "$dir/.lock-sha256"
}
step "Python virtual environments (python3 $(python3 -c 'import sys; print(sys.version.split()[0])'))"
build_venv mlflow & mlflow_pid=$!
build_venv mlflow-previous & previous_pid=$!
build_venv moto & moto_pid=$!
wait "$mlflow_pid"
wait "$previous_pid"
wait "$moto_pid"

installed="$("$cache/venv-mlflow/bin/python" -c 'import mlflow; print(mlflow.__version__)')"
if [ "$installed" != "$version" ]; then
    echo "setup.sh: the venv runs MLflow $installed, components/versions.ts pins $version" >&2
    exit 1
fi
installed_previous="$("$cache/venv-mlflow-previous/bin/python" -c 'import mlflow; print(mlflow.__version__)')"
if [ "$installed_previous" != "$previous" ]; then
    echo "setup.sh: the previous-release venv runs MLflow $installed_previous, components/versions.ts names $previous" >&2
    exit 1
fi
step "etcd and kube-apiserver (built once, cached outside the clone)"
bash "$here/kube-apiserver.sh" > /dev/null

step "ready: MLflow $installed (and $installed_previous to upgrade from), moto $("$cache/venv-moto/bin/python" -c 'import moto; print(moto.__version__)')"
