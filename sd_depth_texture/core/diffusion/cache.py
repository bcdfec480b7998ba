"""The one cached pipeline (thin over :mod:`.generation` for now)."""

from __future__ import annotations

from .generation import free_pipeline, pipeline_status  # noqa: F401
from .generation import load_pipeline as _load


def load_pipeline(spec, progress=None):
    return _load(
        spec, (lambda message, fraction: progress.update(fraction, message)) if progress else None
    )
