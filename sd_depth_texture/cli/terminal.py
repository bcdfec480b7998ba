"""One self-overwriting progress line on stderr, for blocking runs on the command line."""

from __future__ import annotations

import sys

from ..core.progress import Progress
from ..core.text import shown


class TerminalLine:
    """Shows a :class:`Progress` as ``[#####.....] 42% View 2/10 (back): Step 3/20``."""

    width = 30

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.open = False
        self._last = ""

    def progress(self) -> Progress:
        return Progress(on_change=self.show)

    def show(self, fraction: float, message: str) -> None:
        filled = int(self.width * fraction)
        text = f"[{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%} {shown(message)}"
        if text == self._last:
            return
        self._last = text
        self.stream.write("\r  " + text.ljust(78)[:100])
        self.stream.flush()
        self.open = True

    def close(self) -> None:
        """End an unfinished line so the next message starts on its own."""
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False
