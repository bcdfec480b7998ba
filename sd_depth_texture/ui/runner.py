"""The modal run behind the panel's Generate button, as a plain class tests drive step by step.

The operator (:mod:`.operators`) is a thin shell: ``invoke`` prepares the run and starts a
:class:`ModalRunner`, every timer event calls :meth:`ModalRunner.tick`, Esc and the Cancel
button call :meth:`ModalRunner.cancel`, and Blender removing the handler (opening a file,
File > New, closing the window) calls :meth:`ModalRunner.handler_removed`. The worker thread
runs :meth:`..blender.flow.Run.compute`, which reads no Blender data; results are applied on
the main thread in :meth:`tick`. Nothing here needs a window, so tests step it with a thread
they control.

The run state the panel reads is looked up on every use (``state()``), never kept: loading a
file replaces the window manager, and its old properties are freed memory that Blender crashes
on (checked with the bpy module: reading a kept ``WindowManager`` property group after
``wm.read_homefile`` is a segmentation fault).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from ..blender.flow import Computed, Outcome, Run
from ..core.errors import CancelledError, TextureError
from ..core.progress import Progress
from ..messages import UI, word

log = logging.getLogger(__name__)

RUNNING, FINISHED, CANCELLED, FAILED = "RUNNING", "FINISHED", "CANCELLED", "FAILED"
CANCELLED_MESSAGE = "Cancelled: the scene is as it was"
FINISHING_MESSAGE = "Filling unseen texels and finishing the texture"
STOPPED_MESSAGE = "The run was stopped because another file was opened: nothing was applied"


class ModalRunner:
    """One run from start to its end on the main thread.

    ``state()`` returns where the panel reads progress (the window manager's run state in
    Blender; any object with ``running``, ``progress``, ``status`` and ``coverage`` in tests).
    ``start_thread(target)`` starts the worker (a daemon ``threading.Thread`` by default; tests
    pass one they step themselves).
    """

    active: ClassVar[list[ModalRunner]] = []  # runs in flight: the Cancel button, file loads
    _workers: ClassVar[list[ModalRunner]] = []  # runs whose worker may not have returned yet

    def __init__(
        self,
        run: Run,
        state: Callable[[], Any],
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

    @classmethod
    def stopping(cls) -> bool:
        """A run that ended on the main thread still has a worker finishing its current step.

        A new run must wait for it: both would drive the one cached pipeline at once.
        """
        cls._workers[:] = [runner for runner in cls._workers if not runner.worker_done]
        return bool(cls._workers)

    @classmethod
    def stop_all(cls, message: str = STOPPED_MESSAGE) -> int:
        """End every run in flight (a file is about to be loaded); returns how many."""
        runners = list(cls.active)
        for runner in runners:
            runner.handler_removed(message)
        return len(runners)

    @property
    def worker_done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the worker to return (tests, and nothing on Blender's main thread)."""
        return self._done.wait(timeout)

    def start(self) -> None:
        state = self.state()
        state.running = True
        state.progress = 0.0
        state.status = "Starting"
        ModalRunner.active.append(self)
        ModalRunner._workers.append(self)
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
        """Esc or the Cancel button: the worker stops at its next step or view."""
        if self.status != RUNNING:
            return
        self.progress.cancel()
        self.state().status = "Cancelling after the current step"

    def tick(self) -> str:
        """A timer event: show progress; once the worker is done, apply or undo on this thread."""
        if self.status != RUNNING:
            return self.status
        state = self.state()
        state.progress = self.progress.fraction
        done = self._done.is_set()
        if self.progress.cancelled:
            pass  # "Cancelling..." stays until the run ends
        elif self.progress.fraction >= 1.0 and not done:
            state.status = FINISHING_MESSAGE  # fill and margins after the last view
        elif self.progress.message:
            state.status = self.progress.message
        if not done:
            return RUNNING
        if self.progress.cancelled:  # Esc wins even over a worker that just finished
            return self._end_with_error(self._error or CancelledError("Cancelled"))
        if self._error is not None:
            return self._end_with_error(self._error)
        try:
            self.outcome = self.run.finish(self._computed)
        except Exception as error:  # one message in the panel, never a stuck run
            if not isinstance(error, TextureError):
                log.exception("Applying the texture failed")
            return self._end_with_error(error, "Applying the texture failed")
        state.coverage = min(self.outcome.coverage.values(), default=0.0)
        self.message = self.outcome.summary()
        state.status = self.message
        state.progress = 1.0
        return self._end(FINISHED)

    def handler_removed(self, message: str = STOPPED_MESSAGE) -> None:
        """Blender dropped the modal handler (a file was opened, the window closed): stop the
        worker and leave the run state usable. The scene the run prepared may be gone, so only
        what it can still identify is undone (see :meth:`Run.abort`); the result, when the
        worker returns, is never applied."""
        if self.status != RUNNING:
            return
        self.progress.cancel()
        self.run.abort()
        self.message = message
        self.state().status = message
        self._end(CANCELLED)

    def _end_with_error(self, error: BaseException, failed: str = "Generation failed") -> str:
        """Undo what the run prepared and end with one line: the cancel, the error's own
        message, or what failed (an unexpected error's first line; the log has the rest)."""
        self.run.abort()
        cancelled = isinstance(error, CancelledError) or self.progress.cancelled
        if cancelled:
            self.message = CANCELLED_MESSAGE
        elif isinstance(error, TextureError):
            self.message = word(error, UI)
        else:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self.message = f"{failed}: {type(error).__name__}: {first_line}".rstrip(": ")
        self.state().status = self.message
        return self._end(CANCELLED if cancelled else FAILED)

    def _end(self, status: str) -> str:
        self.status = status
        self.state().running = False
        if self in ModalRunner.active:
            ModalRunner.active.remove(self)
        return status


def _daemon_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True, name="sd_depth_texture run")
    thread.start()
    return thread
