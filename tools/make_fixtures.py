#!/usr/bin/env python3
"""Regenerates the committed test fixtures under tests/fixtures/ from the Python reference
implementations (diffusers, torch). Run with the project's venv:

    tools/.venv/bin/python tools/make_fixtures.py [taesd ...]

Every generator is deterministic (fixed seeds, one CPU thread, deterministic algorithms), so a
rerun rewrites byte-identical files. CI never runs this script; it only reads what it wrote.

Conventions shared by all generators:
- Models are saved as diffusers folders (config.json + diffusion_pytorch_model.safetensors) with
  fp16 weights. References are computed in fp32 on CPU from those fp16-rounded weights.
- Reference tensors are f32 and stored channels-last (NHWC), the engine's layout.
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORTRAIT = os.path.join(ROOT, "..", "shared", "data", "images", "input.png")


def deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def cover_resize(img, height, width):
    """Scales to cover height x width (keeping aspect, Lanczos), then crops the centre."""
    scale = max(width / img.width, height / img.height)
    w, h = max(width, round(img.width * scale)), max(height, round(img.height * scale))
    img = img.resize((w, h), Image.LANCZOS)
    left, top = (w - width) // 2, (h - height) // 2
    return img.crop((left, top, left + width, top + height))


def image_tensor(path):
    """PNG -> [1, 3, H, W] f32 in [-1, 1] (pixel / 127.5 - 1)."""
    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr / 127.5 - 1.0).permute(2, 0, 1).unsqueeze(0).contiguous()


def save_safetensors(tensors, path, metadata):
    """Writes a safetensors file with a canonical header (sorted names and metadata keys), so
    that reruns are byte-identical (safetensors' own writer orders metadata by hash)."""
    header, blobs, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        assert t.dtype == torch.float32
        blob = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
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


def write_png(img, path):
    img.save(path, format="PNG", optimize=False, compress_level=9)


def report(path):
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    print(f"  {os.path.relpath(path, ROOT)}  {os.path.getsize(path)} bytes  sha256 {digest}")


# ---- TAESD (diffusers AutoencoderTiny) --------------------------------------------------------

TAESD_SIZES = [(512, 512), (128, 192)]  # (H, W) of the images; latents are H/8 x W/8
TAESD_CONFIGS = {
    # A small config with non-default block counts (config-driven structure is exercised).
    "tiny": dict(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 2, 1, 2),
        num_decoder_blocks=(2, 1, 2, 1),
    ),
    # The default config: the architecture of madebyollin/taesd.
    "full": dict(),
}
# Decoded images at 512x512 are stored on a grid of every 7th row and column (0, 7, ..., 511,
# both borders included) to keep the fixtures small; smaller sizes are stored whole.
TAESD_DECODED_STRIDE = {(512, 512): 7, (128, 192): 1}


def taesd_normalize_(model, enc_input, dec_input):
    """Rescales each conv so its output has a sane spread on real inputs (std 1 for hidden
    layers, 0.5 for the last conv of a residual branch; encoder output std 1, decoder output
    std 0.25 around 0.5 in [0, 1] space). PyTorch's default init shrinks the signal layer by
    layer, which would make the decoded image nearly constant and the test insensitive."""
    from diffusers.models.unets.unet_2d_blocks import AutoencoderTinyBlock

    def convs(seq):
        out = []
        for layer in seq:
            if isinstance(layer, torch.nn.Conv2d):
                out.append((layer, 1.0))
            elif isinstance(layer, AutoencoderTinyBlock):
                out += [(layer.conv[0], 1.0), (layer.conv[2], 1.0), (layer.conv[4], 0.5)]
        return out

    for part, run, inp in [
        (model.encoder, lambda x: model.encoder(x), enc_input),
        (model.decoder, lambda x: model.decoder(x), dec_input),
    ]:
        layers = convs(part.layers)
        for i, (conv, target) in enumerate(layers):
            last = i == len(layers) - 1
            captured = {}
            hook = conv.register_forward_hook(lambda m, a, out: captured.__setitem__("y", out))
            with torch.no_grad():
                run(inp)
            hook.remove()
            y = captured["y"]
            if last and part is model.decoder:
                target = 0.25
            scale = float(f"{target / y.std().item():.3g}")
            with torch.no_grad():
                conv.weight.mul_(scale)
                if conv.bias is not None:
                    conv.bias.mul_(scale)
                    if last and part is model.decoder:
                        conv.bias.add_(0.5 - (y.mean().item() * scale))


def make_taesd(out_root):
    from diffusers import AutoencoderTiny

    out_root = os.path.join(out_root, "taesd")
    os.makedirs(out_root, exist_ok=True)
    portrait = Image.open(PORTRAIT).convert("RGB")
    for h, w in TAESD_SIZES:
        write_png(cover_resize(portrait, h, w), os.path.join(out_root, f"input_{h}x{w}.png"))
        report(os.path.join(out_root, f"input_{h}x{w}.png"))

    for name, config in TAESD_CONFIGS.items():
        deterministic()
        model = AutoencoderTiny(**config).eval()
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 1:  # biases: larger than the default init so they matter
                    p.copy_(torch.randn_like(p) * 0.1)
        calib_img = image_tensor(os.path.join(out_root, "input_128x192.png"))
        calib_lat = torch.randn(1, 4, 16, 24)
        taesd_normalize_(model, calib_img, calib_lat)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())  # the reference uses the fp16-rounded weights

        folder = os.path.join(out_root, name)
        model.half().save_pretrained(folder, safe_serialization=True)
        model.float()
        report(os.path.join(folder, "config.json"))
        report(os.path.join(folder, "diffusion_pytorch_model.safetensors"))

        for h, w in TAESD_SIZES:
            if name == "full" and (h, w) != (512, 512):
                continue
            image = image_tensor(os.path.join(out_root, f"input_{h}x{w}.png"))
            latents = torch.randn(1, 4, h // 8, w // 8)
            with torch.no_grad():
                encoded = model.encode(image).latents
                decoded = model.decode(latents).sample
            stride = TAESD_DECODED_STRIDE[(h, w)]
            decoded = decoded[:, :, ::stride, ::stride]
            print(f"  {name} {h}x{w}: encoded std {encoded.std():.3f}, decoded std "
                  f"{decoded.std():.3f} mean {decoded.mean():.3f}")
            path = os.path.join(folder, f"reference_{h}x{w}.safetensors")
            save_safetensors(
                {
                    "encoded": nhwc(encoded),
                    "latents": nhwc(latents),
                    "decoded": nhwc(decoded),
                },
                path,
                metadata={
                    "layout": "NHWC",
                    "input": f"input_{h}x{w}.png",
                    "decoded_stride": str(stride),
                },
            )
            report(path)


GENERATORS = {"taesd": make_taesd}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("which", nargs="*", help=f"any of {sorted(GENERATORS)} (default: all)")
    parser.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    args = parser.parse_args()
    for name in args.which:
        if name not in GENERATORS:
            parser.error(f"unknown fixture set '{name}' (known: {', '.join(sorted(GENERATORS))})")
    for name in args.which or sorted(GENERATORS):
        print(f"{name}:")
        GENERATORS[name](args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
