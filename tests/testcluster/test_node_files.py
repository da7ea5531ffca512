"""The real node's files, without a node: image archives, configs, host-change bookkeeping."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest
from hack.testcluster import hostchanges, images, nodeconfig


def test_an_image_archive_holds_the_tree_as_one_layer_under_its_reference(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr" / "bin").mkdir(parents=True)
    (rootfs / "usr" / "bin" / "hello").write_text("#!/bin/sh\necho hi\n")
    (rootfs / "usr" / "bin" / "hello").chmod(0o755)
    os.symlink("usr/bin", rootfs / "bin")
    archive = tmp_path / "image.tar"

    digest = images.write_image(rootfs, archive, "localhost/agentkube/test:1", ["/bin/hello"])

    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == ["localhost/agentkube/test:1"]
        config = json.load(outer.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
        assert config["rootfs"]["diff_ids"] == [digest]
        assert config["config"]["Cmd"] == ["/bin/hello"]
        layer = outer.extractfile(manifest[0]["Layers"][0])
        with tarfile.open(fileobj=layer) as inner:
            members = {m.name: m for m in inner.getmembers()}
    assert list(members) == ["bin", "usr", "usr/bin", "usr/bin/hello"]
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert members["usr/bin/hello"].mode == 0o755


def test_an_image_config_carries_entrypoint_env_user_and_workdir_and_clamps_mtimes(
    tmp_path: Path,
) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "opt").mkdir(parents=True)
    (rootfs / "opt" / "tool").write_text("x")
    settings = images.ImageConfig(
        entrypoint=["agentkube"],
        env=["PATH=/opt/agentkube/bin:/usr/bin", "PYTHONUNBUFFERED=1"],
        user="65532:65532",
        workdir="/var/lib/agentkube",
        exposed_ports=["8080/tcp"],
        mtime=1_000,
    )
    digests = []
    for name in ("a.tar", "b.tar"):
        os.utime(rootfs / "opt" / "tool", (5_000.5, 5_000.5))  # the second build's files: newer
        digests.append(images.write_image(rootfs, tmp_path / name, "r:1", ["--help"], settings))

    with tarfile.open(tmp_path / "a.tar") as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(outer.extractfile(manifest[0]["Config"]))["config"]  # type: ignore[arg-type]
        with tarfile.open(fileobj=outer.extractfile(manifest[0]["Layers"][0])) as inner:
            mtimes = {m.name: m.mtime for m in inner.getmembers()}
    assert config == {
        "Entrypoint": ["agentkube"],
        "Cmd": ["--help"],
        "Env": ["PATH=/opt/agentkube/bin:/usr/bin", "PYTHONUNBUFFERED=1"],
        "User": "65532:65532",
        "WorkingDir": "/var/lib/agentkube",
        "ExposedPorts": {"8080/tcp": {}},
    }
    assert mtimes == {"opt": 1_000, "opt/tool": 1_000}
    assert digests[0] == digests[1]


def test_the_image_command_line_refuses_an_env_without_a_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        images.main([str(tmp_path), str(tmp_path / "i.tar"), "r:1", "--env", "PATH", "--", "x"])
    assert exit_info.value.code == 2
    assert "--env 'PATH': write NAME=VALUE" in capsys.readouterr().err


def test_the_kubelet_refuses_anonymous_requests_and_asks_the_api_server_who_may_call(
    tmp_path: Path,
) -> None:
    layout = nodeconfig.Layout(root=tmp_path, bin_dir=tmp_path / "bin")
    config = nodeconfig.kubelet_config(
        layout,
        port=1,
        healthz_port=2,
        ca_cert=tmp_path / "ca.crt",
        serving_cert=tmp_path / "s.crt",
        serving_key=tmp_path / "s.key",
        taints=[],
        evented_pleg=False,
    )
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authentication"]["webhook"]["enabled"] is True
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["address"] == nodeconfig.NODE_IP
    assert "featureGates" not in config


def test_containerd_keeps_its_files_under_the_node_directory(tmp_path: Path) -> None:
    layout = nodeconfig.Layout(root=tmp_path / "node", bin_dir=tmp_path / "bin")
    toml = nodeconfig.containerd_config(layout, sandbox_image="localhost/agentkube/pause:1")
    for key in ("root", "state", "address", "conf_dir", "path", "bin_dir", "Root", "ConfigPath"):
        lines = [line.strip() for line in toml.splitlines() if line.strip().startswith(f"{key} =")]
        assert lines, key
        for line in lines:
            assert f'"{tmp_path}/node/' in line, line
    assert "restrict_oom_score_adj = true" in toml


def test_removing_chains_deletes_only_jumps_into_new_chains() -> None:
    new = {"KUBE-ROUTER-FORWARD"}
    assert hostchanges._jumps_to(["-A", "FORWARD", "-j", "KUBE-ROUTER-FORWARD"], new)
    assert not hostchanges._jumps_to(["-A", "FORWARD", "-j", "ACCEPT"], new)
    assert not hostchanges._jumps_to(["-A", "KUBE-ROUTER-FORWARD", "-j", "DOCKER"], new)


def test_mount_points_are_read_with_their_escapes_undone() -> None:
    assert hostchanges._unescape("/tmp/with\\040space") == "/tmp/with space"


def test_a_deep_state_directory_keeps_the_node_files_where_unix_sockets_fit(tmp_path: Path) -> None:
    assert nodeconfig.node_root(Path("/tmp/c")) == Path("/tmp/c/realnode")
    deep = Path("/tmp") / ("d" * 60)
    assert nodeconfig.node_root(deep) == nodeconfig.SHORT_ROOT
    layout = nodeconfig.Layout(root=nodeconfig.node_root(deep), bin_dir=tmp_path)
    assert len(str(layout.root / "kubelet" / "pod-resources" / "1234567890")) < 104
