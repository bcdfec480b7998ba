"""The samplers a user can pick (names from :data:`sd_depth_texture.defaults.SCHEDULERS`).

No bpy. Each is built from the loaded model's own noise schedule, so any of them fits any model.
"""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    PNDMScheduler,
)
from diffusers.configuration_utils import ConfigMixin

from ...defaults import SCHEDULERS as SCHEDULER_CHOICES
from ..validation import check_setting

SCHEDULER_CLASSES: dict[str, Any] = {
    "dpmpp": DPMSolverMultistepScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "ddim": DDIMScheduler,
    "pndm": PNDMScheduler,
}
SCHEDULERS = tuple(SCHEDULER_CHOICES)


def make_scheduler(pipe: Any, name: str) -> ConfigMixin:
    """A fresh scheduler of kind ``name`` built from the model's own noise schedule."""
    name = check_setting("scheduler", name)
    config = pipe.scheduler.config
    if name == "dpmpp":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++")
    return SCHEDULER_CLASSES[name].from_config(config)


def scheduler_from_config_folder(folder: str) -> ConfigMixin:
    """The scheduler a config folder names (one of ours), else the model's original PNDM."""
    config = PNDMScheduler.load_config(folder)
    classes = {cls.__name__: cls for cls in SCHEDULER_CLASSES.values()}
    return classes.get(config.get("_class_name"), PNDMScheduler).from_config(config)
