"""Where pods run: a pool profile from the configuration, refined by the object's ``placement``.

The object's own ``placement.pool`` picks another profile; its ``nodeSelector`` entries are added
to (and win over) the profile's; its tolerations are appended. An unknown pool is a user mistake
the status reports, not a crash.
"""

from __future__ import annotations

from typing import Any

from agentkube.api.models import Placement
from agentkube.operator.config import OperatorConfig, PoolProfile

JSON = dict[str, Any]


class UnknownPoolError(ValueError):
    """``placement.pool`` names no profile of the operator configuration."""


def pool_profile(config: OperatorConfig, default: str, placement: Placement | None) -> PoolProfile:
    name = placement.pool if placement and placement.pool else default
    try:
        return config.pools[name]
    except KeyError:
        known = ", ".join(sorted(config.pools))
        raise UnknownPoolError(
            f"spec.placement.pool {name!r} is not a pool of this operator; use one of {known}"
        ) from None


def pool_scheduling(config: OperatorConfig, default: str, placement: Placement | None) -> JSON:
    """The pod-spec fields (nodeSelector, tolerations, affinity, runtimeClassName) to merge."""
    profile = pool_profile(config, default, placement)
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
