"""The sandbox policy: the most any one execution may ask for, which no caller can raise.

A request's :class:`~agentkube.sandbox.contract.Limits` are what the caller wants; the policy is
what the operator of the sandbox allows. Every backend checks each request against its policy
before it starts anything (``LocalSandbox`` and ``KubernetesSandbox`` render and run only checked
limits), and the gateway checks it before it takes a quota slot, publishes it at
``GET /v1/policy`` and answers a request above it with 422 naming the field, the asked value and
the maximum. Nothing is ever silently clamped: a caller learns what it got.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentkube.api.loading import describe
from agentkube.api.quantity import parse_bytes
from agentkube.sandbox.contract import ExecutionRequest, Limits, MiB
from agentkube.sandbox.errors import SandboxRequestError


class PolicyViolation(SandboxRequestError):
    """A request asks for more than the policy allows."""

    def __init__(self, field: str, asked: object, maximum: object) -> None:
        super().__init__(
            f"{field}: asked for {asked}, the sandbox policy allows at most {maximum}; ask for "
            "less (a gateway publishes its policy at GET /v1/policy)"
        )
        self.field, self.asked, self.maximum = field, asked, maximum


def _bytes(value: Any) -> Any:
    """Sizes may be written as quantities (``512Mi``) in a policy file."""
    return parse_bytes(value) if isinstance(value, str) else value


class SandboxPolicy(BaseModel):
    """Maximums per execution. The defaults suit a shared cluster gateway."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_cpu: float = Field(2.0, gt=0, le=64, description="CPU cores")
    max_memory_bytes: int = Field(512 * MiB, ge=8 * MiB, description="memory, bytes")
    max_pids: int = Field(256, ge=4, le=4096, description="processes and threads")
    max_timeout_s: float = Field(300.0, gt=0, le=3600, description="wall-clock timeout, seconds")
    max_output_bytes: int = Field(4 * MiB, ge=1024, description="kept output per stream, bytes")
    max_scratch_bytes: int = Field(256 * MiB, ge=MiB, description="writable scratch, bytes")
    max_input_file_bytes: int = Field(4 * MiB, ge=0, description="all input files, bytes")

    @field_validator(
        "max_memory_bytes",
        "max_output_bytes",
        "max_scratch_bytes",
        "max_input_file_bytes",
        mode="before",
    )
    @classmethod
    def _sizes(cls, value: Any) -> Any:
        return _bytes(value)

    def check(self, request: ExecutionRequest) -> ExecutionRequest:
        """``request`` unchanged if it is within the policy; else :class:`PolicyViolation`."""
        limits = request.limits
        checks: tuple[tuple[str, float, float], ...] = (
            ("limits.cpu", limits.cpu, self.max_cpu),
            ("limits.memory_bytes", limits.memory_bytes, self.max_memory_bytes),
            ("limits.pids", limits.pids, self.max_pids),
            ("limits.timeout_s", limits.timeout_s, self.max_timeout_s),
            ("limits.output_bytes", limits.output_bytes, self.max_output_bytes),
            ("limits.scratch_bytes", limits.scratch_bytes, self.max_scratch_bytes),
        )
        for field, asked, maximum in checks:
            if asked > maximum:
                raise PolicyViolation(field, _shown(field, asked), _shown(field, maximum))
        files = sum(len(name.encode()) + len(text.encode()) for name, text in request.files.items())
        if files > self.max_input_file_bytes:
            raise PolicyViolation("files", f"{files} bytes", f"{self.max_input_file_bytes} bytes")
        return request

    def check_limits(self, limits: Limits) -> Limits:
        """``limits`` if within the policy (for limits fixed ahead, e.g. a warm pool's)."""
        return self.check(ExecutionRequest(code="-", limits=limits)).limits


def _shown(field: str, value: float) -> str:
    if field.endswith("_bytes"):
        return f"{int(value)} bytes ({value / MiB:.4g} MiB)"
    return f"{value:g}" if isinstance(value, float) else str(value)


DEFAULT_POLICY = SandboxPolicy()


def load_policy(path: Path) -> SandboxPolicy:
    """A policy from a YAML/JSON file of ``SandboxPolicy`` fields; one line on any problem."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise SandboxRequestError(f"cannot read the sandbox policy {path}: {e}") from e
    if not isinstance(data, dict):
        raise SandboxRequestError(f"{path}: a sandbox policy is a mapping of max_* fields")
    try:
        return SandboxPolicy.model_validate(data)
    except (ValidationError, ValueError) as e:
        detail = describe(e) if isinstance(e, ValidationError) else str(e)
        raise SandboxRequestError(f"{path}: {detail}") from e
