"""Generate the CustomResourceDefinitions from the typed models.

pydantic's JSON schema is close to, but not, a Kubernetes *structural* schema: it uses ``$ref``,
``anyOf`` with ``null`` for optional fields, ``title`` and ``additionalProperties: false``. The
functions here rewrite it into the structural form the API server requires, keeping every
constraint (enums, patterns, bounds, CEL rules) so invalid objects are rejected server-side with
the field named.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from agentkube.api.mcpservers import MCPServer
from agentkube.api.models import GROUP, VERSION, Agent, KnowledgeBase, Model

JSON = dict[str, Any]
Kind = type[Agent] | type[Model] | type[KnowledgeBase] | type[MCPServer]

_DROPPED_KEYS = {"title", "$defs"}

READY_AND_AGE: list[JSON] = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
PRINTER_COLUMNS: dict[str, list[JSON]] = {
    "Agent": [
        {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
        {"name": "Tools", "type": "string", "jsonPath": ".spec.tools"},
        {"name": "Memory", "type": "string", "jsonPath": ".spec.memory"},
        # An executor's queued and running tasks (kept by the operator, docs/teams.md).
        {"name": "Pending", "type": "integer", "jsonPath": ".status.pendingTasks"},
        *READY_AND_AGE,
        # `kubectl get agents -o wide` adds why it is (not) ready and where it answers.
        {
            "name": "Reason",
            "type": "string",
            "priority": 1,
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        },
        {"name": "Endpoint", "type": "string", "priority": 1, "jsonPath": ".status.endpoint"},
    ],
    "Model": [
        {"name": "Engine", "type": "string", "jsonPath": ".spec.serve.engine"},
        {"name": "URL", "type": "string", "jsonPath": ".status.url"},
        *READY_AND_AGE,
    ],
    "KnowledgeBase": [
        {"name": "Collection", "type": "string", "jsonPath": ".spec.collection"},
        {"name": "Documents", "type": "integer", "jsonPath": ".status.documents"},
        {"name": "Chunks", "type": "integer", "jsonPath": ".status.chunks"},
        {"name": "Last Sync", "type": "date", "jsonPath": ".status.lastSyncTime"},
        *READY_AND_AGE,
        {
            "name": "Reason",
            "type": "string",
            "priority": 1,
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        },
    ],
    "MCPServer": [
        {"name": "URL", "type": "string", "jsonPath": ".status.url"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {"name": "Tools", "type": "string", "jsonPath": ".status.tools"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {
            "name": "Reason",
            "type": "string",
            "priority": 1,
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        },
    ],
}

SHORT_NAMES = {
    "Agent": ["ag"],
    "Model": ["aimodel"],
    "KnowledgeBase": ["kb"],
    "MCPServer": ["mcps"],
}


def structural(schema: JSON, defs: JSON) -> JSON:
    """Rewrite one pydantic JSON-schema node into a structural OpenAPI v3 node."""
    if "$ref" in schema:
        target = copy.deepcopy(defs[schema["$ref"].rsplit("/", 1)[-1]])
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    node = {k: v for k, v in schema.items() if k not in _DROPPED_KEYS}
    if "anyOf" in node:
        node = _collapse_any_of(node, defs)
    if node.get("default", "") is None:
        del node["default"]
    if node.get("additionalProperties") in (False, True):
        del node["additionalProperties"]
    elif isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = structural(node["additionalProperties"], defs)
    if "properties" in node:
        node["properties"] = {k: structural(v, defs) for k, v in node["properties"].items()}
        node.setdefault("type", "object")
    if "items" in node:
        node["items"] = structural(node["items"], defs)
    return node


def _collapse_any_of(node: JSON, defs: JSON) -> JSON:
    """Drop the ``null`` branch of optionals; keep int-or-string as Kubernetes spells it."""
    branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
    if node.get("x-kubernetes-int-or-string"):
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return node
    if len(branches) != 1:
        raise ValueError(f"cannot express anyOf {branches} as a structural schema")
    return {**structural(branches[0], defs), **node}


def object_schema(kind: Kind) -> JSON:
    """The ``openAPIV3Schema`` of one kind."""
    raw = kind.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    props = raw["properties"]
    return {
        "type": "object",
        "description": (kind.__doc__ or "").strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural(props["spec"], defs),
            "status": structural(props["status"], defs),
        },
    }


def crd(kind: Kind) -> JSON:
    """The full CustomResourceDefinition of one kind."""
    name = kind.kind_name
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": name,
                "listKind": f"{name}List",
                "plural": kind.plural,
                "singular": name.lower(),
                "shortNames": SHORT_NAMES[name],
                "categories": ["agentkube"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS[name],
                    "schema": {"openAPIV3Schema": object_schema(kind)},
                }
            ],
        },
    }


def all_crds() -> list[JSON]:
    return [crd(Agent), crd(Model), crd(KnowledgeBase), crd(MCPServer)]


def to_yaml(obj: JSON) -> str:
    return yaml.safe_dump(obj, sort_keys=False, width=100, allow_unicode=True)


def crd_files() -> dict[str, str]:
    """File name -> YAML, as checked in under ``deploy/crds/``."""
    return {f"{GROUP}_{c['spec']['names']['plural']}.yaml": to_yaml(c) for c in all_crds()}


def render_all() -> str:
    """Every CRD as one multi-document YAML stream."""
    return "---\n".join(to_yaml(c) for c in all_crds())
