"""Per-scene settings (saved in the .blend), run state (not saved) and add-on preferences."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .. import defaults
from ..core.diffusion.settings import looks_like_flux
from ..defaults import FLUX_LICENCE_NOTICE, Limit

SCHEDULER_ITEMS = [(name, label, text) for name, (label, text) in defaults.SCHEDULERS.items()]
MAP_ITEMS = [(name, label, text) for name, (label, text) in defaults.MAPS.items()]
VIEW_SOURCE_ITEMS = [
    ("VIEWPORT", "Viewport", "The 3D viewport exactly as you see it"),
    ("CAMERA", "Camera", "The chosen camera, or the scene camera"),
]


def _redraw_panels(_self, context) -> None:
    for area in getattr(context.screen, "areas", []) if context.screen else []:
        if area.type == "VIEW_3D":
            area.tag_redraw()


def _is_camera(_self, obj: bpy.types.Object) -> bool:
    return obj.type == "CAMERA"


def number(limit: Limit, description: str = "", *, hard: bool = True, **extra):
    """A ``bpy.props`` number with the limit's default and range, for the panel and operators.

    ``hard=False`` (the operators): the range only guides the slider, so a script's value out
    of range reaches the one validation and is refused like the command line's, instead of
    being clamped silently by Blender."""
    kind = IntProperty if limit.integer else FloatProperty
    cast = int if limit.integer else float
    low, high = cast(limit.low), cast(limit.high)
    limits = {"min": low, "max": high} if hard else {"soft_min": low, "soft_max": high}
    text = description or limit.help
    return kind(
        name=limit.label,
        default=cast(limit.default),
        description=text[:1].upper() + text[1:],
        **limits,
        **extra,
    )


def numbers(*groups: str, **extra) -> dict:
    """A ``bpy.props`` number for every limit of ``groups``, to add to a class's annotations:
    a new :class:`~..defaults.Limit` appears in the panel's settings and operators by itself."""
    return {limit.key: number(limit, **extra) for limit in defaults.limits_of(*groups)}


class SDT_Lora(bpy.types.PropertyGroup):
    """One LoRA of a list: its file, its weight, and whether this run uses it."""

    path: StringProperty(
        name="LoRA",
        subtype="FILE_PATH",
        description="A LoRA trained for the model in the preferences (.safetensors only)",
    )
    scale: FloatProperty(
        name=defaults.LORA_SCALE.label,
        default=defaults.LORA_SCALE.default,
        soft_min=defaults.LORA_SCALE.low,
        soft_max=defaults.LORA_SCALE.high,
        description=defaults.LORA_SCALE.help[:1].upper() + defaults.LORA_SCALE.help[1:],
    )
    enabled: BoolProperty(name="Use", default=True, description="Apply this LoRA in the run")


def lora_pairs(items) -> list[tuple[str, float]]:
    """The used LoRAs of a list as (absolute path, weight) pairs for the request builder."""
    return [(bpy.path.abspath(item.path), item.scale) for item in items if item.enabled]


class SDT_SceneSettings(bpy.types.PropertyGroup):
    """What to generate, kept with the scene so a .blend remembers its prompt."""

    __annotations__ = numbers(defaults.VIEW, defaults.TEXTURE, defaults.GENERATION)
    prompt: StringProperty(name="Prompt", description="What the texture should show")
    negative_prompt: StringProperty(name="Negative", description="What to avoid")
    scheduler: EnumProperty(name="Scheduler", items=SCHEDULER_ITEMS, default=defaults.SCHEDULER)
    uv_map: StringProperty(
        name="UV Map", description="The UV map to texture; empty: each object's active UV map"
    )
    view_source: EnumProperty(name="View", items=VIEW_SOURCE_ITEMS, default="VIEWPORT")
    view_prompts: BoolProperty(
        name="View Prompts", default=True, description="Append 'front view', 'back view', ..."
    )
    match_colors: BoolProperty(
        name="Match Colours",
        default=True,
        description="Fit each view's colours (gain and offset per channel) to what the views "
        "before it painted, so views meet without a jump in exposure or white balance",
    )
    camera_collection: PointerProperty(
        name="Cameras",
        type=bpy.types.Collection,
        description="Paint from every camera in this collection instead of automatic views",
    )
    camera: PointerProperty(name="Camera", type=bpy.types.Object, poll=_is_camera)
    maps: EnumProperty(
        name="Maps",
        items=MAP_ITEMS,
        options={"ENUM_FLAG"},
        default=set(defaults.DEFAULT_MAPS),
        description="Texture maps to write; albedo, roughness and metallic are estimated from "
        "each view's picture by the maps model (licence OpenRAIL++-M)",
    )
    loras: CollectionProperty(type=SDT_Lora, name="LoRAs")
    lora_index: IntProperty(name="Active LoRA", default=0, min=0)


class SDT_RunState(bpy.types.PropertyGroup):
    """Progress of the job in flight, on the window manager so it is never saved."""

    running: BoolProperty(default=False)
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR", update=_redraw_panels)
    coverage: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    status: StringProperty(default="", update=_redraw_panels)


DEVICE_ITEMS = [  # the names of defaults.DEVICES
    ("auto", "Automatic", "CUDA, then Apple MPS, then CPU"),
    ("cuda", "CUDA", "NVIDIA GPU"),
    ("mps", "Apple MPS", "Apple Silicon GPU"),
    ("cpu", "CPU", "Slow but works everywhere"),
]
PROVENANCE_ITEMS = [  # the names of defaults.PROVENANCE
    ("full", "Full", "The whole run record, prompts included"),
    ("minimal", "Minimal", "No prompts: the AI marking, the model and its licence stay"),
]
PRECISION_ITEMS = [  # the names of defaults.PRECISIONS
    ("auto", "Automatic", "fp16 on a GPU, fp32 on the CPU"),
    ("fp16", "Half (fp16)", "Half the memory of fp32; the usual choice on NVIDIA GPUs"),
    ("bf16", "BFloat16", "Half the memory, fp32's range: for FLUX and recent GPUs; works on CPUs"),
    ("fp32", "Full (fp32)", "The most memory; the choice on the CPU"),
]
OFFLOAD_ITEMS = [  # the names of defaults.OFFLOADS
    ("none", "None", "The whole model on the device: the fastest"),
    ("model", "Model", "One model (UNet, VAE, text encoder) on the GPU at a time: a little slower"),
    ("sequential", "Sequential", "One layer on the GPU at a time: the least memory, much slower"),
]
VAE_TILING_ITEMS = [  # the names of defaults.VAE_TILINGS
    ("auto", "Automatic", "Tile the VAE where GPU memory is scarce (under 12 GB, or offloading)"),
    ("on", "On", "Decode pictures larger than the VAE's tile in tiles: less memory"),
    ("off", "Off", "Always decode whole: no tile seams, the most memory"),
]


class SDT_Preferences(bpy.types.AddonPreferences):
    """Where the model comes from and where it runs."""

    bl_idname = __package__.rpartition(".")[0]  # the add-on itself, not its ui package

    model_source: StringProperty(
        name="Model",
        default=defaults.MODEL_ID,
        # A browser for a folder or a .safetensors file; a Hub id is typed in the same field.
        subtype="FILE_PATH",
        description=(
            "Hugging Face id, a local diffusers folder, a single .safetensors checkpoint, "
            "or 'random' (tiny random weights to check an installation; textures are noise)"
        ),
    )
    controlnet_source: StringProperty(
        name="ControlNet",
        subtype="FILE_PATH",
        description=(
            "A depth ControlNet for an SD 1.5 or SDXL model (Hugging Face id, folder, or "
            ".safetensors beside its config.json); empty for SD2-depth"
        ),
    )
    model_config: StringProperty(
        name="Config Folder",
        subtype="DIR_PATH",
        description=(
            "Diffusers folder of the same family for the configs and tokenizers, needed with "
            "a single .safetensors checkpoint (SD2-depth, SD 1.5, SDXL)"
        ),
    )
    model_depth_lora: StringProperty(
        name="FLUX Depth LoRA",
        subtype="FILE_PATH",
        description="FLUX.1-dev only: the depth control LoRA (.safetensors, or the Hub id "
        "black-forest-labs/FLUX.1-Depth-dev-lora) that makes the base a depth model",
    )
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="auto")
    precision: EnumProperty(name="Precision", items=PRECISION_ITEMS, default="auto")
    offload: EnumProperty(
        name="CPU Offload",
        items=OFFLOAD_ITEMS,
        default="none",
        description="Keep the model in host memory and move it to the GPU as it runs (GPUs "
        "with little memory)",
    )
    vae_tiling: EnumProperty(
        name="VAE Tiling",
        items=VAE_TILING_ITEMS,
        default="auto",
        description="Decode large pictures in tiles to save GPU memory",
    )
    provenance: EnumProperty(
        name="Provenance",
        items=PROVENANCE_ITEMS,
        default=defaults.PROVENANCE[0],
        description="How much each texture records about what made it; the AI marking, model "
        "and licence are always recorded",
    )
    c2pa_cert: StringProperty(
        name="C2PA Certificate",
        subtype="FILE_PATH",
        description="Your studio's certificate chain (PEM, leaf first) to sign the textures' "
        "C2PA manifests; empty: this installation's own certificate",
    )
    c2pa_key: StringProperty(
        name="C2PA Key",
        subtype="FILE_PATH",
        description="The private key of the C2PA certificate (PEM); never written to any output",
    )
    maps_model: StringProperty(
        name="Maps Model",
        default=defaults.MAPS_MODEL_ID,
        subtype="FILE_PATH",
        description="The model that estimates albedo, roughness and metallic (a Hugging Face "
        "id of a MarigoldIntrinsicsPipeline, or a local diffusers folder); licence "
        "OpenRAIL++-M for the default",
    )
    upscale_model: StringProperty(
        name="Upscale Model",
        subtype="FILE_PATH",
        description="The upscaler for Upscale 2 or 4 (a Hugging Face id or a local diffusers "
        "folder); empty: stabilityai/sd-x2-latent-upscaler for 2, "
        "stabilityai/stable-diffusion-x4-upscaler for 4 (licence openrail++)",
    )
    cache_dir: StringProperty(
        name="Model Cache",
        subtype="DIR_PATH",
        description=(
            "Where new downloads go and a cache searched first (default: the standard Hugging "
            "Face cache, HF_HOME, which every tool shares, so a model is downloaded once)"
        ),
    )

    def draw(self, _context) -> None:
        from . import dependencies

        layout = self.layout
        dependencies.draw(layout)
        layout.prop(self, "model_source")
        layout.prop(self, "controlnet_source")
        layout.prop(self, "model_config")
        layout.prop(self, "model_depth_lora")
        if looks_like_flux(self.model_source, self.model_depth_lora):
            layout.label(text=FLUX_LICENCE_NOTICE, icon="INFO")
        row = layout.row()
        row.prop(self, "device")
        row.prop(self, "precision")
        row = layout.row()
        row.prop(self, "offload")
        row.prop(self, "vae_tiling")
        layout.prop(self, "cache_dir")
        layout.prop(self, "maps_model")
        layout.prop(self, "upscale_model")
        box = layout.box()
        box.label(text="Content credentials (every texture is marked)")
        box.prop(self, "provenance")
        box.prop(self, "c2pa_cert")
        box.prop(self, "c2pa_key")
        if not bpy.app.online_access:
            layout.label(
                text="Online access is off: the default model is used only if already cached",
                icon="INFO",
            )


classes = (SDT_Lora, SDT_SceneSettings, SDT_RunState, SDT_Preferences)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.sd_depth_texture = PointerProperty(type=SDT_SceneSettings)
    bpy.types.WindowManager.sd_depth_texture = PointerProperty(type=SDT_RunState)


def unregister() -> None:
    del bpy.types.WindowManager.sd_depth_texture
    del bpy.types.Scene.sd_depth_texture
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
