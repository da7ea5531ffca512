"""A real Kubernetes control plane on loopback for agentkube's tests.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from the Go modules
(`build.sh`), with kwok simulating the kubelets of a few labelled, tainted nodes (`nodes.py`).
One code path starts it: the `hack/testcluster/testcluster` command (`cli.py`) and the pytest
fixture in `tests/plugins/testcluster.py` both drive `cluster.TestCluster`.

Standard library only, so the command runs with any Python 3.11 and the tests import it as is.
"""
