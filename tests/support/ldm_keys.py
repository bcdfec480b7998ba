"""Test-only: turn a diffusers SD2-depth, SD 1.5 or SDXL pipeline into an original (LDM)
single-file state dict.

The inverse of diffusers' ``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint`` and
``convert_open_clip_checkpoint`` (the mapping of diffusers'
``scripts/convert_diffusers_to_original_stable_diffusion.py``, generalised to any number of
blocks), so the single-file loader can be tested without a 5 GB download. Like the released
``512-depth-ema`` checkpoint, the result stores VAE attention as 1x1 convolutions, the text
attention as fused ``in_proj`` tensors, one extra (unused) final text layer, a
``text_projection`` and unrelated keys (depth model, schedule buffers) the loader must skip.
SD 1.5 keeps its CLIP text encoder in Hugging Face layout under ``cond_stage_model.transformer.``
(with the ``position_ids`` buffer old checkpoints saved); SDXL has CLIP-L the same way under
``conditioner.embedders.0.transformer.``, OpenCLIP-G (all its layers, its real projection) under
``conditioner.embedders.1.model.`` and its UNet's added embedding as ``label_emb``.
"""

from __future__ import annotations

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.model."
SD15_CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."

_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_TOP = {
    "encoder.conv_in.": "encoder.conv_in.",
    "encoder.conv_out.": "encoder.conv_out.",
    "encoder.conv_norm_out.": "encoder.norm_out.",
    "decoder.conv_in.": "decoder.conv_in.",
    "decoder.conv_out.": "decoder.conv_out.",
    "decoder.conv_norm_out.": "decoder.norm_out.",
    "quant_conv.": "quant_conv.",
    "post_quant_conv.": "post_quant_conv.",
}
_VAE_ATTENTION = {
    "group_norm.": "norm.",
    "to_q.": "q.",
    "to_k.": "k.",
    "to_v.": "v.",
    "to_out.0.": "proj_out.",
}
_CLIP_LAYER = {
    "self_attn.out_proj.": "attn.out_proj.",
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
}


def _rename(key: str, prefixes: dict[str, str]) -> str | None:
    for old, new in prefixes.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def unet_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Diffusers UNet2DConditionModel keys -> ``model.diffusion_model.*`` keys."""
    per = config["layers_per_block"]
    levels = len(config["block_out_channels"])
    resnets: dict[str, str] = {}
    others: dict[str, str] = dict(_UNET_TOP)
    for i in range(levels):
        for j in range(per):
            block = (per + 1) * i + j + 1
            resnets[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{block}.0."
            others[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{block}.1."
        if i < levels - 1:
            others[f"down_blocks.{i}.downsamplers.0.conv."] = (
                f"input_blocks.{(per + 1) * (i + 1)}.0.op."
            )
        for j in range(per + 1):
            block = (per + 1) * i + j
            resnets[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{block}.0."
            others[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{block}.1."
        if i < levels - 1:
            has_attention = any(k.startswith(f"up_blocks.{i}.attentions.") for k in state)
            index = 2 if has_attention else 1
            last = (per + 1) * i + per
            others[f"up_blocks.{i}.upsamplers.0.conv."] = f"output_blocks.{last}.{index}.conv."
    resnets["mid_block.resnets.0."] = "middle_block.0."
    resnets["mid_block.resnets.1."] = "middle_block.2."
    others["mid_block.attentions.0."] = "middle_block.1."

    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = _rename(key, resnets)
        if new is not None:
            prefix = next(p for p in resnets.values() if new.startswith(p))
            inner = new[len(prefix) :]
            for old_name, ldm_name in _UNET_RESNET.items():
                if inner.startswith(old_name + "."):
                    inner = ldm_name + inner[len(old_name) :]
                    break
            new = prefix + inner
        else:
            new = _rename(key, others)
        if new is None:
            raise KeyError(f"no LDM name for UNet key {key}")
        out[UNET_PREFIX + new] = value.clone()
    return out


def vae_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Diffusers AutoencoderKL keys -> ``first_stage_model.*`` keys (attention as 1x1 convs)."""
    levels = len(config["block_out_channels"])
    names: dict[str, str] = dict(_VAE_TOP)
    for i in range(levels):
        names[f"encoder.down_blocks.{i}.resnets."] = f"encoder.down.{i}.block."
        names[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
        names[f"decoder.up_blocks.{i}.resnets."] = f"decoder.up.{levels - 1 - i}.block."
        names[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{levels - 1 - i}.upsample."
    for part in ("encoder", "decoder"):
        for r in range(2):
            names[f"{part}.mid_block.resnets.{r}."] = f"{part}.mid.block_{r + 1}."
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        attention = None
        for part in ("encoder", "decoder"):
            if key.startswith(f"{part}.mid_block.attentions.0."):
                inner = key[len(f"{part}.mid_block.attentions.0.") :]
                attention = f"{part}.mid.attn_1." + _rename(inner, _VAE_ATTENTION)
        if attention is not None:
            new = attention
            if value.ndim == 2:  # LDM stores q/k/v/proj_out as 1x1 convolutions
                value = value[:, :, None, None]
        else:
            new = _rename(key, names)
            if new is None:
                raise KeyError(f"no LDM name for VAE key {key}")
            new = new.replace("conv_shortcut", "nin_shortcut")
        out[VAE_PREFIX + new] = value.clone()
    return out


def text_to_ldm(
    state: dict[str, torch.Tensor],
    layers: int,
    generator: torch.Generator,
    prefix: str = CLIP_PREFIX,
    extra_layer: bool = True,
) -> dict[str, torch.Tensor]:
    """CLIPTextModel(WithProjection) keys -> OpenCLIP keys under ``prefix``.

    With ``extra_layer`` adds one more (random) resblock than the model has, like SD2, whose text
    encoder is the OpenCLIP tower minus its last layer. The ``text_projection`` is the model's
    own (transposed, as OpenCLIP stores it) or, without one, random.
    """
    state = {
        (k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
        for k, v in state.items()
    }
    out: dict[str, torch.Tensor] = {
        "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": state["text_model.final_layer_norm.weight"],
        "ln_final.bias": state["text_model.final_layer_norm.bias"],
    }
    for i in range(layers):
        source = f"text_model.encoder.layers.{i}."
        target = f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{target}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{source}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")]
            )
        for key, value in state.items():
            if key.startswith(source) and "_proj." in key and "out_proj" not in key:
                continue
            if key.startswith(source):
                renamed = _rename(key[len(source) :], _CLIP_LAYER)
                if renamed is None:
                    raise KeyError(f"no LDM name for text key {key}")
                out[target + renamed] = value
    if extra_layer:
        template = f"transformer.resblocks.{layers - 1}."
        for key in [k for k in out if k.startswith(template)]:
            extra = f"transformer.resblocks.{layers}." + key[len(template) :]
            out[extra] = torch.randn(out[key].shape, generator=generator)
    width = out["ln_final.weight"].shape[0]
    projection = state.get("text_projection.weight")
    out["text_projection"] = (
        projection.T if projection is not None else torch.randn((width, width), generator=generator)
    )
    out["logit_scale"] = torch.tensor(4.6)
    return {prefix + k: v.clone() for k, v in out.items()}


def clip_to_ldm(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """CLIPTextModel keys in Hugging Face layout under ``prefix`` (SD 1.5, SDXL's CLIP-L), with
    the ``position_ids`` buffer the released checkpoints carry."""
    out = {
        prefix + (k if k.startswith("text_model.") else "text_model." + k): v.clone()
        for k, v in state.items()
    }
    positions = state[next(k for k in state if k.endswith("position_embedding.weight"))].shape[0]
    out[prefix + "text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    return out


def pipeline_to_ldm(pipe, seed: int = 0) -> dict[str, torch.Tensor]:
    """The whole base pipeline (SD2-depth, SD 1.5 or SDXL; any ControlNet left out) as one
    LDM-layout state dict, plus keys a loader must ignore."""
    generator = torch.Generator().manual_seed(seed)
    checkpoint: dict[str, torch.Tensor] = {}
    checkpoint.update(unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config))
    checkpoint.update(vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    text = pipe.text_encoder.state_dict()
    second = getattr(pipe, "text_encoder_2", None)
    if second is not None:  # SDXL
        checkpoint.update(clip_to_ldm(text, SDXL_CLIP_PREFIX))
        checkpoint.update(
            text_to_ldm(
                second.state_dict(),
                second.config.num_hidden_layers,
                generator,
                prefix=SDXL_OPENCLIP_PREFIX,
                extra_layer=False,
            )
        )
    elif pipe.unet.config.in_channels == 4:  # SD 1.5
        checkpoint.update(clip_to_ldm(text, SD15_CLIP_PREFIX))
    else:  # SD2-depth
        checkpoint.update(text_to_ldm(text, pipe.text_encoder.config.num_hidden_layers, generator))
        checkpoint["depth_model.scratch.output_conv.0.weight"] = torch.randn((4, 4, 3, 3))
    checkpoint["betas"] = torch.linspace(0.00085, 0.012, 1000)
    checkpoint["alphas_cumprod"] = torch.cumprod(1 - checkpoint["betas"], 0)
    return {k: v.contiguous() for k, v in checkpoint.items()}
