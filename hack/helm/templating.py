"""Objects of `kubectl kustomize deploy/...` as Helm template text, values at marked points.

A point that varies is first marked in the object itself: its scalar is replaced by a token
(``HELM_IMAGE``); the object is then dumped as YAML exactly as the rest of it is, and each token
becomes its Helm expression. Inline tokens replace a whole scalar; block tokens replace their
whole line with a construct that needs the line's indentation (a literal block, a range). So
nothing but the marked points differs from what kustomize rendered.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

JSON = dict[str, Any]

# Token -> the Helm expression that renders the whole scalar (quoted: any value stays a string).
INLINE = {
    "HELM_IMAGE": '{{ include "agentkube.image" $ | quote }}',
    "HELM_PULL_POLICY": "{{ $.Values.image.pullPolicy | quote }}",
    "HELM_SANDBOX_IMAGE_ARG": '{{ printf "--image=%s" $.Values.sandboxImage | quote }}',
    "HELM_REDIS_IMAGE": "{{ $.Values.memory.redis.image | quote }}",
    "HELM_REDIS_STORAGE": "{{ $.Values.memory.redis.storage | quote }}",
    "HELM_CHROMA_IMAGE": "{{ $.Values.memory.chroma.image | quote }}",
    "HELM_CHROMA_STORAGE": "{{ $.Values.memory.chroma.storage | quote }}",
    "HELM_CA_BUNDLE": "{{ $.Values.webhook.caBundle | quote }}",
    "HELM_WATCHED_NAMESPACE": "{{ $namespace | quote }}",
}


def _operator_config(indent: str, prefix: str) -> str:
    return (
        f"{indent}{prefix}|\n"
        f'{{{{- include "agentkube.operatorConfig" $ | nindent {len(indent) + 2} }}}}'
    )


def _namespace_args(indent: str, prefix: str) -> str:
    return (
        "{{- if $.Values.namespaced.enabled }}\n"
        "{{- range $.Values.namespaced.namespaces }}\n"
        f'{indent}{prefix}{{{{ printf "--namespace=%s" . | quote }}}}\n'
        "{{- end }}\n"
        "{{- end }}"
    )


# Token -> (indentation, text before the token on its line) -> the lines replacing that line.
BLOCK: dict[str, Callable[[str, str], str]] = {
    "HELM_OPERATOR_CONFIG": _operator_config,
    "HELM_NAMESPACE_ARGS": _namespace_args,
}

_LINE = re.compile(r"^(?P<indent> *)(?P<prefix>.*?)(?P<token>HELM_[A-Z_]+)$", re.MULTILINE)
_TOKEN = re.compile(r"\bHELM_[A-Z_]+\b")


class TemplatingError(Exception):
    """deploy/ is not shaped as the chart expects; the message names the object and field."""


@dataclass(frozen=True, kw_only=True)
class Part:
    """One template file: objects from one part of deploy/, rendered when `condition` holds."""

    source: str  # the kustomization the objects come from, for the file's header
    objects: list[JSON]
    condition: str | None = None  # a Helm expression, e.g. `.Values.memory.enabled`
    each_namespace: bool = False  # once per namespaced.namespaces entry (as $namespace)
    guards: Mapping[str, str] = field(default_factory=dict)  # kind -> its own condition


def describe(obj: JSON) -> str:
    meta = obj["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']} {where}{meta['name']}"


def marked(obj: JSON, marks: Iterable[tuple[tuple[str | int, ...], str]]) -> JSON:
    """A copy of `obj` with the scalar at each path replaced by its token; a path that is not
    there is an error naming it (deploy/ changed under the chart)."""
    obj = copy.deepcopy(obj)
    for path, token in marks:
        *parents, last = path
        node: Any = obj
        try:
            for step in parents:
                node = node[step]
            if last == "-":  # appended to the list
                node.append(token)
            else:
                there = last < len(node) if isinstance(last, int) else last in node
                if not there:
                    raise KeyError(last)
                node[last] = token
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            where = ".".join(str(s) for s in path)
            raise TemplatingError(f"{describe(obj)} has no {where} to template") from e
    return obj


def _block(match: re.Match[str]) -> str:
    token = match["token"]
    if token in BLOCK:
        return BLOCK[token](match["indent"], match["prefix"])
    return match[0]


def to_template(obj: JSON) -> str:
    """The object as YAML with every token replaced by its Helm expression."""
    text = yaml.safe_dump(obj, sort_keys=False, width=1000)
    text = _LINE.sub(_block, text)
    unknown = {t for t in _TOKEN.findall(text) if t not in INLINE}
    if unknown:
        raise TemplatingError(f"{describe(obj)}: unknown template tokens {sorted(unknown)}")
    return _TOKEN.sub(lambda m: INLINE[m[0]], text)


def _guarded(condition: str | None, body: str) -> str:
    if condition is None:
        return body
    return f"{{{{- if {condition} }}}}\n{body.rstrip()}\n{{{{- end }}}}\n"


def render_part(part: Part) -> str:
    """The template file of one part: a header naming its source, then its objects."""
    header = (
        f"{{{{- /* Generated by hack/helm/generate.py from `kubectl kustomize {part.source}`:"
        " do not edit, edit deploy/ and run `make helm-chart`. */}}\n"
    )
    docs = [_guarded(part.guards.get(o["kind"]), f"---\n{to_template(o)}") for o in part.objects]
    body = "".join(docs)
    if part.each_namespace:
        body = (
            "{{- range $namespace := $.Values.namespaced.namespaces }}\n"
            f"{body.rstrip()}\n"
            "{{- end }}\n"
        )
    return header + _guarded(part.condition, body)
