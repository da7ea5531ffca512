"""Where pods run: a pool profile from the configuration, refined by the object's ``placement``.

The object's own ``placement.pool`` picks another profile; its ``nodeSelector`` entries are added
to (and win over) the profile's; its tolerations are appended. Tenants choose only among the
pools the configuration offers them (``tenantPools``, ``namespacePools``; never ``sandbox`` by
default): naming another pool, or reaching one through its node selector or by tolerating its
taint, is refused, and so is a key-less toleration (it tolerates every taint there is). An
unknown or refused placement is a user mistake the status reports, not a crash.
"""

from __future__ import annotations

from typing import Any

from agentkube.api.models import Placement, Toleration
from agentkube.operator.config import OperatorConfig, PoolProfile

JSON = dict[str, Any]
RESERVED_POOLS = frozenset({"sandbox"})  # not offered to tenants unless tenantPools says so


class PlacementError(ValueError):
    """``spec.placement`` cannot be honoured; ``reason`` is the status condition's reason."""

    reason = "InvalidPlacement"


class UnknownPoolError(PlacementError):
    """``placement.pool`` names no profile of the operator configuration."""


class PlacementNotAllowed(PlacementError):
    """``placement`` reaches a pool the operator does not offer this tenant."""

    reason = "PlacementNotAllowed"


def pool_profile(config: OperatorConfig, default: str, placement: Placement | None) -> PoolProfile:
    name = placement.pool if placement and placement.pool else default
    try:
        return config.pools[name]
    except KeyError:
        known = ", ".join(sorted(config.pools))
        raise UnknownPoolError(
            f"spec.placement.pool {name!r} is not a pool of this operator; use one of {known}"
        ) from None


def offered_pools(config: OperatorConfig, default: str, namespace: str | None) -> set[str]:
    """The pools a tenant of ``namespace`` may place this kind of object on."""
    named = config.namespace_pools.get(namespace) if namespace is not None else None
    if named is None:
        named = config.tenant_pools
    if named is None:
        named = [p for p in config.pools if p not in RESERVED_POOLS]
    return {*named, default}


def _tolerates(tenant: Toleration, pool: Toleration) -> bool:
    if tenant.key != pool.key:
        return False
    return "Exists" in (tenant.operator, pool.operator) or tenant.value == pool.value


def check_placement(
    config: OperatorConfig, default: str, placement: Placement | None, namespace: str | None
) -> None:
    """Raise :class:`PlacementNotAllowed` when ``placement`` leaves the offered pools."""
    if placement is None:
        return
    offered = offered_pools(config, default, namespace)
    choices = ", ".join(sorted(offered))
    tenant = f"namespace {namespace}" if namespace else "tenants"
    if placement.pool and placement.pool in config.pools and placement.pool not in offered:
        raise PlacementNotAllowed(
            f"spec.placement.pool {placement.pool!r} is not offered to {tenant}; "
            f"use one of {choices}"
        )
    withheld = {n: p for n, p in sorted(config.pools.items()) if n not in offered}
    for i, toleration in enumerate(placement.tolerations or []):
        if not toleration.key:
            raise PlacementNotAllowed(
                f"spec.placement.tolerations[{i}] has no key, so it tolerates every taint "
                "(the sandbox and GPU pools' too); name the taint's key"
            )
        for name, profile in withheld.items():
            if any(_tolerates(toleration, taint) for taint in profile.tolerations):
                raise PlacementNotAllowed(
                    f"spec.placement.tolerations[{i}] ({toleration.key}) tolerates the taint of "
                    f"pool {name!r}, which is not offered to {tenant}; use one of {choices}"
                )
    for key, value in (placement.node_selector or {}).items():
        for name, profile in withheld.items():
            if profile.node_selector.get(key) == value:
                raise PlacementNotAllowed(
                    f"spec.placement.nodeSelector {key}={value} selects pool {name!r}, which is "
                    f"not offered to {tenant}; use one of {choices}"
                )


def pool_scheduling(
    config: OperatorConfig,
    default: str,
    placement: Placement | None,
    namespace: str | None = None,
) -> JSON:
    """The pod-spec fields (nodeSelector, tolerations, affinity, runtimeClassName) to merge."""
    profile = pool_profile(config, default, placement)
    check_placement(config, default, placement, namespace)
    node_selector = dict(profile.node_selector)
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in profile.tolerations]
    if placement is not None:
        node_selector.update(placement.node_selector or {})
        tolerations += [
            t.model_dump(by_alias=True, exclude_none=True) for t in placement.tolerations or []
        ]
    fields: JSON = {}
    if node_selector:
        fields["nodeSelector"] = node_selector
    if tolerations:
        fields["tolerations"] = tolerations
    if profile.affinity:
        fields["affinity"] = profile.affinity
    if profile.runtime_class_name:
        fields["runtimeClassName"] = profile.runtime_class_name
    return fields
