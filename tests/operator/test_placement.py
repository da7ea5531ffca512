from __future__ import annotations

import pytest

from agentkube.api.models import Placement, Toleration
from agentkube.operator.config import OperatorConfig, PoolProfile
from agentkube.operator.placement import UnknownPoolError, pool_scheduling
from agentkube.operator.rendering import render_agent
from tests.operator.conftest import agent

CONFIG = OperatorConfig()


def test_logic_agents_prefer_spot_nodes_and_tolerate_spot_taints_by_default() -> None:
    fields = pool_scheduling(CONFIG, CONFIG.agent_pool, None)
    preferred = fields["affinity"]["nodeAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    keys = {term["preference"]["matchExpressions"][0]["key"] for term in preferred}
    assert {"karpenter.sh/capacity-type", "cloud.google.com/gke-spot"} <= keys
    assert {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
            "effect": "NoSchedule"} in fields["tolerations"]  # fmt: skip
    assert "nodeSelector" not in fields  # a cluster without spot nodes still runs agents


def test_the_gpu_pool_selects_nvidia_tesla_nodes_and_tolerates_the_gpu_taint() -> None:
    fields = pool_scheduling(CONFIG, CONFIG.model_pool, None)
    assert fields["nodeSelector"] == {"accelerator": "nvidia-tesla"}
    assert fields["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_pool_profiles_are_configuration() -> None:
    config = OperatorConfig(
        pools={
            "cheap": PoolProfile(
                node_selector={"pool": "cheap"},
                tolerations=[Toleration(key="pool", operator="Exists")],
            ),
            "gpu": PoolProfile(),
        },
        agent_pool="cheap",
    )
    pod = render_agent(agent(), "ns", None, config)[-1]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "cheap"}
    assert pod["tolerations"] == [{"key": "pool", "operator": "Exists"}]
    assert "affinity" not in pod


def test_an_agents_placement_picks_a_pool_and_refines_it() -> None:
    placement = Placement.model_validate(
        {
            "pool": "gpu",
            "nodeSelector": {"zone": "a"},
            "tolerations": [{"key": "x", "operator": "Exists"}],
        }
    )
    fields = pool_scheduling(CONFIG, CONFIG.agent_pool, placement)
    assert fields["nodeSelector"] == {"accelerator": "nvidia-tesla", "zone": "a"}
    assert fields["tolerations"][-1] == {"key": "x", "operator": "Exists"}


def test_an_unknown_pool_names_the_field_and_the_known_pools() -> None:
    with pytest.raises(UnknownPoolError, match=r"spec.placement.pool 'nope'.*gpu, sandbox, spot"):
        pool_scheduling(CONFIG, CONFIG.agent_pool, Placement(pool="nope"))


def test_a_runtime_class_in_a_profile_reaches_the_pod() -> None:
    config = OperatorConfig(
        pools={**CONFIG.pools, "spot": PoolProfile(runtime_class_name="gvisor")}
    )
    assert pool_scheduling(config, "spot", None) == {"runtimeClassName": "gvisor"}
