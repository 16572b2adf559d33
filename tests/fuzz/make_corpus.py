#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<name>/.

A few valid and a few broken inputs per target, each at most 16 KiB. Run from anywhere:
    python3 tests/fuzz/make_corpus.py
JPEG seeds are made with ffmpeg when it is installed (otherwise they are left as they are).
"""
import json
import os
import shutil
import struct
import subprocess
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SEP = b"\n----\n"  # kPartSeparator in fuzz_targets.h
LIMIT = 16 * 1024


def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    assert len(data) <= LIMIT, (target, name, len(data))
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def fixture(*parts):
    with open(os.path.join(FIXTURES, *parts), "rb") as f:
        return f.read()


# ---- safetensors -------------------------------------------------------------------------------
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "BOOL": 1}


def safetensors(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape)]; zero data, tiled in the given order."""
    header, offset = {}, 0
    for name, dtype, shape in tensors:
        n = SIZES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    # Non-zero data so that conversions see varied values.
    data = bytes((i * 37 + 11) & 0xFF for i in range(offset))
    return struct.pack("<Q", len(text)) + text + data


def make_safetensors():
    t = "safetensors"
    put(t, "f32_f16_bf16", safetensors([("a", "F32", [2, 3]), ("b", "F16", [4]), ("c", "BF16", [1, 1, 2])]))
    put(t, "metadata", safetensors([("w", "F32", [1])], {"format": "pt", "note": "x"}))
    put(t, "unpadded_odd", safetensors([("u8", "U8", [3]), ("f", "F32", [2])], pad=False))
    put(t, "ints_and_bool", safetensors([("i", "I64", [2]), ("m", "BOOL", [3]), ("z", "F16", [0, 5])]))
    put(t, "empty", safetensors([]))
    good = safetensors([("a", "F32", [2])])
    put(t, "truncated", good[:-3])
    put(t, "header_too_long", struct.pack("<Q", 1 << 40) + b"{}")
    put(t, "bad_dtype", good.replace(b"F32", b"F99"))
    put(t, "overlap", struct.pack("<Q", 98) + b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
        b'"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}' + b"\0" * 3)
    put(t, "not_json", struct.pack("<Q", 4) + b"{{{{")


def make_safetensors_index():
    t = "safetensors_index"
    ok = {"metadata": {"total_size": 16}, "weight_map": {"x": "a.safetensors", "y": "a.safetensors",
                                                         "z": "b.safetensors"}}
    put(t, "valid", json.dumps(ok, indent=2))
    put(t, "missing_tensor", json.dumps({"weight_map": {"x": "a.safetensors", "z": "b.safetensors"}}))
    put(t, "wrong_shard", json.dumps({"weight_map": {"x": "b.safetensors", "y": "a.safetensors",
                                                     "z": "b.safetensors"}}))
    put(t, "path_escape", json.dumps({"weight_map": {"x": "../a.safetensors"}}))
    put(t, "absent_shard", json.dumps({"weight_map": {"x": "c.safetensors"}}))
    put(t, "duplicate_key", '{"weight_map": {"x": "a.safetensors", "x": "a.safetensors"}}')
    put(t, "not_object", "[1, 2, 3]")
    put(t, "empty_map", '{"weight_map": {}}')


# ---- configs -----------------------------------------------------------------------------------
def make_model_config():
    t = "model_config"
    for name, path in [("unet_sd1", ("unet", "sd1_tiny", "unet", "config.json")),
                       ("unet_sd2", ("unet", "sd2_tiny", "unet", "config.json")),
                       ("vae", ("vae", "tiny", "vae", "config.json")),
                       ("taesd", ("taesd", "tiny", "config.json")),
                       ("taesd_full", ("taesd", "full", "config.json")),
                       ("clip_text", ("clip_text", "tiny", "text_encoder", "config.json"))]:
        put(t, name, fixture(*path))
    put(t, "scheduler", json.dumps({"_class_name": "LCMScheduler", "num_train_timesteps": 1000,
                                    "beta_start": 0.00085, "beta_end": 0.012,
                                    "beta_schedule": "scaled_linear", "original_inference_steps": 50,
                                    "timestep_scaling": 10.0, "prediction_type": "epsilon"}))
    put(t, "wrong_types", '{"block_out_channels": "wide", "layers_per_block": 2.5, '
        '"hidden_act": 3, "num_train_timesteps": -1}')
    put(t, "per_block_lists", '{"attention_head_dim": [5, 10, 20, 20], "layers_per_block": [1, 2], '
        '"transformer_layers_per_block": 1, "block_out_channels": [32, 64]}')
    put(t, "not_object", '"config"')
    put(t, "broken", '{"in_channels": 4,')


# ---- LoRA and LDM checkpoints ------------------------------------------------------------------
def make_lora():
    t = "lora"
    mod = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    put(t, "diffusers", safetensors([(mod + ".lora_A.weight", "F16", [2, 8]),
                                     (mod + ".lora_B.weight", "F16", [8, 2])]))
    put(t, "diffusers_old", safetensors([(mod + ".lora.down.weight", "F32", [1, 4]),
                                         (mod + ".lora.up.weight", "F32", [4, 1]),
                                         (mod + ".alpha", "F32", [])]))
    meta = {"lora_adapter_metadata": json.dumps({"unet.lora_alpha": 4, "unet.r": 2,
                                                 "unet.use_rslora": True,
                                                 "unet.alpha_pattern": {"to_q": 8}})}
    put(t, "peft_metadata", safetensors([(mod + ".lora_A.weight", "F32", [2, 4]),
                                         (mod + ".lora_B.weight", "F32", [4, 2])], meta))
    k = "lora_unet_down_blocks_0_attentions_0_proj_in"
    put(t, "kohya", safetensors([(k + ".lora_down.weight", "F16", [2, 4, 1, 1]),
                                 (k + ".lora_up.weight", "F16", [4, 2, 1, 1]), (k + ".alpha", "F32", [])]))
    te = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    put(t, "kohya_te", safetensors([(te + ".lora_down.weight", "BF16", [1, 4]),
                                    (te + ".lora_up.weight", "BF16", [4, 1])]))
    put(t, "down_without_up", safetensors([(mod + ".lora_A.weight", "F32", [2, 4])]))
    put(t, "dora", safetensors([(mod + ".dora_scale", "F32", [4])]))
    put(t, "bad_metadata", safetensors([(mod + ".lora_A.weight", "F32", [1, 1]),
                                        (mod + ".lora_B.weight", "F32", [1, 1])],
                                       {"lora_adapter_metadata": "{not json"}))
    put(t, "pickle", b"PK\x03\x04" + b"\0" * 60)


def make_ldm_checkpoint():
    t = "ldm_checkpoint"
    u = "model.diffusion_model."
    blk = u + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    sd1 = [(u + "input_blocks.0.0.weight", "F16", [320, 4, 1, 1]), (blk, "F16", [1, 768]),
           (u + "input_blocks.1.1.proj_in.weight", "F16", [1, 1, 1, 1]),
           ("first_stage_model.encoder.conv_in.weight", "F16", [128, 3, 3, 3]),
           ("first_stage_model.encoder.down.3.block.0.conv1.weight", "F16", [1]),
           ("cond_stage_model.transformer.text_model.final_layer_norm.weight", "F16", [1])]
    put(t, "sd1_like", safetensors(sd1))
    sd2 = [(u + "input_blocks.0.0.weight", "F16", [8, 4, 3, 3]), (blk, "F16", [1, 1024]),
           (u + "input_blocks.1.1.proj_in.weight", "F16", [1, 1]),
           ("cond_stage_model.model.ln_final.weight", "F16", [1]), ("alphas_cumprod", "F32", [2])]
    put(t, "sd2_small", safetensors(sd2))
    put(t, "sdxl", safetensors([("conditioner.embedders.0.x", "F16", [1]),
                                (u + "input_blocks.0.0.weight", "F16", [1, 4, 1, 1])]))
    put(t, "inpainting", safetensors([(u + "input_blocks.0.0.weight", "F16", [2, 9, 1, 1])]))
    put(t, "no_unet", safetensors([("first_stage_model.x", "F32", [1])]))
    put(t, "pickle_stream", b"\x80\x02}q\x00." + b"\0" * 16)
    put(t, "zip", b"PK\x03\x04" + b"\0" * 26)


# ---- tokenizer ---------------------------------------------------------------------------------
def make_clip_tokenizer():
    t = "clip_tokenizer"
    for i, text in enumerate(["a photo of a cat", "A Portrait, oil on canvas!!! <|endoftext|> by someone's",
                              "東京の夜景 café naïve ΣΑΣ", "emoji 😀👍🏽 and\ttabs\r\nnewlines",
                              "<|startoftext|>hello<|endoftext|>", "x" * 300, "1234 3.14 don't we'll"]):
        put(t, "text_%d" % i, text)
    put(t, "invalid_utf8", b"ab\xff\xfe cd \xc3\x28 \xe2\x82 \xf0\x9f\x98")
    put(t, "controls", b"\x00\x01\x7f\xc2\x80 zero\xe2\x80\x8bwidth \xef\xbf\xbd")


def make_clip_tokenizer_folder():
    t = "clip_tokenizer_folder"
    vocab = {"a": 0, "b": 1, "c": 2, "a</w>": 3, "b</w>": 4, "c</w>": 5, "ab</w>": 6, "ab": 7,
             "<|startoftext|>": 8, "<|endoftext|>": 9, "!": 10}
    merges = "#version: 0.2\na b</w>\na b\n"
    config = fixture("tokenizer", "sd15", "tokenizer_config.json")
    smap = fixture("tokenizer", "sd15", "special_tokens_map.json")
    v = json.dumps(vocab).encode()
    put(t, "full", SEP.join([v, merges.encode(), config, smap, b"ab abc cab!"]))
    put(t, "vocab_merges_only", SEP.join([v, merges.encode()]))
    added = json.dumps({"added_tokens_decoder": {"9": {"content": "<|endoftext|>", "lstrip": False,
                                                       "rstrip": False},
                                                 "11": {"content": "<cat>", "lstrip": True}}})
    put(t, "added_tokens", SEP.join([v, merges.encode(), added.encode(), b"", b"a <cat> b"]))
    put(t, "sd21_config", SEP.join([v, merges.encode(), fixture("tokenizer", "sd21", "tokenizer_config.json")]))
    put(t, "bad_id", SEP.join([b'{"a": -1}', merges.encode()]))
    put(t, "bad_merges", SEP.join([v, b"#v\nonlyone\na b c\n"]))
    put(t, "no_merges", v)


# ---- images ------------------------------------------------------------------------------------
def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, depth, color, rows, interlace=0, extra=b""):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace)
    raw = b"".join(b"\0" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra +
            png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def make_image_png():
    t = "image_png"
    put(t, "rgb8_4x3", png(4, 3, 8, 2, [bytes(range(r * 12, r * 12 + 12)) for r in range(3)]))
    put(t, "gray1_9x2", png(9, 2, 1, 0, [b"\xaa\x80", b"\x55\x00"]))
    put(t, "gray_alpha16", png(2, 2, 16, 4, [b"\x12\x34\xff\xff" * 2, b"\xab\xcd\x00\x00" * 2]))
    put(t, "rgba8", png(2, 1, 8, 6, [b"\x10\x20\x30\x40\x50\x60\x70\x80"]))
    put(t, "palette_trns", png(3, 1, 8, 3, [b"\x00\x01\x02"],
                               extra=png_chunk(b"PLTE", b"\xff\x00\x00\x00\xff\x00\x00\x00\xff") +
                               png_chunk(b"tRNS", b"\x80")))
    put(t, "interlaced_1x1", png(1, 1, 8, 2, [b"\x01\x02\x03"], interlace=1))
    cover = fixture("image", "input_cover_96x64_pil_bilinear.png")
    put(t, "cover_96x64", cover)
    good = png(2, 2, 8, 2, [b"\x00" * 6, b"\xff" * 6])
    put(t, "truncated", good[:40])
    put(t, "bad_crc", good[:29] + b"\0\0\0\0" + good[33:])
    put(t, "huge_header", png(100000, 1, 8, 2, [b"\0" * 3]))


def ffmpeg_seed(target, name, ext, source, frames, *args):
    """Encodes `frames` frames of the lavfi `source` with ffmpeg `args` into a .`ext` file and
    puts its bytes in the corpus of `target` as `name`; returns them."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, name + "." + ext)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source,
                        "-frames:v", str(frames), *args, out], check=True)
        with open(out, "rb") as f:
            data = f.read()
    put(target, name, data)
    return data


def make_image_jpeg():
    t = "image_jpeg"
    if not shutil.which("ffmpeg"):
        return
    def ffmpeg(name, source, *args):
        ffmpeg_seed(t, name, "jpg", source, 1, *args)
    ffmpeg("yuv420_16x8", "testsrc=size=16x8", "-pix_fmt", "yuvj420p", "-q:v", "5")
    ffmpeg("yuv444_9x7", "testsrc=size=9x7", "-pix_fmt", "yuvj444p", "-q:v", "2")
    ffmpeg("gray_8x8", "testsrc=size=8x8", "-pix_fmt", "gray", "-q:v", "3")
    ffmpeg("yuv422_24x16", "testsrc2=size=24x16", "-pix_fmt", "yuvj422p", "-q:v", "8")
    with open(os.path.join(CORPUS, t, "yuv420_16x8"), "rb") as f:
        good = f.read()
    put(t, "truncated", good[: len(good) // 2])
    put(t, "soi_only", b"\xff\xd8\xff\xd9")
    put(t, "garbage_after_soi", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(64)))


# ---- server ------------------------------------------------------------------------------------
def make_serve_params():
    t = "serve_params"
    put(t, "demo", json.dumps({"prompt": "a cat", "width": 512, "height": 512, "guidance_scale": 1.2,
                               "delta": 0.5, "seed": 2, "t_index_list": [20, 35],
                               "similarity_filter": True, "similarity_threshold": 0.98}))
    put(t, "blend", json.dumps({"prompt_blend": [["a cat", 0.3], ["a dog", 0.7]], "blend": "slerp",
                                "negative_prompt": "blurry"}))
    put(t, "empty_object", "{}")
    put(t, "next_frame", '{"status": "next_frame"}')
    put(t, "bad_types", '{"width": "wide", "seed": -1, "t_index_list": [99, -1], "blend": "cubic"}')
    put(t, "huge_numbers", '{"width": 1e308, "seed": 18446744073709551616, "delta": NaN}')
    put(t, "not_object", '[["a", 1]]')
    put(t, "broken", '{"prompt": "unterminated')


def make_serve_http():
    t = "serve_http"
    uuid = "123e4567-e89b-12d3-a456-426614174000"
    put(t, "ws_token", "/api/ws/%s?token=s3cret-token&x=%%20y+z\nHost: localhost:7860\n"
        "Origin: http://localhost:7860" % uuid)
    put(t, "bearer", "/api/settings\nAuthorization: Bearer s3cret-token")
    put(t, "cookie", "/view/%s\nCookie: a=b; streamdiff_token=s3cret%%2Dtoken\n"
        "Origin: https://evil.example" % uuid)
    put(t, "bad_percent", "/api/stream/xyz?%zz=%4&%%=%41%4a&&=&token")
    put(t, "empty", "")


def make_serve_ws():
    t = "serve_ws"
    with open(os.path.join(CORPUS, "image_jpeg", "yuv420_16x8"), "rb") as f:
        jpeg = f.read()
    frame = [b'T{"status":"next_frame"}', b'T{"prompt":"a cat","width":64,"height":64}', b"B" + jpeg]
    put(t, "two_frames", SEP.join(frame + frame))
    put(t, "no_camera_yet", SEP.join(frame[:2] + [b"B"] + frame))
    put(t, "binary_first", SEP.join([b"B" + jpeg] + frame))
    put(t, "not_json", SEP.join([b"T{not json", frame[0]]))
    put(t, "bad_param", SEP.join([frame[0], b'T{"guidance_scale":"high"}', b"B" + jpeg]))
    put(t, "text_for_image", SEP.join(frame[:2] + [b'T{"status":"next_frame"}']))
    put(t, "utf8_cut", SEP.join([b"Ta" + "é".encode() * 30]))  # not JSON, cut inside a character
    put(t, "bad_jpeg", SEP.join(frame[:2] + [b"B\xff\xd8\xff\xe0garbage"]))


def make_serve_routes():
    t = "serve_routes"
    for name, request in [
            ("settings", "GET /api/settings"), ("queue", "GET /api/queue"),
            ("health", "GET /api/health"), ("stats", "GET /api/stats"),
            ("metrics", "GET /metrics"), ("page", "GET /"), ("head", "HEAD /api/settings"),
            ("view", "GET /view/00000000-0000-4000-8000-000000000001"),
            ("view_bad", "GET /view/not-a-uuid"), ("missing", "GET /nothing/here?a=%zz&b"),
            ("delete", "DELETE /api/settings"),
            ("predict_get", "GET /api/predict"),
            ("token", "GET /api/settings?token=x\nAuthorization: Bearer y\nCookie: streamdiff_token=z"),
            ("origin", "GET /api/queue\nOrigin: http://evil.example\nHost: 127.0.0.1:7860")]:
        put(t, name, request)
    put(t, "predict_not_json", "POST /api/predict" + SEP.decode() + "{not json")
    put(t, "predict_array", "POST /api/predict" + SEP.decode() + "[1,2]")
    put(t, "bytes", b"GET /\xff\xfe?\xc3=\xa9")


def make_video():
    t = "video"
    if not shutil.which("ffmpeg"):
        return
    def ffmpeg(name, ext, *args):
        return ffmpeg_seed(t, name, ext, "testsrc=size=16x16:rate=4", 3, *args)
    mp4 = ffmpeg("h264_mp4", "mp4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "2")
    put(t, "h264_mp4_truncated", mp4[: len(mp4) * 2 // 3])
    ffmpeg("mjpeg_avi", "avi", "-c:v", "mjpeg", "-q:v", "8")
    ffmpeg("y4m", "y4m", "-pix_fmt", "yuv420p")
    ffmpeg("gif", "gif")
    ffmpeg("mpeg4_mkv", "mkv", "-c:v", "mpeg4", "-q:v", "10")
    put(t, "not_video", b"hello, I am not a video file")


# ---- Hub ---------------------------------------------------------------------------------------
def make_hub_listing():
    t = "hub_listing"
    sha = "0123456789abcdef0123456789abcdef01234567"
    lfs = {"sha256": "a" * 64, "size": 10}

    def listing(files):
        return json.dumps({"sha": sha, "siblings": [
            {"rfilename": f, "size": 10, "lfs": lfs} if f.endswith(".safetensors") else {"rfilename": f}
            for f in files]}).encode()
    diffusers = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                 "unet/diffusion_pytorch_model.fp16.safetensors", "vae/config.json",
                 "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
                 "text_encoder/model.fp16-00001-of-00002.safetensors",
                 "text_encoder/model.fp16-00002-of-00002.safetensors",
                 "text_encoder/model.safetensors.index.fp16.json", "tokenizer/vocab.json",
                 "tokenizer/merges.txt", "scheduler/scheduler_config.json", "README.md"]
    index = fixture("tiny_sd", "model_index.json")
    put(t, "diffusers", SEP.join([listing(diffusers), index]))
    put(t, "component", listing(["config.json", "diffusion_pytorch_model.safetensors"]))
    put(t, "single_file", listing(["v1-5.safetensors", "README.md"]))
    put(t, "globs", SEP.join([listing(diffusers), b"", b"unet/*\n*.json"]))
    put(t, "two_files", listing(["a.safetensors", "b.safetensors"]))
    put(t, "escape", listing(["../etc/passwd", "a/./b"]))
    put(t, "bad_sha", json.dumps({"sha": "xyz", "siblings": []}))
    put(t, "bad_component", SEP.join([listing(diffusers), b'{"../x": ["a", "b"], "unet": 3}']))


def make_hub_names():
    t = "hub_names"
    put(t, "valid", "stabilityai/sd-turbo\nmain\nW/\"abc123\"\nmodel.fp16.safetensors\n"
        "refs/pr/1\n0123456789abcdef0123456789abcdef01234567")
    put(t, "invalid", "org/../x\n../main\n\"\"\n.git\n-a--b\nname.git\nrefs//x\nmodel.safetensors.index.json")
    put(t, "long", "a" * 120 + "/" + "b" * 10 + "\n" + "x/" * 50)


def main():
    for make in [make_safetensors, make_safetensors_index, make_model_config, make_lora,
                 make_ldm_checkpoint, make_clip_tokenizer, make_clip_tokenizer_folder,
                 make_image_png, make_image_jpeg, make_serve_params, make_serve_http,
                 make_serve_ws, make_serve_routes, make_video,
                 make_hub_listing, make_hub_names]:
        make()


if __name__ == "__main__":
    main()
