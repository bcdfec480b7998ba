"""The command-line options that several commands share, built from :mod:`..defaults`, and
the checks they share.

``texture``, ``project``, ``depth`` and ``batch`` all add their options here, so a default or a
range is written once (in :mod:`..defaults`) and every command shows the same help: each
command adds every number of its groups (:func:`add_numbers`), so a new
:class:`~..defaults.Limit` appears without a line here.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

from .. import defaults
from ..blender import preferences
from ..core.diffusion.dependencies import missing_packages
from ..core.diffusion.settings import ModelSpec, looks_like_flux
from ..core.errors import TextureError
from ..defaults import Limit


def add_number(parser: argparse.ArgumentParser, limit: Limit) -> None:
    kind = int if limit.integer else float
    default = kind(limit.default)
    if limit.model_default:  # left unset, the model family's recommended value
        said = f"default: the model's recommended value, {default} for SD2-depth"
        default = None
    else:
        said = f"default {default}"
    parser.add_argument(
        limit.flag,
        dest=limit.key,
        type=kind,
        default=default,
        help=f"{limit.help} ({limit.allowed()}; {said})",
    )


def add_numbers(parser: argparse.ArgumentParser, *groups: str) -> None:
    """Every number of ``groups`` (:data:`..defaults.LIMITS`), in the table's order."""
    for limit in defaults.limits_of(*groups):
        add_number(parser, limit)


def add_view_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--camera", help="camera to work from (default: the scene camera)")
    add_numbers(parser, defaults.VIEW)


def add_texture_options(parser: argparse.ArgumentParser) -> None:
    add_numbers(parser, defaults.TEXTURE)
    parser.add_argument(
        "--uv-map", metavar="NAME", help="the UV map to texture (default: each object's active one)"
    )
    parser.add_argument(
        "--match-colors",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fit each view's colours (gain and offset per channel) to what the views before it "
        "painted where they overlap (default: on for generated views, off for projected images)",
    )
    add_maps_options(parser)
    add_provenance_options(parser)


def add_maps_options(parser: argparse.ArgumentParser) -> None:
    """PBR maps estimated from each view's picture (docs/guide.md, "PBR maps")."""
    parser.add_argument(
        "--maps",
        metavar="LIST",
        default=None,
        help=f"texture maps to write, comma-separated, of {', '.join(defaults.MAPS)} (default: "
        "color): albedo, roughness and metallic are estimated from each view's picture by the "
        "maps model and wired into the material; the lit colour is always written",
    )
    parser.add_argument(
        "--maps-model",
        metavar="SRC",
        default=None,
        help=f"the maps model: a Hugging Face id, a local diffusers folder or "
        f"'{defaults.RANDOM_MODEL}' (default: {defaults.MAPS_MODEL_ID}, pinned; "
        "licence OpenRAIL++-M)",
    )


def add_provenance_options(parser: argparse.ArgumentParser) -> None:
    """What every texture records about what made it (docs/record.md); the AI marking itself
    cannot be turned off."""
    parser.add_argument(
        "--provenance",
        default=None,
        help=f"{' or '.join(defaults.PROVENANCE)}: minimal leaves the prompts out of every "
        "texture's record and manifest, never the AI marking, model or licence (default: the "
        f"add-on preferences, else {defaults.PROVENANCE[0]})",
    )
    parser.add_argument(
        "--c2pa-cert",
        metavar="CHAIN.pem",
        help="a studio's certificate chain (PEM, leaf first) to sign C2PA manifests with "
        "(default: the preferences', else this installation's own)",
    )
    parser.add_argument(
        "--c2pa-key", metavar="KEY.pem", help="the private key of --c2pa-cert (PEM, unencrypted)"
    )


def add_generation_options(parser: argparse.ArgumentParser, prompt_required: bool = True) -> None:
    """The options of ``texture``; other commands that generate (batch) share them."""
    parser.add_argument("--prompt", required=prompt_required, help="what the texture should show")
    parser.add_argument("--negative-prompt", default="", help="what to avoid")
    parser.add_argument(
        "--model",
        help="Hugging Face id, local diffusers folder, single .safetensors file, or "
        f"'{defaults.RANDOM_MODEL}' (default: {defaults.MODEL_ID})",
    )
    parser.add_argument(
        "--controlnet",
        metavar="SRC",
        help="depth ControlNet for an SD 1.5 or SDXL --model: Hugging Face id, folder, or "
        ".safetensors beside its config.json (default: the add-on preferences, else none)",
    )
    parser.add_argument("--config", help="diffusers config folder for a single .safetensors file")
    parser.add_argument(
        "--depth-lora",
        metavar="SRC",
        help="with the FLUX.1-dev base as --model: the depth control LoRA (.safetensors, or "
        f"{defaults.FLUX_DEPTH_LORA_ID})",
    )
    parser.add_argument("--device", default=None, help=", ".join(defaults.DEVICES))
    parser.add_argument(
        "--precision",
        default=None,
        help=f"{', '.join(defaults.PRECISIONS)} (default: the add-on preferences, else auto: "
        "fp16 on a GPU, fp32 on the CPU)",
    )
    parser.add_argument(
        "--offload",
        default=None,
        help=f"{', '.join(defaults.OFFLOADS)}: keep the model in host memory and move one model "
        "(model) or one layer (sequential, least memory, slowest) to the GPU as it runs; GPUs "
        "only (default: the add-on preferences, else none)",
    )
    parser.add_argument(
        "--vae-tiling",
        default=None,
        help=f"{', '.join(defaults.VAE_TILINGS)}: decode large pictures in tiles (auto: where GPU "
        "memory is scarce; default: the add-on preferences, else auto)",
    )
    parser.add_argument(
        "--lora",
        action="append",
        dest="loras",
        metavar=f"FILE{defaults.LORA_SUFFIX}[:WEIGHT]",
        help="a LoRA to apply on top of the model, with its weight (default 1; "
        f"{defaults.LORA_SCALE.allowed()}); repeatable; safetensors only",
    )
    parser.add_argument(
        "--online",
        action="store_true",
        help="allow downloading the model for this run (as Blender's --online-mode does)",
    )
    parser.add_argument(
        "--camera-collection",
        metavar="NAME",
        help="paint from every camera in this collection instead of automatic views",
    )
    parser.add_argument(
        "--no-view-prompts",
        dest="view_prompts",
        action="store_false",
        help="do not append 'front view', 'back view', ... to the prompt",
    )
    parser.add_argument("--report", metavar="FILE.json", help="write a JSON report of the run")
    add_numbers(parser, defaults.GENERATION)
    parser.add_argument(
        "--upscale-model",
        metavar="SRC",
        default=None,
        help="the upscaler for --upscale: a Hugging Face id, a local diffusers folder or "
        f"'{defaults.RANDOM_MODEL}' (default: {defaults.UPSCALE_MODELS[2][0]} for 2, "
        f"{defaults.UPSCALE_MODELS[4][0]} for 4; licence openrail++)",
    )
    parser.add_argument(
        "--scheduler",
        default=defaults.SCHEDULER,
        help=f"{', '.join(defaults.SCHEDULERS)} (default {defaults.SCHEDULER})",
    )


def with_provenance(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with the provenance and maps settings resolved: this run's, else the
    preferences'."""
    return {
        **values,
        **preferences.provenance_settings(values),
        **preferences.auxiliary_settings(values),
    }


def model_spec(values: Mapping[str, Any]) -> ModelSpec:
    """The add-on's model choice with this run's --model/--controlnet/--depth-lora/--config/
    --device/--precision/--offload/--vae-tiling/--online on top (the builder adds the --lora
    files)."""
    spec = preferences.model_spec(
        values.get("model"),
        controlnet=values.get("controlnet"),
        depth_lora=values.get("depth_lora"),
    )
    overrides = {
        "config": values.get("config"),
        "device": values.get("device"),
        "precision": values.get("precision"),
        "offload": values.get("offload"),
        "vae_tiling": values.get("vae_tiling"),
        "allow_online": values.get("online"),
    }
    return dataclasses.replace(spec, **{k: v for k, v in overrides.items() if v})


def show_licence(spec: ModelSpec) -> None:
    """Where the command line chooses a model with a licence that limits its use, say so (one
    line on stderr, before the run)."""
    if looks_like_flux(spec.source, spec.depth_lora):
        print(f"note: {defaults.FLUX_LICENCE_NOTICE}.", file=sys.stderr)


def require_model_packages() -> None:
    """Generating needs torch and diffusers; depth and projection do not. One line naming what
    is missing, before any file is opened."""
    missing = missing_packages()
    if missing:
        raise TextureError(
            f"Generating textures needs {', '.join(missing)}, not installed in this Blender's "
            f"Python ({sys.executable}): see docs/install.md. 'depth' and 'project' work "
            "without them."
        )
