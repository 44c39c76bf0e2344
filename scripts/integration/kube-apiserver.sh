#!/usr/bin/env bash
# Builds a real etcd and kube-apiserver from the Go module proxy, once, for the contract tests that
# need Kubernetes' own API semantics (RBAC, the scale subresource, server-side apply): the upgrade
# spec applies the rendered ServiceAccount, Role and RoleBinding to it and runs the migration Job's
# quiesce step with a token the API server issued. No kubelet, no controllers: the harness plays the
# Deployment controller for its own processes.
#
#   bash scripts/integration/kube-apiserver.sh    # prints the directory holding etcd and kube-apiserver
#
# Binaries and Go caches live outside the clone (KUBE_BUILD_DIR, default ~/.cache/mlflow-k8s/kube) so
# that later runs on the same machine skip the build (about 12 min on 2 cores from an empty cache).
set -euo pipefail
K8S_VERSION="1.34.4"
ETCD_VERSION="3.6.4"
dir="${KUBE_BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlflow-k8s/kube}"
bin="$dir/bin-$K8S_VERSION-$ETCD_VERSION"
export GOPATH="$dir/go" GOMODCACHE="$dir/go/pkg/mod" GOCACHE="$dir/gocache" GOFLAGS=-buildvcs=false CGO_ENABLED=0
mkdir -p "$bin" "$dir/logs"
log() { printf '[kube-apiserver.sh t+%ss] %s\n' "$SECONDS" "$*" >&2; }
command -v go > /dev/null || { echo "kube-apiserver.sh: Go is needed (apt-get install golang, or the machine's go)" >&2; exit 1; }

if [ ! -x "$bin/etcd" ]; then
    log "building etcd v$ETCD_VERSION"
    work="$dir/work/etcd"; rm -rf "$work"; mkdir -p "$work"; cd "$work"
    printf 'module mlflowk8s/etcdbuild\n\ngo 1.24\n' > go.mod
    {
        go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" "go.etcd.io/etcd/api/v3@v$ETCD_VERSION" \
            "go.etcd.io/etcd/client/pkg/v3@v$ETCD_VERSION" "go.etcd.io/etcd/client/v3@v$ETCD_VERSION" "go.etcd.io/etcd/pkg/v3@v$ETCD_VERSION" \
        && go build -p 2 -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3
    } > "$dir/logs/etcd.log" 2>&1 || { tail -30 "$dir/logs/etcd.log" >&2; exit 1; }
    mv "$bin/etcd.tmp" "$bin/etcd"
fi

if [ ! -x "$bin/kube-apiserver" ]; then
    log "building kube-apiserver v$K8S_VERSION"
    work="$dir/work/k8s"; rm -rf "$work"; mkdir -p "$work"; cd "$work"
    {
        go mod download "k8s.io/kubernetes@v$K8S_VERSION"
        # k8s.io/kubernetes refers to its staging modules by path: point each at its published release.
        {
            printf 'module mlflowk8s/k8sbuild\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
            grep -E '^\s*k8s.io/.* => \./staging' "$GOMODCACHE/cache/download/k8s.io/kubernetes/@v/v$K8S_VERSION.mod" |
                awk -v v="v0.${K8S_VERSION#1.}" '{print "\t"$1" => "$1" "v}'
            echo ")"
        } > go.mod
        go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION"
        minor="${K8S_VERSION#1.}"; minor="${minor%%.*}"
        ld="-s -w"
        for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
            ld="$ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
        done
        go build -p 2 -trimpath -ldflags "$ld" -o "$bin/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
    } > "$dir/logs/kube-apiserver.log" 2>&1 || { tail -30 "$dir/logs/kube-apiserver.log" >&2; exit 1; }
    mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver"
fi
log "ready: $("$bin/kube-apiserver" --version 2>/dev/null), etcd $("$bin/etcd" --version 2>/dev/null | head -1 | awk '{print $3}')"
echo "$bin"
