"""The sandbox contract: one request/result shape that every backend serves.

A backend (``local`` with Linux namespaces, ``kubernetes`` with Jobs, the HTTP gateway client)
takes an :class:`ExecutionRequest` and returns an :class:`ExecutionResult`. The defaults are the
seed's: 0.5 CPU, 128 MiB, no network. The models are pydantic so the same shapes travel as JSON
over the gateway and out of ``agentkube sandbox exec --json``.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

KiB = 1024
MiB = 1024 * KiB

Language = Literal["python", "bash"]
KilledReason = Literal["timeout", "memory", "output_limit", "pids"]


class Limits(BaseModel):
    """Resource limits of one execution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu: float = Field(0.5, gt=0, le=64, description="CPU cores (cgroup quota)")
    memory_bytes: int = Field(128 * MiB, ge=8 * MiB, description="memory limit, bytes")
    pids: int = Field(64, ge=4, le=4096, description="max processes/threads")
    timeout_s: float = Field(30.0, gt=0, le=3600, description="wall-clock timeout, seconds")
    output_bytes: int = Field(1 * MiB, ge=KiB, description="cap per output stream, bytes")
    scratch_bytes: int = Field(64 * MiB, ge=MiB, description="size of the writable scratch, bytes")


class ExecutionRequest(BaseModel):
    """Code to run, with its inputs and limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    language: Language = "python"
    code: str = Field(..., min_length=1, max_length=4 * MiB)
    files: dict[str, str] = Field(
        default_factory=dict,
        description="input files, relative path -> text, placed in the workdir",
    )
    env: dict[str, str] = Field(default_factory=dict, description="environment of the code")
    limits: Limits = Field(default_factory=Limits)
    network: Literal["none"] = "none"

    @field_validator("files")
    @classmethod
    def _relative_paths(cls, files: dict[str, str]) -> dict[str, str]:
        for name in files:
            parts = name.split("/")
            if not name or name.startswith("/") or "\0" in name or ".." in parts:
                raise ValueError(f"input file {name!r} must be a relative path inside the workdir")
        return files

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not name or "=" in name or "\0" in name or "\0" in value:
                raise ValueError(f"environment variable {name!r} has an invalid name or value")
        return env


class ExecutionResult(BaseModel):
    """What came back from one execution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exit_code: int | None = Field(
        description="the code's exit status (128 + signal if a signal ended it); "
        "None if it never got to exit (killed on timeout, output flood, ...)"
    )
    stdout: str = ""
    stderr: str = ""
    duration_ms: float = 0.0
    killed_reason: KilledReason | None = None
    truncated: bool = False
    files: dict[str, str] = Field(
        default_factory=dict, description="files the code left in the workdir's out/ folder"
    )

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.killed_reason is None


@runtime_checkable
class Sandbox(Protocol):
    """A backend that runs one request in a fresh, isolated environment."""

    async def execute(self, request: ExecutionRequest) -> ExecutionResult: ...

    async def aclose(self) -> None: ...
