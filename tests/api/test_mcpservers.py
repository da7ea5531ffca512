"""`kind: MCPServer`: exactly one source, strict fields, one-line errors; the CRD says the same."""

from __future__ import annotations

import pytest

from agentkube.api.crds import all_crds
from agentkube.api.errors import ManifestError
from agentkube.api.loading import parse_documents
from agentkube.api.mcpservers import MCPServer

HEAD = "apiVersion: ai.openvn/v1\nkind: MCPServer\nmetadata: {name: tools}\n"


def server(spec: str) -> MCPServer:
    (parsed,) = parse_documents(f"{HEAD}spec: {spec}\n", "s.yaml")
    assert isinstance(parsed, MCPServer)
    return parsed


def refusal(spec: str) -> str:
    with pytest.raises(ManifestError) as caught:
        parse_documents(f"{HEAD}spec: {spec}\n", "s.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("s.yaml: MCPServer tools: spec")
    return message


def test_each_of_the_three_sources_is_accepted() -> None:
    remote = server(
        "{url: 'https://mcp.example.com/mcp', "
        "headersFrom: {secretName: mcp-auth, headers: {Authorization: token}}}"
    )
    assert remote.spec.source == "url"
    assert remote.spec.headers_from is not None
    assert remote.spec.headers_from.headers == {"Authorization": "token"}
    image = server("{image: 'ghcr.io/example/mcp:1', port: 8000, args: [--http], env: [{name: A}]}")
    assert (image.spec.source, image.spec.port, image.spec.path) == ("image", 8000, "/mcp")
    local = server("{command: npx, args: [-y, '@example/mcp'], env: [{name: TOKEN, value: x}]}")
    assert local.spec.source == "command"


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("{}", "set exactly one of url (a remote server), image"),
        ("{url: 'http://a/mcp', command: x}", "set exactly one of url"),
        ("{image: i}", "image and port go together"),
        ("{command: x, port: 80}", "image and port go together"),
        ("{image: i, port: 80, headersFrom: {secretName: s, headers: {A: k}}}", "headersFrom is"),
        ("{url: 'http://a/mcp', args: [x]}", "args and env are for image or command servers"),
        ("{url: 'ftp://a/mcp'}", "spec.url: String should match pattern"),
        ("{image: i, port: 70000}", "spec.port: Input should be less than or equal to 65535"),
        ("{url: 'http://a', headersFrom: {secretName: s, headers: {'a b': k}}}", "not an HTTP"),
        ("{command: x, env: [{name: 1A}]}", "spec.env[0].name"),
        ("{command: x, replicas: 2}", "spec.replicas: unknown field"),
    ],
)
def test_bad_specs_are_refused_in_one_line_naming_the_problem(spec: str, says: str) -> None:
    assert says in refusal(spec)


def test_a_file_holds_an_agent_and_its_mcpservers() -> None:
    text = (
        "apiVersion: ai.openvn/v1\nkind: Agent\nmetadata: {name: a}\n"
        "spec: {model: m, tools: ['mcp:tools']}\n---\n"
        f"{HEAD}spec: {{command: x}}\n"
    )
    kinds = [type(r).__name__ for r in parse_documents(text)]
    assert kinds == ["Agent", "MCPServer"]


def test_the_crd_checks_the_sources_and_shows_url_ready_and_tools() -> None:
    crd = next(c for c in all_crds() if c["spec"]["names"]["kind"] == "MCPServer")
    (version,) = crd["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = " ".join(r["rule"] for r in spec["x-kubernetes-validations"])
    assert "has(self.url)" in rules and "has(self.image) == has(self.port)" in rules
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["URL"] == ".status.url"
    assert columns["Tools"] == ".status.tools"
    assert "Ready" in columns["Ready"]
    assert version["subresources"] == {"status": {}}
