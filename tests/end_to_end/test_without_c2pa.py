"""A Blender without c2pa-python: every texture still carries its record (the PNG text and the
image's properties), generating stays enabled, and the run says the C2PA manifest was skipped."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from PIL import Image
from support import REPO

from sd_depth_texture.blender import images

SCRIPT = textwrap.dedent(
    """
    import importlib.abc
    import json
    import os
    import sys

    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "c2pa":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Hide())
    import bpy
    import numpy as np

    import sd_depth_texture
    from sd_depth_texture.blender import images, sample
    from sd_depth_texture.cli import main as cli
    from sd_depth_texture.ui import dependencies

    sd_depth_texture.register()
    folder, model = sys.argv[1], sys.argv[2]
    state = dependencies.state(refresh=True)
    assert state.ready and state.optional_missing == ["c2pa-python"], state
    assert "c2pa-python==0.38.1" in state.optional_command
    sample.build_sample_scene()
    blend = os.path.join(folder, "scene.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    out = os.path.join(folder, "out", "textured.blend")
    code = cli.main(["texture", blend, "--prompt", "oak", "--object", "Suzanne", "--model", model,
                     "--steps", "1", "--resolution", "64", "--texture-size", "64",
                     "--output", out, "--report", os.path.join(folder, "report.json")])
    assert code == 0, code
    bpy.ops.wm.open_mainfile(filepath=out)
    print("PROPERTY", bpy.data.images["Suzanne SD Texture"][images.RECORD_PROPERTY])
    assert "c2pa" not in sys.modules
    print("WITHOUT_C2PA_OK")
    sys.stdout.flush()
    os._exit(0)
    """
)


def test_without_c2pa_the_record_is_written_and_the_manifest_skipped(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(home)}
    env.update(SD_DEPTH_TEXTURE_HOME=str(home), HF_HUB_OFFLINE="1")
    process = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(tiny_model_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "WITHOUT_C2PA_OK" in process.stdout, process.stdout + process.stderr
    summary = [line for line in process.stdout.splitlines() if line.startswith("Textured ")]
    assert len(summary) == 1
    assert "The C2PA manifest was skipped: c2pa-python is not installed" in summary[0]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["c2pa"]["status"] == "skipped"
    assert "c2pa-python is not installed" in report["c2pa"]["reason"]
    texture = report["objects"][0]["texture"]
    with Image.open(texture) as image:
        record = json.loads(image.text[images.RECORD_KEY])
        assert image.text["parameters"].startswith("oak\n")
    with open(texture, "rb") as stream:
        assert b"caBX" not in stream.read()  # no C2PA manifest chunk
    assert record["origin"] == "generated" and record["views"][0]["prompt"] == "oak"
    line = next(line for line in process.stdout.splitlines() if line.startswith("PROPERTY "))
    assert json.loads(line.removeprefix("PROPERTY ")) == record
    assert not (home / "c2pa").exists()  # no certificate is made where nothing signs
