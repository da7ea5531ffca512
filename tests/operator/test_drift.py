from __future__ import annotations

from agentkube.operator.drift import drifted
from agentkube.operator.naming import HASH_ANNOTATION, stamp


def test_a_missing_object_has_drifted() -> None:
    assert drifted(None, {"spec": {}})


def test_fields_the_api_server_adds_are_not_drift() -> None:
    desired = {"spec": {"ports": [{"port": 80, "name": "http"}], "selector": {"a": "b"}}}
    live = {
        "metadata": {"resourceVersion": "7"},
        "spec": {
            "ports": [{"port": 80, "name": "http", "protocol": "TCP", "targetPort": 80}],
            "selector": {"a": "b"},
            "clusterIP": "10.0.0.1",
        },
    }
    assert not drifted(live, desired)


def test_a_hand_edited_value_is_drift() -> None:
    assert drifted({"spec": {"replicas": 5}}, {"spec": {"replicas": 1}})


def test_a_removed_list_item_is_drift() -> None:
    desired = {"egress": [{"port": 53}, {"port": 443}]}
    assert drifted({"egress": [{"port": 53}]}, desired)


def test_quantities_compare_by_value_as_the_api_server_canonicalises_them() -> None:
    desired = {"resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}}}
    live = {"resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}}
    assert not drifted(live, desired)
    assert drifted({"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}, desired)


def test_only_resource_lists_compare_as_quantities() -> None:
    assert drifted({"spec": {"image": "1000m"}}, {"spec": {"image": "1"}})


def test_the_hash_annotation_catches_a_field_that_is_no_longer_rendered() -> None:
    before = stamp({"metadata": {"name": "a"}, "spec": {"x": 1, "y": 2}})
    after = stamp({"metadata": {"name": "a"}, "spec": {"x": 1}})
    assert not drifted(after, after)
    # The live object still has y (applied before): containment alone would miss the change.
    assert drifted(before, after)
    assert (
        before["metadata"]["annotations"][HASH_ANNOTATION]
        != after["metadata"]["annotations"][HASH_ANNOTATION]
    )


def test_stamping_is_stable() -> None:
    obj = {"metadata": {"name": "a", "annotations": {"keep": "me"}}, "spec": {}}
    assert stamp(stamp(obj)) == stamp(obj)
    assert stamp(obj)["metadata"]["annotations"]["keep"] == "me"
