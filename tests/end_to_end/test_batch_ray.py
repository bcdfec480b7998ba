"""``batch --ray`` on a local two-CPU Ray cluster with the tiny pipeline.

Two workers, each a long-lived process with Blender (bpy) and the loaded pipeline, must give
exactly the pixels of a sequential run (same seeds, one torch thread each), and a worker killed
mid-batch must cost nothing: its file is finished by a fresh worker, no asset is done twice.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from support.fingerprints import folder_fingerprint
from test_batch import (
    batch_argv,
    build_library,
    done_lines,
    manifest_lines,
    texture_pixels,
)

from sd_depth_texture.batch.records import DONE, MANIFEST_NAME, Manifest, worker_name
from sd_depth_texture.cli import main as cli

ray = pytest.importorskip("ray")

BOXES = 6
ONE_THREAD = ["--cpu-threads", "1"]  # Ray gives each CPU worker one thread; so does this run
# No cluster runs here, so 'auto' starts a local one (2 CPUs) for the batch and stops it after.
RAY = ["--ray", "auto", "--ray-workers", "2"]


@pytest.fixture(scope="module")
def library(tmp_path_factory, addon):
    return build_library(tmp_path_factory.mktemp("ray") / "library", boxes=BOXES)


@pytest.fixture(scope="module")
def sequential(library, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential") / "out"
    assert cli.main(batch_argv(library, out, tiny_model_dir, *ONE_THREAD)) == 1
    return out


def _comparable(out) -> dict[str, tuple]:
    return {
        key: (r["status"], r.get("prompt"), r.get("seed"), r.get("request"), r.get("error"))
        for key, r in Manifest(str(out / MANIFEST_NAME)).read().items()
    }


def test_ray_gives_the_sequential_result(library, sequential, tiny_model_dir, tmp_path):
    before = folder_fingerprint(library)
    out = tmp_path / "out"
    assert cli.main(batch_argv(library, out, tiny_model_dir, *ONE_THREAD, *RAY)) == 1

    assert _comparable(out) == _comparable(sequential)
    assert texture_pixels(out) == texture_pixels(sequential)  # textures and previews, bit for bit
    assert folder_fingerprint(library) == before
    records = [r for r in manifest_lines(out) if r["status"] == DONE]
    workers = {r["worker"] for r in records}
    assert len(workers) == 2 and worker_name() not in workers
    # Each worker loaded the model once and kept it for all its assets.
    assert sorted(r["worker"] for r in records if r["model_loaded"]) == sorted(workers)
    assert (out / "contact_sheet.html").is_file()


def test_a_killed_worker_loses_nothing(library, sequential, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    manifest = out / MANIFEST_NAME
    killed: list[int] = []
    stop = threading.Event()

    def kill_the_boxes_worker() -> None:
        # The worker on boxes.blend has the rest of the file queued after its first box: kill it
        # then, mid-file (in an asset, or about to start the next).
        while not stop.is_set():
            for record in manifest_lines(out) if manifest.exists() else []:
                if record["key"].startswith("boxes/") and record["status"] == DONE:
                    pid = int(record["worker"].rpartition(":")[2])
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.01)

    monitor = threading.Thread(target=kill_the_boxes_worker, daemon=True)
    monitor.start()
    try:
        code = cli.main(batch_argv(library, out, tiny_model_dir, *ONE_THREAD, *RAY))
    finally:
        stop.set()
        monitor.join()
    assert code == 1 and len(killed) == 1

    done = done_lines(out)
    assert sorted(done) == sorted(k for k, v in _comparable(sequential).items() if v[0] == "done")
    assert set(done.values()) == {1}  # nothing done twice
    box_workers = {r["worker"] for r in manifest_lines(out) if r["key"].startswith("boxes/")}
    assert len(box_workers) == 2  # the dead worker's boxes were finished by a fresh one
    assert _comparable(out) == _comparable(sequential)
    assert texture_pixels(out) == texture_pixels(sequential)
