"""Reference traces of the original StreamDiffusion pipeline (PyPI streamdiffusion 0.1.1 on
diffusers 0.24) for tests/test_stream.cpp, plus LCMScheduler constants and torch.randn/rand
outputs. Run with the separate venv that pins those versions:

    tools/.venv-sd/bin/python tools/make_stream_fixtures.py

Parts: `random`, `scheduler`, `traces`, `turbo`, `sd2` (default: all but `turbo`; `turbo`
alone redoes only the SD 1.x sd-turbo one-step traces; `sd2` the SD 2.x-like set in sd2/).
(tools/.venv-sd: streamdiffusion==0.1.1 diffusers==0.24.0 "huggingface_hub<0.26"
transformers==4.38.2 "numpy<2" accelerate fire omegaconf; torch is borrowed from tools/.venv
through a .pth file listing its site-packages, PyPI having no CPU-only torch build.)

The tiny SD 1.x pipeline, fp32 on the CPU:
- text encoder: CLIPTextModel (vocab 49408, width 32, 2 layers, 2 heads, quick_gelu) with the
  hash_random weights of ClipTextModel::hash_random (tools/hash_random.py), the committed SD 1.5
  tokenizer (tests/fixtures/tokenizer/sd15);
- UNet: a random SD 1.x-like UNet2DConditionModel with cross_attention_dim 32 (the committed
  tests/fixtures/unet/sd1_tiny has 24, which does not match any CLIP width), written to
  tests/fixtures/stream/unet/ as fp16 and used upcast;
- VAE: the committed tiny TAESD (tests/fixtures/taesd/tiny) as StreamDiffusion's tiny-VAE
  (AutoencoderTiny, scaling factor 1).
An SD 2.x-like variant (tests/fixtures/stream/sd2/: gelu text tower, SD 2.1 tokenizer padding
with "!", UNet with linear projections and per-block head counts) has a smaller trace set.

Traces run the original class with its CUDA timing calls replaced (the only patch), and a
subclass `Corrected` that fixes the original's defects the C++ Stream fixes (each listed in
src/pipeline/stream.h). Where the original runs and the fixes cannot change anything (f = 1,
denoising batch on, guidance > 1, no prompt update), the script asserts that both produce
identical frames, so the corrected traces stand for the original there.
"""

import json
import math
import os
import sys

import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "stream")
sys.path.insert(0, HERE)

from hash_random import clip_hash_param  # noqa: E402

torch.cuda.Event = lambda *a, **k: type("E", (), {"record": lambda s: None,
                                                   "elapsed_time": lambda s, o: 0.0})()
torch.cuda.synchronize = lambda *a, **k: None

from diffusers import AutoencoderTiny, LCMScheduler, StableDiffusionPipeline  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402
from streamdiffusion.pipeline import StreamDiffusion  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

TEXT_CONFIG = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                   layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407,
                   pad_token_id=49407)
# SD 2.x / sd-turbo-like variant: OpenCLIP-style gelu text tower, tokenizer padding with "!",
# linear transformer projections in the UNet.
TEXT_CONFIG_SD2 = dict(TEXT_CONFIG, hidden_act="gelu", pad_token_id=0)
SIZE = 64
PROMPT = "portrait of a cat wearing a tiny hat, oil painting"
PROMPT2 = "a watercolor landscape with mountains"
NEGATIVE = "blurry, low quality"
GUIDANCE, DELTA, SEED, STEPS = 1.4, 0.8, 2, 50
FRAMES = 10


# ---- small helpers ------------------------------------------------------------------------------

def save_safetensors(tensors, path, metadata=None):
    """Canonical writer (sorted names) so reruns are byte-identical; f32/f16/i32 tensors."""
    kinds = {torch.float32: ("F32", "<f4"), torch.float16: ("F16", "<f2"),
             torch.int32: ("I32", "<i4")}
    header = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        tag, np_type = kinds[t.dtype]
        blob = t.numpy().astype(np_type).tobytes()
        header[name] = {"dtype": tag, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous().float()


# ---- models -------------------------------------------------------------------------------------

def hash_param(name, shape):
    """ClipTextModel::hash_param's rule, as a torch tensor."""
    return torch.from_numpy(clip_hash_param(name, shape))


def text_encoder(config):
    model = CLIPTextModel(CLIPTextConfig(**config)).eval()
    state = {}
    for k, t in model.state_dict().items():
        if "position_ids" in k:
            continue
        name = k if k.startswith("text_model.") else "text_model." + k
        state[k] = hash_param(name, tuple(t.shape))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing)
    return model


def unet(out, sd2):
    folder = os.path.join(out, "unet")
    extra = dict(attention_head_dim=(2, 4, 4), use_linear_projection=True,
                 upcast_attention=True) if sd2 else dict(attention_head_dim=2)
    config = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                  block_out_channels=(8, 16, 16), norm_num_groups=8, cross_attention_dim=32,
                  **extra,
                  down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                    "DownBlock2D"),
                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
    torch.manual_seed(1235 if sd2 else 1234)
    model = UNet2DConditionModel(**config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            if "to_q" in name or "to_k" in name:
                p.mul_(3.0)
            # conv_out is zero-free at init here, but keep the output from being dominated by it
    half = {k: v.half() for k, v in model.state_dict().items()}
    save_safetensors(half, os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    model.load_state_dict({k: v.float() for k, v in half.items()})
    cfg = dict(model.config)
    cfg["_class_name"] = "UNet2DConditionModel"
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()
           if not k.startswith("_") or k == "_class_name"}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    return model


def pipeline(out, sd2):
    vae = AutoencoderTiny.from_pretrained(os.path.join(FIX, "taesd", "tiny")).float().eval()
    tok = CLIPTokenizer.from_pretrained(os.path.join(FIX, "tokenizer", "sd21" if sd2 else "sd15"))
    text = text_encoder(TEXT_CONFIG_SD2 if sd2 else TEXT_CONFIG)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok,
                                   unet=unet(out, sd2), scheduler=LCMScheduler(),
                                   safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    assert pipe.vae_scale_factor == 8
    return pipe


# ---- the corrected pipeline ---------------------------------------------------------------------

class Corrected(StreamDiffusion):
    """The original with its defects fixed, as the C++ Stream computes it:
    1. full / initialize embeddings built for both modes and any guidance (none-like at g <= 1);
       update_prompt rebuilds them (the original drops the uncond rows);
    2. every shift between slots moves f rows (one slot), not one row, and c_skip / c_out are
       per row like a and b (the original repeats only a and b, so f > 1 with n > 1 fails);
    3. initialize with f > 1 runs the uncond pass on the f rows of slot 0;
    4. non-batched mode keeps init_noise (the original overwrites it with the input latent) and
       draws its re-noising noise, like txt2img's latent, from the stream's generator (the
       original uses torch's global generator)."""

    def prepare(self, prompt, negative_prompt="", num_inference_steps=50, guidance_scale=1.2,
                delta=1.0, generator=None, seed=2):
        real = self.cfg_type
        if real in ("full", "initialize"):
            self.cfg_type = "self"
        super().prepare(prompt, negative_prompt, num_inference_steps, guidance_scale, delta,
                        generator, seed)
        self.cfg_type = real
        rows = self.frame_bff_size if self.use_denoising_batch else 1
        self.c_skip = torch.repeat_interleave(self.c_skip, rows, dim=0)
        self.c_out = torch.repeat_interleave(self.c_out, rows, dim=0)
        if real == "none":
            self.guidance_scale = 1.0
        self.negative_prompt = negative_prompt
        self.build_embeds(prompt)

    def build_embeds(self, prompt):
        cond, uncond = self.pipe.encode_prompt(prompt=prompt, device=self.device,
                                               num_images_per_prompt=1,
                                               do_classifier_free_guidance=True,
                                               negative_prompt=self.negative_prompt)
        embeds = cond.repeat(self.batch_size, 1, 1)
        if self.guidance_scale > 1.0 and self.cfg_type == "full":
            embeds = torch.cat([uncond.repeat(self.batch_size, 1, 1), embeds])
        elif self.guidance_scale > 1.0 and self.cfg_type == "initialize":
            embeds = torch.cat([uncond.repeat(self.frame_bff_size, 1, 1), embeds])
        self.prompt_embeds = embeds
        self.cond_embed, self.uncond_embed = cond[0], uncond[0]

    def update_prompt(self, prompt):
        self.build_embeds(prompt)

    def unet_step(self, x, t_list, idx=None):
        f, g = self.frame_bff_size, self.guidance_scale
        if g > 1.0 and self.cfg_type == "initialize":
            x_in, t_in = torch.cat([x[0:f], x]), torch.cat([t_list[0:f], t_list])
        elif g > 1.0 and self.cfg_type == "full":
            x_in, t_in = torch.cat([x, x]), torch.cat([t_list, t_list])
        else:
            x_in, t_in = x, t_list
        pred = self.unet(x_in, t_in, encoder_hidden_states=self.prompt_embeds,
                         return_dict=False)[0]
        if g > 1.0 and self.cfg_type == "initialize":
            eps_c = pred[f:]
            self.stock_noise = torch.cat([pred[0:f], self.stock_noise[f:]])
        elif g > 1.0 and self.cfg_type == "full":
            eps_u, eps_c = pred.chunk(2)
        else:
            eps_c = pred
        if g > 1.0 and self.cfg_type in ("self", "initialize"):
            eps_u = self.stock_noise * self.delta
        eps = eps_u + g * (eps_c - eps_u) if g > 1.0 and self.cfg_type != "none" else eps_c
        denoised = self.scheduler_step_batch(eps, x, idx)
        if self.use_denoising_batch and self.cfg_type in ("self", "initialize"):
            scaled = self.beta_prod_t_sqrt * self.stock_noise
            delta_x = self.scheduler_step_batch(eps, scaled, idx)
            ones = torch.ones_like(self.alpha_prod_t_sqrt[0:f])
            delta_x = torch.cat([self.alpha_prod_t_sqrt[f:], ones]) * delta_x
            delta_x = delta_x / torch.cat([self.beta_prod_t_sqrt[f:], ones])
            init_noise = torch.cat([self.init_noise[f:], self.init_noise[0:f]])
            self.stock_noise = init_noise + delta_x
        return denoised, eps

    def predict_x0_batch(self, x):
        f, n = self.frame_bff_size, self.denoising_steps_num
        if self.use_denoising_batch:
            if n > 1:
                x = torch.cat((x, self.x_t_latent_buffer))
                self.stock_noise = torch.cat((self.init_noise[0:1].repeat(f, 1, 1, 1),
                                              self.stock_noise[:-f]))
            x0, _ = self.unet_step(x, self.sub_timesteps_tensor)
            if n > 1:
                out = x0[-f:]
                buf = self.alpha_prod_t_sqrt[f:] * x0[:-f]
                if self.do_add_noise:
                    buf = buf + self.beta_prod_t_sqrt[f:] * self.init_noise[f:]
                self.x_t_latent_buffer = buf
            else:
                out = x0
            return out
        for idx, t in enumerate(self.sub_timesteps_tensor):
            x0, _ = self.unet_step(x, t.view(1).repeat(f), idx)
            if idx < n - 1:
                if self.do_add_noise:
                    noise = torch.randn(x0.shape, generator=self.generator)
                    x = self.alpha_prod_t_sqrt[idx + 1] * x0 + self.beta_prod_t_sqrt[idx + 1] * noise
                else:
                    x = self.alpha_prod_t_sqrt[idx + 1] * x0
        return x0

    def txt2img(self, batch_size=1):
        x = torch.randn((batch_size, 4, self.latent_height, self.latent_width),
                        generator=self.generator)
        x0 = self.predict_x0_batch(x)
        self.last_latent = x0
        return self.decode_image(x0).detach().clone()

    def txt2img_sd_turbo(self, batch_size=1):
        """The original's txt2img_sd_turbo with the latent drawn from the stream's generator."""
        x = torch.randn((batch_size, 4, self.latent_height, self.latent_width),
                        generator=self.generator)
        pred = self.unet(x, self.sub_timesteps_tensor, encoder_hidden_states=self.prompt_embeds,
                         return_dict=False)[0]
        x0 = (x - self.beta_prod_t_sqrt * pred) / self.alpha_prod_t_sqrt
        return self.decode_image(x0)

    def decode_image(self, x0):
        self.last_latent = x0
        return super().decode_image(x0)


# ---- inputs -------------------------------------------------------------------------------------

def make_frames(count):
    """64x64 frames from the TAESD portrait: 72x72 downscale, a 64x64 window moving along a
    small loop (what a slowly moving camera gives)."""
    src = Image.open(os.path.join(FIX, "taesd", "input_512x512.png")).convert("RGB")
    small = src.resize((72, 72), Image.BILINEAR)
    os.makedirs(os.path.join(OUT, "frames"), exist_ok=True)
    frames = []
    for i in range(count):
        dx = int(round(4 + 3.5 * math.cos(i * 0.6)))
        dy = int(round(4 + 3.5 * math.sin(i * 0.6)))
        frame = small.crop((dx, dy, dx + SIZE, dy + SIZE))
        frame.save(os.path.join(OUT, "frames", f"frame_{i:02d}.png"), optimize=True)
        frames.append(Image.open(os.path.join(OUT, "frames", f"frame_{i:02d}.png")).convert("RGB"))
    return frames


T_INDEX = {1: [32], 2: [32, 45], 4: [0, 16, 32, 45]}


def run_trace(pipe, frames, cfg, batch, n, f, mode="img2img", update_at=None, cls=Corrected,
              t_index=None, steps=STEPS):
    s = cls(pipe, t_index_list=t_index or T_INDEX[n], torch_dtype=torch.float32, width=SIZE,
            height=SIZE, do_add_noise=True, use_denoising_batch=batch, frame_buffer_size=f,
            cfg_type=cfg)
    s.prepare(PROMPT, NEGATIVE, num_inference_steps=steps, guidance_scale=GUIDANCE, delta=DELTA,
              generator=torch.Generator(), seed=SEED)
    init_noise = s.init_noise.clone()
    latents, image = [], None
    with torch.no_grad():
        for i in range(FRAMES):
            if update_at is not None and i == update_at:
                s.update_prompt(PROMPT2)
            if mode == "txt2img_sd_turbo":
                image = s.txt2img_sd_turbo(f)
            elif mode == "img2img":
                batch_frames = [frames[(i * f + k) % len(frames)] for k in range(f)]
                image = s(batch_frames if f > 1 else batch_frames[0])
            else:
                image = s.txt2img(f)
            latents.append(nhwc(s.last_latent if cls is Corrected else s._last))
    return dict(init_noise=nhwc(init_noise), latents=torch.stack(latents),
                last_image=nhwc(image))


class Original(StreamDiffusion):
    """The unmodified pipeline, recording its output latent."""

    def decode_image(self, x0):
        self._last = x0
        return super().decode_image(x0)


def traces(pipe, frames, out, only_turbo=False, sd2=False):
    configs = []
    for cfg in ("none", "full", "self", "initialize"):
        for batch in (True, False):
            for n in (1, 2, 4):
                configs.append(dict(cfg=cfg, batch=batch, n=n, f=1, image=(n == 2 and batch)))
        configs.append(dict(cfg=cfg, batch=True, n=1, f=2))
    for cfg in ("self", "initialize", "full"):
        configs.append(dict(cfg=cfg, batch=True, n=2, f=2, image=cfg == "self"))
    for cfg in ("full", "initialize"):
        configs.append(dict(cfg=cfg, batch=True, n=2, f=1, update_at=5))
    for cfg, batch, n in (("none", True, 1), ("self", True, 2), ("full", False, 2)):
        configs.append(dict(cfg=cfg, batch=batch, n=n, f=1, mode="txt2img", image=True))
    # sd-turbo one step: t = 999 (t_index [0] of 1 step), x̂₀ = (x − bε)/a, no guidance.
    turbo = [dict(cfg="none", batch=True, n=1, f=f, mode="txt2img_sd_turbo", image=f == 1,
                  t_index=[0], steps=1) for f in (1, 2)]
    configs = turbo if only_turbo else configs + turbo
    if sd2:
        configs = [dict(cfg="self", batch=True, n=2, f=1, image=True),
                   dict(cfg="full", batch=False, n=2, f=1),
                   dict(cfg="initialize", batch=True, n=4, f=1),
                   dict(cfg="self", batch=True, n=1, f=1, t_index=[0], steps=1)] + turbo[:1]

    os.makedirs(os.path.join(out, "traces"), exist_ok=True)
    names = []
    for c in configs:
        mode = c.get("mode", "img2img")
        name = (f"{mode}_{c['cfg']}_{'batch' if c['batch'] else 'seq'}_n{c['n']}_f{c['f']}"
                + (f"_steps{c['steps']}" if c.get("steps", STEPS) != STEPS and mode == "img2img"
                   else "")
                + (f"_update{c['update_at']}" if c.get("update_at") is not None else ""))
        t = run_trace(pipe, frames, c["cfg"], c["batch"], c["n"], c["f"], mode,
                      c.get("update_at"), t_index=c.get("t_index"), steps=c.get("steps", STEPS))
        if c["f"] == 1 and c["batch"] and c.get("update_at") is None and mode == "img2img":
            o = run_trace(pipe, frames, c["cfg"], c["batch"], c["n"], 1, mode, None, Original,
                          t_index=c.get("t_index"), steps=c.get("steps", STEPS))
            assert torch.equal(o["latents"], t["latents"]), name
        meta = dict(mode=mode, cfg_type=c["cfg"], use_denoising_batch=str(int(c["batch"])),
                    t_index_list=json.dumps(c.get("t_index") or T_INDEX[c["n"]]),
                    frame_buffer_size=str(c["f"]), num_inference_steps=str(c.get("steps", STEPS)), guidance_scale=repr(GUIDANCE),
                    delta=repr(DELTA), seed=str(SEED), prompt=PROMPT, negative_prompt=NEGATIVE,
                    frames=str(FRAMES),
                    update_prompt=PROMPT2 if c.get("update_at") is not None else "",
                    update_at=str(c.get("update_at", -1)))
        if not c.get("image", False):
            del t["last_image"]
        save_safetensors(t, os.path.join(out, "traces", name + ".safetensors"), meta)
        names.append(name)
        print(f"  {name}: out std {t['latents'].std():.3f}")
    return names


# ---- scheduler and random references ------------------------------------------------------------

def scheduler_reference():
    sch = LCMScheduler()
    out = {"alphas_cumprod": sch.alphas_cumprod.clone(), "betas": sch.betas.clone()}
    for n in (1, 2, 4, 7, 50):
        sch.set_timesteps(n)
        ts = sch.timesteps
        out[f"timesteps_{n}"] = ts.to(torch.float32)  # exact (< 2^24)
        rows = []
        for t in ts:
            c_skip, c_out = sch.get_scalings_for_boundary_condition_discrete(t)
            a = sch.alphas_cumprod[t].sqrt()
            b = (1 - sch.alphas_cumprod[t]).sqrt()
            rows.append(torch.stack([a, b, c_skip.float(), c_out.float()]))
        out[f"constants_{n}"] = torch.stack(rows)  # [n, 4]: a, b, c_skip, c_out
    save_safetensors(out, os.path.join(OUT, "lcm_scheduler.safetensors"),
                     {"config": json.dumps(dict(sch.config))})


def random_reference():
    out = {}
    for seed in (0, 2, 12345, 2**32 + 7):
        for n in (1, 7, 15, 16, 17, 33) + ((4 * 64 * 64,) if seed == 2 else ()):
            g = torch.Generator().manual_seed(seed)
            out[f"randn_s{seed}_n{n}"] = torch.randn(n, generator=g)
        g = torch.Generator().manual_seed(seed)
        out[f"rand_s{seed}_n17"] = torch.rand(17, generator=g)
        # Consecutive draws: scalar path (cached second sample), then vector path, then scalar.
        g = torch.Generator().manual_seed(seed)
        seq = [torch.randn(1, generator=g), torch.randn(3, generator=g),
               torch.randn(20, generator=g), torch.randn(2, generator=g)]
        out[f"sequence_s{seed}"] = torch.cat(seq)
    save_safetensors(out, os.path.join(OUT, "torch_random.safetensors"),
                     {"torch": torch.__version__,
                      "cpu_capability": torch.backends.cpu.get_cpu_capability()})


def main():
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    parts = sys.argv[1:] or ["random", "scheduler", "traces", "sd2"]
    if "random" in parts:
        random_reference()
    if "scheduler" in parts:
        scheduler_reference()
    if not {"traces", "turbo", "sd2"} & set(parts):
        return
    frames = make_frames(FRAMES)
    for sd2 in (False, True):
        if sd2 and "sd2" not in parts:
            continue
        if not sd2 and "traces" not in parts and "turbo" not in parts:
            continue
        out = os.path.join(OUT, "sd2") if sd2 else OUT
        pipe = pipeline(out, sd2)
        with torch.no_grad():
            cond, uncond = pipe.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
            cond2 = pipe.encode_prompt(PROMPT2, "cpu", 1, False)[0]
        save_safetensors({"cond": cond[0], "uncond": uncond[0], "cond2": cond2[0]},
                         os.path.join(out, "prompt_embeds.safetensors"),
                         {"prompt": PROMPT, "negative_prompt": NEGATIVE, "prompt2": PROMPT2,
                          "tokenizer": "sd21" if sd2 else "sd15",
                          "text_config": json.dumps(TEXT_CONFIG_SD2 if sd2 else TEXT_CONFIG)})
        names = traces(pipe, frames, out, only_turbo="traces" not in parts and not sd2, sd2=sd2)
        print(f"{len(names)} traces in {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main()
