"""Drive the worker over a plan's tasks: in this process, or over Ray actors. No bpy.

Both runners take the worker from the caller (an :class:`AssetWorker`, or a picklable function
that makes one in each Ray process), so this module never loads Blender itself; both feed a
:class:`Sink`, which writes each finished asset's manifest line before anything else.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..core.certificates import HOME_VARIABLE
from ..core.errors import TextureError
from ..core.text import shown
from .records import FAILED, AssetJob, FileTask, Manifest, failed_record, worker_name
from .report import ProgressLine

log = logging.getLogger(__name__)

#: How often a worker may die while texturing one asset before the asset is recorded as failed.
MAX_WORKER_DEATHS_PER_ASSET = 2
#: The package a Ray worker must be able to import by this name (the bpy-module install).
PACKAGE = "sd_depth_texture"


class AssetWorker(Protocol):
    """Textures one asset of a task and returns its manifest line; never raises for a bad
    asset (the failure is the returned line)."""

    def texture(self, task: FileTask, job: AssetJob) -> dict[str, Any]: ...


class Sink:
    """Where finished assets go: the manifest first (crash safety), then the progress line."""

    def __init__(self, manifest: Manifest, progress: ProgressLine) -> None:
        self.manifest = manifest
        self.progress = progress
        self.records: list[dict[str, Any]] = []

    def started(self, job: AssetJob) -> None:
        self.progress.start(job.key)

    def finished(self, record: dict[str, Any]) -> None:
        self.manifest.append(record)
        self.records.append(record)
        self.progress.finish(record)
        if record.get("status") == FAILED:
            log.warning("%s failed: %s", shown(record.get("key")), shown(record.get("error")))


def run_sequential(tasks: Sequence[FileTask], worker: AssetWorker, sink: Sink) -> None:
    """All files in this process, one after another, with one loaded model."""
    for task in tasks:
        for job in task.jobs:
            sink.started(job)
            sink.finished(worker.texture(task, job))


class RayWorker:
    """The body of a Ray actor: one long-lived process that keeps Blender and the pipeline."""

    def __init__(self, make_worker: Callable[[], AssetWorker], threads: int | None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.worker = make_worker()

    def texture(self, task: FileTask, job: AssetJob) -> dict[str, Any]:
        return self.worker.texture(task, job)

    def name(self) -> str:
        return worker_name()


def _ray_connect(ray: Any, address: str, runtime_env: dict[str, Any]) -> bool:
    """Join the cluster at ``address`` (or a running local one for 'auto'), else start one.

    The package travels to the workers in the job's runtime environment (``py_modules``), the
    only place Ray accepts a local folder. A Ray the caller initialised already is used as it
    is: its job must make ``sd_depth_texture`` importable itself. Returns whether this call
    started Ray (and so shuts it down afterwards).
    """
    if ray.is_initialized():
        log.info("Using the Ray connection this process already has")
        return False
    settings = {
        "runtime_env": runtime_env,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address != "auto":
        ray.init(address=address, **settings)
        return True
    try:
        ray.init(address="auto", **settings)
    except ConnectionError:
        ray.init(include_dashboard=False, **settings)
    return True


def run_ray(
    tasks: Sequence[FileTask],
    make_worker: Callable[[], AssetWorker],
    sink: Sink,
    address: str,
    workers: int | None = None,
    threads: int | None = None,
    python: str | None = None,
) -> None:
    """Spread files over one worker per GPU (or per ``threads`` CPUs without GPUs).

    ``make_worker`` is sent to each actor (pickled) and called there once. Each file goes to
    one worker, which gets all its assets as a queue of actor calls; results come back one by
    one. A worker that dies has the rest of its file handed to a fresh one, which resumes from
    the output .blend; an asset whose worker died twice is recorded failed.
    """
    try:
        import ray
        from ray.exceptions import RayActorError, RayTaskError
    except ImportError as error:
        raise TextureError(
            "--ray needs Ray installed in this Python (pip install 'ray==2.60.0')."
        ) from error
    if __name__.split(".")[0] != PACKAGE:
        raise TextureError(
            "--ray needs this package importable as 'sd_depth_texture' on every node (the bpy "
            "module install); an add-on installed inside Blender cannot start Ray workers."
        )
    if not tasks:
        return
    package_folder = str(Path(__file__).resolve().parents[1])
    runtime_env: dict[str, Any] = {"py_modules": [package_folder]}
    if python:
        runtime_env["py_executable"] = python
    if os.environ.get(HOME_VARIABLE):  # the workers sign with the driver's certificate
        runtime_env["env_vars"] = {HOME_VARIABLE: os.environ[HOME_VARIABLE]}
    started = _ray_connect(ray, address, runtime_env)
    actors: dict[Any, dict[str, Any]] = {}
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(threads or 1))
        available = gpus if gpus else max(1, int(resources.get("CPU", 1)) // cpus)
        if workers and workers > available:
            log.warning("The cluster has room for %d worker(s), not %d", available, workers)
        # More workers than the cluster can hold would wait forever; more than files idle.
        count = max(1, min(workers or available, available, len(tasks)))
        actor_options: dict[str, Any] = {
            "num_gpus": 1 if gpus else 0,
            "num_cpus": 0 if gpus else cpus,
        }
        if python and not started:
            actor_options["runtime_env"] = {"py_executable": python}
        actor_class = ray.remote(RayWorker).options(**actor_options)
        log.info("Ray: %d worker(s), %s", count, "one GPU each" if gpus else f"{cpus} CPU each")

        def new_actor() -> Any:
            actor = actor_class.remote(make_worker, None if gpus else cpus)
            actors[actor] = {"task": None, "left": []}
            return actor

        queue: deque[FileTask] = deque(tasks)
        idle = [new_actor() for _ in range(count)]
        pending: dict[Any, tuple[Any, FileTask, AssetJob]] = {}
        deaths: dict[str, int] = {}
        replacements = 0
        while queue or pending:
            while idle and queue:
                actor, task = idle.pop(), queue.popleft()
                actors[actor] = {"task": task, "left": list(task.jobs)}
                for job in task.jobs:
                    pending[actor.texture.remote(task, job)] = (actor, task, job)
                sink.started(task.jobs[0])
            ready, _ = ray.wait(list(pending), num_returns=1)
            actor, task, job = pending.pop(ready[0])
            try:
                record = ray.get(ready[0])
            except RayActorError as error:
                # Everything this worker still had is lost with it: hand the rest on.
                left = actors.pop(actor)["left"]
                for ref in [r for r, (a, _, _) in pending.items() if a is actor]:
                    del pending[ref]
                in_flight = left[0]
                deaths[in_flight.key] = deaths.get(in_flight.key, 0) + 1
                log.warning(
                    "A Ray worker died while texturing %s: %s", shown(in_flight.key), shown(error)
                )
                if deaths[in_flight.key] >= MAX_WORKER_DEATHS_PER_ASSET:
                    sink.finished(
                        failed_record(
                            in_flight,
                            task,
                            f"the worker died {deaths[in_flight.key]} times while texturing it "
                            "(out of memory?)",
                        )
                    )
                    left = left[1:]
                if left:
                    queue.appendleft(dataclasses.replace(task, jobs=tuple(left)))
                replacements += 1
                if replacements > 2 * count + 2:
                    raise TextureError(
                        "Ray workers keep dying; the batch stopped (rerun to resume)."
                    ) from error
                idle.append(new_actor())
                continue
            except RayTaskError as error:
                record = failed_record(job, task, f"worker error: {str(error).splitlines()[0]}")
            state = actors[actor]
            state["left"].remove(job)
            sink.finished(record)
            if state["left"]:
                sink.started(state["left"][0])
            else:
                state["task"] = None
                idle.append(actor)
    finally:
        for actor in list(actors):
            ray.kill(actor)
        if started:
            ray.shutdown()
