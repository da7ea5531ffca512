from __future__ import annotations

from pathlib import Path

import pytest

from agentkube.operator.config import OperatorConfig, load_config
from agentkube.operator.errors import OperatorConfigError


def test_no_file_means_the_defaults() -> None:
    config = load_config(None)
    assert config == OperatorConfig()
    assert config.pools["gpu"].node_selector == {"accelerator": "nvidia-tesla"}


def test_a_file_overrides_pool_profiles(tmp_path: Path) -> None:
    path = tmp_path / "operator.yaml"
    path.write_text(
        "pools:\n"
        "  spot:\n"
        "    nodeSelector: {node.kubernetes.io/capacity-type: spot}\n"
        "    tolerations: [{key: node.kubernetes.io/capacity-type, operator: Exists}]\n"
        "  gpu: {nodeSelector: {accelerator: nvidia-tesla}}\n"
        "sandboxUrl: http://gateway:8080\n"
    )
    config = load_config(path)
    assert config.pools["spot"].node_selector == {"node.kubernetes.io/capacity-type": "spot"}
    assert config.sandbox_url == "http://gateway:8080"


def test_an_agent_pool_without_a_profile_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "operator.yaml"
    path.write_text("agentPool: cheap\n")
    with pytest.raises(OperatorConfigError, match=r"agentPool 'cheap' is not a pool profile"):
        load_config(path)


def test_an_unknown_setting_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "operator.yaml"
    path.write_text("agentImag: x\n")
    with pytest.raises(OperatorConfigError, match=r"agentImag: unknown field"):
        load_config(path)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(OperatorConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")
