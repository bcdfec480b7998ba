"""The panel's modal run, stepped without a window: real Blender, the real tiny pipeline.

The bpy module runs in background, where timers never fire and modal operators are refused
("Invalid operator call"), so these tests play Blender's part: a timer event is a
:meth:`ModalRunner.tick`, Esc is :meth:`ModalRunner.cancel`, and the worker runs on a real
thread that pauses at every progress change until the test has ticked (:class:`Lockstep`), so
the test sees each state the panel would and acts at a moment it chooses.
"""

from __future__ import annotations

import gc
import itertools
import json
import threading
import types
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import bpy
import numpy as np
import pytest
from support.fingerprints import scene_fingerprint

from sd_depth_texture.blender import flow, images, preferences
from sd_depth_texture.blender.targets import texture_name
from sd_depth_texture.core.diffusion import cache
from sd_depth_texture.core.diffusion.settings import GenerationSettings
from sd_depth_texture.core.errors import CancelledError
from sd_depth_texture.core.progress import Progress
from sd_depth_texture.request import OutputOptions, TextureRequest, ViewSource
from sd_depth_texture.ui import operators
from sd_depth_texture.ui.runner import (
    CANCELLED,
    CANCELLED_MESSAGE,
    FAILED,
    FINISHED,
    FINISHING_MESSAGE,
    RUNNING,
    STOPPED_MESSAGE,
    ModalRunner,
)

RESOLUTION = 128
TEXTURE = 64
PAUSE_TIMEOUT = 120.0  # seconds a worker may take between two progress changes


def run_state():
    """The run state the panel reads, looked up anew (a file load replaces it)."""
    return bpy.context.window_manager.sd_depth_texture


def prepare(model_dir, names=("Suzanne",), views: int = 1, steps: int = 2, seed: int = 0):
    """A prepared run as the panel's Generate makes it."""
    if views > 1:
        source = ViewSource(resolution=RESOLUTION, orbit=views)
    else:
        source = ViewSource(resolution=RESOLUTION, cameras=("",))
    request = TextureRequest(
        views=source,
        targets=tuple(names),
        generation=GenerationSettings(prompt="moss", steps=steps, seed=seed),
        model=preferences.model_spec(str(model_dir)),
        output=OutputOptions(texture_size=TEXTURE, keep_previous_files=True),
    )
    return flow.prepare(request)


class Lockstep:
    """Runs the worker on a real thread that waits at every progress change for the test."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self._changed = threading.Semaphore(0)
        self._resume = threading.Semaphore(0)
        self._free = threading.Event()  # stop pausing (test teardown)

    def runner(self, run: flow.Run) -> ModalRunner:
        runner = ModalRunner(run, run_state, start_thread=self.start)
        runner.progress.on_change = self.pause
        return runner

    def start(self, target: Callable[[], None]) -> threading.Thread:
        self.thread = threading.Thread(target=target, daemon=True, name="test worker")
        self.thread.start()
        return self.thread

    def pause(self, _fraction: float = 0.0, _message: str = "") -> None:
        """Worker side: tell the test, then wait until it has ticked."""
        if self._free.is_set():
            return
        self._changed.release()
        if not self._resume.acquire(timeout=PAUSE_TIMEOUT):
            raise TimeoutError("the test never resumed the worker")

    def drive(
        self, runner: ModalRunner, at_pause: Callable[[int, ModalRunner], None] | None = None
    ) -> list[tuple[float, str]]:
        """Tick after every pause until the run has ended and the worker has returned;
        ``at_pause(number, runner)`` acts on the main thread while the worker waits.

        Returns (progress, status) as the panel showed them after each tick of a running run.
        """
        shown: list[tuple[float, str]] = []
        pauses = 0
        while True:
            paused = self._changed.acquire(timeout=0.01)
            if runner.status == RUNNING and runner.tick() == RUNNING:
                state = run_state()
                if not shown or shown[-1] != (state.progress, state.status):
                    shown.append((state.progress, state.status))
            if paused:
                pauses += 1
                if at_pause is not None:
                    at_pause(pauses, runner)
                self._resume.release()
            elif not self.thread.is_alive() and runner.status != RUNNING:
                return shown  # (a worker that has returned ends the run at the next tick)

    def release(self) -> None:
        self._free.set()
        for _ in range(8):
            self._resume.release()
        if self.thread is not None:
            self.thread.join(PAUSE_TIMEOUT)


@pytest.fixture
def lockstep():
    stepper = Lockstep()
    yield stepper
    stepper.release()
    ModalRunner.stop_all()
    assert not ModalRunner.stopping()


@pytest.fixture
def saved_blend(sample_scene, tmp_path) -> Path:
    """The sample scene saved, so a run would write texture files beside it."""
    path = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def test_progress_rises_monotonically_over_loading_and_every_view(
    sample_scene, tiny_model_dir, lockstep
):
    cache.free_pipeline()  # so the run loads the model and shows it
    runner = lockstep.runner(prepare(tiny_model_dir, views=4))
    runner.start()
    assert run_state().running
    shown = lockstep.drive(runner)

    assert runner.status == FINISHED, runner.message
    fractions = [fraction for fraction, _ in shown]
    assert len(fractions) > 8
    assert all(b >= a for a, b in itertools.pairwise(fractions)), fractions
    assert fractions[0] <= flow.LOAD_SHARE
    assert any(status.startswith("Model") for _, status in shown)
    # Each view's messages show inside that view's share of the bar.
    for number in (1, 2, 3):
        inside = [f for f, status in shown if status.startswith(f"View {number}/4")]
        assert inside, f"no progress shown for view {number}"
        low = flow.LOAD_SHARE + (1 - flow.LOAD_SHARE) * (number - 1) / 4
        high = flow.LOAD_SHARE + (1 - flow.LOAD_SHARE) * number / 4
        assert all(low - 1e-6 <= f <= high + 1e-6 for f in inside), (number, inside)
    # After the last view the bar is full while unseen texels are filled: it says so.
    assert shown[-1] == (pytest.approx(1.0), FINISHING_MESSAGE)
    state = run_state()
    assert state.progress == pytest.approx(1.0)
    assert not state.running
    assert state.status == runner.message and runner.message.startswith("Textured Suzanne")
    assert state.coverage > 0
    assert texture_name("Suzanne") in bpy.data.images
    assert runner not in ModalRunner.active
    # The panel's run marks its texture too: the record on the image, the packed PNG signed.
    image = bpy.data.images[texture_name("Suzanne")]
    record = json.loads(image[images.RECORD_PROPERTY])
    assert record["origin"] == "generated" and record["views"][0]["prompt"].startswith("moss")
    assert b"caBX" in bytes(image.packed_file.data)  # the C2PA manifest's chunk


def test_esc_mid_run_leaves_the_scene_exactly_as_it_was(saved_blend, tiny_model_dir, lockstep):
    cube = bpy.data.objects["Cube"]
    cube.data.uv_layers.remove(cube.data.uv_layers[0])  # prepare gives it one: undone
    before = scene_fingerprint()
    runner = lockstep.runner(prepare(tiny_model_dir, names=("Suzanne", "Cube"), views=4))
    assert len(cube.data.uv_layers) == 1
    runner.start()
    cancelled_at = []

    def esc_in_the_second_view(_number: int, runner: ModalRunner) -> None:
        if not cancelled_at and runner.progress.message.startswith("View 2/4"):
            cancelled_at.append(runner.progress.message)
            runner.cancel()
            assert run_state().status.startswith("Cancelling")

    lockstep.drive(runner, esc_in_the_second_view)

    assert cancelled_at
    assert runner.status == CANCELLED
    assert runner.message == CANCELLED_MESSAGE == run_state().status
    assert isinstance(runner._error, CancelledError)  # the worker stopped itself
    assert not run_state().running
    assert scene_fingerprint() == before
    assert not (saved_blend.parent / "textures").exists()


def test_the_cancel_button_cancels_the_active_run(sample_scene, tiny_model_dir, lockstep):
    before = scene_fingerprint()
    assert not bpy.ops.sd_depth_texture.cancel.poll()  # nothing to cancel
    runner = lockstep.runner(prepare(tiny_model_dir, steps=4))
    runner.start()

    def press_cancel(number: int, _runner: ModalRunner) -> None:
        if number == 3:
            assert bpy.ops.sd_depth_texture.cancel.poll()
            assert bpy.ops.sd_depth_texture.cancel() == {"FINISHED"}

    lockstep.drive(runner, press_cancel)

    assert runner.status == CANCELLED and runner.message == CANCELLED_MESSAGE
    assert scene_fingerprint() == before


def test_a_stale_running_flag_is_cleared_by_the_cancel_button(sample_scene):
    """A run that ended without telling the panel (a crash in Blender's modal loop) must not
    leave Generate disabled for the rest of the session."""
    run_state().running = True
    assert not bpy.ops.sd_depth_texture.generate.poll()
    assert bpy.ops.sd_depth_texture.cancel() == {"CANCELLED"}
    assert not run_state().running
    assert bpy.ops.sd_depth_texture.generate.poll()


def test_free_model_generate_and_project_are_disabled_during_a_run(
    sample_scene, tiny_model_dir, lockstep
):
    runner = lockstep.runner(prepare(tiny_model_dir))
    runner.start()
    polls = []

    def check(_number: int, _runner: ModalRunner) -> None:
        polls.append(
            (
                bpy.ops.sd_depth_texture.free_model.poll(),
                bpy.ops.sd_depth_texture.generate.poll(),
                bpy.ops.sd_depth_texture.project_image.poll(),
            )
        )

    lockstep.drive(runner, check)

    assert polls and all(p == (False, False, False) for p in polls)
    assert runner.status == FINISHED
    assert bpy.ops.sd_depth_texture.free_model.poll()
    assert bpy.ops.sd_depth_texture.generate.poll()
    assert bpy.ops.sd_depth_texture.project_image.poll()


def test_opening_a_file_mid_run_stops_it_and_applies_nothing_to_the_new_file(
    sample_scene, tiny_model_dir, lockstep
):
    """File > New while the worker runs: the startup file has a 'Cube' too, which a result
    applied by name would paint."""
    runner = lockstep.runner(prepare(tiny_model_dir, names=("Cube", "Suzanne"), steps=3))
    runner.start()
    new_file = {}

    def open_the_startup_file(number: int, runner: ModalRunner) -> None:
        if number == 2:
            bpy.ops.wm.read_homefile()
            new_file["fingerprint"] = scene_fingerprint()
            # The run ended before the load; the worker is still finishing its step.
            assert runner.status == CANCELLED
            assert not run_state().running
            assert run_state().status == STOPPED_MESSAGE
            assert ModalRunner.stopping()
            assert not bpy.ops.sd_depth_texture.generate.poll()
            assert not bpy.ops.sd_depth_texture.free_model.poll()

    lockstep.drive(runner, open_the_startup_file)

    assert "Cube" in bpy.data.objects and "Suzanne" not in bpy.data.objects
    assert runner.message == STOPPED_MESSAGE
    assert isinstance(runner._error, CancelledError)  # stopped at its next check
    assert runner.tick() == CANCELLED  # a late timer event applies nothing
    assert scene_fingerprint() == new_file["fingerprint"]
    assert texture_name("Cube") not in bpy.data.images
    assert not ModalRunner.stopping()
    assert bpy.ops.sd_depth_texture.generate.poll()  # Generate is enabled again
    assert bpy.ops.sd_depth_texture.free_model.poll()


def test_handler_removed_mid_run_frees_the_panel_once_the_worker_stops(
    sample_scene, tiny_model_dir, lockstep
):
    """Blender dropping the handler without a load (the window closed): same ending."""
    cube = bpy.data.objects["Cube"]
    cube.data.uv_layers.remove(cube.data.uv_layers[0])
    before = scene_fingerprint()
    runner = lockstep.runner(prepare(tiny_model_dir, names=("Cube",)))
    runner.start()

    def remove_the_handler(number: int, runner: ModalRunner) -> None:
        if number == 2:
            runner.handler_removed()
            assert not run_state().running
            assert runner not in ModalRunner.active

    lockstep.drive(runner, remove_the_handler)

    assert runner.status == CANCELLED and runner.message == STOPPED_MESSAGE
    assert scene_fingerprint() == before  # its UV map was removed again
    assert bpy.ops.sd_depth_texture.generate.poll()


@pytest.mark.parametrize("change", ["renamed", "deleted", "replaced", "lost its UV map"])
def test_a_target_changed_mid_run_ends_with_one_message_and_writes_nothing(
    change, saved_blend, tiny_model_dir, lockstep
):
    cube = bpy.data.objects["Cube"]
    cube.data.uv_layers.remove(cube.data.uv_layers[0])  # prepare adds one
    images_before = sorted(image.name for image in bpy.data.images)
    materials_before = sorted(material.name for material in bpy.data.materials)
    runner = lockstep.runner(prepare(tiny_model_dir, names=("Suzanne", "Cube")))
    runner.start()

    def change_the_cube(number: int, _runner: ModalRunner) -> None:
        if number != 2:
            return
        cube = bpy.data.objects["Cube"]
        if change == "renamed":
            cube.name = "Boulder"
        elif change == "deleted":
            bpy.data.objects.remove(cube)
        elif change == "replaced":  # deleted, and another object took its name
            mesh = cube.data
            bpy.data.objects.remove(cube)
            other = bpy.data.objects.new("Cube", mesh)
            bpy.context.scene.collection.objects.link(other)
        else:
            cube.data.uv_layers.remove(cube.data.uv_layers.active)

    lockstep.drive(runner, change_the_cube)

    assert runner.status == FAILED
    wanted = "lost its UV map" if change == "lost its UV map" else "was renamed or deleted"
    assert runner.message == (f"'Cube' {wanted} while its texture was made: nothing was written.")
    assert run_state().status == runner.message and "\n" not in runner.message
    assert not run_state().running
    assert sorted(image.name for image in bpy.data.images) == images_before
    assert sorted(material.name for material in bpy.data.materials) == materials_before
    assert not bpy.data.objects["Suzanne"].material_slots
    assert not (saved_blend.parent / "textures").exists()
    if change == "renamed":  # the UV map prepare made is found under the new name
        assert len(bpy.data.objects["Boulder"].data.uv_layers) == 0


def test_a_texture_that_cannot_be_written_ends_the_run_with_one_message(
    saved_blend, tiny_model_dir, lockstep
):
    """The folder for textures turns into a file while the worker runs (checked up front, so
    only a change mid-run reaches the end): the run still ends, once, with one line."""
    runner = lockstep.runner(prepare(tiny_model_dir))
    (saved_blend.parent / "textures").write_text("not a folder")
    runner.start()
    lockstep.drive(runner)
    assert runner.status == FAILED
    assert "textures" in runner.message
    assert "\n" not in runner.message and run_state().status == runner.message
    assert not run_state().running
    assert bpy.ops.sd_depth_texture.generate.poll()


def test_esc_after_the_worker_finished_still_applies_nothing(sample_scene, tiny_model_dir):
    before = scene_fingerprint()
    started: list[Callable[[], None]] = []
    runner = ModalRunner(prepare(tiny_model_dir), run_state, start_thread=started.append)
    runner.start()
    assert runner.tick() == RUNNING  # the worker has not run yet
    started[0]()  # the worker, run to its end at a moment the test chose
    assert runner.worker_done and runner._computed is not None
    runner.cancel()  # Esc arrives before the next timer event
    assert runner.tick() == CANCELLED
    assert runner.message == CANCELLED_MESSAGE
    assert scene_fingerprint() == before


def _blender_objects_reachable_from(root: object) -> list[str]:
    """Blender data (RNA structs, collections, mathutils values) reachable from ``root``."""
    blender_types = (bpy.types.bpy_struct, bpy.types.bpy_prop_collection)
    seen: set[int] = set()
    found: list[str] = []
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, (type, types.ModuleType, types.FunctionType)):
            continue
        seen.add(id(item))
        if isinstance(item, blender_types) or type(item).__module__ == "mathutils":
            found.append(repr(item))
            continue
        if isinstance(item, np.ndarray):
            continue
        stack.extend(gc.get_referents(item))
    return found


def test_the_worker_reads_no_blender_data(sample_scene, tiny_model_dir):
    """By design: a prepared run holds no Blender data and compute's code names no bpy.
    By trial: compute gives the same result while the main thread deletes the whole scene and
    loads another file under it."""
    run = prepare(tiny_model_dir, names=("Suzanne", "Cube"), views=4, seed=5)
    assert _blender_objects_reachable_from(run) == []
    for name in ("bpy", "context", "data"):
        assert name not in flow.Run.compute.__code__.co_names
    expected = prepare(tiny_model_dir, names=("Suzanne", "Cube"), views=4, seed=5).compute()

    paused, resume = threading.Event(), threading.Event()

    def first_change(_fraction: float, _message: str) -> None:
        if not paused.is_set():
            paused.set()
            resume.wait(PAUSE_TIMEOUT)

    results: list = []
    worker = threading.Thread(target=lambda: results.append(run.compute(Progress(first_change))))
    worker.start()
    assert paused.wait(PAUSE_TIMEOUT)
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for mesh in list(bpy.data.meshes):
        bpy.data.meshes.remove(mesh)
    bpy.ops.wm.read_homefile(use_empty=True)
    resume.set()
    worker.join(PAUSE_TIMEOUT)

    assert results, "the worker failed"
    computed = results[0]
    assert computed.painted.keys() == expected.painted.keys()
    for name, painted in expected.painted.items():
        np.testing.assert_array_equal(computed.painted[name].texture, painted.texture)


class _Recorder:
    """Stands in for the operator (its ``report``) and the window manager (its timers)."""

    def __init__(self, runner: ModalRunner) -> None:
        self._runner = runner
        self._timer = "timer"
        self.reports: list[tuple[set, str]] = []
        self.removed: list[str] = []
        self.window_manager = SimpleNamespace(event_timer_remove=self.removed.append)

    def report(self, level: set, message: str) -> None:
        self.reports.append((level, message))

    def _remove_timer(self, context) -> None:
        operators.SDT_OT_generate._remove_timer(self, context)


def test_the_operator_forwards_esc_and_timer_events_and_reports_once(sample_scene, tiny_model_dir):
    """The modal shell Blender would drive: Esc cancels, timers tick, one report at the end."""
    before = scene_fingerprint()
    started: list[Callable[[], None]] = []
    runner = ModalRunner(prepare(tiny_model_dir), run_state, start_thread=started.append)
    runner.start()
    operator = _Recorder(runner)
    modal = operators.SDT_OT_generate.modal
    event = SimpleNamespace

    assert modal(operator, operator, event(type="MOUSEMOVE", value="NOTHING")) == {"PASS_THROUGH"}
    assert modal(operator, operator, event(type="TIMER", value="NOTHING")) == {"RUNNING_MODAL"}
    assert modal(operator, operator, event(type="ESC", value="PRESS")) == {"RUNNING_MODAL"}
    assert runner.progress.cancelled
    started[0]()
    assert modal(operator, operator, event(type="TIMER", value="NOTHING")) == {"CANCELLED"}
    assert operator.reports == [({"WARNING"}, CANCELLED_MESSAGE)]
    assert operator.removed == ["timer"]
    assert scene_fingerprint() == before


def test_the_operator_cancel_callback_stops_the_run(sample_scene, tiny_model_dir):
    """Blender calls ``cancel`` when it removes the handler: the run ends, the timer goes."""
    started: list[Callable[[], None]] = []
    runner = ModalRunner(prepare(tiny_model_dir), run_state, start_thread=started.append)
    runner.start()
    operator = _Recorder(runner)
    operators.SDT_OT_generate.cancel(operator, operator)
    assert runner.status == CANCELLED and not run_state().running
    assert operator.removed == ["timer"]
    assert ModalRunner.stopping()  # its worker has not returned yet
    started[0]()
    assert isinstance(runner._error, CancelledError)
    assert not ModalRunner.stopping()
