"""End to end, as a user runs it (the README's "On a cluster"): `kubectl apply -k
deploy/namespaced`, a `Model` for the seed's `llama-3-70b`, the article's manifest verbatim in
`agents`, `kubectl get agents`, then a task sent through `kubectl port-forward` to the agent's
Service, answered by code that ran in a sandbox pod on gVisor on the real node — a pod that is
gone afterwards.

The Model's endpoint is tests/e2e/model_standin.py running as a pod (the LLM is the one part that
cannot run here; the stand-in only relays: it calls `python-interpreter` with the task's code and
quotes the tool's result). Everything else is the real thing: the operator and the sandbox
gateway from the project's image, Services routed by kube-proxy, names resolved by CoreDNS, the
agent's `memory: persistent` volume bound to a PersistentVolume, NetworkPolicies enforced by
kube-router, the gateway's Jobs and warm pods on runsc.

Then the cluster is disturbed and must converge: the operator's pod is deleted and the API
server restarted (the Agent stays Ready, a new task is answered), and the Agent is deleted
(everything it owned goes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hack.testcluster import binaries
from hack.testcluster.realnode import Info, RealNode

from tests.e2e.conftest import AGENTS_NS, MEMORY_NS, SANDBOX_NS, SYSTEM_NS, full_reference
from tests.e2e.steps import deployment_available, say, wait_for
from tests.e2e.workload import (
    AGENT,
    CODE,
    PodWatch,
    agent_ready,
    apply_seed,
    assert_answered,
    finished,
    port_forward,
    run_task,
    service_url,
    submit,
)
from tests.plugins.testcluster import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

MEMORY = Path(__file__).resolve().parents[2] / "deploy" / "memory"
SLOW_TASK = (
    "Take a while, then compute the first 10 squares:\n```python\nimport time\n"
    "time.sleep(6)\nprint([n * n for n in range(1, 11)])\n```"
)


@pytest.fixture(scope="module")
def seed_namespace(testcluster: Cluster, installed: str) -> str:
    """`agents` with the model stand-in, the Model, and the seed manifest, verbatim (the
    install's teardown deletes the namespace)."""
    apply_seed(testcluster, installed, AGENTS_NS)
    return AGENTS_NS


def _memory_images(testcluster: Cluster, project_image: str) -> None:
    """deploy/memory's images, from what the node has: Redis from the node's redis image (Debian's
    redis-server), Chroma from the project's image (`chroma run` comes with chromadb)."""
    node = RealNode(testcluster.state_dir)
    redis = binaries.locate_node()
    node.import_image(redis.image_archive("redis"))
    sources = {"redis.yaml": redis.images["redis"], "chroma.yaml": project_image}
    for manifest, source in sources.items():
        for line in (MEMORY / manifest).read_text().splitlines():
            if line.strip().startswith("image:"):
                node.tag_image(source, full_reference(line.split("image:", 1)[1].strip()))


def _statefulset_ready(cluster: Cluster, name: str) -> Callable[[], bool]:
    def probe() -> bool:
        result = cluster.kubectl("get", "statefulset", name, "-n", MEMORY_NS, "-o", "json",
                                 check=False)  # fmt: skip
        return result.returncode == 0 and bool(
            json.loads(result.stdout).get("status", {}).get("readyReplicas")
        )

    return probe


def test_the_seed_agent_answers_with_code_run_in_a_gvisor_sandbox_that_is_then_gone(
    testcluster: Cluster, plain_cluster: Info, seed_namespace: str
) -> None:
    ns = seed_namespace
    wait_for(
        testcluster, "deployment model-standin to be available",
        deployment_available(testcluster, ns, "model-standin"), timeout=120, namespaces=(ns,),
    )  # fmt: skip
    began = time.monotonic()
    wait_for(
        testcluster, f"agent {AGENT} to be Ready", lambda: agent_ready(testcluster, ns),
        timeout=240, namespaces=(ns, SYSTEM_NS),
    )  # fmt: skip
    ready_s = time.monotonic() - began
    claim = testcluster.kubectl_json("get", "pvc", "-n", ns)["items"]
    assert [c["status"]["phase"] for c in claim] == ["Bound"], claim  # memory: persistent

    row = testcluster.kubectl("get", "agents", "-n", ns, "-o", "wide").stdout
    say(f"kubectl get agents -n {ns} -o wide\n{row}")
    assert AGENT in row and "True" in row, row

    watch = PodWatch()
    watch.start(testcluster, SANDBOX_NS)
    try:
        with port_forward(testcluster, ns, AGENT) as url:
            view = run_task(testcluster, url, ns)
    finally:
        watch.stop()
    say(f"Ready after {ready_s:.1f}s; first task answered after {time.monotonic() - began:.1f}s")
    assert_answered(testcluster, view, ns)

    # The pod that ran the task's code: a claimed warm pod (the request handed over by exec, or
    # in its annotation) or a Job's pod (the request in its environment).
    ran = watch.ran(CODE)
    assert ran, f"no sandbox pod received the task's code; seen: {sorted(watch.seen)}"
    for name, pod in ran.items():
        assert pod["spec"].get("runtimeClassName") == "gvisor", (name, pod["spec"])
        assert pod["spec"]["nodeName"] == plain_cluster.name, (name, pod["spec"])

    def gone() -> bool:
        left = testcluster.kubectl("get", "pods", "-n", SANDBOX_NS, "-o", "name").stdout.split()
        return not any(f"pod/{name}" in left for name in ran)

    wait_for(testcluster, "the sandbox pods that ran to be gone", gone, timeout=60,
             namespaces=(SANDBOX_NS,))  # fmt: skip


def test_with_deploy_memory_a_task_survives_the_deletion_of_the_agent_pod_running_it(
    testcluster: Cluster, seed_namespace: str, installed: str
) -> None:
    """docs/memory.md's steps, then `memory: {}` in the operator's config: the agent's tasks go
    through Redis, so the pod that replaces a deleted one (or any replica) answers for them."""
    ns = seed_namespace
    _memory_images(testcluster, installed)
    say("deploy/memory: namespace, the Redis admin Secret, kubectl apply -k deploy/memory")
    testcluster.kubectl("create", "namespace", MEMORY_NS)
    testcluster.kubectl("-n", MEMORY_NS, "create", "secret", "generic", "agentkube-redis",
                        "--from-literal=password=e2e-admin-password")  # fmt: skip
    testcluster.kubectl("apply", "-k", str(MEMORY))
    for name in ("agentkube-redis", "agentkube-chroma"):
        wait_for(
            testcluster, f"statefulset {MEMORY_NS}/{name} to be ready",
            _statefulset_ready(testcluster, name), timeout=180, namespaces=(MEMORY_NS,),
        )  # fmt: skip
    config = testcluster.kubectl_json("get", "configmap", "agentkube-operator", "-n", SYSTEM_NS)
    text = config["data"]["config.yaml"] + "memory: {}\n"
    patch = json.dumps({"data": {"config.yaml": text}})
    testcluster.kubectl("patch", "configmap", "agentkube-operator", "-n", SYSTEM_NS, "-p", patch)
    testcluster.kubectl("rollout", "restart", "deployment/agentkube-operator", "-n", SYSTEM_NS)

    def wired() -> bool:
        deployment = testcluster.kubectl_json("get", "deployment", AGENT, "-n", ns)
        env = deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])
        status = deployment.get("status", {})
        rolled = status.get("updatedReplicas") == status.get("replicas") == status.get(
            "availableReplicas"
        ) and not status.get("unavailableReplicas")
        return rolled and any(e["name"] == "AGENTKUBE_REDIS_URL" for e in env)

    wait_for(testcluster, f"{AGENT} to run with Redis (AGENTKUBE_REDIS_URL)", wired,
             timeout=240, namespaces=(ns, SYSTEM_NS))  # fmt: skip
    url = service_url(testcluster, ns)
    watch = PodWatch()
    watch.start(testcluster, SANDBOX_NS)
    try:
        task_id = submit(testcluster, url, ns, SLOW_TASK)
        wait_for(testcluster, "the slow task's code to reach a sandbox pod",
                 lambda: watch.ran("time.sleep(6)"), timeout=60,
                 namespaces=(ns, SANDBOX_NS))  # fmt: skip
    finally:
        watch.stop()
    pod = testcluster.kubectl("get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={AGENT}",
                              "-o", "name").stdout.split()[0]  # fmt: skip
    say(f"deleting {pod}, which runs task {task_id}")
    testcluster.kubectl("delete", "-n", ns, pod, "--wait=false")
    view = finished(testcluster, url, ns, task_id, timeout=240)
    assert_answered(testcluster, view, ns)


def test_after_the_operator_and_the_api_server_restart_the_agent_still_answers(
    testcluster: Cluster, seed_namespace: str
) -> None:
    ns = seed_namespace
    wait_for(testcluster, f"agent {AGENT} to be Ready", lambda: agent_ready(testcluster, ns),
             timeout=240, namespaces=(ns, SYSTEM_NS))  # fmt: skip
    say("deleting the operator's pod, then restarting the API server")
    testcluster.kubectl("delete", "pod", "-n", SYSTEM_NS, "-l",
                        "app.kubernetes.io/name=agentkube-operator", "--wait=false")  # fmt: skip
    testcluster.restart("kube-apiserver")
    wait_for(
        testcluster, "the operator to be available again",
        deployment_available(testcluster, SYSTEM_NS, "agentkube-operator"), timeout=180,
        namespaces=(SYSTEM_NS,),
    )  # fmt: skip
    wait_for(testcluster, f"agent {AGENT} to be Ready again",
             lambda: agent_ready(testcluster, ns), timeout=120,
             namespaces=(ns, SYSTEM_NS))  # fmt: skip
    view = run_task(testcluster, service_url(testcluster, ns), ns)
    assert_answered(testcluster, view, ns)


def test_deleting_the_agent_removes_everything_it_owned(
    testcluster: Cluster, seed_namespace: str
) -> None:
    ns = seed_namespace
    kinds = "deployments,services,configmaps,networkpolicies,serviceaccounts,persistentvolumeclaims"
    owned = testcluster.kubectl("get", kinds, "-n", ns, "-l", f"app.kubernetes.io/instance={AGENT}",
                                "-o", "name").stdout.split()  # fmt: skip
    assert owned, "the Agent's children carry no app.kubernetes.io/instance label"
    testcluster.kubectl("delete", "agent", AGENT, "-n", ns, "--timeout=60s")

    def all_gone() -> bool:
        left = testcluster.kubectl("get", kinds, "-n", ns, "-o", "name").stdout.split()
        return not set(owned) & set(left)

    wait_for(testcluster, f"everything {AGENT} owned to be gone ({len(owned)} objects)", all_gone,
             timeout=120, namespaces=(ns,))  # fmt: skip
