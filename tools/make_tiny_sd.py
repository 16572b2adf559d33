"""Writes tests/fixtures/tiny_sd: a complete tiny SD 1.x-like diffusers model folder that the
examples, the Python package's tests and the CLI tests run on (no reference library needed:
numpy only).

- unet/: a link to ../stream/unet (the tiny UNet of the pipeline fixtures: channels 8/16/16,
  cross_attention_dim 32).
- text_encoder/: CLIPTextModel (vocab 49408, width 32, 2 layers, 2 heads, quick_gelu) with the
  deterministic hash-random weights of ClipTextModel::hash_param (src/models/clip_text.cpp;
  tools/hash_random.py is its Python twin), stored as fp16 to keep the file small.
- no tokenizer/: the engine's built-in CLIP vocabulary (the same ids as tokenizer/sd15).
- no vae/: use it with the tiny TAESD (tests/fixtures/taesd/tiny).

Run: python3 tools/make_tiny_sd.py (reruns give the same bytes).
"""

import json
import os
import struct

import numpy as np

from hash_random import clip_hash_param

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
OUT = os.path.join(ROOT, "tiny_sd")

CONFIG = {
    "architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
    "vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-05, "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407,
}


def write_safetensors(path, tensors, metadata):
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name in sorted(tensors):
        data = tensors[name].astype(np.float16).tobytes()
        header[name] = {"dtype": "F16", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def main():
    c = CONFIG
    w, inter = c["hidden_size"], c["intermediate_size"]
    t = {}
    t["text_model.embeddings.token_embedding.weight"] = (c["vocab_size"], w)
    t["text_model.embeddings.position_embedding.weight"] = (c["max_position_embeddings"], w)
    for i in range(c["num_hidden_layers"]):
        l = f"text_model.encoder.layers.{i}."
        for n in ("layer_norm1", "layer_norm2"):
            t[l + n + ".weight"] = (w,)
            t[l + n + ".bias"] = (w,)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t[l + "self_attn." + n + ".weight"] = (w, w)
            t[l + "self_attn." + n + ".bias"] = (w,)
        t[l + "mlp.fc1.weight"] = (inter, w)
        t[l + "mlp.fc1.bias"] = (inter,)
        t[l + "mlp.fc2.weight"] = (w, inter)
        t[l + "mlp.fc2.bias"] = (w,)
    t["text_model.final_layer_norm.weight"] = (w,)
    t["text_model.final_layer_norm.bias"] = (w,)
    tensors = {name: clip_hash_param(name, shape) for name, shape in t.items()}

    te = os.path.join(OUT, "text_encoder")
    os.makedirs(te, exist_ok=True)
    with open(os.path.join(te, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(te, "model.safetensors"), tensors,
                      {"format": "pt", "source": "tools/make_tiny_sd.py: hash-random weights"})
    with open(os.path.join(OUT, "model_index.json"), "w") as f:
        json.dump({"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.24.0",
                   "text_encoder": ["transformers", "CLIPTextModel"],
                   "unet": ["diffusers", "UNet2DConditionModel"]}, f, indent=2)
        f.write("\n")
    link = os.path.join(OUT, "unet")
    if not os.path.islink(link):
        os.symlink(os.path.join("..", "stream", "unet"), link)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
