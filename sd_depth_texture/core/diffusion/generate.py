"""Generation with the one progress protocol (thin over :mod:`.generation` for now)."""

from __future__ import annotations

from .generation import generate as _generate
from .generation import validate_depth  # noqa: F401


def generate(pipe, depth, settings, *, init_image=None, progress=None, on_latents=None):
    def on_step(done: int, total: int) -> None:
        progress.update(done / total, f"Step {done}/{total}")

    return _generate(
        pipe, depth, settings, init_image=init_image,
        on_step=on_step if progress else None,
        should_cancel=(lambda: progress.cancelled) if progress else None,
        on_latents=on_latents,
    )  # fmt: skip
