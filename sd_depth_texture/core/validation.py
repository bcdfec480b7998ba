"""The one validation of every setting a request can carry (no bpy).

Every door builds its request through :func:`sd_depth_texture.request.build_request`, which
runs these checks, so the command line, the operators, the panel and the batch refuse the same
values with the same rule. A refusal is a :class:`~.errors.SettingError` naming the setting by
its key; each door words it with its own name for the setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..defaults import DEVICES, LIMITS, OFFLOADS, PRECISIONS, PROVENANCE, SCHEDULERS, VAE_TILINGS
from .errors import SettingError
from .text import prompt_problem, shown

#: Settings that take one of a fixed list of names.
CHOICES: dict[str, tuple[str, ...]] = {
    "scheduler": tuple(SCHEDULERS),
    "device": DEVICES,
    "precision": PRECISIONS,
    "offload": OFFLOADS,
    "vae_tiling": VAE_TILINGS,
    "provenance": PROVENANCE,
}
#: Settings that are free text for the model.
TEXTS = ("prompt", "negative_prompt")
#: The most characters a prompt may hold (given, or once a batch's template is filled). The
#: model reads about 77 tokens; this only stops a format width ('{name:99999999}') or a runaway
#: description from making a prompt of megabytes that every record and sheet would carry.
MAX_PROMPT_CHARACTERS = 10_000


def check_setting(key: str, value: Any) -> Any:
    """``value`` checked (and normalised: a whole float for an integer) for the setting ``key``;
    a key that is not a known number or choice is returned unchanged."""
    limit = LIMITS.get(key)
    if limit is not None:
        accepted = limit.accepted(value)
        if accepted is None:
            raise SettingError(key, value, limit.allowed())
        return accepted
    if key in TEXTS:
        return check_text(value, key)
    choices = CHOICES.get(key)
    if choices is not None and value not in choices:
        raise SettingError(key, value, "one of " + ", ".join(choices))
    return value


def check_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every known setting in ``values`` checked; None means "not given" and is left as is.
    Raises on the first bad value, in the mapping's order."""
    return {
        key: value if value is None else check_setting(key, value) for key, value in values.items()
    }


def check_prompt(prompt: Any) -> str:
    """A prompt the text encoder can take: non-empty text of bounded length."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise SettingError(
            "prompt", prompt, "a description",
            "The prompt is empty: describe the texture you want in {name}.",
        )  # fmt: skip
    return check_text(prompt, "prompt")


def check_text(text: Any, key: str) -> str:
    """Free text for the model (a prompt, a negative prompt): a string of bounded length that
    the tokenizer and the records can take (UTF-8, no NUL)."""
    if not isinstance(text, str):
        raise SettingError(key, text, "text")
    problem = prompt_problem(text)
    if problem:
        raise SettingError(key, shown(text[:40]), "UTF-8 text", f"{{name}} {problem}.")
    if len(text) > MAX_PROMPT_CHARACTERS:
        raise SettingError(
            key, f"{text[:20]}...", f"at most {MAX_PROMPT_CHARACTERS} characters",
            f"{{name}} is {len(text)} characters long: give at most {MAX_PROMPT_CHARACTERS}.",
        )  # fmt: skip
    return text
