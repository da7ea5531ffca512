"""The Helm chart deploy/helm/agentkube, generated from deploy/ (generate.py), and helm
itself (build.sh)."""
