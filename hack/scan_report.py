"""Summarise checkov's and kube-score's findings (hack/scan.sh) against the accepted list.

Every finding is (tool, check, object). ``hack/scan-accepted.txt`` lists the accepted ones as
``tool | check | object glob`` lines, each explained in docs/security.md ("Scanner results").
Prints one line per (tool, check) with its objects, then the findings nobody accepted; exits 1
when there is any.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

Finding = tuple[str, str, str]  # tool, check, Kind/namespace/name
_KUBE_SCORE = re.compile(r"^\[(CRITICAL|WARNING)\] (\S+?)(?:/(\S+))? \S+/(\w+): (?:\(\S+\) )?(.+)$")


def checkov(path: Path) -> list[Finding]:
    data = json.loads(path.read_text() or "[]")
    reports = data if isinstance(data, list) else [data]
    findings = []
    for report in reports:
        for failed in report.get("results", {}).get("failed_checks", []):
            kind, _, rest = failed["resource"].partition(".")
            namespace, _, name = rest.rpartition(".")
            findings.append(("checkov", failed["check_id"], f"{kind}/{namespace}/{name}"))
    return findings


def kube_score(path: Path) -> list[Finding]:
    findings = []
    for line in path.read_text().splitlines():
        match = _KUBE_SCORE.match(line)
        if match:
            _, name, namespace, kind, check = match.groups()
            findings.append(("kube-score", check.strip(), f"{kind}/{namespace or ''}/{name}"))
    return findings


def accepted(path: Path) -> list[tuple[str, str, str]]:
    rules = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            tool, check, objects = (part.strip() for part in line.split("|"))
            rules.append((tool, check, objects))
    return rules


def main(out: Path, accepted_file: Path) -> int:
    findings = sorted(set(checkov(out / "checkov.json") + kube_score(out / "kube-score.txt")))
    rules = accepted(accepted_file)
    by_check: dict[tuple[str, str], list[str]] = defaultdict(list)
    unaccepted = []
    for tool, check, obj in findings:
        by_check[tool, check].append(obj)
        if not any(t == tool and c == check and fnmatch.fnmatch(obj, o) for t, c, o in rules):
            unaccepted.append(f"{tool}: {check}: {obj}")
    for (tool, check), objects in sorted(by_check.items()):
        more = ", …" if len(objects) > 3 else ""
        print(f"{tool:10} {check}: {len(objects)} ({', '.join(objects[:3])}{more})")
    if unaccepted:
        print(
            f"\n{len(unaccepted)} finding(s) not in {accepted_file.name}:", *unaccepted, sep="\n  "
        )
        return 1
    print(f"\nscan: {len(findings)} findings, all accepted (docs/security.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
