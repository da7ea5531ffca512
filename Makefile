# The two commands a fresh machine needs are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv/bin
TASK ?= Compute the first 10 squares:\n```python\nprint([n * n for n in range(1, 11)])\n```

.PHONY: setup setup-dev demo test test-fast e2e lint fmt crds scan image

setup:
	@scripts/setup.sh

setup-dev:
	@AGENTKUBE_SETUP_DEV=1 scripts/setup.sh

demo: setup
	$(VENV)/agentkube run examples/seed-agent.yaml --task "$$(printf '$(TASK)')"

lint: setup-dev
	$(VENV)/ruff check src tests benchmarks hack
	$(VENV)/ruff format --check src tests benchmarks hack
	$(VENV)/mypy
	$(VENV)/lint-imports

fmt: setup-dev
	$(VENV)/ruff format src tests benchmarks hack
	$(VENV)/ruff check --fix src tests benchmarks hack

# The real control plane the cluster tests run on, and its real node (containerd, runc, gVisor,
# kubelet, kube-router, images): built from Go modules and Debian packages, cached per version.
# Also the project's image, which tests/realnode runs on the real node.
testcluster:
	@hack/testcluster/build.sh
	@hack/testcluster/build-node.sh
	@hack/image/build.sh

# The project's image without Docker (Debian packages + the wheel + requirements/image.lock),
# cached per input; prints the path of image.json (reference and archive). Needs root.
image:
	@hack/image/build.sh

test: setup-dev testcluster helm
	$(VENV)/pytest

# The end-to-end run alone (also part of `make test`): `kubectl apply -k deploy/namespaced` from
# the project's image on the real node, the seed agent Ready, a task answered from a gVisor pod.
e2e: setup-dev testcluster
	$(VENV)/pytest tests/e2e

# The inner loop: everything but the cluster and image tests (no control plane, no builds).
test-fast: setup-dev
	$(VENV)/pytest -m "not cluster and not image"

crds: setup
	$(VENV)/agentkube crds --output-dir deploy/crds

# What benchmarks/ needs beyond the venv: wrk, the load generator of rag_bench.py's rate rows
# (Debian's package; needs root).
.PHONY: bench-deps
bench-deps:
	@command -v wrk >/dev/null || apt-get install -y wrk

# helm from the Go module proxy, cached per version (hack/helm/build.sh; instant once cached):
# tests/helm render, lint and install the chart with it.
.PHONY: helm helm-chart
helm:
	@hack/helm/build.sh >/dev/null

# The Helm chart deploy/helm/agentkube, generated from deploy/ (tests/helm fail while stale).
helm-chart: setup-dev
	$(VENV)/python -m hack.helm.generate


# checkov and kube-score over deploy/ and the operator's objects for examples/ (installs both
# into .cache/scan on first use); remaining findings are accepted in docs/security.md.
scan: setup-dev
	@hack/scan.sh
