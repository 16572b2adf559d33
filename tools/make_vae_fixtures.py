#!/usr/bin/env python3
"""Regenerates the AutoencoderKL test fixtures under tests/fixtures/vae/ from diffusers'
AutoencoderKL. Run with the project's venv:

    tools/.venv/bin/python tools/make_vae_fixtures.py

Deterministic (fixed seeds, one CPU thread, deterministic algorithms): a rerun rewrites
byte-identical files. CI never runs this script; it only reads what it wrote.

Model `tiny`: block_out_channels (16, 24, 24) (so one ResNet with a 1x1 shortcut and one
without in each half), layers_per_block 1 (the decoder has 2 per block), norm_num_groups 8,
latent_channels 4, two downsamplers (image / latent = 4), mid-block attention on, and a
non-default scaling_factor 0.13025 (so a test notices when it is not read from the config).
Weights are stored fp16 as the `fp16` variant (diffusion_pytorch_model.fp16.safetensors); the
references use them upcast to fp32, computed on CPU in fp32.

bf16: weights and inputs (image, noise, latents) are rounded to bf16-representable values (which
fp16 stores exactly), so that the bf16 tests measure the engine's bf16 arithmetic and not the
rounding of the fixture's own numbers. With that and the moderate q/k scale below, torch's own
bf16 run of this model is 1.4-1.8% off its fp32 run (2.1-2.9% without; the tests' bar is 2%).

reference_<H>x<W>.safetensors, all f32 and NHWC (torch's NCHW permuted with (0, 2, 3, 1)):
- `image` [N, H, W, 3] uniform in [-1, 1];
- `mean`, `logvar` [N, h, w, 4]: the encoder's DiagonalGaussianDistribution (after quant_conv;
  logvar before diffusers' clamp to [-30, 20]), unscaled;
- `noise` [N, h, w, 4] standard normal and `sample` = mean + exp(0.5 clamp(logvar)) * noise
  (what latent_dist.sample(generator) computes with that noise), unscaled;
- `latents` [N, h, w, 4] standard normal and `decoded` [N, 4h, 4w, 3] = vae.decode(latents)
  (unscaled latents, as diffusers' decode takes them);
Sizes: 32x32 (batch 2), 24x40 (non-square), and 18x30 (encode only: odd sizes reach a
downsampler, exercising the asymmetric (0, 1, 0, 1) padding on both axes).
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import ROOT, deterministic, nhwc, report, save_safetensors  # noqa: E402

CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 24, 24),
    layers_per_block=1,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=8,
    sample_size=32,
    scaling_factor=0.13025,
)

# (batch, height, width, with decode)
CASES = [(2, 32, 32, True), (1, 24, 40, True), (1, 18, 30, False)]


def bf16_exact(t):
    return t.bfloat16().float()


def randomize_(model):
    """Makes every parameter matter: norm affines gamma ~ 1 + 0.2 N(0, 1), beta ~ 0.1 N(0, 1),
    biases ~ 0.05 N(0, 1); the mid-block attention's query/key projections are scaled x2 so the
    softmax over positions is far from uniform (mean top probability ~8x the uniform one)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                if name.endswith(".weight"):
                    p.copy_(1 + 0.2 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
            if ".to_q." in name or ".to_k." in name:
                p.mul_(2.0)


def main():
    from diffusers import AutoencoderKL

    out_root = os.path.join(ROOT, "tests", "fixtures", "vae", "tiny")
    os.makedirs(out_root, exist_ok=True)
    deterministic()
    model = AutoencoderKL(**CONFIG).eval()
    randomize_(model)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(bf16_exact(p).half().float())  # the reference uses the stored weights

    folder = os.path.join(out_root, "vae")
    model.half().save_pretrained(folder, safe_serialization=True, variant="fp16")
    model.float()
    cfg_path = os.path.join(folder, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    for key in ("_diffusers_version", "_name_or_path"):
        cfg.pop(key, None)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    report(cfg_path)
    weights = os.path.join(folder, "diffusion_pytorch_model.fp16.safetensors")
    os.chmod(weights, 0o644)  # save_pretrained writes through a private temporary file
    report(weights)
    print(f"  params {sum(p.numel() for p in model.parameters())}")

    for batch, h, w, with_decode in CASES:
        image = bf16_exact(torch.rand(batch, 3, h, w) * 2 - 1)
        with torch.no_grad():
            dist = model.encode(image).latent_dist
            moments = model.quant_conv(model.encoder(image))
            mean, logvar = torch.chunk(moments, 2, dim=1)
            assert torch.equal(mean, dist.mean)
            noise = bf16_exact(torch.randn(dist.mean.shape))
            sample = dist.mean + dist.std * noise
            tensors = {"image": nhwc(image), "mean": nhwc(mean), "logvar": nhwc(logvar),
                       "noise": nhwc(noise), "sample": nhwc(sample)}
            print(f"  {h}x{w}: mean std {mean.std():.3f}, logvar mean {logvar.mean():.3f}, "
                  f"std*noise std {(dist.std * noise).std():.3f}")
            if with_decode:
                latents = bf16_exact(torch.randn(batch, CONFIG["latent_channels"], h // 4, w // 4))
                decoded = model.decode(latents).sample
                tensors["latents"] = nhwc(latents)
                tensors["decoded"] = nhwc(decoded)
                print(f"  {h}x{w}: decoded std {decoded.std():.3f}")
        path = os.path.join(out_root, f"reference_{h}x{w}.safetensors")
        save_safetensors(
            tensors,
            path,
            metadata={
                "layout": "NHWC [N, H, W, C]",
                "reference": "diffusers AutoencoderKL, fp32, CPU; latents unscaled",
            },
        )
        report(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
