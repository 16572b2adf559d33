#!/usr/bin/env python3
"""Regenerates the LoRA test fixtures under tests/fixtures/lora/ with diffusers' own LoRA
loading (`load_lora_weights` + `fuse_lora`, PEFT backend) as the reference. Run with the
project's venv (needs `peft`):

    tools/.venv/bin/python tools/make_lora_fixtures.py

Base models (not rewritten here):
- UNets: the committed tiny SD 1.x / SD 2.x UNets of tests/fixtures/unet/{sd1,sd2}_tiny (fp16
  files, used upcast to fp32);
- text encoder: a tiny quick_gelu CLIPTextModel written here to lora/text_encoder/ (fp32), so
  the fused fc1 / fc2 go through the engine's quick-GELU rescaling.

One random LoRA per UNet (PEFT LoraConfig, rank 4, lora_alpha 8, so alpha / rank = 2, with
lora_B drawn at random instead of PEFT's zero init) on every module a Stable Diffusion LoRA
touches: attention q/k/v/out, proj_in/out, feed-forward, ResNet conv1/conv2/time_emb_proj/
conv_shortcut, down/up-sampler convs, the time embedding; for SD 1.x also the text encoder's
q/k/v/out_proj and fc1/fc2. It is written in the formats users meet:
- sd1_diffusers.safetensors: diffusers' save_lora_weights (PEFT names `unet.*.lora_A.weight`,
  `text_encoder.*.lora_B.weight`, alpha in the `lora_adapter_metadata` JSON);
- sd1_kohya.safetensors: kohya-ss names (`lora_unet_<module with _>.lora_down.weight`,
  `lora_up.weight`, `alpha` scalars; `lora_te_...` for the text encoder);
- sd1_kohya_ldm.safetensors: the same LoRA with the UNet's LDM block names
  (`lora_unet_input_blocks_1_1_proj_in`, ...), which diffusers does not convert for SD 1.x; the
  test expects the same outputs as from sd1_kohya;
- sd2_diffusers.safetensors: the SD 2.x UNet's LoRA (linear proj_in/proj_out), UNet only.

reference.safetensors holds the inputs (NHWC sample, timesteps, encoder states, token ids) and,
per format and scale, diffusers' outputs after load_lora_weights + fuse_lora(lora_scale=s):
`<file stem>.s<scale>.unet` and `.text` (scale written as e.g. 0.7 -> "0p7").
"""

import json
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import ROOT, deterministic, nhwc, report, save_safetensors  # noqa: E402
from make_ldm_fixtures import unet_to_ldm  # noqa: E402

# transformers 5.x asks for peft >= 0.22, which PyPI does not have yet (0.21.2 is the newest);
# its LoRA loading works with 0.21, so only the version gate is lifted. main() checks every
# fused weight against W + s * (alpha / r) * B @ A computed here, so a misbehaving loader
# cannot go unnoticed.
import transformers.integrations.peft as _tpeft  # noqa: E402

_tpeft.check_peft_version = lambda *a, **k: None

FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "lora")
RANK, ALPHA = 4, 8.0
SCALES = [1.0, 0.7]
TIMESTEPS = [999, 500, 20]
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
                "ff.net.2", "conv1", "conv2", "conv_shortcut", "time_emb_proj", "conv",
                "linear_1", "linear_2"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
TEXT_CONFIG = dict(vocab_size=1000, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                   num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                   layer_norm_eps=1e-5, bos_token_id=998, eos_token_id=999, pad_token_id=999)


def text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel
    deterministic()
    model = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name and name.endswith(".weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
    folder = os.path.join(OUT, "text_encoder")
    os.makedirs(folder, exist_ok=True)
    # Names as released CLIP text encoders carry them ("text_model." is gone from
    # transformers 5's module tree, not from the files).
    save_safetensors({"text_model." + k: v.float() for k, v in model.state_dict().items()
                      if "position_ids" not in k},
                     os.path.join(folder, "model.safetensors"), {"format": "pt"})
    cfg = dict(TEXT_CONFIG, architectures=["CLIPTextModel"], model_type="clip_text_model")
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    return model


def add_random_lora(model, targets, seed):
    """Adds a PEFT adapter and draws every LoRA matrix (B included) at random. Returns the
    module-name -> (A, B) map in the model's own names."""
    from peft import LoraConfig
    model.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, init_lora_weights=False,
                                 target_modules=targets))
    gen = torch.Generator().manual_seed(seed)
    layers = {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if hasattr(mod, "lora_A") and "default" in mod.lora_A:
                a, b = mod.lora_A["default"].weight, mod.lora_B["default"].weight
                fan_in = a[0].numel()
                a.copy_(torch.randn(a.shape, generator=gen) / fan_in ** 0.5)
                b.copy_(0.1 * torch.randn(b.shape, generator=gen) / RANK ** 0.5)
                layers[name] = (a.detach().clone(), b.detach().clone())
    return layers


def kohya_tensors(layers, prefix, rename=lambda m: m):
    out = {}
    for module, (a, b) in layers.items():
        key = prefix + rename(module).replace(".", "_")
        out[key + ".lora_down.weight"] = a
        out[key + ".lora_up.weight"] = b
        out[key + ".alpha"] = torch.tensor(ALPHA)
    return out


def check_fused(model, base, layers, scale):
    """Asserts that every fused weight is W + scale * (alpha / r) * B @ A (float32 rounding)."""
    params, base_params = dict(model.named_parameters()), dict(base.named_parameters())
    for module, (a, b) in layers.items():
        w, w0 = params[module + ".weight"], base_params[module + ".weight"]
        delta = (b.flatten(1) @ a.flatten(1)).reshape(w0.shape)
        want = w0 + scale * (ALPHA / RANK) * delta
        err = float((w.detach() - want).norm() / want.norm())
        assert err < 1e-6, (module, err)


def make_pipeline(unet, text):
    from diffusers import AutoencoderKL, LCMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer
    vae = AutoencoderKL.from_pretrained(os.path.join(FIX, "vae", "tiny", "vae"),
                                        variant="fp16").float()
    tok = CLIPTokenizer.from_pretrained(os.path.join(FIX, "tokenizer", "sd15"))
    return StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=LCMScheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def scale_name(s):
    return str(s).replace(".", "p")


def main():
    from diffusers import UNet2DConditionModel
    from peft.utils import get_peft_model_state_dict
    os.makedirs(OUT, exist_ok=True)
    ref = {}
    ids = torch.tensor([[998, 5, 17, 300, 999] + [999] * 72, [998, 42, 7, 999] + [999] * 73])
    ref["ids"] = ids.float()
    for family in ["sd1", "sd2"]:
        deterministic()
        unet_dir = os.path.join(FIX, "unet", f"{family}_tiny", "unet")
        with open(os.path.join(unet_dir, "config.json")) as f:
            cfg = json.load(f)
        sample = torch.randn(len(TIMESTEPS), 4, 16, 16)
        states = torch.randn(len(TIMESTEPS), 77, cfg["cross_attention_dim"])
        ref[f"{family}.sample"] = nhwc(sample)
        ref[f"{family}.timesteps"] = torch.tensor(TIMESTEPS, dtype=torch.float32)
        ref[f"{family}.encoder_hidden_states"] = states

        # Draw the LoRA on a throwaway copy, then write it in each format.
        unet = UNet2DConditionModel.from_pretrained(unet_dir).float().eval()
        unet_layers = add_random_lora(unet, UNET_TARGETS, seed=1 if family == "sd1" else 2)
        unet_sd = get_peft_model_state_dict(unet)
        files = {}
        text_layers, text_sd = {}, {}
        if family == "sd1":
            text = text_encoder()
            text_layers = add_random_lora(text, TEXT_TARGETS, seed=3)
            # transformers 5 dropped CLIPTextModel's `text_model.` level; files in the wild (and
            # diffusers' own saves before it) carry it, so the fixture does too.
            text_sd = {"text_model." + k: v for k, v in get_peft_model_state_dict(text).items()}
        unet_meta = unet.peft_config["default"].to_dict()
        text_meta = text.peft_config["default"].to_dict() if text_sd else None
        from diffusers import StableDiffusionPipeline
        path = os.path.join(OUT, f"{family}_diffusers.safetensors")
        StableDiffusionPipeline.save_lora_weights(
            OUT, unet_lora_layers=unet_sd, text_encoder_lora_layers=text_sd or None,
            weight_name=os.path.basename(path), unet_lora_adapter_metadata=unet_meta,
            text_encoder_lora_adapter_metadata=text_meta)
        files[path] = True
        if family == "sd1":
            kohya = kohya_tensors(unet_layers, "lora_unet_")
            kohya.update(kohya_tensors(text_layers, "lora_te_", lambda m: "text_model." + m))
            path = os.path.join(OUT, "sd1_kohya.safetensors")
            save_safetensors(kohya, path, {"ss_network_alpha": str(ALPHA)})
            files[path] = True
            ldm = kohya_tensors(unet_layers, "lora_unet_",
                                lambda m: unet_to_ldm(m + ".weight", cfg)[: -len(".weight")])
            ldm.update(kohya_tensors(text_layers, "lora_te_", lambda m: "text_model." + m))
            path = os.path.join(OUT, "sd1_kohya_ldm.safetensors")
            save_safetensors(ldm, path, {})
            files[path] = False  # diffusers cannot load it for SD 1.x; same reference as kohya

        for path, by_diffusers in files.items():
            report(path)
            if not by_diffusers:
                continue
            stem = os.path.basename(path)[: -len(".safetensors")]
            for s in SCALES:
                base_unet = UNet2DConditionModel.from_pretrained(unet_dir).float().eval()
                base_text = None
                if family == "sd1":
                    from transformers import CLIPTextModel
                    base_text = CLIPTextModel.from_pretrained(os.path.join(OUT, "text_encoder"))
                    base_text = base_text.float().eval()
                pipe = make_pipeline(base_unet, base_text)
                pipe.load_lora_weights(path)
                pipe.fuse_lora(lora_scale=s)
                pipe.unload_lora_weights()  # keeps the fused weights, drops the adapters
                check_fused(base_unet, UNet2DConditionModel.from_pretrained(unet_dir).float(),
                            unet_layers, s)
                if base_text is not None:
                    check_fused(base_text, CLIPTextModel.from_pretrained(
                        os.path.join(OUT, "text_encoder")).float(), text_layers, s)
                with torch.no_grad():
                    out = base_unet(sample, torch.tensor(TIMESTEPS),
                                    encoder_hidden_states=states).sample
                    ref[f"{stem}.s{scale_name(s)}.unet"] = nhwc(out)
                    if base_text is not None:
                        ref[f"{stem}.s{scale_name(s)}.text"] = base_text(ids).last_hidden_state
        with torch.no_grad():  # the base outputs, for the unfuse checks
            base_unet = UNet2DConditionModel.from_pretrained(unet_dir).float().eval()
            ref[f"{family}.base.unet"] = nhwc(base_unet(sample, torch.tensor(TIMESTEPS),
                                                        encoder_hidden_states=states).sample)
    from transformers import CLIPTextModel
    base_text = CLIPTextModel.from_pretrained(os.path.join(OUT, "text_encoder")).float().eval()
    with torch.no_grad():
        ref["text.base"] = base_text(ids).last_hidden_state
    path = os.path.join(OUT, "reference.safetensors")
    save_safetensors({k: v.float().contiguous() for k, v in ref.items()}, path, {})
    report(path)
    report(os.path.join(OUT, "text_encoder", "model.safetensors"))


if __name__ == "__main__":
    main()
