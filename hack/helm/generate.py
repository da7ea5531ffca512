"""Generate the Helm chart deploy/helm/agentkube from deploy/ (one source for both installs).

    .venv/bin/python -m hack.helm.generate            # (re)write deploy/helm/agentkube
    .venv/bin/python -m hack.helm.generate --check    # exit 1 naming the files that are stale

Every object comes from `kubectl kustomize` of deploy/ (the default install), deploy/namespaced,
deploy/memory and deploy/webhook; only the points that vary become values (images, the
operator's configuration, the watched namespaces, storage sizes, the webhook's CA), and whole
parts are guarded by `if` (the cluster-wide RBAC, the namespaced mode, memory, the webhook).
The generator checks that deploy/namespaced differs from deploy/ only as the chart expects, so
a change there fails here instead of drifting. tests/helm prove that `helm template` renders
the same objects as kustomize.
"""

from __future__ import annotations

import argparse
import shutil
import string
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from hack.helm.templating import Part, TemplatingError, describe, marked, render_part

JSON = dict[str, Any]
Key = tuple[str, str, str]  # kind, namespace, name
Path_ = tuple[str | int, ...]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "agentkube"
STATIC = Path(__file__).resolve().parent / "chart"


class GenerationError(Exception):
    """The chart cannot be generated; the message says why and what to do."""


def kustomize(path: Path) -> list[JSON]:
    """The objects of `kubectl kustomize PATH`, in its order."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise GenerationError("kubectl is not on PATH; the chart is rendered from its kustomize")
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise GenerationError(f"`kubectl kustomize {path}` failed: {result.stderr.strip()}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def key(obj: JSON) -> Key:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def find(objects: list[JSON], kind: str, name: str) -> JSON:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(found) != 1:
        raise GenerationError(f"deploy/ has {len(found)} {kind} named {name}, the chart needs one")
    return found[0]


def containers(obj: JSON) -> Iterator[tuple[Path_, JSON]]:
    spec = obj["spec"]["template"]["spec"]
    for field in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(field, [])):
            yield ("spec", "template", "spec", field, i), container


# --------------------------------------------------------------------------- the sources


class Sources:
    """The kustomize outputs, checked against what the chart's templates assume."""

    def __init__(self, deploy: Path = DEPLOY) -> None:
        self.deploy = deploy
        self._parts: dict[str, list[JSON]] = {}
        self.default = kustomize(deploy)
        self.namespaced = kustomize(deploy / "namespaced")
        self.memory = kustomize(deploy / "memory")
        self.webhook = kustomize(deploy / "webhook")
        operator = find(self.default, "Deployment", "agentkube-operator")
        self.image = next(containers(operator))[1]["image"]
        self.pull_policy = next(containers(operator))[1].get("imagePullPolicy", "IfNotPresent")
        (self.watched,) = [
            o["metadata"]["name"] for o in self.namespaced_only() if o["kind"] == "Namespace"
        ]
        self._check()

    def part(self, path: str) -> list[JSON]:
        """deploy/'s objects (with deploy/'s labels) that come from the kustomization at path."""
        if path not in self._parts:
            keys = {key(o) for o in kustomize(self.deploy / path)}
            self._parts[path] = [o for o in self.default if key(o) in keys]
        return self._parts[path]

    def cluster_wide_only(self) -> list[JSON]:
        keys = {key(o) for o in self.namespaced}
        return [o for o in self.default if key(o) not in keys]

    def namespaced_only(self) -> list[JSON]:
        keys = {key(o) for o in self.default}
        return [o for o in self.namespaced if key(o) not in keys]

    def _check(self) -> None:
        default = {key(o): o for o in self.default}
        for obj in self.namespaced:
            if key(obj) not in default or obj == default[key(obj)]:
                continue
            expected = self.namespaced_operator(default[key(obj)])
            if key(obj) != key(expected) or obj != expected:
                raise GenerationError(
                    f"deploy/namespaced changes {describe(obj)} in a way hack/helm/generate.py "
                    "does not template (it knows the operator's --namespace arguments only)"
                )
        for obj in self.namespaced_only():
            meta = obj["metadata"]
            if self.watched not in (
                meta["name"] if obj["kind"] == "Namespace" else meta.get("namespace")
            ):
                raise GenerationError(
                    f"deploy/namespaced adds {describe(obj)} outside the watched namespace "
                    f"{self.watched}; the chart repeats only that namespace's objects"
                )
        for name, objects in (("memory", self.memory), ("webhook", self.webhook)):
            shared = {key(o) for o in objects} & set(default)
            if shared:
                raise GenerationError(f"deploy/{name} repeats objects of deploy/: {sorted(shared)}")

    def namespaced_operator(self, deployment: JSON) -> JSON:
        """The operator's Deployment of the namespaced install: one --namespace per watched
        namespace (what deploy/namespaced's patch adds)."""
        path, _ = next(containers(deployment))
        return marked(deployment, [((*path, "args", "-"), f"--namespace={self.watched}")])

    def config(self) -> JSON:
        cm = find(self.default, "ConfigMap", "agentkube-operator")
        config: JSON = yaml.safe_load(cm["data"]["config.yaml"])
        if config.get("agentImage") != self.image:
            raise GenerationError(
                f"deploy/operator/config.yaml's agentImage {config.get('agentImage')!r} is not "
                f"the operator's image {self.image!r}; the chart gives both one value"
            )
        return config


# --------------------------------------------------------------------------- the marks

STORAGE: Path_ = ("spec", "volumeClaimTemplates", 0, "spec", "resources", "requests", "storage")


def image_marks(obj: JSON, image: str) -> list[tuple[Path_, str]]:
    """The project's image and pull policy in every container of a Deployment that runs it."""
    marks: list[tuple[Path_, str]] = []
    for path, container in containers(obj):
        if container["image"] == image:
            marks.append(((*path, "image"), "HELM_IMAGE"))
            if "imagePullPolicy" in container:
                marks.append(((*path, "imagePullPolicy"), "HELM_PULL_POLICY"))
    return marks


def arg_mark(obj: JSON, flag: str, token: str) -> tuple[Path_, str]:
    """The one argument starting with `flag` among the object's containers."""
    found = [
        ((*path, "args", i), token)
        for path, container in containers(obj)
        for i, arg in enumerate(container.get("args", []))
        if arg.startswith(flag)
    ]
    if len(found) != 1:
        raise GenerationError(
            f"{describe(obj)} has {len(found)} {flag} arguments, the chart needs one"
        )
    return found[0]


def templated(obj: JSON, sources: Sources, *, watched: bool = False) -> JSON:
    """The object with each of its varying points marked (see hack/helm/templating.py)."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    marks: list[tuple[Path_, str]] = []
    if kind in ("Deployment", "StatefulSet"):
        marks += image_marks(obj, sources.image)
    if (kind, name) == ("Deployment", "agentkube-operator"):
        path, _ = next(containers(obj))
        marks.append(((*path, "args", "-"), "HELM_NAMESPACE_ARGS"))
    if (kind, name) == ("Deployment", "agentkube-sandbox-gateway"):
        marks.append(arg_mark(obj, "--image=", "HELM_SANDBOX_IMAGE_ARG"))
    if (kind, name) == ("ConfigMap", "agentkube-operator"):
        marks.append((("data", "config.yaml"), "HELM_OPERATOR_CONFIG"))
    if kind == "MutatingWebhookConfiguration":
        marks += [(("webhooks", i, "clientConfig", "caBundle"), "HELM_CA_BUNDLE")
                  for i in range(len(obj["webhooks"]))]  # fmt: skip
    for server in ("redis", "chroma"):
        if (kind, name) == ("StatefulSet", f"agentkube-{server}"):
            marks += [
                ((*path, "image"), f"HELM_{server.upper()}_IMAGE") for path, _ in containers(obj)
            ]
            marks.append((STORAGE, f"HELM_{server.upper()}_STORAGE"))
    if watched:  # one of deploy/namespaced's objects in (or of) the watched namespace
        field = "name" if kind == "Namespace" else "namespace"
        marks.append((("metadata", field), "HELM_WATCHED_NAMESPACE"))
    return marked(obj, marks)


# --------------------------------------------------------------------------- the chart


def parts(sources: Sources) -> dict[str, Part]:
    """templates/<file> -> its objects and guard."""
    cluster_wide = {key(o) for o in sources.cluster_wide_only()}
    covered = {key(o) for path in ("crds", "operator", "gateway") for o in sources.part(path)}
    missing = [describe(o) for o in sources.default if key(o) not in covered]
    if missing:
        raise GenerationError(f"deploy/ has objects outside crds/operator/gateway: {missing}")

    def of(path: str, *, cluster_wide_only: bool) -> list[JSON]:
        objects = [o for o in sources.part(path) if (key(o) in cluster_wide) == cluster_wide_only]
        return [templated(o, sources) for o in objects]

    watched = [templated(o, sources, watched=True) for o in sources.namespaced_only()]
    return {
        "operator.yaml": Part(
            source="deploy/operator", objects=of("operator", cluster_wide_only=False)
        ),
        "operator-cluster-wide.yaml": Part(
            source="deploy/operator",
            objects=of("operator", cluster_wide_only=True),
            condition="not $.Values.namespaced.enabled",
        ),
        "gateway.yaml": Part(
            source="deploy/gateway", objects=of("gateway", cluster_wide_only=False)
        ),
        "namespaced.yaml": Part(
            source="deploy/namespaced",
            objects=watched,
            condition="$.Values.namespaced.enabled",
            each_namespace=True,
            guards={"Namespace": "$.Values.namespaced.createNamespaces"},
        ),
        "memory.yaml": Part(
            source="deploy/memory",
            objects=[templated(o, sources) for o in sources.memory],
            condition="$.Values.memory.enabled",
        ),
        "webhook.yaml": Part(
            source="deploy/webhook",
            objects=[templated(o, sources) for o in sources.webhook],
            condition="$.Values.webhook.enabled",
        ),
    }


def crds(sources: Sources) -> dict[str, str]:
    """crds/<group>_<plural>.yaml: Helm installs these before the templates (never upgrades
    nor deletes them: `kubectl apply -f` them on upgrade, docs/install.md)."""
    files = {}
    for crd in sources.part("crds"):
        name = f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml"
        files[f"crds/{name}"] = HEADER + yaml.safe_dump(crd, sort_keys=False, width=1000)
    return files


HEADER = "# Generated by hack/helm/generate.py from deploy/: do not edit.\n"


def claimed(statefulset: JSON) -> str:
    """The storage its one volumeClaimTemplate asks for."""
    node: Any = statefulset
    for step in STORAGE:
        node = node[step]
    return str(node)


def values(sources: Sources) -> str:
    config = sources.config()
    text = find(sources.default, "ConfigMap", "agentkube-operator")["data"]["config.yaml"]
    lines = [
        "# agentImage: the image above, unless set here" if line.startswith("agentImage:") else line
        for line in text.rstrip().splitlines()
    ]
    redis = find(sources.memory, "StatefulSet", "agentkube-redis")
    chroma = find(sources.memory, "StatefulSet", "agentkube-chroma")
    repository = sources.image.rpartition(":")[0]
    gateway = find(sources.default, "Deployment", "agentkube-sandbox-gateway")
    (sandbox_arg,) = [
        a for _, c in containers(gateway) for a in c["args"] if a.startswith("--image=")
    ]
    text = string.Template((STATIC / "values.yaml.in").read_text()).substitute(
        image_repository=repository,
        pull_policy=sources.pull_policy,
        sandbox_image=sandbox_arg.removeprefix("--image="),
        config="\n".join(f"  {line}".rstrip() for line in lines),
        watched_namespace=sources.watched,
        redis_image=next(containers(redis))[1]["image"],
        redis_storage=claimed(redis),
        chroma_image=next(containers(chroma))[1]["image"],
        chroma_storage=claimed(chroma),
    )
    config.pop("agentImage")
    if yaml.safe_load(text)["config"] != config:
        raise GenerationError("values.yaml's config does not parse back to deploy/'s configuration")
    return text


def chart_files(deploy: Path = DEPLOY) -> dict[str, str]:
    """Every file of the chart, by path relative to deploy/helm/agentkube."""
    sources = Sources(deploy)
    _, sep, tag = sources.image.rpartition(":")
    if not sep or "/" in tag or "@" in sources.image:
        raise GenerationError(f"the operator's image {sources.image!r} is not REPOSITORY:TAG")
    version = (ROOT / "src" / "agentkube" / "__init__.py").read_text()
    (chart_version,) = [
        line.split("=")[1].strip().strip('"')
        for line in version.splitlines()
        if line.startswith("__version__")
    ]
    chart = string.Template((STATIC / "Chart.yaml.in").read_text())
    files = {
        "Chart.yaml": chart.substitute(version=chart_version, app_version=tag),
        "values.yaml": values(sources),
        "templates/_helpers.tpl": (STATIC / "_helpers.tpl").read_text(),
        "templates/NOTES.txt": (STATIC / "NOTES.txt").read_text(),
        "values.schema.json": (STATIC / "values.schema.json").read_text(),
        **crds(sources),
    }
    for name, part in parts(sources).items():
        files[f"templates/{name}"] = render_part(part)
    return files


def on_disk(chart: Path) -> dict[str, str]:
    return {
        str(p.relative_to(chart)): p.read_text() for p in sorted(chart.rglob("*")) if p.is_file()
    }


def stale(chart: Path, files: dict[str, str]) -> list[str]:
    """The files of `chart` that differ from `files`, are missing, or are extra."""
    present = on_disk(chart) if chart.is_dir() else {}
    return sorted(p for p in files.keys() | present.keys() if files.get(p) != present.get(p))


def write(chart: Path, files: dict[str, str]) -> None:
    if chart.is_dir():
        shutil.rmtree(chart)
    for path, text in files.items():
        (chart / path).parent.mkdir(parents=True, exist_ok=True)
        (chart / path).write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    parser.add_argument("--output", type=Path, default=CHART, help="the chart's directory")
    args = parser.parse_args(argv)
    try:
        files = chart_files()
    except (GenerationError, TemplatingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        outdated = stale(args.output, files)
        for path in outdated:
            print(f"{args.output / path} is stale: run `make helm-chart`", file=sys.stderr)
        return 1 if outdated else 0
    write(args.output, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
