"""A Blender without torch and diffusers (the usual state after installing the plain zip):
the add-on registers, depth capture and projection work, generating says what is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from support import REPO

SCRIPT = textwrap.dedent(
    """
    import importlib.abc
    import os
    import sys

    BLOCKED = {"torch", "diffusers", "transformers", "accelerate", "safetensors"}

    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Hide())
    import bpy
    import numpy as np

    import sd_depth_texture
    from sd_depth_texture.blender import images, sample
    from sd_depth_texture.cli import main as cli

    sd_depth_texture.register()
    folder = sys.argv[1]
    sample.build_sample_scene()
    blend = os.path.join(folder, "scene.blend")
    bpy.ops.wm.save_as_mainfile(filepath=blend)

    from sd_depth_texture.ui import dependencies

    state = dependencies.state()
    assert state.missing[:3] == ["torch", "diffusers", "transformers"], state.missing
    assert not bpy.ops.sd_depth_texture.generate.poll()  # disabled, with the reason
    assert "Generating needs torch, diffusers" in state.poll_message()
    assert bpy.ops.sd_depth_texture.copy_install_command() == {"FINISHED"}
    copied = bpy.context.window_manager.clipboard
    print("COPIED", copied)
    assert bpy.ops.sd_depth_texture.capture_depth(resolution=128) == {"FINISHED"}
    picture = images.array_to_image("red", np.ones((256, 384, 3), np.float32))
    png = os.path.join(folder, "red.png")
    picture.filepath_raw, picture.file_format = png, "PNG"
    picture.save()
    assert bpy.ops.sd_depth_texture.project_image(filepath=png, texture_size=64) == {"FINISHED"}

    assert cli.main(["depth", blend, "--output", os.path.join(folder, "depth.png")]) == 0
    assert cli.main(["project", blend, "--image", png, "--object", "Cube",
                     "--texture-size", "64"]) == 0
    code = cli.main(["texture", blend, "--prompt", "oak", "--object", "Cube"])
    assert code == 1, code
    for name in BLOCKED:
        assert name not in sys.modules, name
    print("WITHOUT_TORCH_OK")
    sys.stdout.flush()
    os._exit(0)
    """
)


def test_depth_and_projection_work_and_generating_names_what_is_missing(tmp_path):
    process = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "WITHOUT_TORCH_OK" in process.stdout, process.stdout + process.stderr
    errors = [line for line in process.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, process.stderr
    assert "torch, diffusers, transformers" in errors[0]
    assert "docs/install.md" in errors[0]
    assert "Traceback" not in process.stderr
    assert (tmp_path / "depth.png").is_file()
    copied = next(line for line in process.stdout.splitlines() if line.startswith("COPIED "))
    # The exact command for this Blender's own Python, with the pinned versions (an empty
    # clipboard where background mode keeps none).
    assert copied == "COPIED " or (sys.executable in copied and "torch==2.13.0" in copied)
    assert (tmp_path / "scene_textured.blend").is_file()
