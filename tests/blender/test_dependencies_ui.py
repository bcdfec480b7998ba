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


class _Recorder:
    """Records what a draw function lays out (labels and operators), as a UILayout takes it."""

    def __init__(self) -> None:
        self.labels: list[str] = []

    def label(self, text: str = "", **_options) -> None:
        self.labels.append(text)

    def operator(self, idname: str, **_options) -> None:
        self.labels.append(idname)

    def box(self, **_options) -> _Recorder:
        return self

    column = row = box


def test_c2pa_shows_as_optional_and_its_absence_never_disables_generate(addon, monkeypatch):
    shown = _Recorder()
    dependencies.draw(shown)
    assert "c2pa-python 0.38.1 (optional)" in shown.labels
    assert "peft 0.21.2 (optional)" in shown.labels  # LoRAs need it, generating does not
    monkeypatch.setattr(dependencies, "missing_optional", lambda: ["c2pa-python"])
    monkeypatch.setattr(dependencies, "optional_versions", lambda: {"c2pa-python": None})
    try:
        state = dependencies.state(refresh=True)
        assert state.ready and bpy.ops.sd_depth_texture.generate.poll()
        shown = _Recorder()
        dependencies.draw(shown)
        assert "c2pa-python: not installed (optional)" in shown.labels
        assert state.optional_command in shown.labels
        assert "c2pa-python==0.38.1" in state.optional_command
    finally:
        monkeypatch.undo()
        dependencies.state(refresh=True)
