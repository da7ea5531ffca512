"""The operator against the real control plane (kube-apiserver, controller manager, scheduler,
kwok nodes), running as a local process with the RBAC of deploy/.

Agent namespaces enforce Pod Security ``restricted``, so a pod the operator renders outside that
profile would never be created and these tests would time out.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import yaml

from tests.operator.conftest import SEED
from tests.operator.operator_process import OperatorProcess
from tests.plugins.testcluster import Cluster

pytestmark = pytest.mark.cluster

CHILD_KINDS = ("serviceaccount", "configmap", "service", "networkpolicy", "deployment")
ENDPOINT_MODEL = """
apiVersion: ai.openvn/v1
kind: Model
metadata: {name: %s}
spec:
  endpoint: {url: "https://llm.example.com/v1", model: small-model}
"""


def get(cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def wait_condition(
    cluster: Cluster,
    kind: str,
    name: str,
    namespace: str,
    type_: str = "Ready",
    status: str = "True",
    timeout: float = 120,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(cluster, kind, name, namespace)
        found = condition(obj, type_)
        return obj if found and found["status"] == status else None

    return cluster.wait_until(probe, f"{kind} {namespace}/{name} {type_}={status}", timeout)


def agent(name: str, model: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "Agent",
            "metadata": {"name": name},
            "spec": {
                "model": model,
                "tools": ["python-interpreter"],
                "memory": "ephemeral",
                **spec,
            },
        }
    )


def bind_volume(cluster: Cluster, namespace: str, claim: str) -> None:
    """A PersistentVolume pre-bound to the claim: the test cluster has no provisioner."""
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"pv-{namespace}-{claim}"[:63]},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": f"/tmp/{namespace}-{claim}"},
            "claimRef": {"namespace": namespace, "name": claim},
            "persistentVolumeReclaimPolicy": "Delete",
        },
    }
    cluster.apply(json.dumps(volume))


def running_pods(
    cluster: Cluster, namespace: str, selector: str, count: int
) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]
        running = [
            p
            for p in pods
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]
        return running if len(running) == count else None

    return cluster.wait_until(probe, f"{count} running pods {selector} in {namespace}", 120)


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --------------------------------------------------------------------------- tests


def test_kubectl_apply_k_deploy_installs_crds_rbac_and_the_operator(installed: Cluster) -> None:
    role = installed.kubectl_json("get", "clusterrole", "agentkube-operator")

    def with_verb(verb: str) -> set[str]:
        return {r for rule in role["rules"] if verb in rule["verbs"] for r in rule["resources"]}

    assert not with_verb("*")
    assert with_verb("update") == {
        "agents/finalizers",
        "models/finalizers",
        "mcpservers/finalizers",
        "knowledgebases/finalizers",
    }
    # A Model's serving objects once it switches to an endpoint, KnowledgeBases' Jobs, an Agent's
    # KEDA objects once it stops autoscaling; nothing else.
    assert with_verb("delete") == {
        "deployments",
        "services",
        "networkpolicies",
        "jobs",
        "scaledobjects",
        "triggerauthentications",
    }
    # Secrets: only each namespace's own agentkube-memory (shared memory's credentials).
    secret_rules = [rule for rule in role["rules"] if "secrets" in rule["resources"]]
    assert [rule.get("resourceNames") for rule in secret_rules] == [["agentkube-memory"]]
    assert installed.kubectl_json(
        "get", "deployment", "agentkube-operator", "-n", "agentkube-system"
    )
    namespace = installed.kubectl_json("get", "namespace", "agentkube-system")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_kubectl_apply_k_deploy_also_installs_the_sandbox_gateway_and_wires_it(
    installed: Cluster,
) -> None:
    gateway = installed.kubectl_json(
        "get", "deployment", "agentkube-sandbox-gateway", "-n", "agentkube-system"
    )
    assert gateway["spec"]["replicas"] == 1
    sandbox_ns = installed.kubectl_json("get", "namespace", "agentkube-sandbox")
    assert sandbox_ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # The gateway's Role stays in the sandbox namespace, not moved by a namespace transformer.
    assert installed.kubectl_json(
        "get", "role", "agentkube-sandbox-gateway", "-n", "agentkube-sandbox"
    )
    config = installed.kubectl_json(
        "get", "configmap", "agentkube-operator", "-n", "agentkube-system"
    )
    assert (
        "sandboxUrl: http://agentkube-sandbox-gateway.agentkube-system.svc:8080"
        in config["data"]["config.yaml"]
    )


def test_seed_agent_gets_every_child_runs_on_spot_and_its_model_on_the_gpu_node(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    cluster.apply(
        "apiVersion: ai.openvn/v1\nkind: Model\nmetadata: {name: llama-3-70b}\n"
        "spec: {serve: {model: meta-llama/Meta-Llama-3-70B-Instruct, gpus: 1}}\n",
        ns,
    )
    cluster.apply(SEED, ns)  # the seed manifest, verbatim
    owner = cluster.kubectl_json("get", "agent", "research-agent", "-n", ns)["metadata"]["uid"]
    for kind in (*CHILD_KINDS, "persistentvolumeclaim"):
        child = cluster.wait_until(
            functools.partial(get, cluster, kind, "research-agent", ns), f"{kind} research-agent"
        )
        assert child["metadata"]["ownerReferences"][0]["uid"] == owner
    bind_volume(cluster, ns, "research-agent")

    (pod,) = running_pods(cluster, ns, "ai.openvn/agent=research-agent", 1)
    assert pod["spec"]["nodeName"] in cluster.pools["spot"].nodes
    (server,) = running_pods(cluster, ns, "ai.openvn/model=llama-3-70b", 1)
    assert server["spec"]["nodeName"] in cluster.pools["gpu"].nodes
    assert server["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    policy = cluster.wait_until(
        lambda: get(cluster, "networkpolicy", "llama-3-70b-model", ns), "the Model's policy"
    )
    assert policy["spec"]["podSelector"]["matchLabels"]["ai.openvn/model"] == "llama-3-70b"

    agent_obj = wait_condition(cluster, "agent", "research-agent", ns)
    status = agent_obj["status"]
    assert status["observedGeneration"] == agent_obj["metadata"]["generation"]
    assert status["endpoint"] == f"http://research-agent.{ns}.svc:8080"
    assert condition(agent_obj, "ModelResolved")["status"] == "True"  # type: ignore[index]
    model = wait_condition(cluster, "model", "llama-3-70b", ns)
    assert model["status"]["url"] == f"http://llama-3-70b-model.{ns}.svc:8000/v1"
    deployment = get(cluster, "deployment", "research-agent", ns)
    assert deployment is not None
    assert env_of(deployment)["AGENTKUBE_MODEL_BASE_URL"] == model["status"]["url"]
    assert env_of(deployment)["AGENTKUBE_DATA_DIR"] == "/var/lib/agentkube"
    table = cluster.kubectl("get", "agents", "-n", ns).stdout
    assert "research-agent" in table and "True" in table


def test_an_agent_whose_model_is_missing_says_so_and_recovers_when_it_appears(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    cluster.apply(agent("waiter", "later"), ns)
    waiting = wait_condition(cluster, "agent", "waiter", ns, "ModelResolved", "False")
    assert condition(waiting, "ModelResolved")["reason"] == "ModelNotFound"  # type: ignore[index]
    assert condition(waiting, "Ready")["status"] == "False"  # type: ignore[index]
    events = cluster.wait_until(
        lambda: cluster.kubectl_json(
            "get", "events", "-n", ns, "--field-selector", "involvedObject.name=waiter"
        )["items"],
        "a ModelNotFound event",
    )
    assert any(e["reason"] == "ModelNotFound" and e["type"] == "Warning" for e in events)

    cluster.apply(ENDPOINT_MODEL % "later", ns)
    wait_condition(cluster, "agent", "waiter", ns)
    deployment = get(cluster, "deployment", "waiter", ns)
    assert deployment is not None
    assert env_of(deployment)["AGENTKUBE_MODEL_BASE_URL"] == "https://llm.example.com/v1"
    assert env_of(deployment)["AGENTKUBE_MODEL_ID"] == "small-model"


def test_a_spec_change_rolls_out(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    cluster.apply(ENDPOINT_MODEL % "m", ns)
    cluster.apply(agent("roller", "m"), ns)
    before = wait_condition(cluster, "agent", "roller", ns)
    old = get(cluster, "deployment", "roller", ns)
    assert old is not None
    cluster.apply(agent("roller", "m", systemPrompt="Answer in French.", replicas=2), ns)

    def rolled() -> dict[str, Any] | None:
        obj = get(cluster, "agent", "roller", ns)
        ready = condition(obj, "Ready")
        fresh = obj and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
        return obj if fresh and ready and ready["status"] == "True" else None

    after = cluster.wait_until(rolled, "the changed agent to be Ready again", 120)
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    new = get(cluster, "deployment", "roller", ns)
    assert new is not None and new["spec"]["replicas"] == 2
    annotation = "ai.openvn/config-hash"
    template = new["spec"]["template"]["metadata"]["annotations"][annotation]
    assert template != old["spec"]["template"]["metadata"]["annotations"][annotation]
    config_map = get(cluster, "configmap", "roller", ns)
    assert config_map is not None and "Answer in French." in config_map["data"]["agent.yaml"]
    running_pods(cluster, ns, "ai.openvn/agent=roller", 2)


def test_deleted_and_hand_edited_children_are_repaired(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    cluster.apply(ENDPOINT_MODEL % "m", ns)
    cluster.apply(agent("fixme", "m"), ns)
    wait_condition(cluster, "agent", "fixme", ns)
    service = get(cluster, "service", "fixme", ns)
    assert service is not None
    cluster.kubectl("delete", "service", "fixme", "-n", ns)
    cluster.kubectl("scale", "deployment", "fixme", "-n", ns, "--replicas=3")
    cluster.kubectl(
        "patch", "configmap", "fixme", "-n", ns, "--type=merge", "-p", '{"data":{"agent.yaml":"x"}}'
    )

    def repaired() -> bool:
        svc = get(cluster, "service", "fixme", ns)
        dep = get(cluster, "deployment", "fixme", ns)
        cm = get(cluster, "configmap", "fixme", ns)
        return bool(
            svc
            and svc["metadata"]["uid"] != service["metadata"]["uid"]
            and dep
            and dep["spec"]["replicas"] == 1
            and cm
            and "kind: Agent" in cm["data"]["agent.yaml"]
        )

    cluster.wait_until(repaired, "the service, replicas and config to be repaired", 60)


def test_reconciling_an_unchanged_agent_writes_nothing(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    cluster.apply(ENDPOINT_MODEL % "m", ns)
    cluster.apply(agent("idle", "m"), ns)
    wait_condition(cluster, "agent", "idle", ns)
    before = operator.settled_writes(cluster, ns)
    assert before >= 6  # the log does record this namespace's writes
    reconciles = operator.reconciles_of("Agent", ns, "idle")
    # A metadata-only change makes the operator reconcile the Agent again; so does re-applying
    # the same manifest and touching its children's labels it does not own.
    cluster.kubectl("label", "agent", "idle", "-n", ns, "touched=yes")
    cluster.apply(agent("idle", "m"), ns)
    cluster.kubectl("label", "deployment", "idle", "-n", ns, "touched=yes")
    cluster.wait_until(
        lambda: operator.reconciles_of("Agent", ns, "idle") >= reconciles + 2,
        "a reconcile after the label on the Agent and one after the one on its Deployment",
        60,
    )
    assert operator.writes_in(ns) == before  # they ran, and wrote nothing


def test_a_model_switched_to_an_endpoint_loses_its_serving_objects(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    served = (
        "apiVersion: ai.openvn/v1\nkind: Model\nmetadata: {name: sw}\n"
        "spec: {serve: {model: x, gpus: 0}}\n"
    )
    cluster.apply(served, ns)
    cluster.wait_until(lambda: get(cluster, "deployment", "sw-model", ns), "the serving Deployment")

    # kubectl replace reads the Model, then writes it back: the operator may change it in between
    # (finalizer, status), and the API server answers Conflict. A user retries; so do we.
    def replaced() -> bool:
        done = cluster.kubectl(
            "replace", "-n", ns, "-f", "-", input=ENDPOINT_MODEL % "sw", check=False
        )
        if done.returncode != 0 and "Conflict" not in done.stderr:
            pytest.fail(f"kubectl replace failed: {done.stderr}", pytrace=False)
        return done.returncode == 0

    cluster.wait_until(replaced, "kubectl replace to get in between the operator's updates", 30)

    def gone() -> bool:
        kinds = ("deployment", "service", "networkpolicy")
        return all(get(cluster, kind, "sw-model", ns) is None for kind in kinds)

    cluster.wait_until(gone, "the serving Deployment, Service and NetworkPolicy to go", 60)
    model = wait_condition(cluster, "model", "sw", ns)
    assert model["status"]["url"] == "https://llm.example.com/v1"


def test_deleting_an_agent_deletes_its_children(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    cluster.apply(ENDPOINT_MODEL % "m", ns)
    cluster.apply(agent("bye", "m", memory="persistent"), ns)
    wait_condition(cluster, "agent", "bye", ns, "Reconciled")
    cluster.kubectl("delete", "agent", "bye", "-n", ns)

    def all_gone() -> bool:
        kinds = (*CHILD_KINDS, "persistentvolumeclaim")
        return all(get(cluster, kind, "bye", ns) is None for kind in kinds)

    cluster.wait_until(all_gone, "the garbage collector to delete every child of bye", 90)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"model": "m", "memory": "forever"}, "spec.memory"),
        ({"model": "m", "role": "planner", "tools": ["web-browser"]}, "planner needs"),
        ({"model": "m", "tools": ["rm-rf"]}, "spec.tools[0]"),
        ({"model": "m", "replicas": 1000}, "spec.replicas"),
    ],
)
def test_invalid_specs_are_rejected_by_the_api_server(
    installed: Cluster, agent_namespace: str, spec: dict[str, Any], message: str
) -> None:
    manifest = {
        "apiVersion": "ai.openvn/v1",
        "kind": "Agent",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    result = installed.apply(json.dumps(manifest), agent_namespace, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_an_operator_killed_mid_reconcile_converges_after_a_restart(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    cluster.apply(ENDPOINT_MODEL % "m", ns)
    names = [f"burst-{i}" for i in range(15)]
    cluster.apply(yaml.safe_dump_all([json.loads(agent(n, "m")) for n in names]), ns)
    cluster.wait_until(
        lambda: cluster.kubectl_json("get", "deployments", "-n", ns)["items"],
        "the operator to start applying",
        timeout=60,
        every=0.05,
    )
    operator.stop(kill=True)  # SIGKILL: no clean-up, some agents half applied
    operator.start()
    for name in names:
        wait_condition(cluster, "agent", name, ns)
        for kind in CHILD_KINDS:
            assert get(cluster, kind, name, ns) is not None, f"{kind} {name}"


def test_watches_recover_after_an_api_server_restart(
    installed: Cluster, operator: OperatorProcess, agent_namespace: str
) -> None:
    cluster, ns = installed, agent_namespace
    cluster.apply(ENDPOINT_MODEL % "m", ns)
    cluster.apply(agent("before", "m"), ns)
    wait_condition(cluster, "agent", "before", ns)

    cluster.restart("kube-apiserver", down_seconds=3)

    cluster.apply(agent("after", "m"), ns)
    cluster.apply(agent("before", "m", replicas=2), ns)
    wait_condition(cluster, "agent", "after", ns)
    cluster.wait_until(
        lambda: (
            (get(cluster, "deployment", "before", ns) or {}).get("spec", {}).get("replicas") == 2
        ),
        "the change made after the restart to reach the Deployment",
        90,
    )
    cluster.kubectl("delete", "service", "after", "-n", ns)
    cluster.wait_until(
        lambda: get(cluster, "service", "after", ns), "the deleted Service to return"
    )
    assert operator.proc is not None and operator.proc.poll() is None
