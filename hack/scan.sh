#!/usr/bin/env bash
# Security scanners over what agentkube installs and what its operator renders:
#   - `kubectl kustomize deploy/` and `deploy/namespaced/` (the two install modes);
#   - the objects the operator renders for examples/ (hack/render.py, the operator's own code).
# Tools are installed by this script into .cache/scan/ (checkov from PyPI into its own venv,
# kube-score from the Go module proxy), pinned, and reused on the next run.
# Accepted findings and why: docs/security.md ("Scanner results"). Exit status: 0 when every
# finding is in the accepted list (hack/scan-accepted.txt), 1 otherwise.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${AGENTKUBE_SCAN_TOOLS:-$REPO/.cache/scan}"
CHECKOV_VERSION=3.3.30
KUBE_SCORE_VERSION=v1.20.0
PYTHON="${PYTHON:-python3}"
OUT="${AGENTKUBE_SCAN_OUT:-$REPO/.cache/scan/out}"

install_tools() {
  mkdir -p "$TOOLS"
  if [[ ! -x "$TOOLS/venv/bin/checkov" ]] || ! "$TOOLS/venv/bin/checkov" --version | grep -qx "$CHECKOV_VERSION"; then
    echo "scan: installing checkov $CHECKOV_VERSION into $TOOLS/venv" >&2
    "$PYTHON" -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install --quiet "checkov==$CHECKOV_VERSION"
  fi
  if [[ ! -x "$TOOLS/bin/kube-score" ]]; then
    echo "scan: building kube-score $KUBE_SCORE_VERSION into $TOOLS/bin" >&2
    command -v go >/dev/null || { echo "scan: kube-score needs Go (go install); install Go >= 1.22" >&2; exit 2; }
    GOBIN="$TOOLS/bin" go install "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
  fi
}

render() {
  mkdir -p "$OUT"
  kubectl kustomize "$REPO/deploy" > "$OUT/deploy.yaml"
  kubectl kustomize "$REPO/deploy/namespaced" > "$OUT/namespaced.yaml"
  # The operator's objects for every example (its own rendering code, no cluster).
  (cd "$REPO" && .venv/bin/python -m hack.render examples/*.yaml) > "$OUT/rendered.yaml"
}

scan() {
  local files=("$OUT/deploy.yaml" "$OUT/namespaced.yaml" "$OUT/rendered.yaml")
  # Both tools exit non-zero on findings; the report below decides.
  "$TOOLS/venv/bin/checkov" --quiet --compact --skip-download --framework kubernetes --output json \
    $(printf -- '-f %s ' "${files[@]}") > "$OUT/checkov.json" || true
  "$TOOLS/bin/kube-score" score --output-format ci "${files[@]}" > "$OUT/kube-score.txt" || true
  "$REPO/.venv/bin/python" "$REPO/hack/scan_report.py" "$OUT" "$REPO/hack/scan-accepted.txt"
}

main() {
  command -v kubectl >/dev/null || { echo "scan: needs kubectl (kubectl kustomize)" >&2; exit 2; }
  install_tools
  if [[ "${1:-}" == "--install-only" ]]; then return 0; fi
  render
  scan
}

main "$@"
