"""`hack/testcluster/testcluster build|up|down|kubeconfig|status` — the test cluster by hand.

    build        build (or find cached) the binaries; prints their directory
    up           start a cluster in the state directory and wait until it is usable
    down         stop every process `up` started there, and nothing else
    kubeconfig   print the admin kubeconfig's path (export KUBECONFIG=$(... kubeconfig))
    status       say whether the cluster is running, and where its logs are

The state directory defaults to <repo>/.cache/testcluster (override: --state-dir or
AGENTKUBE_TESTCLUSTER_DIR). Exit codes: 0 done, 1 failed, 2 usage or missing prerequisite.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from . import binaries
from .cluster import TestCluster
from .errors import MissingPrerequisite, NotRunning, TestClusterError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO / ".cache" / "testcluster"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hack/testcluster/testcluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["build", "up", "down", "kubeconfig", "status"])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("AGENTKUBE_TESTCLUSTER_DIR", DEFAULT_STATE_DIR)),
    )
    args = parser.parse_args(argv)
    cluster = TestCluster(args.state_dir)
    try:
        return _COMMANDS[args.command](cluster)
    except MissingPrerequisite as e:
        print(f"testcluster: {e}", file=sys.stderr)
        return 2
    except TestClusterError as e:
        print(f"testcluster: {e}", file=sys.stderr)
        return 1


def _build(_: TestCluster) -> int:
    return subprocess.run(["bash", str(binaries.BUILD_SCRIPT)], check=False).returncode


def _up(cluster: TestCluster) -> int:
    try:
        cluster.attach()
    except NotRunning:
        pass
    else:
        print(f"testcluster: already running at {cluster.server}", file=sys.stderr)
        print(cluster.kubeconfig)
        return 0
    cluster.stop()  # clears a broken earlier cluster, if any (only its own processes)
    started = time.monotonic()
    cluster.start(binaries.locate())
    print(
        f"testcluster: ready at {cluster.server} in {time.monotonic() - started:.1f}s; "
        f"logs in {cluster.state_dir / 'logs'}",
        file=sys.stderr,
    )
    print(cluster.kubeconfig)
    return 0


def _down(cluster: TestCluster) -> int:
    stopped = cluster.stop()
    print(
        f"testcluster: stopped {', '.join(stopped) or 'nothing (no cluster running)'}",
        file=sys.stderr,
    )
    return 0


def _kubeconfig(cluster: TestCluster) -> int:
    cluster.attach()
    print(cluster.kubeconfig)
    return 0


def _status(cluster: TestCluster) -> int:
    cluster.attach()
    print(
        f"running at {cluster.server}; kubeconfig {cluster.kubeconfig}; "
        f"logs in {cluster.state_dir / 'logs'}"
    )
    return 0


_COMMANDS = {
    "build": _build,
    "up": _up,
    "down": _down,
    "kubeconfig": _kubeconfig,
    "status": _status,
}
