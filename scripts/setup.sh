#!/usr/bin/env bash
# Installs everything agentkube needs on a fresh Debian machine: system packages (bubblewrap for
# the local sandbox; in dev mode also what the test cluster's real node runs on: runc, the CNI
# plugins, iptables, ipset, conntrack, iproute2, and debootstrap and patch for its build) and a
# virtualenv in .venv with the package + extras.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
APT_PACKAGES=(bubblewrap)
if [ "${AGENTKUBE_SETUP_DEV:-0}" = 1 ]; then
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
