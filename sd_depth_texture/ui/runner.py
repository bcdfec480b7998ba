"""The modal run behind the panel's Generate button, as a plain class tests drive step by step.

The operator (:mod:`.operators`) is a thin shell: ``invoke`` prepares the run and starts a
:class:`ModalRunner`, every timer event calls :meth:`ModalRunner.tick`, Esc and the Cancel
button call :meth:`ModalRunner.cancel`, and Blender removing the handler (opening a file,
File > New, closing the window) calls :meth:`ModalRunner.handler_removed`. The worker thread
runs :meth:`..blender.flow.Run.compute`, which reads no Blender data; results are applied on
the main thread in :meth:`tick`. Nothing here needs a window, so tests step it with a fake
clock and a thread they control.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from ..blender.flow import Computed, Outcome, Run
from ..core.errors import CancelledError, TextureError
from ..core.progress import Progress

log = logging.getLogger(__name__)

RUNNING, FINISHED, CANCELLED, FAILED = "RUNNING", "FINISHED", "CANCELLED", "FAILED"


class ModalRunner:
    """One run from start to its end on the main thread.

    ``state`` is where the panel reads progress (the window manager's run state in Blender, any
    object with ``running``, ``progress``, ``status`` and ``coverage`` in tests). ``start_thread``
    starts the worker (``threading.Thread`` by default; tests pass one they step themselves).
    """

    active: ClassVar[list[ModalRunner]] = []  # runs in flight, for the panel's Cancel button

    def __init__(
        self,
        run: Run,
        state: Any,
        start_thread: Callable[[Callable[[], None]], Any] | None = None,
    ) -> None:
        self.run = run
        self.state = state
        self.progress = Progress()
        self.status = RUNNING
        self.message = ""
        self.outcome: Outcome | None = None
        self._computed: Computed | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._start_thread = start_thread or _daemon_thread

    def start(self) -> None:
        self.state.running = True
        self.state.progress = 0.0
        self.state.status = "Starting"
        ModalRunner.active.append(self)
        self._start_thread(self._work)

    def _work(self) -> None:
        """Worker thread: the model and the painting. Never reads or writes Blender data."""
        try:
            self._computed = self.run.compute(self.progress)
        except BaseException as error:  # handed to the main thread, whatever it is
            if not isinstance(error, TextureError):
                log.exception("Generation failed")
            self._error = error
        finally:
            self._done.set()

    def cancel(self) -> None:
        """Esc or the Cancel button: the worker stops at its next step, download chunk or view."""
        self.progress.cancel()
        self.state.status = "Cancelling"

    def tick(self) -> str:
        """A timer event: show progress; once the worker is done, apply or undo on this thread."""
        if self.status != RUNNING:
            return self.status
        self.state.progress = self.progress.fraction
        if self.progress.message:
            self.state.status = self.progress.message
        if not self._done.is_set():
            return RUNNING
        if self._error is not None:
            return self._end_with_error(self._error)
        try:
            self.outcome = self.run.finish(self._computed)
        except TextureError as error:
            return self._end_with_error(error)
        self.state.coverage = min(self.outcome.coverage.values(), default=0.0)
        self.message = self.outcome.summary()
        self.state.status = self.message
        self.state.progress = 1.0
        return self._end(FINISHED)

    def handler_removed(self) -> None:
        """Blender dropped the modal handler (a file was opened, the window closed): stop the
        worker and leave the run state usable. The scene the run prepared may be gone, so only
        what it can still identify is undone (see :meth:`Run.abort`)."""
        if self.status != RUNNING:
            return
        self.progress.cancel()
        self.run.abort()
        self.message = "The run was stopped: Blender closed its window or loaded another file"
        self.state.status = self.message
        self._end(CANCELLED)

    def _end_with_error(self, error: BaseException) -> str:
        self.run.abort()
        cancelled = isinstance(error, CancelledError) or self.progress.cancelled
        if cancelled:
            self.message = "Cancelled: the scene is as it was"
        elif isinstance(error, TextureError):
            self.message = str(error)
        else:
            self.message = f"Generation failed: {type(error).__name__}: {error}"
        self.state.status = self.message
        return self._end(CANCELLED if cancelled else FAILED)

    def _end(self, status: str) -> str:
        self.status = status
        self.state.running = False
        if self in ModalRunner.active:
            ModalRunner.active.remove(self)
        return status


def _daemon_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True, name="sd_depth_texture run")
    thread.start()
    return thread
