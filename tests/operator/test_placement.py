from __future__ import annotations

import pytest

from agentkube.api.models import Placement, Toleration
from agentkube.operator.config import OperatorConfig, PoolProfile
from agentkube.operator.placement import PlacementNotAllowed, UnknownPoolError, pool_scheduling
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


# --------------------------------------------------------------------------- offered pools


def placed(**fields: object) -> Placement:
    return Placement.model_validate(fields)


def test_tenants_cannot_name_the_sandbox_pool() -> None:
    with pytest.raises(PlacementNotAllowed, match=r"pool 'sandbox' is not offered to namespace t"):
        pool_scheduling(CONFIG, CONFIG.agent_pool, placed(pool="sandbox"), "t")


def test_a_keyless_exists_toleration_is_refused() -> None:
    keyless = placed(tolerations=[{"operator": "Exists"}])
    with pytest.raises(PlacementNotAllowed, match=r"tolerations\[0\] has no key"):
        pool_scheduling(CONFIG, CONFIG.agent_pool, keyless)


@pytest.mark.parametrize(
    "placement",
    [
        {"tolerations": [{"key": "agentkube.openvn/pool", "operator": "Exists"}]},
        {"tolerations": [{"key": "agentkube.openvn/pool", "value": "sandbox"}]},
        {"nodeSelector": {"agentkube.openvn/pool": "sandbox"}},
    ],
)
def test_a_withheld_pool_cannot_be_reached_by_its_taint_or_its_label(
    placement: dict[str, object],
) -> None:
    with pytest.raises(PlacementNotAllowed, match=r"pool 'sandbox', which is not offered"):
        pool_scheduling(CONFIG, CONFIG.agent_pool, placed(**placement))


def test_pools_are_offered_per_namespace() -> None:
    config = OperatorConfig(tenant_pools=["spot"], namespace_pools={"ml": ["spot", "gpu"]})
    assert pool_scheduling(config, "spot", placed(pool="gpu"), "ml")["nodeSelector"] == {
        "accelerator": "nvidia-tesla"
    }
    with pytest.raises(
        PlacementNotAllowed, match=r"'gpu' is not offered to namespace web; use one of spot"
    ):
        pool_scheduling(config, "spot", placed(pool="gpu"), "web")
    # The kind's own default pool is always allowed: Models still go to the GPU pool.
    assert pool_scheduling(config, "gpu", placed(pool="gpu"), "web")


def test_an_offered_pool_that_is_not_a_profile_is_a_config_error() -> None:
    with pytest.raises(ValueError, match=r"namespacePools\.ml names 'tpu'"):
        OperatorConfig(namespace_pools={"ml": ["tpu"]})
