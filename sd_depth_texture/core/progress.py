"""How far a run is, and whether it should stop: the one protocol between a run and its door.

No bpy. The worker side calls :meth:`Progress.update` and :meth:`Progress.check`; the door
reads :attr:`Progress.fraction` and :attr:`Progress.message` (plain attributes, safe to read
from another thread) or passes ``on_change`` to hear of every change, and cancels with
:meth:`Progress.cancel`. Stages (loading, each view) get spans of the whole, so the fraction
rises monotonically over a run of many views.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .errors import CancelledError

log = logging.getLogger(__name__)


class Progress:
    """A run's fraction done (0..1, never decreasing), its current message, and a cancel flag."""

    def __init__(self, on_change: Callable[[float, str], None] | None = None) -> None:
        self.cancel_event = threading.Event()
        self.fraction = 0.0
        self.message = ""
        self.on_change = on_change
        self._start, self._end = 0.0, 1.0
        self._prefix = ""

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def cancel(self) -> None:
        """Ask the run to stop at its next check (between steps, chunks of a download, views)."""
        self.cancel_event.set()

    def check(self, doing: str = "") -> None:
        """Raise :class:`CancelledError` if a cancel was asked for."""
        if self.cancel_event.is_set():
            raise CancelledError(f"Cancelled{' ' + doing if doing else ''}")

    def update(self, within: float, message: str | None = None) -> None:
        """``within`` (0..1) of the current span is done; the overall fraction never goes down."""
        within = min(max(float(within), 0.0), 1.0)
        fraction = max(self.fraction, self._start + (self._end - self._start) * within)
        self.fraction = min(fraction, 1.0)
        if message is not None:
            self.message = f"{self._prefix}: {message}" if self._prefix else message
        if self.on_change is not None:
            self.on_change(self.fraction, self.message)

    @contextmanager
    def span(self, start: float, end: float, prefix: str = "") -> Iterator[Progress]:
        """Map 0..1 of the stage inside to ``start``..``end`` of the current span.

        ``prefix`` ("View 2/10 (back)") is put before every message inside the span. Leaving
        the span (done, or skipped) moves the fraction to its end.
        """
        outer = self._start, self._end, self._prefix
        width = outer[1] - outer[0]
        self._start, self._end = outer[0] + width * start, outer[0] + width * end
        if prefix:
            self._prefix = f"{outer[2]}: {prefix}" if outer[2] else prefix
        try:
            yield self
        finally:
            self.update(1.0)
            self._start, self._end, self._prefix = outer
