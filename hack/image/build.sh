#!/usr/bin/env bash
# Builds the project's image without Docker, from Debian packages and the project's wheel:
#   base    debootstrap minbase of the host's Debian suite with python3, python3-venv, bubblewrap
#           and ca-certificates (docs, man pages, locales and apt lists removed); the venv
#           /opt/agentkube created inside it (chroot) with every dependency from
#           requirements/image.lock (exact pins, hashes required, wheels only)
#   image   the base plus the wheel built from this tree (`pip wheel --no-deps .`), the user
#           65532 with its home /var/lib/agentkube, and the Dockerfile's config: its ENV,
#           USER 65532:65532, WORKDIR, EXPOSE 8080, ENTRYPOINT ["agentkube"], CMD ["--help"];
#           written by hack/testcluster/images.py as a one-layer docker-archive that
#           `ctr image import` (or `docker load`) reads
# Each is cached under a key hashing its inputs and this script: a change to src/ rebuilds only
# the image (seconds), a change to the lock or the Debian packages rebuilds the base (minutes).
#
#   build.sh                 build what is missing; print the path of image.json, which names
#                            the reference (localhost/agentkube/agentkube:<key>) and the archive
#   build.sh --locate        only print where image.json is (or would be); never builds
#   build.sh --refresh-lock  regenerate requirements/image.lock from pyproject.toml (agentkube[k8s])
#                            with uv, installed into a tool venv in the cache; then build
#   AGENTKUBE_CACHE          cache root (default ~/.cache/agentkube): $AGENTKUBE_CACHE/image/
#   AGENTKUBE_DEBIAN_MIRROR  the Debian mirror debootstrap uses (default: the host's apt source)
#
# Needs root (debootstrap, chroot) and the network (the Debian mirror, PyPI) on a cold build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache_root="${AGENTKUBE_CACHE:-$HOME/.cache/agentkube}/image"
lock="$repo/requirements/image.lock"
packages=(python3 python3-venv bubblewrap ca-certificates)
uv_version=0.13.8
# Modification times in the layer are clamped to this: the same tree gives the same digest.
epoch=1767225600  # 2026-01-01

die() { echo "image: $*" >&2; exit 1; }
say() { echo "image: $*" >&2; }

debian_mirror() {
  # The first Debian URI the host's apt uses (deb822 sources or a one-line sources.list).
  local uri
  uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{ print $2; exit }')"
  [ -n "$uri" ] || uri="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{ print $2; exit }')"
  echo "$uri"
}

refresh_lock() {
  local tools="$cache_root/tools"
  [ -x "$tools/bin/uv" ] && [ "$("$tools/bin/uv" --version | cut -d' ' -f2)" = "$uv_version" ] || {
    say "installing uv $uv_version into $tools"
    python3 -m venv "$tools"
    "$tools/bin/pip" install -q "uv==$uv_version"
  }
  # --universal: one lock for every Python >= 3.11 (markers where pins differ), so the image's
  # Debian python3 and the Dockerfile's python base install from the same file.
  (cd "$repo" && "$tools/bin/uv" pip compile pyproject.toml --extra k8s --universal \
    --python-version 3.11 --generate-hashes --quiet \
    --custom-compile-command "hack/image/build.sh --refresh-lock" -o "$lock")
  say "wrote $lock ($(grep -c '==' "$lock") pins)"
}

suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
mirror="${AGENTKUBE_DEBIAN_MIRROR:-$(debian_mirror)}"

# -- cache keys (cheap: a second run with nothing changed only hashes files) ------------------

base_key() {
  { echo "$suite $mirror ${packages[*]}"; declare -f build_base; sha256sum < "$lock"; } \
    | sha256sum | cut -c1-12
}

image_key() {
  {
    echo "$1"
    cat "$here/build.sh" "$here/../testcluster/images.py" "$repo/pyproject.toml" "$repo/README.md"
    (cd "$repo" && find src -type f ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort \
      | xargs sha256sum)
  } | sha256sum | cut -c1-12
}

# -- building ---------------------------------------------------------------------------------

in_root() { chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }

build_base() {
  # $1: the empty directory the base is built in (rootfs/ below it).
  rootfs="$1/rootfs"
  local include
  include="$(IFS=,; echo "${packages[*]}")"
  say "debootstrap $suite ($include) from $mirror"
  debootstrap --variant=minbase --include="$include" "$suite" "$rootfs" "$mirror" \
    > "$1/debootstrap.log" 2>&1 || die "debootstrap failed; its log is $1/debootstrap.log."
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/{doc,man,info,locale} "$rootfs"/var/log/*
  in_root dpkg-query -W -f='${Package}=${Version}\n' > "$1/debian-packages.txt"
  say "debootstrap done ($(du -sh "$rootfs" | cut -f1)); venv /opt/agentkube from $(basename "$lock")"
  in_root python3 -m venv /opt/agentkube
  cp "$lock" "$rootfs/tmp/image.lock"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"  # PyPI from inside the chroot
  # The host's CA bundle, for the build only (a host behind a TLS-inspecting proxy trusts it).
  cp "${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}" "$rootfs/tmp/host-ca.crt"
  # pip's cache lives in the build cache between builds; it is moved in (a rename) for the
  # chroot's pip and back out whatever happens.
  mkdir -p "$cache_root/pip"
  mv "$cache_root/pip" "$rootfs/tmp/pip-cache"
  pip_cache_in="$rootfs/tmp/pip-cache"
  in_root env SOURCE_DATE_EPOCH="$epoch" /opt/agentkube/bin/pip install --no-input \
    --disable-pip-version-check --cache-dir /tmp/pip-cache --cert /tmp/host-ca.crt --progress-bar off \
    --require-hashes --no-deps --only-binary :all: -r /tmp/image.lock > "$1/pip.log" 2>&1 \
    || die "installing the locked dependencies failed: $(tail -3 "$1/pip.log")"
  mv "$pip_cache_in" "$cache_root/pip"
  pip_cache_in=""
  : > "$rootfs/etc/resolv.conf"  # the runtime mounts its own
  rm -rf "$rootfs"/tmp/* "$rootfs"/root/.cache
  say "dependencies installed ($(du -sh "$rootfs/opt/agentkube" | cut -f1) in /opt/agentkube)"
}

build_image() {
  # $1: the empty directory the image is written to; $2: the base's directory.
  rootfs="$1/rootfs"
  local wheel="$1/wheel" ref="localhost/agentkube/agentkube:$key"
  say "copying the base"
  cp -a "$2/rootfs" "$rootfs"
  say "building the wheel from $repo"
  python3 -m pip wheel --quiet --no-deps --disable-pip-version-check -w "$wheel" "$repo" \
    > "$1/wheel.log" 2>&1 || die "building the wheel failed: $(tail -3 "$1/wheel.log")"
  cp "$wheel"/agentkube-*.whl "$rootfs/tmp/"
  in_root env SOURCE_DATE_EPOCH="$epoch" /opt/agentkube/bin/pip install --no-input \
    --disable-pip-version-check --no-index --no-deps --no-cache-dir /tmp/"$(basename "$wheel"/agentkube-*.whl)" \
    > "$1/pip.log" 2>&1 || die "installing the wheel failed: $(tail -3 "$1/pip.log")"
  rm -rf "$rootfs"/tmp/* "$rootfs"/root/.cache "$wheel"
  # The Dockerfile's groupadd/useradd, written out: no login, no password, a fixed home.
  echo "agentkube:x:65532:" >> "$rootfs/etc/group"
  echo "agentkube:x:65532:65532::/var/lib/agentkube:/usr/sbin/nologin" >> "$rootfs/etc/passwd"
  echo "agentkube:!:0::::::" >> "$rootfs/etc/shadow"
  install -d -m 0755 -o 65532 -g 65532 "$rootfs/var/lib/agentkube"
  say "writing the archive"
  (cd "$repo" && python3 -m hack.testcluster.images "$rootfs" "$1/image.tar" "$ref" \
    --entrypoint agentkube \
    --env PATH=/opt/agentkube/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 \
    --env AGENTKUBE_DATA_DIR=/var/lib/agentkube \
    --user 65532:65532 --workdir /var/lib/agentkube --expose 8080/tcp --mtime "$epoch" \
    -- --help)
  rm -rf "$rootfs"
  python3 - "$1" "$ref" "$key" "$dest" <<'EOF'
import json, os, sys
out, ref, key, dest = sys.argv[1:]
archive = os.path.join(dest, "image.tar")
info = {"reference": ref, "key": key, "archive": archive,
        "size_bytes": os.path.getsize(os.path.join(out, "image.tar"))}
with open(os.path.join(out, "image.json"), "w") as f:
    json.dump(info, f, indent=2)
    f.write("\n")
EOF
}

if [ "${1:-}" = "--refresh-lock" ]; then
  refresh_lock
  shift
fi
[ -f "$lock" ] || die "$lock is missing: run 'hack/image/build.sh --refresh-lock'."
bkey="$(base_key)"
key="$(image_key "$bkey")"
base="$cache_root/base-$bkey"
dest="$cache_root/$key"
if [ "${1:-}" = "--locate" ]; then
  echo "$dest/image.json"
  exit 0
fi
[ -n "${1:-}" ] && die "unknown argument '$1' (use --locate or --refresh-lock)."
if [ -f "$dest/.complete" ]; then
  echo "$dest/image.json"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "building the image needs root (debootstrap and chroot)."
command -v debootstrap >/dev/null 2>&1 || die "'debootstrap' is missing: run 'make setup-dev'."
[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt; set AGENTKUBE_DEBIAN_MIRROR."
mkdir -p "$cache_root"
exec 9>"$cache_root/.build.lock"
flock 9  # one build at a time per cache; a concurrent caller waits and then reuses the result
if [ -f "$dest/.complete" ]; then
  echo "$dest/image.json"
  exit 0
fi

staging=""
pip_cache_in=""
cleanup() {
  [ -n "$pip_cache_in" ] && [ -d "$pip_cache_in" ] && { rm -rf "$cache_root/pip"; mv "$pip_cache_in" "$cache_root/pip"; }
  [ -n "$staging" ] && rm -rf "$staging"
  return 0
}
trap cleanup EXIT

start=$(date +%s)
if [ ! -f "$base/.complete" ]; then
  staging="$(mktemp -d "$cache_root/.build-XXXXXX")"
  build_base "$staging"
  echo "built in $(( $(date +%s) - start ))s" > "$staging/.complete"
  rm -rf "$base"
  mv "$staging" "$base"
  staging=""
  say "base $bkey built in $(( $(date +%s) - start ))s"
fi
begun=$(date +%s)
staging="$(mktemp -d "$cache_root/.build-XXXXXX")"
build_image "$staging" "$base"
cp "$base/debian-packages.txt" "$staging/"
echo "built in $(( $(date +%s) - begun ))s" > "$staging/.complete"
chmod 755 "$staging"
rm -rf "$dest"
mv "$staging" "$dest"
staging=""
# Keep the three newest images and the two newest bases (each image is most of a GB).
prune() {  # $1: a regular expression for the directory names, $2: how many to keep
  find "$cache_root" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex ".*/$1" \
    -printf '%T@ %p\n' | sort -rn | tail -n "+$(( $2 + 1 ))" | cut -d' ' -f2- | xargs -r rm -rf
}
prune '[0-9a-f]{12}' 3
prune 'base-[0-9a-f]{12}' 2
say "localhost/agentkube/agentkube:$key: $(du -h "$dest/image.tar" | cut -f1) in $dest, $(( $(date +%s) - start ))s"
echo "$dest/image.json"
