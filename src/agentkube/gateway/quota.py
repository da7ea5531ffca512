"""Per-agent concurrency quota: how many executions one identity may run at the same time.

A slot is taken before the backend is called and given back when the result (or an error) is
there, so a crashed execution never leaks a slot. Exceeding the quota is refused at once (the
gateway answers 429) rather than queued: an agent waiting on a queue it cannot see would only
time out later with less information.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from agentkube.sandbox.errors import SandboxBusy


class ConcurrencyQuota:
    def __init__(self, per_agent: int) -> None:
        if per_agent < 1:
            raise ValueError("the per-agent concurrency quota must be >= 1")
        self.per_agent = per_agent
        self._running: Counter[str] = Counter()

    def running(self, name: str) -> int:
        return self._running[name]

    @contextmanager
    def slot(self, name: str) -> Iterator[None]:
        """Hold one of ``name``'s slots for the duration of the block, or raise SandboxBusy."""
        if self._running[name] >= self.per_agent:
            raise SandboxBusy(
                f"{name} already runs {self._running[name]} sandbox executions, the gateway's "
                f"per-agent limit (--max-concurrent-per-agent {self.per_agent}); "
                "retry when one has finished"
            )
        self._running[name] += 1
        try:
            yield
        finally:
            self._running[name] -= 1
            if not self._running[name]:
                del self._running[name]
