"""The built zip, installed by Blender's own installer, textures a scene as a user would."""

from __future__ import annotations

import runpy
from pathlib import Path

from support import REPO
from support.blender_install import describe, install_and_run


def build_zip(output_dir: Path) -> Path:
    build = runpy.run_path(str(REPO / "build.py"), run_name="build_for_test")
    assert build["main"](["--output-dir", str(output_dir)]) == 0
    return next(output_dir.glob("*.zip"))


def test_installed_extension_textures_through_operator_preferences_and_cli(
    tmp_path, tiny_model_dir
):
    zip_path = build_zip(tmp_path / "dist")
    output = tmp_path / "out" / "textured.blend"
    output.parent.mkdir()
    script = f"""
        import importlib
        import os

        sample = importlib.import_module(ADDON_MODULE + ".blender.sample")
        targets = importlib.import_module(ADDON_MODULE + ".blender.targets")
        cli = importlib.import_module(ADDON_MODULE + ".cli.main")

        # A user points the preferences at a local model folder; nothing else names it.
        prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
        prefs.model_source = {str(tiny_model_dir)!r}
        prefs.provenance = "minimal"  # the studio keeps its prompts to itself
        prefs.precision = "bf16"  # the memory settings live in the preferences too
        prefs.vae_tiling = "on"

        sample.build_sample_scene()
        result = bpy.ops.sd_depth_texture.generate(
            prompt="green moss", steps=2, texture_size=64, resolution=256
        )
        assert result == {{"FINISHED"}}, result
        texture = bpy.data.images[targets.texture_name("Suzanne")]
        assert tuple(texture.size) == (64, 64)
        material = bpy.data.objects["Suzanne"].material_slots[0].material
        assert material.node_tree.nodes["SD Texture"].image == texture
        # Without a cache folder in the preferences, models live in the standard Hugging Face
        # cache that every tool shares.
        preferences = importlib.import_module(ADDON_MODULE + ".blender.preferences")
        assert preferences.model_spec().cache_dir is None
        # The preferences' provenance level reached the record; the installation's C2PA
        # certificate lives in the extension's own user folder, readable by the user only.
        import json
        import stat
        record = json.loads(texture["sd_depth_texture_record"])
        assert record["provenance"] == "minimal" and "prompt" not in record["views"][0], record
        model = record["model"]
        assert (model["precision"], model["vae_tiling"], model["offload"]) == (
            "bfloat16", True, "none"), model
        folder = bpy.utils.extension_path_user(ADDON_MODULE, path="c2pa")
        assert folder.startswith(USER_DIR), folder
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(os.path.join(folder, "key.pem")).st_mode) == 0o600

        scene_file = os.path.join(USER_DIR, "scene.blend")
        bpy.ops.wm.save_as_mainfile(filepath=scene_file)
        code = cli.main(["texture", scene_file, "--prompt", "rust", "--steps", "2",
                         "--texture-size", "64", "--resolution", "256", "--object", "Cube",
                         "--output", {str(output)!r}])
        assert code == 0, code
        cube = os.path.join({str(output.parent)!r}, "textures", "textured", "Cube_SD_Texture.png")
        import c2pa
        with c2pa.Reader(cube) as reader:
            store = json.loads(reader.json())
        codes = [status["code"] for status in store["validation_status"]]
        assert codes == ["signingCredential.untrusted"], codes
        assert "sd_depth_texture" not in sys.modules, "a second, absolute copy was imported"
        print("E2E_TEXTURE_OK")
    """
    # No certificate folder from the tests' environment: the extension's own user folder.
    process = install_and_run(zip_path, script, tmp_path, env={"SD_DEPTH_TEXTURE_HOME": ""})
    assert process.returncode == 0 and "E2E_TEXTURE_OK" in process.stdout, describe(process)
    assert output.is_file()
