#!/usr/bin/env python3
"""Writes the single-file (original LDM layout) checkpoint fixtures under tests/fixtures/ldm/.
Run with the project's venv, after tools/make_unet_fixtures.py and make_vae_fixtures.py:

    tools/.venv/bin/python tools/make_ldm_fixtures.py

Deterministic: a rerun rewrites byte-identical files. CI never runs this script.

Each checkpoint `<model>.safetensors` (model = sd1_tiny, sd2_tiny) holds, with the prefixes of the
original Stable Diffusion checkpoints:
- model.diffusion_model.*  the SAME fp16 tensors as tests/fixtures/unet/<model>/unet/, renamed
  from diffusers to LDM names (the inverse of diffusers' convert_ldm_unet_checkpoint);
- first_stage_model.*      the SAME fp16 tensors as the tiny AutoencoderKL of
  tests/fixtures/vae/tiny/vae/ (tools/make_vae_fixtures.py), renamed; the mid-block attention
  q/k/v/proj_out stored as 1x1 convs [C, C, 1, 1] as in LDM files (linear [C, C] in diffusers);
- cond_stage_model.*       sd1: the tiny CLIP text encoder of tests/fixtures/clip_text/tiny/ under
  cond_stage_model.transformer.* (transformers names); sd2: the OpenCLIP-named tensors of
  tests/fixtures/clip_text/tiny/sd2_single_file.safetensors (cond_stage_model.model.*).

Also `sd_unet_names.txt` and `sd_vae_names.txt`: every parameter name of the full-size SD 1.5
UNet (SD 2.1's names are the same, asserted) and of the SD VAE with its LDM name ("diffusers ldm"
per line), which the C++ mapping must reproduce.

The renaming is implemented here independently (index arithmetic below) and checked by running
diffusers' own converters (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint) on the
written checkpoint: they must give back exactly the diffusers tensors (same names, bit-equal).
"""

import json
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import ROOT, report  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fixtures", "ldm")
UNET_FIXTURES = os.path.join(ROOT, "tests", "fixtures", "unet")
CLIP_FIXTURES = os.path.join(ROOT, "tests", "fixtures", "clip_text", "tiny")

VAE_FIXTURE = os.path.join(ROOT, "tests", "fixtures", "vae", "tiny", "vae")

RESNET_TO_LDM = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."),
                 ("time_emb_proj.", "emb_layers.1."), ("norm2.", "out_layers.0."),
                 ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection.")]


def rename_start(rest, table):
    for old, new in table:
        if rest.startswith(old):
            return new + rest[len(old):]
    raise KeyError(rest)


def unet_to_ldm(name, cfg):
    """diffusers UNet2DConditionModel parameter name -> LDM name (without model.diffusion_model.)."""
    n = len(cfg["block_out_channels"])
    lpb = cfg["layers_per_block"]
    lpb = [lpb] * n if isinstance(lpb, int) else list(lpb)
    fixed = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
             "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2."}
    for old, new in fixed.items():
        if name.startswith(old):
            return new + name[len(old):]
    parts = name.split(".")
    if parts[0] == "down_blocks":
        b, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        first = 1 + sum(lpb[k] + 1 for k in range(b))
        if kind == "resnets":
            return f"input_blocks.{first + j}.0." + rename_start(rest, RESNET_TO_LDM)
        if kind == "attentions":
            return f"input_blocks.{first + j}.1.{rest}"
        if kind == "downsamplers":
            return f"input_blocks.{first + lpb[b]}.0.op." + rest[len("conv."):]
    if parts[0] == "mid_block":
        kind, j, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * j}." + rename_start(rest, RESNET_TO_LDM)
        if kind == "attentions":
            return f"middle_block.1.{rest}"
    if parts[0] == "up_blocks":
        b, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        first = sum(lpb[n - 1 - k] + 1 for k in range(b))
        last = first + lpb[n - 1 - b]
        if kind == "resnets":
            return f"output_blocks.{first + j}.0." + rename_start(rest, RESNET_TO_LDM)
        if kind == "attentions":
            return f"output_blocks.{first + j}.1.{rest}"
        if kind == "upsamplers":
            has_attn = cfg["up_block_types"][b] == "CrossAttnUpBlock2D"
            return f"output_blocks.{last}.{2 if has_attn else 1}." + rest
    raise KeyError(name)


VAE_RESNET_TO_LDM = [("norm1.", "norm1."), ("conv1.", "conv1."), ("norm2.", "norm2."),
                     ("conv2.", "conv2."), ("conv_shortcut.", "nin_shortcut.")]
VAE_ATTN_TO_LDM = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
                   ("to_out.0.", "proj_out.")]


def vae_to_ldm(name, num_blocks):
    """diffusers AutoencoderKL parameter name -> LDM name (without first_stage_model.)."""
    parts = name.split(".")
    part, rest = parts[0], ".".join(parts[1:])
    if part in ("quant_conv", "post_quant_conv"):
        return name
    if rest.startswith("conv_norm_out."):
        return part + ".norm_out." + rest[len("conv_norm_out."):]
    if rest.startswith("conv_in.") or rest.startswith("conv_out."):
        return name
    p = parts
    if p[1] == "mid_block":
        kind, j, tail = p[2], int(p[3]), ".".join(p[4:])
        if kind == "resnets":
            return f"{part}.mid.block_{j + 1}." + rename_start(tail, VAE_RESNET_TO_LDM)
        return f"{part}.mid.attn_1." + rename_start(tail, VAE_ATTN_TO_LDM)
    if p[1] == "down_blocks":
        b, kind, tail = int(p[2]), p[3], ".".join(p[5:])
        if kind == "resnets":
            return f"encoder.down.{b}.block.{p[4]}." + rename_start(tail, VAE_RESNET_TO_LDM)
        return f"encoder.down.{b}.downsample.{tail}"
    if p[1] == "up_blocks":
        b, kind, tail = num_blocks - 1 - int(p[2]), p[3], ".".join(p[5:])
        if kind == "resnets":
            return f"decoder.up.{b}.block.{p[4]}." + rename_start(tail, VAE_RESNET_TO_LDM)
        return f"decoder.up.{b}.upsample.{tail}"
    raise KeyError(name)


def is_vae_attention_matrix(name):
    return ".mid_block.attentions." in name and name.endswith(".weight") and \
        any(k in name for k in ("to_q.", "to_k.", "to_v.", "to_out.0."))


DTYPES = {torch.float16: "F16", torch.float32: "F32"}


def save(tensors, path, metadata):
    """safetensors with a canonical header (names sorted; data in the same order; every tensor
    here is fp16 so alignment holds), byte-identical on reruns."""
    header, blobs, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        blob = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    report(path)


def load_vae():
    """The committed tiny AutoencoderKL (tools/make_vae_fixtures.py): fp16 state dict, config."""
    with open(os.path.join(VAE_FIXTURE, "config.json")) as f:
        cfg = json.load(f)
    return load_file(os.path.join(VAE_FIXTURE, "diffusion_pytorch_model.fp16.safetensors")), cfg


SD15_UNET = dict(cross_attention_dim=768, attention_head_dim=8)
SD21_UNET = dict(cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                 use_linear_projection=True)
SD_VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2,
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


def write_full_size_name_maps():
    """For the full-size SD 1.5 / SD 2.1 UNets and the SD VAE (built on torch's meta device: no
    weights), every diffusers parameter name with its LDM name, one "diffusers ldm" pair per line.
    Checked like the tiny checkpoints: diffusers' converter, fed a checkpoint whose tensor i is
    the marker [i], must give back every diffusers name with its own marker."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (convert_ldm_unet_checkpoint,
                                                      convert_ldm_vae_checkpoint)

    written = {}
    for name, kind, cfg in (("sd15_unet", "unet", SD15_UNET), ("sd21_unet", "unet", SD21_UNET),
                            ("sd_vae", "vae", SD_VAE)):
        with torch.device("meta"):
            model = (UNet2DConditionModel(**cfg) if kind == "unet" else AutoencoderKL(**cfg))
        names = sorted(model.state_dict().keys())
        if kind == "unet":
            pairs = [(n, unet_to_ldm(n, dict(model.config))) for n in names]
            ckpt = {"model.diffusion_model." + ldm: torch.tensor([i])
                    for i, (_, ldm) in enumerate(pairs)}
            back = convert_ldm_unet_checkpoint(ckpt, dict(model.config))
        else:
            pairs = [(n, vae_to_ldm(n, len(cfg["block_out_channels"]))) for n in names]
            ckpt = {"first_stage_model." + ldm: torch.tensor([i])
                    for i, (_, ldm) in enumerate(pairs)}
            back = convert_ldm_vae_checkpoint(ckpt, dict(model.config))
        assert len(set(ldm for _, ldm in pairs)) == len(pairs), name
        assert set(back) == set(names), (name, sorted(set(back) ^ set(names))[:10])
        for i, (n, _) in enumerate(pairs):
            assert back[n].item() == i, (name, n)
        print(f"  {name}: {len(pairs)} names, diffusers' converter agrees")
        written[name] = pairs
    # SD 1.5 and SD 2.1 differ in widths and head counts, not in parameter names.
    assert written["sd15_unet"] == written["sd21_unet"]
    for name, file in (("sd15_unet", "sd_unet_names.txt"), ("sd_vae", "sd_vae_names.txt")):
        path = os.path.join(OUT, file)
        with open(path, "w") as f:
            f.write("".join(f"{n} {ldm}\n" for n, ldm in written[name]))
        report(path)


def check_same(converted, original, what):
    assert set(converted) == set(original), (
        what, sorted(set(converted) ^ set(original))[:10])
    for k, v in original.items():
        c = converted[k]
        assert c.dtype == v.dtype and c.shape == v.shape and torch.equal(c, v), (what, k)
    print(f"  {what}: diffusers' converter gives back all {len(original)} tensors bit-equal")


def main():
    from diffusers.loaders.single_file_utils import (convert_ldm_unet_checkpoint,
                                                      convert_ldm_vae_checkpoint)

    os.makedirs(OUT, exist_ok=True)
    write_full_size_name_maps()
    vae_sd, vae_cfg = load_vae()
    n_vae = len(vae_cfg["block_out_channels"])
    vae_ldm = {}
    for name, t in vae_sd.items():
        if is_vae_attention_matrix(name):
            t = t[:, :, None, None]  # LDM stores these as 1x1 convs
        vae_ldm["first_stage_model." + vae_to_ldm(name, n_vae)] = t
    check_same(convert_ldm_vae_checkpoint(dict(vae_ldm), vae_cfg), vae_sd, "vae tiny")

    text = {
        "sd1_tiny": {
            "cond_stage_model.transformer." + k: v
            for k, v in load_file(os.path.join(CLIP_FIXTURES, "text_encoder",
                                               "model.safetensors")).items()
        },
        "sd2_tiny": load_file(os.path.join(CLIP_FIXTURES, "sd2_single_file.safetensors")),
    }
    for model, text_sd in text.items():
        folder = os.path.join(UNET_FIXTURES, model, "unet")
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        unet_sd = load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
        ckpt = {"model.diffusion_model." + unet_to_ldm(k, cfg): v for k, v in unet_sd.items()}
        assert len(ckpt) == len(unet_sd)
        check_same(convert_ldm_unet_checkpoint(dict(ckpt), cfg), unet_sd, model + " unet")
        ckpt.update(vae_ldm)
        ckpt.update(text_sd)
        save(ckpt, os.path.join(OUT, model + ".safetensors"),
             {"source": f"tools/make_ldm_fixtures.py: tiny random {model} in LDM layout"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
