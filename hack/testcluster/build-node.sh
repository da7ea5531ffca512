#!/usr/bin/env bash
# Builds the test cluster's real node and caches it, apart from the control plane (build.sh):
#   kubelet          k8s.io/kubernetes/cmd/kubelet and cmd/kube-proxy from go/k8s's go.mod (read,
#                    never written)
#   containerd       containerd, containerd-shim-runc-v2, ctr (node/containerd)
#   gvisor           runsc, containerd-shim-runsc-v1 (node/gvisor, patched: oom-score-adj.patch)
#   kube-router      the NetworkPolicy enforcer (node/kube-router)
#   pause            the pod sandbox's process (node/pause)
#   coredns          the cluster's DNS, with only the plugins its Corefile uses (node/coredns)
#   images           image archives: a Debian minbase rootfs with python3 (the whole standard
#                    library, as sandbox pods need), one with redis-server (deploy/memory's Redis
#                    in the end-to-end run), pause, and coredns
# runc, the CNI plugins, iptables, ipset and conntrack come from Debian (scripts/setup.sh).
# Each piece is cached under its own key (a hash of its inputs and of its own build function),
# so changing one piece rebuilds only that piece; the node's bin directory gathers them.
#
#   build-node.sh            build what is missing, print the bin directory
#   build-node.sh --locate   only print where the bin directory is (or would be); never builds
#   AGENTKUBE_CACHE          cache root (default ~/.cache/agentkube): pieces land in
#                            $AGENTKUBE_CACHE/testcluster/node/pieces/<piece>-<hash>, the node in
#                            $AGENTKUBE_CACHE/testcluster/node/<key>/bin
#   AGENTKUBE_DEBIAN_MIRROR  the Debian mirror debootstrap uses (default: the host's apt source)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

die() { echo "testcluster build-node: $*" >&2; exit 1; }
say() { echo "testcluster build-node: $*" >&2; }

cache_root="${AGENTKUBE_CACHE:-$HOME/.cache/agentkube}/testcluster/node"
export GOTOOLCHAIN=local CGO_ENABLED=0
goflags=(-trimpath -ldflags="-s -w")

# -- the pieces: build_<piece> OUT builds into the empty directory OUT ------------------------

build_kubelet() {
  # go/k8s's go.mod pins the version; its go.sum lacks the few modules only the node uses,
  # so the build reads a copy of both (-modfile) plus node/kubelet/go.sum-extra, read-only.
  # The version is stamped as Kubernetes' own build does, so the Node reports v1.37.x.
  local work="$1/.mod" version minor
  version="$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$here/go/k8s/go.mod")"
  minor="$(echo "$version" | cut -d. -f2)"
  local stamp="-s -w -X k8s.io/component-base/version.gitVersion=$version"
  stamp+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  stamp+=" -X k8s.io/component-base/version.gitTreeState=clean"
  mkdir -p "$work"
  cp "$here/go/k8s/go.mod" "$work/go.mod"
  LC_ALL=C sort -u "$here/go/k8s/go.sum" "$here/node/kubelet/go.sum-extra" > "$work/go.sum"
  (cd "$here/go/k8s" && GOFLAGS="-mod=readonly -buildvcs=false" \
    go build -modfile="$work/go.mod" -trimpath -ldflags="$stamp" -o "$1/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  rm -rf "$work"
}

build_containerd() {
  (cd "$here/node/containerd" && GOFLAGS="-mod=readonly -buildvcs=false" \
    go build "${goflags[@]}" -tags "no_btrfs no_devmapper no_zfs no_aufs" -o "$1/" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr)
}

build_gvisor() {
  # `go build -overlay` refuses files in the module cache, so the shim is built from a patched
  # copy of the pinned module, put in place by a `replace` in a copy of node/gvisor.
  local work="$1/.src" version
  version="$(awk '$1 == "require" && $2 == "gvisor.dev/gvisor" { print $3 }' "$here/node/gvisor/go.mod")"
  mkdir -p "$work/mod"
  cp "$here/node/gvisor/go.mod" "$here/node/gvisor/go.sum" "$here/node/gvisor/tools.go" "$work/mod/"
  local pristine
  pristine="$(cd "$work/mod" && GOFLAGS=-mod=readonly go mod download -json "gvisor.dev/gvisor@$version" \
    | awk -F'"' '$2 == "Dir" { print $4 }')"
  [ -d "$pristine" ] || die "could not download gvisor.dev/gvisor@$version."
  cp -r "$pristine" "$work/gvisor"
  chmod -R u+w "$work/gvisor"
  patch -d "$work/gvisor" -p1 --quiet < "$here/node/gvisor/oom-score-adj.patch"
  (cd "$work/mod" && go mod edit -replace "gvisor.dev/gvisor=$work/gvisor" \
    && GOFLAGS="-mod=mod -buildvcs=false" go build "${goflags[@]}" -o "$1/" \
      gvisor.dev/gvisor/runsc gvisor.dev/gvisor/shim)
  mv "$1/shim" "$1/containerd-shim-runsc-v1"
  rm -rf "$work"
}

build_kube_router() {
  (cd "$here/node/kube-router" && GOFLAGS="-mod=readonly -buildvcs=false" \
    go build "${goflags[@]}" -o "$1/" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
}

build_pause() {
  (cd "$here/node/pause" && GOFLAGS="-mod=readonly -buildvcs=false" \
    go build "${goflags[@]}" -o "$1/pause" .)
}

build_coredns() {
  (cd "$here/node/coredns" && GOFLAGS="-mod=readonly -buildvcs=false" \
    go build "${goflags[@]}" -o "$1/coredns" .)
}

build_images() {
  # Tagged by this piece's key: a new image is a new reference, never a stale cached one.
  # python: the sandbox pods' image; redis: deploy/memory's Redis for the end-to-end run (both
  # debootstraps at once: they wait on the network and dpkg, not the CPU).
  [ "$(id -u)" = 0 ] || die "building the node images needs root (debootstrap chroots)."
  local tag="${keys[images]}" work="$1/.rootfs" suite mirror name
  suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
  mirror="${AGENTKUBE_DEBIAN_MIRROR:-$(debian_mirror)}"
  [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt; set AGENTKUBE_DEBIAN_MIRROR."
  debootstrap --variant=minbase --include=python3 "$suite" "$work/python" "$mirror" \
    > "$1/.debootstrap-python.log" 2>&1 &
  local python_pid=$!
  debootstrap --variant=minbase --include=redis-server,redis-tools "$suite" "$work/redis" \
    "$mirror" > "$1/.debootstrap-redis.log" 2>&1 \
    || die "debootstrap failed; its log is $1/.debootstrap-redis.log."
  wait "$python_pid" || die "debootstrap failed; its log is $1/.debootstrap-python.log."
  for name in python redis; do
    rm -rf "$work/$name"/var/cache/apt/archives/*.deb "$work/$name"/var/lib/apt/lists/* \
      "$work/$name"/usr/share/{doc,man,info,locale} "$work/$name"/var/log/*
  done
  mkdir -p "$work/pause" "$work/coredns"
  cp "${dirs[pause]}/pause" "$work/pause/pause"
  cp "${dirs[coredns]}/coredns" "$work/coredns/coredns"
  (cd "$repo" && python3 -m hack.testcluster.images "$work/python" "$1/python.tar" \
      "localhost/agentkube/python:$tag" python3 \
    && python3 -m hack.testcluster.images "$work/redis" "$1/redis.tar" \
      "localhost/agentkube/redis:$tag" redis-server \
    && python3 -m hack.testcluster.images "$work/pause" "$1/pause.tar" \
      "localhost/agentkube/pause:$tag" /pause \
    && python3 -m hack.testcluster.images "$work/coredns" "$1/coredns.tar" \
      "localhost/agentkube/coredns:$tag" /coredns)
  {
    printf '{'
    for name in python redis pause; do printf '"%s": "localhost/agentkube/%s:%s", ' "$name" "$name" "$tag"; done
    printf '"coredns": "localhost/agentkube/coredns:%s"}\n' "$tag"
  } > "$1/images.json"
  rm -rf "$work"
}

debian_mirror() {
  # The first Debian URI the host's apt uses (deb822 sources or a one-line sources.list).
  local uri
  uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{ print $2; exit }')"
  [ -n "$uri" ] || uri="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{ print $2; exit }')"
  echo "$uri"
}

# -- cache keys ---------------------------------------------------------------------------------

pieces=(pause coredns images kubelet containerd gvisor kube_router)
declare -A inputs=(
  [kubelet]="go/k8s/go.mod go/k8s/go.sum node/kubelet"
  [containerd]="node/containerd"
  [gvisor]="node/gvisor"
  [kube_router]="node/kube-router"
  [pause]="node/pause"
  [coredns]="node/coredns"
  [images]="images.py"
)
declare -A keys dirs

piece_key() {
  # Hash of the piece's build function and input files (plus, for images, the pause piece).
  local piece="$1"
  {
    declare -f "build_$piece"
    [ "$piece" = images ] && { echo "${keys[pause]} ${keys[coredns]}"; declare -f debian_mirror; }
    # shellcheck disable=SC2086
    (cd "$here" && find ${inputs[$piece]} -type f | LC_ALL=C sort | xargs sha256sum)
  } | sha256sum | cut -c1-12
}

for piece in "${pieces[@]}"; do
  keys[$piece]="$(piece_key "$piece")"
  dirs[$piece]="$cache_root/pieces/${piece//_/-}-${keys[$piece]}"
done
node_key="node-$(for p in "${pieces[@]}"; do echo "$p ${keys[$p]}"; done | sha256sum | cut -c1-12)"
dest="$cache_root/$node_key"
if [ "${1:-}" = "--locate" ]; then
  echo "$dest/bin"
  exit 0
fi
if [ -f "$dest/bin/.complete" ]; then
  echo "$dest/bin"
  exit 0
fi

# -- building -----------------------------------------------------------------------------------

command -v go >/dev/null 2>&1 || die "the Go toolchain is missing: install Go >= 1.26 from https://go.dev/dl and put 'go' on PATH, then run 'make testcluster' again."
go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
[ "${go_minor:-0}" -ge 26 ] 2>/dev/null || die "Go >= 1.26 is needed (containerd 2.4 requires it), found $(go env GOVERSION)."
for tool in debootstrap patch; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing: run 'make setup-dev' (scripts/setup.sh installs it)."
done

mkdir -p "$cache_root/pieces"
exec 9>"$cache_root/.build.lock"
flock 9  # one build at a time per cache; a concurrent caller waits and then reuses the result

# set -e stays in force inside the build functions (an `if` around them would switch it off):
# the first failing command stops the build, the ERR trap names the piece, EXIT cleans up.
current=""
staging=""
trap '[ -n "$current" ] && say "building $current failed (see the output above)."' ERR
trap '[ -n "$staging" ] && rm -rf "$staging"' EXIT

build_piece() {
  local piece="$1" dir="${dirs[$1]}" begun
  [ -f "$dir/.complete" ] && return 0
  current="${piece//_/-}"
  staging="$(mktemp -d "$cache_root/pieces/.build-XXXXXX")"
  begun=$(date +%s)
  say "building $current (${keys[$piece]})"
  "build_$piece" "$staging"
  echo "built in $(( $(date +%s) - begun ))s" > "$staging/.complete"
  rm -rf "$dir"
  mv "$staging" "$dir"
  staging=""
  say "$current built in $(( $(date +%s) - begun ))s"
  current=""
}

start=$(date +%s)
build_piece pause
build_piece coredns
# debootstrap mostly waits on the network and dpkg: it runs beside the CPU-bound Go builds.
build_piece images > "$cache_root/pieces/.images.log" 2>&1 &
images_pid=$!
for piece in containerd gvisor kube_router kubelet; do
  build_piece "$piece"
done
wait "$images_pid" || die "building the images failed: $(tail -5 "$cache_root/pieces/.images.log")"
cat "$cache_root/pieces/.images.log" >&2

staging="$(mktemp -d "$cache_root/.build-XXXXXX")"
for piece in "${pieces[@]}"; do
  for f in "${dirs[$piece]}"/*; do
    [ -f "$f" ] && ln "$f" "$staging/"
  done
  printf '%s %s\n' "${piece//_/-}" "$(cat "${dirs[$piece]}/.complete")" >> "$staging/.pieces"
done
for b in kubelet kube-proxy containerd containerd-shim-runc-v2 ctr runsc containerd-shim-runsc-v1 kube-router pause coredns python.tar redis.tar pause.tar coredns.tar images.json; do
  [ -e "$staging/$b" ] || die "the build finished without producing $b."
done
echo "assembled in $(( $(date +%s) - start ))s" > "$staging/.complete"
mkdir -p "$dest"
rm -rf "$dest/bin"
mv "$staging" "$dest/bin"
staging=""
say "done in $(( $(date +%s) - start ))s; $(du -sh "$dest/bin" | cut -f1) in $dest/bin"
echo "$dest/bin"
