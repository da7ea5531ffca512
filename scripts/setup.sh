#!/usr/bin/env bash
# Installs everything agentkube needs on a fresh Debian machine: system packages (bubblewrap for
# the local sandbox; in dev mode also redis-server, which the memory tests start on loopback,
# openssl, and what the test cluster's real node runs on: runc, the CNI plugins, iptables, ipset,
# conntrack, iproute2, and debootstrap and patch for its build) and a virtualenv in .venv with
# the package + extras.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
APT_PACKAGES=(bubblewrap)
if [ "${AGENTKUBE_SETUP_DEV:-0}" = 1 ]; then
  APT_PACKAGES+=(redis-server openssl)
  APT_PACKAGES+=(runc containernetworking-plugins iptables ipset conntrack debootstrap patch iproute2)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
extras="k8s"
[ "${AGENTKUBE_SETUP_DEV:-0}" = 1 ] && extras="k8s,dev"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-$extras"
if [ ! -f "$stamp" ]; then
  echo "setup: installing agentkube[$extras] into .venv" >&2
  .venv/bin/pip install -q -e ".[$extras]"
  touch "$stamp"
fi

# What `make test` needs beyond the venv: the test control plane's tools. Checked, with a hint;
# Go is only needed while the control plane is not yet built and cached.
if [ "${AGENTKUBE_SETUP_DEV:-0}" = 1 ]; then
  command -v kubectl >/dev/null 2>&1 \
    || echo "setup: warning: kubectl is not on PATH; the cluster tests need it (https://kubernetes.io/docs/tasks/tools/)" >&2
  if ! hack/testcluster/build.sh --locate >/dev/null 2>&1 || [ ! -f "$(hack/testcluster/build.sh --locate)/.complete" ]; then
    command -v go >/dev/null 2>&1 \
      || echo "setup: warning: Go >= 1.26 is not on PATH and the test control plane is not built yet; install it from https://go.dev/dl" >&2
  fi
fi
