"""`hack/testcluster/testcluster build|up|down|kubeconfig|status` — the test cluster by hand.

    build        build (or find cached) the binaries; prints their directory
    up           start a cluster in the state directory and wait until it is usable; then the
                 real node, when the host allows (else one line says why; CI requires it)
    down         stop every process `up` started there and undo its host changes, nothing else
    kubeconfig   print the admin kubeconfig's path (export KUBECONFIG=$(... kubeconfig))
    status       say whether the cluster is running, and where its logs are
    info --json  what clients need: kubeconfig, server, real_node (its name or null), images,
                 runtime_classes, the real node's node_selector and tolerations
    import-image ARCHIVE
                 import a docker-archive (e.g. hack/image/build.sh's image.tar) into the real
                 node's containerd, for pods with imagePullPolicy Never

The state directory defaults to <repo>/.cache/testcluster (override: --state-dir or
AGENTKUBE_TESTCLUSTER_DIR). Exit codes: 0 done, 1 failed, 2 usage or missing prerequisite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import binaries
from .cluster import TestCluster
from .errors import MissingPrerequisite, NotRunning, TestClusterError
from .realnode import RealNode

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO / ".cache" / "testcluster"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hack/testcluster/testcluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=[*_COMMANDS, "import-image"])
    parser.add_argument("archive", nargs="?", type=Path, help="import-image: the archive")
    parser.add_argument("--json", action="store_true", help="info: print JSON (the only format)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("AGENTKUBE_TESTCLUSTER_DIR", DEFAULT_STATE_DIR)),
    )
    args = parser.parse_args(argv)
    if (args.command == "import-image") != (args.archive is not None):
        parser.error("an ARCHIVE goes with import-image, and only with it")
    cluster = TestCluster(args.state_dir)
    try:
        if args.command == "import-image":
            return _import_image(cluster, args.archive)
        return _COMMANDS[args.command](cluster)
    except MissingPrerequisite as e:
        print(f"testcluster: {e}", file=sys.stderr)
        return 2
    except TestClusterError as e:
        print(f"testcluster: {e}", file=sys.stderr)
        return 1


def _build(_: TestCluster) -> int:
    for script in (binaries.BUILD_SCRIPT, binaries.NODE_BUILD_SCRIPT):
        code = subprocess.run(["bash", str(script)], check=False).returncode
        if code != 0:
            return code
    return 0


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
    node_started = time.monotonic()
    try:
        node = cluster.start_real_node()
    except BaseException:
        cluster.stop()
        raise
    if node is None:
        print(f"testcluster: {cluster.real_node_unavailable}", file=sys.stderr)
    else:
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in cluster.real_node_timings.items())
        print(
            f"testcluster: real node {node.name} Ready in "
            f"{time.monotonic() - node_started:.1f}s ({steps}); runtimes runc and "
            f"{', '.join(f'{n} ({h})' for n, h in node.runtime_classes.items())}",
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


def _info(cluster: TestCluster) -> int:
    cluster.attach()
    print(json.dumps(info(cluster), indent=2))
    return 0


def _import_image(cluster: TestCluster, archive: Path) -> int:
    if not archive.is_file():
        raise MissingPrerequisite(f"{archive} is not a file; build it with `make image`.")
    cluster.attach()
    started = time.monotonic()
    RealNode(cluster.state_dir).import_image(archive)
    print(f"testcluster: imported {archive} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


def info(cluster: TestCluster) -> dict[str, Any]:
    """The `info --json` contract: other tools rely on these keys."""
    node = cluster.real_node
    return {
        "kubeconfig": str(cluster.kubeconfig),
        "server": cluster.server,
        "state_dir": str(cluster.state_dir),
        "logs": str(cluster.state_dir / "logs"),
        "real_node": node.name if node else None,
        "real_node_unavailable": None if node else cluster.real_node_unavailable,
        "images": node.images if node else {},
        "runtime_classes": node.runtime_classes if node else {},
        "real_node_selector": node.node_selector if node else {},
        "real_node_tolerations": node.tolerations if node else [],
        "pod_cidr": node.pod_cidr if node else None,
    }


_COMMANDS = {
    "build": _build,
    "up": _up,
    "down": _down,
    "kubeconfig": _kubeconfig,
    "status": _status,
    "info": _info,
}
