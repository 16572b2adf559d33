#!/usr/bin/env python3
"""Baseline timings: streamdiff against diffusers and the original StreamDiffusion, on this CPU.

What it measures
    Two things per img2img frame, with the same weights, resolution, input image, prompt, seed
    and thread count for every pipeline:
      latency   seconds from a frame's input to its output when nothing waits before it;
      interval  seconds between consecutive outputs when frames arrive back to back (1 /
                throughput).
    For the Python pipelines and stable-diffusion.cpp, called once per frame in a loop, both are
    the time of one call (for the original with n t_index entries a frame's latency spans n
    calls: end of call k + n - 1 minus start of call k). streamdiff's CLI overlaps reading,
    denoising and writing: its interval is the time between consecutive outputs and its latency
    the model's time on a frame (`--stats-json` frame_compute_ms, without queue waiting).
    The pipelines:
      diffusers        `AutoPipelineForImage2Image` (diffusers 0.42) with k denoising steps
                       (default k = 1 and 10), in fp32 and, where torch has AVX-512, in bf16
                       (`--torch-dtypes`): the ordinary one-call-per-frame use of diffusers.
      streamdiffusion  the original StreamDiffusion (PyPI streamdiffusion 0.1.1 on its pinned
                       diffusers 0.24 / transformers 4.38), img2img, Stream Batch on, fp32.
      streamdiff       this project's `streamdiff img2img` CLI on a folder of frames, in its
                       default dtype (`auto`: bf16 on AVX512-BF16 CPUs, else f32) and in f32
                       (`--sd-dtypes`; where auto is f32 it runs once).
      sdcpp            optional (`--sdcpp PATH`): a stable-diffusion.cpp `sd-cli` that you
                       built, on the same weights written as one LDM-layout .safetensors file
                       (`sd_checkpoint.safetensors` in the model folder, fp32, made on first
                       use), with the model's taesd/ file as `--taesd`, one process per frame;
                       a frame's time is the "generate_image completed in X s" its log prints
                       (model loading excluded). Nothing of stable-diffusion.cpp is in this
                       repository.
    Every pipeline decodes and encodes with the same TAESD (AutoencoderTiny), as the original's
    examples do (`--vae kl` switches diffusers, the original and streamdiff to the model's
    AutoencoderKL instead; then the original samples the encoder's latent distribution where
    streamdiff takes its mean, so their outputs differ by that noise, large with random weights).

Settings (identical where the pipelines share the notion)
    - StreamDiffusion and streamdiff: LCMScheduler constants of 50 steps, t_index_list [35]
      (one denoising step; `--t-index 35,45` gives the two-step list of the original's sd-turbo
      img2img demo, demo/realtime-img2img), cfg_type "none" (no guidance: one UNet row per
      slot, as in that demo), denoising batch on, frame_buffer_size 1, seed 2. With n indices
      both run one UNet pass over n rows per frame, after n - 1 pipeline-filling calls.
    - diffusers and sd-cli: guidance_scale / --cfg-scale 0 resp. 1 (no classifier-free
      guidance: one UNet row per step, as sd-turbo is meant to run), the model's own scheduler
      (sd-turbo: Euler, trailing spacing; sd-cli: euler), strength 0.5 with num_inference_steps
      = 2k, so k steps actually run (img2img runs int(num_inference_steps * strength) of them).
      The number of diffusers' UNet evaluations is counted with a hook and recorded. Each call
      encodes the prompt again: that is part of what an AutoPipeline call costs (OpenCLIP-H:
      ~45 GFLOP, against ~804 per UNet step at 512^2).
    - Input: data/images/portrait.png (or --image), RGB, scaled to cover the size with
      Lanczos and centre-cropped once; every pipeline gets that already-sized image.
    - Threads: torch.set_num_threads(T) / `streamdiff --threads T` / `sd-cli -t T` (default 2).

Timing
    `--warmup` untimed frames, then `--runs` timed ones. Python pipelines: each call timed with
    perf_counter from the PIL image to the output PIL image (preprocess, encode, UNet, decode,
    postprocess). streamdiff: the CLI runs `--warmup + --runs` copies of the input in a folder
    through its threaded runner (read/decode, denoise and encode/write overlap, as in real use);
    `--stats-json` records when each output was written and each frame's compute time.

Weights
    There is no model hub here: `make-model` writes a diffusers folder with random weights
    (torch.manual_seed + each model's default initialisation, safetensors, fp32):
      sd-turbo  UNet of SD 2.1 (cross_attention_dim 1024, attention_head_dim [5,10,20,20],
                linear projections, sample_size 64), OpenCLIP-H text tower as
                stabilityai/sd-turbo's CLIPTextModel config (1024 wide, 23 layers, 16 heads,
                gelu), the SD 2.1 tokenizer (tests/fixtures/tokenizer/sd21), Euler scheduler
      sd15      UNet of SD 1.5, CLIP ViT-L/14 text tower, SD 1.5 tokenizer, PNDM scheduler
      tiny      an SD 2.x-like model of ~2M parameters, to check the flow end to end
    plus vae/ (AutoencoderKL of the architecture) and taesd/ (tests/fixtures/taesd/full, or
    tiny/ for the tiny arch, as fp32 AutoencoderTiny). Timings do not depend on weight values.

How to run (from the repository root)
    tools/.venv/bin/python bench/baseline.py all --arch sd-turbo --size 512 \
        --bin build/release/streamdiff --runs 3
  makes bench/.models/sd-turbo if missing, runs the three parts with their interpreters
  (tools/.venv for diffusers and streamdiff, tools/.venv-sd for the original; see
  tools/setup_venvs.sh), writes bench/.results/<model folder name>_<size>/*.json and prints
  the table. The parts also run alone (`make-model`, `diffusers`, `streamdiffusion`,
  `streamdiff`, `table`); see `--help` of each. Run it on an otherwise idle machine: with
  other processes on the cores, threads wait on preempted peers and the numbers mean nothing.

Table columns
    dtype            the compute dtype the pipeline ran in
    UNet rows/frame  UNet evaluations of one latent per output frame (steps x batch rows)
    runs             timed frames
    latency min/med  seconds, see above
    interval min/med seconds between outputs, see above
    lat x, int x     median latency / interval divided by the reference's (the first streamdiff
                     row, its default dtype): how many times slower than streamdiff
    output std       standard deviation of the last output image's 8-bit pixels (a sanity
                     check that the pipeline computed an image; 0 would mean a flat one)
    |d| vs sd        mean absolute difference of the last output image from streamdiff's, in
                     8-bit levels: small for the original (same algorithm, weights, noise),
                     large for diffusers (another sampler)
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
DEFAULT_IMAGE = os.path.join(ROOT, "data", "images", "portrait.png")
DEFAULT_PROMPT = "portrait of a cat wearing a tiny hat, oil painting, best quality"
STREAM_STEPS = 50  # LCM steps the t_index_list indexes (StreamDiffusion's default)

# ---- architectures -------------------------------------------------------------------------

SCALED_LINEAR = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                     beta_schedule="scaled_linear", prediction_type="epsilon")


def sd_unet(cross_dim, heads, linear, blocks=(320, 640, 1280, 1280), layers=2, groups=32,
            sample=64):
    n = len(blocks)
    return dict(sample_size=sample, in_channels=4, out_channels=4, layers_per_block=layers,
                block_out_channels=list(blocks), norm_num_groups=groups,
                cross_attention_dim=cross_dim, attention_head_dim=heads,
                use_linear_projection=linear,
                down_block_types=["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"],
                up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1))


def sd_vae(blocks=(128, 256, 512, 512), layers=2, groups=32, sample=512, scaling=0.18215):
    n = len(blocks)
    return dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=list(blocks),
                layers_per_block=layers, norm_num_groups=groups, sample_size=sample,
                scaling_factor=scaling, down_block_types=["DownEncoderBlock2D"] * n,
                up_block_types=["UpDecoderBlock2D"] * n)


ARCHS = {
    "sd-turbo": dict(
        unet=sd_unet(1024, [5, 10, 20, 20], True),
        # stabilityai/sd-turbo text_encoder/config.json (OpenCLIP ViT-H/14, 23 of 24 layers)
        text=dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096,
                  num_hidden_layers=23, num_attention_heads=16, max_position_embeddings=77,
                  hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=512, bos_token_id=0,
                  eos_token_id=2, pad_token_id=1),
        vae=sd_vae(sample=768), tokenizer="sd21", taesd="full",
        scheduler=("EulerDiscreteScheduler",
                   dict(SCALED_LINEAR, timestep_spacing="trailing", steps_offset=1,
                        interpolation_type="linear", use_karras_sigmas=False))),
    "sd15": dict(
        unet=sd_unet(768, 8, False),
        text=dict(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                  num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                  hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
                  bos_token_id=0, eos_token_id=2, pad_token_id=1),
        vae=sd_vae(), tokenizer="sd15", taesd="full",
        scheduler=("PNDMScheduler",
                   dict(SCALED_LINEAR, skip_prk_steps=True, set_alpha_to_one=False,
                        steps_offset=1))),
    "tiny": dict(
        unet=sd_unet(32, [2, 4, 4], True, blocks=(16, 24, 32), layers=1, groups=8, sample=8),
        text=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu",
                  layer_norm_eps=1e-5, projection_dim=32, bos_token_id=49406,
                  eos_token_id=49407, pad_token_id=0),
        vae=sd_vae(blocks=(8, 8, 16, 16), layers=1, groups=8, sample=64), tokenizer="sd21",
        taesd="tiny",
        scheduler=("EulerDiscreteScheduler",
                   dict(SCALED_LINEAR, timestep_spacing="trailing", steps_offset=1))),
}


def make_model(args):
    """Writes a diffusers model folder of --arch with random weights (tools/.venv)."""
    import safetensors.torch
    import torch
    from diffusers import (AutoencoderKL, AutoencoderTiny, StableDiffusionPipeline,
                           UNet2DConditionModel)
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    spec = ARCHS[args.arch]
    out = os.path.abspath(args.dir)
    if os.path.exists(out):
        sys.exit(f"make-model: '{out}' exists; remove it first")
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    with torch.no_grad():
        unet = UNet2DConditionModel(**spec["unet"]).eval()
        text = CLIPTextModel(CLIPTextConfig(**spec["text"])).eval()
        vae = AutoencoderKL(**spec["vae"]).eval()
    tokenizer_dir = os.path.join(FIXTURES, "tokenizer", spec["tokenizer"])
    scheduler_cls, scheduler_cfg = spec["scheduler"]
    scheduler = getattr(diffusers, scheduler_cls)(**scheduler_cfg)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text,
                                   tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir),
                                   unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    # The fixture's slow-tokenizer files as they are, so every loader (transformers 4 and 5,
    # streamdiff's vocab.json + merges.txt reader) reads the same tokenizer.
    shutil.rmtree(os.path.join(out, "tokenizer"))
    shutil.copytree(tokenizer_dir, os.path.join(out, "tokenizer"))
    # transformers 5 saves CLIPTextModel without the "text_model." prefix, which transformers
    # 4.38 (the original's pin) does not map back: store the names as published checkpoints do.
    text_file = os.path.join(out, "text_encoder", "model.safetensors")
    state = safetensors.torch.load_file(text_file)
    safetensors.torch.save_file(
        {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in state.items()},
        text_file, metadata={"format": "pt"})
    taesd = AutoencoderTiny.from_pretrained(os.path.join(FIXTURES, "taesd", spec["taesd"]))
    taesd.float().save_pretrained(os.path.join(out, "taesd"), safe_serialization=True)

    def params(m):
        return sum(p.numel() for p in m.parameters())

    info = dict(arch=args.arch, seed=args.seed, weights="random (torch default init)",
                unet_params=params(unet), text_encoder_params=params(text),
                vae_params=params(vae), taesd_params=params(taesd),
                taesd_source=f"tests/fixtures/taesd/{spec['taesd']}")
    with open(os.path.join(out, "baseline_model.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(f"wrote {out} in {time.perf_counter() - t0:.1f} s: " +
          ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in info.items() if k.endswith("_params")))


# ---- shared helpers ------------------------------------------------------------------------

def sized_input(args):
    """The input image, RGB, covering size x size (Lanczos, centre crop), saved once as PNG."""
    from PIL import Image
    os.makedirs(args.work, exist_ok=True)
    path = os.path.join(args.work, f"input_{args.size}.png")
    img = Image.open(args.image).convert("RGB")
    s = args.size
    scale = max(s / img.width, s / img.height)
    w, h = max(s, round(img.width * scale)), max(s, round(img.height * scale))
    img = img.resize((w, h), Image.LANCZOS)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s))
    img.save(path)
    return path, Image.open(path).convert("RGB")


def machine_info():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return dict(cpu=cpu, logical_cpus=os.cpu_count(), usable_cpus=len(os.sched_getaffinity(0)),
                os=platform.platform(), python=platform.python_version())


def versions(*names):
    from importlib import metadata
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


def output_fields(args, img, name):
    """Saves a part's last output image next to the sized input; its path and pixel spread."""
    import numpy as np
    path = os.path.join(args.work, f"output_{name}_{args.size}.png")
    img.save(path)
    return dict(output_png=path, output_std=float(np.asarray(img, dtype=np.float64).std()))


def mean_abs_diff(path_a, path_b):
    """Mean |a - b| of two 8-bit RGB images, in 8-bit levels; None if they cannot be read."""
    try:
        import numpy as np
        from PIL import Image
        a, b = (np.asarray(Image.open(p).convert("RGB"), dtype=np.float64)
                for p in (path_a, path_b))
    except (ImportError, OSError):
        return None
    return float(np.abs(a - b).mean()) if a.shape == b.shape else None


def summarize(latency, interval):
    """Both measures of the timed frames (seconds)."""
    return dict(runs=len(interval), latency_s=latency, interval_s=interval,
                latency_min_s=min(latency), latency_median_s=statistics.median(latency),
                interval_min_s=min(interval), interval_median_s=statistics.median(interval))


def time_calls(call, warmup, runs, frames_per_output=1):
    """Calls `call` warmup + runs times back to back; returns the last output, the latencies and
    the intervals of the timed calls. A frame's output comes `frames_per_output` calls after its
    input (StreamDiffusion with several t_index entries), so its latency is the end of call
    k + frames_per_output - 1 minus the start of call k."""
    starts, ends, out = [], [], None
    for _ in range(warmup + runs + frames_per_output - 1):
        starts.append(time.perf_counter())
        out = call()
        ends.append(time.perf_counter())
    timed = range(warmup, warmup + runs)
    interval = [ends[k] - starts[k] for k in timed]
    latency = [ends[k + frames_per_output - 1] - starts[k] for k in timed]
    return out, latency, interval


def write_result(args, rows, extra):
    result = dict(part=args.part, size=args.size, threads=args.threads, model=args.model,
                  vae=args.vae, prompt=args.prompt, seed=args.seed, warmup=args.warmup,
                  machine=machine_info(), rows=rows, **extra)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    for r in rows:
        print(f"{r['label']} ({r['dtype']}): latency min {r['latency_min_s']:.4f} s, median "
              f"{r['latency_median_s']:.4f} s; interval min {r['interval_min_s']:.4f} s, median "
              f"{r['interval_median_s']:.4f} s over {r['runs']} frames")


def set_threads(torch, n):
    torch.set_num_threads(n)
    print(f"torch {torch.__version__}: {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")


# ---- the three pipelines -------------------------------------------------------------------

def run_diffusers(args):
    import torch
    from diffusers import AutoPipelineForImage2Image, AutoencoderTiny

    set_threads(torch, args.threads)
    _, image = sized_input(args)
    if not args.torch_dtypes:
        fast_bf16 = "AVX512" in torch.backends.cpu.get_cpu_capability()
        args.torch_dtypes = ["fp32", "bf16"] if fast_bf16 else ["fp32"]
        if not fast_bf16:
            print("diffusers bf16 skipped: torch has no AVX-512 here (--torch-dtypes fp32,bf16 "
                  "runs it anyway)", flush=True)
    rows = []
    for dtype_name in args.torch_dtypes:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
        extra = {}
        if args.vae == "taesd":
            extra["vae"] = AutoencoderTiny.from_pretrained(os.path.join(args.model, "taesd"),
                                                           torch_dtype=dtype)
        pipe = AutoPipelineForImage2Image.from_pretrained(
            args.model, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False,
            **extra)
        pipe.set_progress_bar_config(disable=True)
        unet_rows = [0]
        pipe.unet.register_forward_pre_hook(
            lambda _m, a, kw: unet_rows.__setitem__(0, unet_rows[0] + (a[0] if a else
                                                                       kw["sample"]).shape[0]),
            with_kwargs=True)
        for k in args.steps:
            def call():
                return pipe(prompt=args.prompt, image=image, num_inference_steps=round(k / 0.5),
                            strength=0.5, guidance_scale=0.0,
                            generator=torch.Generator().manual_seed(args.seed)).images[0]
            unet_rows[0] = 0
            out, latency, interval = time_calls(call, args.warmup, args.runs)
            per_frame = unet_rows[0] / (args.warmup + args.runs)
            if per_frame != k:
                sys.exit(f"diffusers: expected {k} UNet rows per frame, counted {per_frame}")
            rows.append(dict(label=f"diffusers AutoPipelineForImage2Image, {k} step" +
                             ("s" if k > 1 else ""), dtype=dtype_name,
                             unet_rows_per_frame=per_frame,
                             scheduler=type(pipe.scheduler).__name__,
                             **output_fields(args, out, f"diffusers_{dtype_name}_{k}"),
                             **summarize(latency, interval)))
        pipe = None  # free this dtype's weights before the next
    write_result(args, rows, dict(versions=versions("torch", "diffusers", "transformers"),
                                  pipeline="AutoPipelineForImage2Image"))


def run_streamdiffusion(args):
    import torch
    # StreamDiffusion.__call__ times itself with CUDA events; on the CPU they become no-ops
    # (the only change to the original, as in tools/make_stream_fixtures.py).
    torch.cuda.Event = lambda *a, **k: type("NoEvent", (), {
        "record": lambda s: None, "elapsed_time": lambda s, o: 0.0})()
    torch.cuda.synchronize = lambda *a, **k: None
    # tools/.venv-sd borrows tools/.venv's site-packages for torch, which also exposes that
    # venv's peft; diffusers 0.24 imports it if found, and it fails on the pinned accelerate.
    sys.modules["peft"] = None
    from diffusers import AutoencoderTiny, StableDiffusionPipeline
    from streamdiffusion import StreamDiffusion

    set_threads(torch, args.threads)
    torch.set_grad_enabled(False)
    _, image = sized_input(args)
    extra = {}
    if args.vae == "taesd":  # the original's `stream.vae = AutoencoderTiny...`, made at load
        extra["vae"] = AutoencoderTiny.from_pretrained(os.path.join(args.model, "taesd"))
    pipe = StableDiffusionPipeline.from_pretrained(
        args.model, torch_dtype=torch.float32, safety_checker=None,
        requires_safety_checker=False, **extra)
    stream = StreamDiffusion(pipe, t_index_list=args.t_index, torch_dtype=torch.float32,
                             width=args.size, height=args.size, do_add_noise=True,
                             use_denoising_batch=True, frame_buffer_size=1, cfg_type="none")
    stream.prepare(args.prompt, num_inference_steps=STREAM_STEPS, guidance_scale=1.0,
                   generator=torch.Generator(), seed=args.seed)

    def call():
        # stream(PIL image) runs the original's preprocess (to [-1, 1]) itself. Its
        # streamdiffusion.image_utils.postprocess_image imports torchvision (not installed: no
        # CPU torchvision wheel matches the borrowed torch); diffusers'
        # VaeImageProcessor.postprocess does the same (x / 2 + 0.5, clamp, to 8-bit PIL).
        return stream.image_processor.postprocess(stream(image), output_type="pil")[0]

    # A frame's output comes n - 1 calls later (the first calls fill the pipeline).
    out, latency, interval = time_calls(call, args.warmup, args.runs, len(args.t_index))
    found = versions("streamdiffusion", "torch", "diffusers", "transformers")
    row = dict(label=f"streamdiffusion {found['streamdiffusion']}, t_index {args.t_index}",
               dtype="fp32", unet_rows_per_frame=len(args.t_index),
               **output_fields(args, out, "streamdiffusion"),
               **summarize(latency, interval))
    write_result(args, [row], dict(versions=found))


FRAME_LINE = re.compile(r"frame \d+")  # progress lines, left out of the recorded log


def streamdiff_once(args, binary, dtype, frames, outputs, total):
    """One run of the CLI over the folder of frames in `--dtype dtype`: its table row (labelled
    with the dtype it computed in), the command and the log lines."""
    from PIL import Image

    shutil.rmtree(outputs, ignore_errors=True)
    os.makedirs(outputs)
    stats_path = os.path.join(args.work, f"streamdiff_stats_{dtype}_{args.size}.json")
    cmd = [binary, "img2img", "--model", args.model, "--prompt", args.prompt,
           "--t-index", ",".join(map(str, args.t_index)), "--steps", str(STREAM_STEPS),
           "--cfg", "none", "--seed", str(args.seed), "--width", str(args.size),
           "--height", str(args.size), "--input", frames, "--output", outputs,
           "--device", "cpu", "--dtype", dtype, "--threads", str(args.threads),
           "--stats-json", stats_path]
    if args.vae == "taesd":
        cmd += ["--taesd", os.path.join(args.model, "taesd")]
    print("running:", " ".join(cmd), flush=True)
    run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = run.stdout.decode(errors="replace").replace("\r", "\n")
    if run.returncode != 0:
        sys.exit(f"streamdiff failed (exit {run.returncode}):\n{log}")
    names = [f"frame_{i:04d}.png" for i in range(total)]
    missing = [n for n in names if not os.path.isfile(os.path.join(outputs, n))]
    if missing:
        sys.exit(f"streamdiff wrote no {', '.join(missing)} in {outputs}:\n{log}")
    ran = re.search(r"dtype (bf16|f16|f32)", log)
    ran = ran.group(1) if ran else dtype
    with open(stats_path) as f:
        stats = json.load(f)
    done, compute = stats["written_s"], stats["frame_compute_ms"]
    if len(done) != total or len(compute) != total:
        sys.exit(f"streamdiff: {len(done)} output times for {total} frames:\n{log}")
    # Frame k (0-based) came done[k] - done[k - 1] after the one before; the first --warmup
    # frames are not timed.
    interval = [done[k] - done[k - 1] for k in range(args.warmup, total)]
    latency = [compute[k] / 1000 for k in range(args.warmup, total)]
    note = f"CLI latency p50 incl. queueing {stats['latency_ms']['p50'] / 1000:.3f} s"
    last = Image.open(os.path.join(outputs, f"frame_{total - 1:04d}.png")).convert("RGB")
    label = f"streamdiff img2img, t_index {args.t_index}, --dtype {dtype}"
    row = dict(label=label, dtype=ran, unet_rows_per_frame=len(args.t_index), note=note,
               **output_fields(args, last, f"streamdiff_{dtype}"),
               **summarize(latency, interval))
    log_lines = [ln for ln in log.splitlines() if ln.strip() and not FRAME_LINE.match(ln)]
    return row, cmd, log_lines


def run_streamdiff(args):
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"streamdiff: '{binary}' is not an executable (build it: cmake --build ...)")
    path, _ = sized_input(args)
    frames = os.path.join(args.work, f"streamdiff_frames_{args.size}")
    outputs = os.path.join(args.work, f"streamdiff_out_{args.size}")
    shutil.rmtree(frames, ignore_errors=True)
    os.makedirs(frames)
    total = args.warmup + args.runs
    for i in range(total):
        shutil.copyfile(path, os.path.join(frames, f"frame_{i:04d}.png"))
    rows, commands, logs = [], [], []
    for dtype in args.sd_dtypes:
        if any(r["dtype"] == dtype for r in rows):  # `auto` already ran in this dtype
            print(f"--dtype {dtype}: the run above already computed in {dtype}", flush=True)
            continue
        row, cmd, log = streamdiff_once(args, binary, dtype, frames, outputs, total)
        rows.append(row)
        commands.append(cmd)
        logs.append(log)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    write_result(args, rows, dict(versions={"streamdiff": version.strip().split()[-1]},
                                  commands=commands, logs=logs))


# ---- stable-diffusion.cpp (optional, built by the user) -----------------------------------

GENERATE_LINE = re.compile(r"generate_image completed in ([0-9.]+)\s*s")


def write_single_file(model):
    """The model folder's weights as one LDM-layout checkpoint (what stable-diffusion.cpp and
    other single-file loaders read), fp32, the same values: model.diffusion_model.* (UNet),
    first_stage_model.* (AutoencoderKL), cond_stage_model.* (CLIP: transformers names under
    .transformer.; OpenCLIP for a 1024-wide SD 2.x text tower, q/k/v fused). The renaming is
    tools/make_ldm_fixtures.py's, checked there against diffusers' own converters."""
    import safetensors.torch
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from make_ldm_fixtures import is_vae_attention_matrix, unet_to_ldm, vae_to_ldm
    from make_text_encoder_fixtures import openclip_state

    path = os.path.join(model, "sd_checkpoint.safetensors")
    if os.path.exists(path):
        return path
    load = safetensors.torch.load_file

    def config(part):
        with open(os.path.join(model, part, "config.json")) as f:
            return json.load(f)

    ckpt = {}
    unet_cfg = config("unet")
    for k, v in load(os.path.join(model, "unet", "diffusion_pytorch_model.safetensors")).items():
        ckpt["model.diffusion_model." + unet_to_ldm(k, unet_cfg)] = v
    n_vae = len(config("vae")["block_out_channels"])
    for k, v in load(os.path.join(model, "vae", "diffusion_pytorch_model.safetensors")).items():
        ckpt["first_stage_model." + vae_to_ldm(k, n_vae)] = (
            v[:, :, None, None] if is_vae_attention_matrix(k) else v)
    text_cfg = config("text_encoder")
    text = load(os.path.join(model, "text_encoder", "model.safetensors"))
    if text_cfg["hidden_size"] == 1024:  # SD 2.x: OpenCLIP ViT-H names, 24 resblocks in files
        ckpt.update({k: v.float() for k, v in openclip_state(text, text_cfg, 1).items()})
    else:
        ckpt.update({"cond_stage_model.transformer." + k: v for k, v in text.items()})
    safetensors.torch.save_file({k: v.contiguous() for k, v in ckpt.items()}, path + ".partial",
                                metadata={"format": "pt"})
    os.replace(path + ".partial", path)
    print(f"wrote {path} ({os.path.getsize(path) / 2**30:.2f} GiB, {len(ckpt)} tensors)")
    return path


def run_sdcpp(args):
    from PIL import Image

    binary = os.path.abspath(args.sdcpp)
    if not os.access(binary, os.X_OK):
        sys.exit(f"sdcpp: '{binary}' is not an executable (a stable-diffusion.cpp sd-cli you "
                 "built)")
    ckpt = write_single_file(args.model)
    path, _ = sized_input(args)
    out_png = os.path.join(args.work, f"output_sdcpp_{args.size}.png")
    cmd = [binary, "-m", ckpt, "-i", path, "-p", args.prompt, "--strength", "0.5",
           "--steps", "2", "--cfg-scale", "1.0", "--sampling-method", "euler",
           "-W", str(args.size), "-H", str(args.size), "-t", str(args.threads),
           "-s", str(args.seed), "-o", out_png]
    if args.vae == "taesd":
        cmd += ["--taesd", os.path.join(args.model, "taesd",
                                        "diffusion_pytorch_model.safetensors")]
    print("running (once per frame):", " ".join(cmd), flush=True)
    seconds, walls = [], []
    for _ in range(args.warmup + args.runs):
        t0 = time.perf_counter()
        run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        walls.append(time.perf_counter() - t0)
        log = run.stdout.decode(errors="replace")
        found = GENERATE_LINE.findall(log)
        if run.returncode != 0 or not found or not os.path.isfile(out_png):
            sys.exit(f"sd-cli failed (exit {run.returncode}) or printed no 'generate_image "
                     f"completed in' line:\n{log[-4000:]}")
        seconds.append(float(found[-1]))
    timed = seconds[args.warmup:]
    version = subprocess.run([binary, "--version"], capture_output=True, text=True)
    row = dict(label="stable-diffusion.cpp sd-cli, 1 step, a process per frame",
               dtype="fp32 weights", unet_rows_per_frame=1,
               note=f"process wall incl. loading: median {statistics.median(walls):.2f} s",
               **output_fields(args, Image.open(out_png).convert("RGB"), "sdcpp"),
               **summarize(timed, timed))
    write_result(args, [row], dict(
        versions={"sd-cli": (version.stdout or version.stderr).strip().splitlines()[0]
                  if (version.stdout or version.stderr).strip() else "unknown"},
        command=cmd))


# ---- the combined table --------------------------------------------------------------------

def print_table(args):
    results = []
    for p in args.results:
        with open(p) as f:
            results.append(json.load(f))
    ref = next((r["rows"][0] for r in results if r["part"] == "streamdiff"), None)
    first = results[0]
    m = first["machine"]
    print(f"\nimg2img {first['size']}x{first['size']}, {first['threads']} threads, "
          f"VAE {first['vae']}, model {first['model']}; prompt \"{first['prompt']}\"")
    info_path = os.path.join(first["model"], "baseline_model.json")
    if os.path.exists(info_path):
        with open(info_path) as f:
            info = json.load(f)
        print(f"weights: {info['arch']} architecture, {info['weights']}, UNet "
              f"{info['unet_params'] / 1e6:.4g}M, text encoder "
              f"{info['text_encoder_params'] / 1e6:.4g}M parameters")
    print(f"machine: {m['cpu']}, {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable); "
          f"{m['os']}")
    for r in results:
        v = ", ".join(f"{k} {x}" for k, x in r["versions"].items())
        print(f"  {r['part']}: {v}; warm-up {r['warmup']}")
    mismatched = [r["part"] for r in results
                  if (r["size"], r["threads"], r["vae"], r["model"], r["prompt"]) !=
                  (first["size"], first["threads"], first["vae"], first["model"],
                   first["prompt"])]
    if mismatched:
        print(f"WARNING: {', '.join(mismatched)} ran with other settings than {first['part']}")
    head = (f"{'pipeline':<58} {'dtype':>11} {'UNet rows':>9} {'runs':>4} "
            f"{'latency min/med s':>17} {'interval min/med s':>18} {'lat x':>5} {'int x':>5} "
            f"{'out std':>7} {'|d| vs sd':>9}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in results:
        for row in r["rows"]:
            def ratio(key):
                return f"{row[key] / ref[key]:.2f}" if ref else "n/a"
            note = f"  {row['note']}" if row.get("note") else ""
            diff = mean_abs_diff(row["output_png"], ref["output_png"]) if ref else None
            diff = f"{diff:.2f}" if diff is not None else "n/a"
            lat = f"{row['latency_min_s']:.3f}/{row['latency_median_s']:.3f}"
            itv = f"{row['interval_min_s']:.3f}/{row['interval_median_s']:.3f}"
            print(f"{row['label']:<58} {row['dtype']:>11} {row['unet_rows_per_frame']:>9g} "
                  f"{row['runs']:>4} {lat:>17} {itv:>18} {ratio('latency_median_s'):>5} "
                  f"{ratio('interval_median_s'):>5} {row['output_std']:>7.1f} {diff:>9}{note}")
    print("latency: a frame's input to its output with nothing waiting; interval: between "
          "outputs (1 / throughput); x: median divided by\nthe first streamdiff row's (above 1: "
          "slower than streamdiff); |d| vs sd: mean absolute difference of the last output image "
          "from\nstreamdiff's, in 8-bit levels (same algorithm -> small; diffusers and "
          "stable-diffusion.cpp sample differently)")


def run_all(args):
    model = os.path.abspath(args.model or os.path.join(HERE, ".models", args.arch))
    results = os.path.abspath(args.results_dir or os.path.join(
        HERE, ".results", f"{os.path.basename(model)}_{args.size}"))
    me = os.path.abspath(__file__)
    if not os.path.isdir(model):
        subprocess.run([args.python, me, "make-model", model, "--arch", args.arch], check=True)
    common = ["--model", model, "--size", str(args.size), "--runs", str(args.runs),
              "--warmup", str(args.warmup), "--threads", str(args.threads), "--vae", args.vae,
              "--prompt", args.prompt, "--seed", str(args.seed), "--image", args.image,
              "--work", os.path.join(results, "work")]
    t_index = ["--t-index", ",".join(map(str, args.t_index))]
    parts = {
        "diffusers": [args.python, me, "diffusers", *common, "--steps",
                      ",".join(map(str, args.steps)),
                      *(["--torch-dtypes", ",".join(args.torch_dtypes)] if args.torch_dtypes
                        else [])],
        "streamdiffusion": [args.python_sd, me, "streamdiffusion", *common, *t_index],
        "streamdiff": [args.python, me, "streamdiff", "--bin", args.bin, *common, *t_index,
                       "--sd-dtypes", ",".join(args.sd_dtypes)],
        "sdcpp": [args.python, me, "sdcpp", "--sdcpp", args.sdcpp or "", *common],
    }
    names = list(args.parts)
    if args.sdcpp and "sdcpp" not in names:
        names.append("sdcpp")
    # streamdiff first: the table's ratios are against its first row.
    names.sort(key=lambda n: n != "streamdiff")
    if "streamdiffusion" in names and not os.access(args.python_sd, os.X_OK):
        print(f"\n== streamdiffusion: skipped, no interpreter '{args.python_sd}' (make it with "
              "tools/setup_venvs.sh, or pass --python-sd)", flush=True)
        names.remove("streamdiffusion")
    outs = []
    for name in names:
        out = os.path.join(results, f"{name}.json")
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        subprocess.run(parts[name] + ["--out", out], check=True)
        print(f"== {name} took {time.perf_counter() - t0:.0f} s", flush=True)
        outs.append(out)
    print_table(argparse.Namespace(results=outs))


# ---- command line --------------------------------------------------------------------------

def int_list(text):
    return [int(x) for x in text.split(",") if x.strip()]


def dtype_list(allowed):
    def parse(text):
        out = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in out if x not in allowed]
        if not out or bad:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(allowed)}")
        return out
    return parse


def size_arg(text):
    size = int(text)
    if size < 64 or size % 8:
        raise argparse.ArgumentTypeError(f"{size} is not a multiple of 8 of at least 64")
    return size


def add_run_options(p, part):
    p.add_argument("--model", required=part != "all",
                   help="model folder written by make-model" +
                   (" (default: bench/.models/ARCH, made if missing)" if part == "all" else ""))
    p.add_argument("--size", type=size_arg, default=512,
                   help="square resolution in pixels, a multiple of 8 (default 512)")
    p.add_argument("--runs", type=int, default=3, help="timed frames (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed frames first (default 1)")
    p.add_argument("--threads", type=int, default=2, help="compute threads (default 2)")
    p.add_argument("--vae", choices=("taesd", "kl"), default="taesd",
                   help="taesd: the model's taesd/ (AutoencoderTiny) everywhere; kl: its vae/")
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--image", default=DEFAULT_IMAGE, help="input image (default: %(default)s)")
    if part != "all":
        p.add_argument("--work", default=os.path.join(HERE, ".results", "work"),
                       help="folder for the sized input and streamdiff's frames")
        p.add_argument("--out", required=True, help="JSON file for the results")
    if part in ("all", "streamdiffusion", "streamdiff"):
        p.add_argument("--t-index", type=int_list, default=[35],
                       help="StreamDiffusion t_index_list over 50 LCM steps (default 35)")
    if part in ("all", "diffusers"):
        p.add_argument("--steps", type=int_list, default=[1, 10],
                       help="diffusers denoising steps to time (default 1,10)")
        p.add_argument("--torch-dtypes", type=dtype_list(("fp32", "bf16")),
                       help="diffusers dtypes (default fp32,bf16 where torch reports AVX-512, "
                       "else fp32: on AVX2 torch's bf16 is emulated, 133 s per 256^2 frame "
                       "against 3.9 s in fp32)")
    if part in ("all", "streamdiff"):
        p.add_argument("--sd-dtypes", type=dtype_list(("auto", "f32", "bf16")),
                       default=["auto", "f32"],
                       help="streamdiff --dtype values (default auto,f32; auto = the default)")
    if part in ("all", "sdcpp"):
        p.add_argument("--sdcpp", required=part == "sdcpp", metavar="PATH",
                       help="a stable-diffusion.cpp sd-cli binary you built: time it too, on "
                       "the same weights as one single-file checkpoint")
    if part in ("all", "streamdiff"):
        p.add_argument("--bin", default=os.path.join(ROOT, "build", "release", "streamdiff"),
                       help="streamdiff binary (default: %(default)s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (head -80 bench/baseline.py).")
    sub = ap.add_subparsers(dest="part", required=True)
    mk = sub.add_parser("make-model", help="write a random-weight diffusers model folder")
    mk.add_argument("dir")
    mk.add_argument("--arch", choices=sorted(ARCHS), default="sd-turbo")
    mk.add_argument("--seed", type=int, default=0)
    for part, what in (("diffusers", "time diffusers' AutoPipelineForImage2Image (tools/.venv)"),
                       ("streamdiffusion", "time the original StreamDiffusion (tools/.venv-sd)"),
                       ("streamdiff", "time the streamdiff img2img CLI"),
                       ("sdcpp", "time a stable-diffusion.cpp sd-cli (--sdcpp PATH)"),
                       ("all", "make the model if needed, run all three, print the table")):
        add_run_options(sub.add_parser(part, help=what), part)
    a = sub.choices["all"]
    a.add_argument("--arch", choices=sorted(ARCHS), default="sd-turbo")
    a.add_argument("--parts", type=lambda s: s.split(","),
                   default=["diffusers", "streamdiffusion", "streamdiff"])
    a.add_argument("--results-dir", help="default: bench/.results/<model folder name>_SIZE")
    a.add_argument("--python", default=os.path.join(ROOT, "tools", ".venv", "bin", "python"),
                   help="interpreter with diffusers 0.42 (default: %(default)s)")
    a.add_argument("--python-sd", default=os.path.join(ROOT, "tools", ".venv-sd", "bin",
                                                       "python"),
                   help="interpreter with streamdiffusion 0.1.1 (default: %(default)s)")
    tb = sub.add_parser("table", help="print the table of result JSON files")
    tb.add_argument("results", nargs="+")
    args = ap.parse_args()
    if getattr(args, "model", None):
        args.model = os.path.abspath(args.model)
    if getattr(args, "runs", 1) < 1 or getattr(args, "warmup", 1) < 1:
        ap.error("--runs and --warmup must be at least 1 (streamdiff's first frame is untimed)")
    if args.part == "all":
        unknown = set(args.parts) - {"diffusers", "streamdiffusion", "streamdiff", "sdcpp"}
        if unknown:
            ap.error(f"--parts: unknown {sorted(unknown)}")
    {"make-model": make_model, "diffusers": run_diffusers,
     "streamdiffusion": run_streamdiffusion, "streamdiff": run_streamdiff, "sdcpp": run_sdcpp,
     "table": print_table, "all": run_all}[args.part](args)


if __name__ == "__main__":
    main()
