#!/usr/bin/env python3
"""Regenerates the UNet test fixtures under tests/fixtures/unet/ from diffusers'
UNet2DConditionModel. Run with the project's venv:

    tools/.venv/bin/python tools/make_unet_fixtures.py

Deterministic (fixed seeds, one CPU thread, deterministic algorithms): a rerun rewrites
byte-identical files. CI never runs this script; it only reads what it wrote.

Four tiny random configs, one per family and two small-model layouts:
- sd1_tiny: SD 1.x-like. Legacy `attention_head_dim` = number of heads (2, so head dims 8, 12
  and 16 at channels 16, 24, 32), conv 1x1 proj_in/proj_out (use_linear_projection false),
  layers_per_block 2 like SD, down (CrossAttn, CrossAttn, Down), up (Up, CrossAttn, CrossAttn).
- sd2_tiny: SD 2.x / sd-turbo-like. use_linear_projection true, per-block head counts
  attention_head_dim = (2, 3, 4) with channels (16, 24, 32), i.e. head dim 8 everywhere,
  layers_per_block 1, transformer_layers_per_block 2 in the first block, upcast_attention true
  (as SD 2.1; a no-op in fp32).
- bksdm_small_like / bksdm_tiny_like: the BK-SDM layouts (SD 1.x with blocks removed):
  layers_per_block 1 and mid_block_type None; the tiny one has three CrossAttn blocks each way.
- bksdm_base_like: BK-SDM-Base, the layout of segmind/small-sd (layers_per_block 1, mid block
  kept; segmind/tiny-sd is bksdm_tiny_like's layout).
- sdxs_like: SDXS-512-0.9's layout as stable-diffusion.cpp reads it (SD 2.x family, three
  CrossAttn blocks, layers_per_block 1, no mid block) with only_cross_attention
  (True, False, False): the first stage's attn1 attends to the text, one head of 16 there.
- sdxs_ds_like: sdxs-512-dreamshaper's layout (SD 1.x family, three blocks, no attention at the
  highest resolution: DownBlock2D first, UpBlock2D last, no mid block).
Weights are saved as fp16 (diffusers folder: config.json + diffusion_pytorch_model.safetensors);
the references use the fp16-rounded weights upcast to fp32, computed on CPU in fp32.

Layout conversion: torch works in NCHW; the reference file stores `sample` and `output` in NHWC
(the engine's layout), i.e. permute(0, 2, 3, 1). `encoder_hidden_states` is [B, 77, D] in both.
The file also holds `time_proj` [B, C0] (the sinusoidal embedding) and `time_embedding`
[B, 4 C0] (after linear_1 / SiLU / linear_2) for diagnosing the timestep path.
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import ROOT, deterministic, nhwc, report, save_safetensors  # noqa: E402

BATCH_TIMESTEPS = [999, 500, 20]  # one per batch row
LATENT_HW = (16, 16)
TOKENS = 77

SD1_TINY = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(16, 24, 32),
    layers_per_block=2,
    norm_num_groups=8,
    cross_attention_dim=24,
    attention_head_dim=2,
    use_linear_projection=False,
    flip_sin_to_cos=True,
    freq_shift=0,
)

CONFIGS = {
    "sd1_tiny": SD1_TINY,
    "sd2_tiny": dict(
        SD1_TINY,
        layers_per_block=1,
        transformer_layers_per_block=(2, 1, 1),
        cross_attention_dim=40,
        attention_head_dim=(2, 3, 4),
        use_linear_projection=True,
        upcast_attention=True,
    ),
    # The BK-SDM layouts (SD 1.x with blocks removed): one resnet + transformer per down stage,
    # two per up stage, no mid block; "tiny" also without the innermost (attention-free) stage.
    "bksdm_small_like": dict(
        SD1_TINY,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        mid_block_type=None,
        block_out_channels=(16, 24, 32, 32),
        layers_per_block=1,
    ),
    "bksdm_tiny_like": dict(
        SD1_TINY,
        down_block_types=("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3,
        mid_block_type=None,
        layers_per_block=1,
    ),
    "bksdm_base_like": dict(
        SD1_TINY,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(16, 24, 32, 32),
        layers_per_block=1,
    ),
    "sdxs_like": dict(
        SD1_TINY,
        down_block_types=("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3,
        mid_block_type=None,
        layers_per_block=1,
        only_cross_attention=(True, False, False),
        cross_attention_dim=40,
        attention_head_dim=(1, 3, 4),
        use_linear_projection=True,
    ),
    "sdxs_ds_like": dict(
        SD1_TINY,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 2,
        up_block_types=("CrossAttnUpBlock2D",) * 2 + ("UpBlock2D",),
        mid_block_type=None,
        layers_per_block=1,
    ),
}


def randomize_(model):
    """Makes every parameter matter: norms get gamma ~ 1 + 0.2 N(0, 1) and beta ~ 0.1 N(0, 1)
    (the default 1 / 0 would hide a swapped or ignored affine), biases ~ 0.05 N(0, 1). The
    query/key projections are scaled up so attention logits have a spread of a few units and the
    softmax is far from uniform (otherwise a wrong head split would barely change the output)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".norm" in name or name.startswith("conv_norm_out") or ".norm." in name:
                if name.endswith(".weight"):
                    p.copy_(1 + 0.2 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
            if ".to_q." in name or ".to_k." in name:
                p.mul_(3.0)


def main():
    out_root = os.path.join(ROOT, "tests", "fixtures", "unet")
    os.makedirs(out_root, exist_ok=True)
    from diffusers import UNet2DConditionModel

    for name, config in CONFIGS.items():
        deterministic()
        model = UNet2DConditionModel(**config).eval()
        randomize_(model)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())  # the reference uses the fp16-rounded weights

        folder = os.path.join(out_root, name, "unet")
        model.half().save_pretrained(folder, safe_serialization=True)
        model.float()
        # Keep the config canonical (diffusers writes its version and paths into it).
        cfg_path = os.path.join(folder, "config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        report(cfg_path)
        report(os.path.join(folder, "diffusion_pytorch_model.safetensors"))

        b = len(BATCH_TIMESTEPS)
        h, w = LATENT_HW
        sample = torch.randn(b, config["in_channels"], h, w)
        encoder_states = torch.randn(b, TOKENS, config["cross_attention_dim"])
        timesteps = torch.tensor(BATCH_TIMESTEPS, dtype=torch.int64)
        with torch.no_grad():
            out = model(sample, timesteps, encoder_hidden_states=encoder_states).sample
            t_proj = model.time_proj(timesteps)
            t_emb = model.time_embedding(t_proj)
            # Row-by-row runs must agree with the batch (the reference for each row is the
            # same computation; this guards the fixture against batch-coupled mistakes).
            for i in range(b):
                one = model(sample[i : i + 1], timesteps[i : i + 1],
                            encoder_hidden_states=encoder_states[i : i + 1]).sample
                assert torch.allclose(one, out[i : i + 1], rtol=1e-4, atol=1e-5)
        print(f"  {name}: params {sum(p.numel() for p in model.parameters())}, output std "
              f"{out.std():.3f}, per-row std {[round(float(out[i].std()), 3) for i in range(b)]}")
        path = os.path.join(out_root, name, "reference.safetensors")
        save_safetensors(
            {
                "sample": nhwc(sample),
                "encoder_hidden_states": encoder_states.contiguous(),
                "timesteps": timesteps.float(),
                "time_proj": t_proj.contiguous(),
                "time_embedding": t_emb.contiguous(),
                "output": nhwc(out),
            },
            path,
            metadata={
                "layout": "sample/output NHWC [B, H, W, C]; encoder_hidden_states [B, L, D]",
                "reference": "diffusers UNet2DConditionModel, fp32, CPU",
            },
        )
        report(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
