"""The dependency state the preferences show and Generate's poll reads."""

from __future__ import annotations

import sys

import bpy

from sd_depth_texture.ui import dependencies


def test_with_everything_installed_generate_is_enabled(addon):
    state = dependencies.state(refresh=True)
    assert state.ready and not state.missing
    assert state.versions["torch"].startswith("2.13.0")
    assert sys.executable in state.command and "torch==2.13.0" in state.command
    assert bpy.ops.sd_depth_texture.generate.poll()


def test_a_missing_package_disables_generate_and_says_what_to_do(addon, monkeypatch):
    monkeypatch.setattr(dependencies, "missing_packages", lambda: ["torch", "diffusers"])
    try:
        state = dependencies.state(refresh=True)
        assert not bpy.ops.sd_depth_texture.generate.poll()
        assert state.poll_message().startswith("Generating needs torch, diffusers")
        assert "preferences" in state.poll_message() and "--" not in state.poll_message()
        assert bpy.ops.sd_depth_texture.check_dependencies() == {"FINISHED"}
        # Depth capture and projection do not need them.
        assert bpy.ops.sd_depth_texture.capture_depth.poll()
        assert bpy.ops.sd_depth_texture.project_image.poll()
    finally:
        monkeypatch.undo()
        dependencies.state(refresh=True)
    assert bpy.ops.sd_depth_texture.generate.poll()
