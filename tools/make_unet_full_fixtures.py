#!/usr/bin/env python3
"""Regenerates tests/fixtures/unet_full/: reference outputs of the full-size SD 1.5 and SD 2.1 /
sd-turbo UNets (diffusers UNet2DConditionModel, fp32, CPU) on deterministic hash-random weights.
Run with the project's venv:

    tools/.venv/bin/python tools/make_unet_full_fixtures.py

The weights are not stored anywhere: every parameter is filled by hash_uniform (tools/
hash_random.py, the bit-exact twin of src/core/hash_random.h) keyed by its diffusers name, with
the per-tensor rule that src/models/unet_hash_weights.cpp implements identically:

    rank >= 2 (conv kernels, linear matrices): scale sqrt(3 / fan_in) in f32, offset 0
        (uniform with variance 1 / fan_in; fan_in = numel / shape[0])
    rank 1, name ending in ".weight" (GroupNorm / LayerNorm gamma): scale 0.1, offset 1
    other rank 1 (biases, norm betas): scale 0.05, offset 0

The inputs come from the same generator (names fixed here and in tests/test_unet_full.cpp):

    sample                 "unet_full.sample", [2, 32, 32, 4] NHWC (the engine's layout),
                           scale sqrt(3) (variance 1), permuted to NCHW for torch
    encoder_hidden_states  "unet_full.encoder_hidden_states", [2, 77, D], scale sqrt(3)
    timesteps              999 and 500 (one per batch row)

Stored (all f32): `output` [2, 32, 32, 4] NHWC, `time_embedding` [2, 1280], `timesteps` [2], and
the first 16 values of both inputs (`sample_head`, `encoder_hidden_states_head`) so that the test
can check it generated the same inputs. Deterministic: a rerun gives byte-identical files.
"""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hash_random import hash_uniform  # noqa: E402
from make_fixtures import ROOT, deterministic, nhwc, report, save_safetensors  # noqa: E402

TIMESTEPS = [999, 500]
LATENT_HW = (32, 32)  # 256x256 images
TOKENS = 77
INPUT_SCALE = np.float32(np.sqrt(np.float32(3.0)))

_COMMON = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                      "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                    "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    norm_num_groups=32,
    norm_eps=1e-5,
    flip_sin_to_cos=True,
    freq_shift=0,
    act_fn="silu",
    downsample_padding=1,
    mid_block_scale_factor=1,
)

# The unet/config.json of runwayml/stable-diffusion-v1-5 and of stabilityai/stable-diffusion-2-1
# (= stabilityai/sd-turbo's architecture).
CONFIGS = {
    "sd15": dict(_COMMON, cross_attention_dim=768, attention_head_dim=8,
                 use_linear_projection=False),
    "sd21": dict(_COMMON, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                 use_linear_projection=True, upcast_attention=True),
}


def weight_rule(name, shape):
    """(scale, offset) of parameter `name` with torch shape `shape` (see the module docstring)."""
    numel = int(np.prod(shape))
    if len(shape) >= 2:
        fan_in = numel // shape[0]
        return np.float32(np.sqrt(np.float32(3.0) / np.float32(fan_in))), np.float32(0.0)
    if name.endswith(".weight"):
        return np.float32(0.1), np.float32(1.0)
    return np.float32(0.05), np.float32(0.0)


def fill_hash_weights_(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale, offset = weight_rule(name, tuple(p.shape))
            values = hash_uniform(name, scale, offset, p.numel())
            p.copy_(torch.from_numpy(values).reshape(p.shape))


def hash_tensor(name, shape):
    return torch.from_numpy(hash_uniform(name, INPUT_SCALE, 0.0, int(np.prod(shape)))).reshape(
        shape)


def main():
    out_root = os.path.join(ROOT, "tests", "fixtures", "unet_full")
    os.makedirs(out_root, exist_ok=True)
    from diffusers import UNet2DConditionModel

    for family, config in CONFIGS.items():
        deterministic()
        model = UNet2DConditionModel(**config).eval()
        fill_hash_weights_(model)
        params = sum(p.numel() for p in model.parameters())

        b = len(TIMESTEPS)
        h, w = LATENT_HW
        sample_nhwc = hash_tensor("unet_full.sample", (b, h, w, config["in_channels"]))
        states = hash_tensor("unet_full.encoder_hidden_states",
                             (b, TOKENS, config["cross_attention_dim"]))
        timesteps = torch.tensor(TIMESTEPS, dtype=torch.int64)

        # Activation spread through the network (the test is only strong if nothing saturates
        # or explodes): std of every block's output.
        stds = []

        def hook(mod, args, out, label):
            t = out[0] if isinstance(out, tuple) else out
            stds.append((label, float(t.float().std())))

        handles = [model.conv_in.register_forward_hook(
            lambda m, a, o: hook(m, a, o, "conv_in"))]
        for i, blk in enumerate(model.down_blocks):
            handles.append(blk.register_forward_hook(
                lambda m, a, o, i=i: hook(m, a, o, f"down{i}")))
        handles.append(model.mid_block.register_forward_hook(
            lambda m, a, o: hook(m, a, o, "mid")))
        for i, blk in enumerate(model.up_blocks):
            handles.append(blk.register_forward_hook(
                lambda m, a, o, i=i: hook(m, a, o, f"up{i}")))

        with torch.no_grad():
            out = model(sample_nhwc.permute(0, 3, 1, 2).contiguous(), timesteps,
                        encoder_hidden_states=states).sample
            t_emb = model.time_embedding(model.time_proj(timesteps))
        for hd in handles:
            hd.remove()
        print(f"  {family}: {params / 1e6:.1f} M params; block output std "
              + ", ".join(f"{k} {v:.2f}" for k, v in stds))
        print(f"  {family}: output std {out.std():.3f}, per row "
              f"{[round(float(out[i].std()), 3) for i in range(b)]}, "
              f"row difference std {float((out[0] - out[1]).std()):.3f}, "
              f"time embedding std {float(t_emb.std()):.3f}")

        path = os.path.join(out_root, f"{family}_256.safetensors")
        save_safetensors(
            {
                "output": nhwc(out),
                "time_embedding": t_emb.contiguous(),
                "timesteps": timesteps.float(),
                "sample_head": sample_nhwc.reshape(-1)[:16].contiguous(),
                "encoder_hidden_states_head": states.reshape(-1)[:16].contiguous(),
            },
            path,
            metadata={
                "layout": "output NHWC [B, H, W, C]",
                "reference": "diffusers UNet2DConditionModel, fp32, CPU, hash-random weights",
                "family": family,
            },
        )
        report(path)
        del model, out
    return 0


if __name__ == "__main__":
    sys.exit(main())
