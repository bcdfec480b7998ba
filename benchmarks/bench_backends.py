"""Per-view overhead of each backend, everything around the networks (CPU, tiny models).

For every registered backend with a tiny random-weight model (``tests/support/backends.py``),
generates views at ``--size`` through ``core.diffusion.generate.generate`` with half of each view
held as a kept region, and splits each view's wall time into the networks (the denoiser, the
ControlNet, the text encoders and the VAE, timed by forward hooks) and the rest: input checks, the
depth's conditioning, the scheduler, the kept-region encode and per-step blend, resizing, the
output checks: what the add-on adds per view, which does not shrink with a faster GPU. The tiny
networks themselves say nothing about real speed (see the GPU benchmark for that).

    .venv/bin/python benchmarks/bench_backends.py [--size 512] [--steps 4] [--views 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from support.backends import TINY_MODELS  # noqa: E402

from sd_depth_texture.core.diffusion.backends import backends  # noqa: E402
from sd_depth_texture.core.diffusion.cache import free_pipeline, load_model  # noqa: E402
from sd_depth_texture.core.diffusion.generate import generate  # noqa: E402
from sd_depth_texture.core.diffusion.settings import GenerationSettings  # noqa: E402


class NetworkClock:
    """Wall time spent inside the pipeline's networks (outermost calls only)."""

    def __init__(self, pipe) -> None:
        self.seconds, self._depth, self._started, self._handles = 0.0, 0, 0.0, []
        for name in ("unet", "transformer", "controlnet", "text_encoder", "text_encoder_2", "vae"):
            module = getattr(pipe, name, None)
            if isinstance(module, torch.nn.Module):
                self._handles.append(module.register_forward_pre_hook(self._enter))
                self._handles.append(module.register_forward_hook(self._leave))
        # The VAE's encode/decode are methods, not forward calls.
        for method in ("encode", "decode"):
            self._wrap(pipe.vae, method)

    def _wrap(self, module, method: str) -> None:
        original = getattr(module, method)

        def timed(*args, **kwargs):
            self._enter()
            try:
                return original(*args, **kwargs)
            finally:
                self._leave()

        setattr(module, method, timed)

    def _enter(self, *_args) -> None:
        if self._depth == 0:
            self._started = time.perf_counter()
        self._depth += 1

    def _leave(self, *_args) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="view width and height")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--views", type=int, default=3)
    args = parser.parse_args()

    size = args.size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    depth = (0.1 + 0.8 * x / (size - 1) + 0.1 * y / (size - 1)) / 1.0
    known = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    keep = np.zeros((size, size), np.float32)
    keep[:, : size // 2] = 1.0
    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {threads} threads; {size}x{size} views, {args.steps} steps, "
        f"half of each view kept; per view, median of {args.views}"
    )
    print(f"{'backend':18} {'view s':>8} {'networks s':>11} {'overhead ms':>12} {'share':>6}")
    with tempfile.TemporaryDirectory() as root:
        for backend in backends():
            spec = TINY_MODELS[backend.name](Path(root) / backend.name)
            pipe = load_model(spec).pipe
            clock = NetworkClock(pipe)
            settings = GenerationSettings(prompt="red brick", steps=args.steps)
            generate(pipe, depth, settings, kept=(known, keep))  # warm-up
            totals, networks = [], []
            for view in range(args.views):
                clock.seconds = 0.0
                started = time.perf_counter()
                seeded = GenerationSettings(prompt="red brick", steps=args.steps, seed=view)
                generate(pipe, depth, seeded, kept=(known, keep))
                totals.append(time.perf_counter() - started)
                networks.append(clock.seconds)
            total, network = float(np.median(totals)), float(np.median(networks))
            overhead = total - network
            print(f"{backend.name:18} {total:8.3f} {network:11.3f} {overhead * 1e3:12.1f} "
                  f"{overhead / total:6.0%}")  # fmt: skip
            free_pipeline()


if __name__ == "__main__":
    main()
