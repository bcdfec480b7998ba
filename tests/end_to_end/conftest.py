"""Fixtures of the whole-run tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.scenes import save_sample


@pytest.fixture
def sample_blend(tmp_path, addon) -> Path:
    """The sample scene saved as ``scene/sample.blend`` in the test's folder."""
    return save_sample(tmp_path / "scene" / "sample.blend")
