#!/usr/bin/env bash
# Builds the test control plane from Go modules and caches it per pinned version:
#   kube-apiserver, kube-controller-manager, kube-scheduler (k8s.io/kubernetes),
#   etcd (go.etcd.io/etcd/server/v3, the version k8s.io/kubernetes pins), kwok (sigs.k8s.io/kwok),
#   plus kwok's default node/pod stages taken from the same pinned kwok module.
# The cache key hashes every input (go.mod, go.sum, Go sources, this script), so a version bump
# rebuilds and an unchanged tree costs nothing. Prints the bin directory on stdout.
#
#   build.sh            build if needed, print the bin directory
#   build.sh --locate   only print where the bin directory is (or would be); never builds
#   AGENTKUBE_CACHE     cache root (default ~/.cache/agentkube); binaries land in
#                       $AGENTKUBE_CACHE/testcluster/<key>/bin
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

die() { echo "testcluster build: $*" >&2; exit 1; }

key_of() {
  # Version + content hash of every build input, so the cache directory names what it holds.
  local k8s_version hash
  k8s_version="$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$here/go/k8s/go.mod")"
  hash="$(cd "$here" && find go build.sh -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' -o -name '*.sh' \) \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)"
  echo "k8s-${k8s_version}-${hash}"
}

cache_root="${AGENTKUBE_CACHE:-$HOME/.cache/agentkube}/testcluster"
key="$(key_of)"
dest="$cache_root/$key"
if [ "${1:-}" = "--locate" ]; then
  echo "$dest/bin"
  exit 0
fi

binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

complete() { [ -f "$dest/bin/.complete" ]; }
if complete; then
  echo "$dest/bin"
  exit 0
fi

# Only a build needs Go: cached binaries serve machines without a toolchain.
command -v go >/dev/null 2>&1 || die "the Go toolchain is missing: install Go >= 1.26 from https://go.dev/dl (Debian's golang-go is too old) and put 'go' on PATH, then run 'make testcluster' again."
go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
[ "${go_minor:-0}" -ge 26 ] 2>/dev/null || die "Go >= 1.26 is needed to build k8s.io/kubernetes v1.37, found $(go env GOVERSION)."

mkdir -p "$cache_root"
exec 9>"$cache_root/.build.lock"
flock 9  # one build at a time per cache; a concurrent caller waits and then reuses the result
if complete; then
  echo "$dest/bin"
  exit 0
fi

# -mod=mod with the committed go.sum: the build is pinned to exactly the checksummed modules.
export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0
goflags=(-trimpath -ldflags="-s -w")
staging="$(mktemp -d "$cache_root/.build-XXXXXX")"
trap 'rm -rf "$staging"' EXIT
start=$(date +%s)

echo "testcluster build: building control plane ($key) into $dest/bin; the first build takes a while" >&2
(cd "$here/go/k8s" && go build "${goflags[@]}" -o "$staging/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  ./etcd) || die "building kube-apiserver/kube-controller-manager/kube-scheduler/etcd failed (see the go output above)."

echo "testcluster build: building kwok" >&2
(cd "$here/go/kwok" && go build "${goflags[@]}" -o "$staging/" sigs.k8s.io/kwok/cmd/kwok) \
  || die "building kwok failed (see the go output above)."

# kwok's binary ships no default stages (kwokctl injects them); take the pinned module's own.
kwok_dir="$(cd "$here/go/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
stages=(node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml)
for s in "${stages[@]}"; do
  [ -f "$kwok_dir/kustomize/stage/$s" ] || die "kwok stage $s is missing from $kwok_dir."
  printf -- '---\n'
  cat "$kwok_dir/kustomize/stage/$s"
done > "$staging/kwok-stages.yaml"

for b in "${binaries[@]}"; do
  [ -x "$staging/$b" ] || die "the build finished without producing $b."
done
echo "built in $(( $(date +%s) - start ))s" > "$staging/.complete"
mkdir -p "$dest"
rm -rf "$dest/bin"
mv "$staging" "$dest/bin"
trap - EXIT
echo "testcluster build: done in $(( $(date +%s) - start ))s; $(du -sh "$dest/bin" | cut -f1) in $dest/bin" >&2
echo "$dest/bin"
