"""Small typed events yielded by long-running generators, and the cancellation error."""

from __future__ import annotations

from dataclasses import dataclass


class CancelledError(Exception):
    """Raised when a running job is stopped at one of its yields (nothing half written)."""


@dataclass(frozen=True)
class Progress:
    """Work done so far: ``done`` of ``total`` units of ``stage`` (e.g. tiles, planes)."""

    stage: str
    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        """Progress as a number in [0, 1]."""
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)


@dataclass(frozen=True)
class Notice:
    """Something the user should know (a fallback, a default that was applied...)."""

    message: str
    level: str = "info"  # "info" or "warning"
