#!/usr/bin/env bash
# Builds `helm` from the Go module proxy at a pinned version and caches it per version, for the
# chart's tests (tests/helm). Debian has no helm package, so the Go toolchain builds it, as it
# builds the test control plane (hack/testcluster/build.sh). Prints the binary's path on stdout.
#
#   build.sh            build if needed, print the path of helm
#   build.sh --locate   only print where helm is (or would be); never builds
#   AGENTKUBE_CACHE     cache root (default ~/.cache/agentkube); helm lands in
#                       $AGENTKUBE_CACHE/helm/<version>-<hash>/bin/helm
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# helm.sh/helm/v4 pins k8s.io/client-go v0.37, the test control plane's minor version.
version=v4.3.1

die() { echo "helm build: $*" >&2; exit 1; }

cache_root="${AGENTKUBE_CACHE:-$HOME/.cache/agentkube}/helm"
dest="$cache_root/$version-$(sha256sum "$here/build.sh" | cut -c1-12)"
if [ "${1:-}" = "--locate" ]; then
  echo "$dest/bin/helm"
  exit 0
fi

complete() { [ -f "$dest/bin/.complete" ]; }
if complete; then
  echo "$dest/bin/helm"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "the Go toolchain is missing: install Go >= 1.26 from https://go.dev/dl and put 'go' on PATH, then run 'make helm' again."

mkdir -p "$cache_root"
exec 9>"$cache_root/.build.lock"
flock 9  # one build at a time per cache; a concurrent caller waits and then reuses the result
if complete; then
  echo "$dest/bin/helm"
  exit 0
fi

# `go install pkg@version` builds exactly the module's own go.mod/go.sum, checked against the
# checksum database; no local module is involved.
export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0
staging="$(mktemp -d "$cache_root/.build-XXXXXX")"
trap 'rm -rf "$staging"' EXIT
start=$(date +%s)
echo "helm build: building helm $version into $dest/bin; the first build takes a few minutes" >&2
# -X: `helm version` names the exact release (helm's Makefile stamps it the same way).
GOBIN="$staging" go install -trimpath \
  -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
  "helm.sh/helm/v4/cmd/helm@$version" \
  || die "building helm $version failed (see the go output above)."
[ -x "$staging/helm" ] || die "the build finished without producing helm."
echo "built in $(( $(date +%s) - start ))s" > "$staging/.complete"
mkdir -p "$dest"
rm -rf "$dest/bin"
mv "$staging" "$dest/bin"
trap - EXIT
echo "helm build: done in $(( $(date +%s) - start ))s; $(du -sh "$dest/bin" | cut -f1) in $dest/bin" >&2
echo "$dest/bin/helm"
