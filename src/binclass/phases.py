"""Where a run's wall time went, by phase: the closing line names what lies outside the model."""

from __future__ import annotations

import time


class Phases:
    """Wall seconds per named phase. mark(name) charges the time since the previous mark (or the start)
    to `name`; a name marked twice adds up."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.last = now

    def total(self) -> float:
        return self.last - self.started

    def summary(self) -> str:
        """'12.3s since the start: images 1.7s, setup 1.9s, ...' (the total is up to the last mark)."""
        parts = ", ".join(f"{name} {s:.1f}s" for name, s in self.seconds.items())
        return f"{self.total():.1f}s since the start" + (f": {parts}" if parts else "")
