#!/usr/bin/env python3
"""Regenerates the CLIP text encoder fixtures under tests/fixtures/clip_text/ from transformers'
CLIPTextModel (fp32, CPU, eager attention). Run with the project's venv:

    tools/.venv/bin/python tools/make_text_encoder_fixtures.py [tiny] [vit_l14] [vit_h14]

Weights are deterministic functions of the parameter names (tools/hash_random.py, the twin of
src/core/hash_random.h; the per-parameter scales are those of ClipTextModel::hash_param in
src/models/clip_text.h), so the C++ tests rebuild the full-size models from nothing and only
the reference outputs are committed.

  tiny/text_encoder/{config.json, model.safetensors}   a small config (gelu, 2 layers, width 128,
                                                        2 heads), fp16 weights, diffusers layout
  tiny/sd2_single_file.safetensors                      the same weights with SD 2.x single-file
                                                        OpenCLIP names (fused in_proj, 3 resblocks:
                                                        one extra that must not be used)
  tiny/reference.safetensors                            2 rows of random token ids
  vit_l14.safetensors, vit_h14.safetensors              full-size references for one real prompt

Each reference file holds last_hidden_state, clip_skip_1 and clip_skip_2 ([batch, 77, width],
f32; clip_skip_k = final_layer_norm(hidden_states[-(k + 1)]), as diffusers' encode_prompt) and
the token ids as JSON in the metadata key "input_ids" (and the prompt in "prompt").
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hash_random import clip_hash_param  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "clip_text")
TOKENIZERS = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

CONFIGS = {
    "tiny": dict(vocab_size=500, hidden_size=128, intermediate_size=200, num_hidden_layers=2,
                 num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu",
                 layer_norm_eps=1e-5),
    # SD 1.x: openai/clip-vit-large-patch14's text tower.
    "vit_l14": dict(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                    num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                    hidden_act="quick_gelu", layer_norm_eps=1e-5),
    # SD 2.x / sd-turbo: OpenCLIP ViT-H/14, 23 of its 24 layers (diffusers' config).
    "vit_h14": dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096,
                    num_hidden_layers=23, num_attention_heads=16, max_position_embeddings=77,
                    hidden_act="gelu", layer_norm_eps=1e-5),
}
PROMPTS = {
    "vit_l14": ("sd15", "a photo of an astronaut riding a horse on mars, highly detailed"),
    "vit_h14": ("sd21", "portrait of a cat wearing a tiny hat! oil painting, 4k"),
}


def hash_param(name, shape):
    """Same rule as ClipTextModel::hash_param, as a torch tensor."""
    return torch.from_numpy(clip_hash_param(name, shape))


def file_names(model):
    """Module name -> name in diffusers' text_encoder/model.safetensors ("text_model." first;
    transformers 5 dropped the wrapper module but keeps loading and saving that layout)."""
    return {k: k if k.startswith("text_model.") else "text_model." + k
            for k in model.state_dict() if "position_ids" not in k}


def build_model(cfg):
    from transformers import CLIPTextConfig, CLIPTextModel

    tokens = {}
    if cfg["vocab_size"] < 49408:
        v = cfg["vocab_size"]
        tokens = dict(bos_token_id=v - 2, eos_token_id=v - 1, pad_token_id=v - 1)
    config = CLIPTextConfig(**cfg, **tokens, attn_implementation="eager")
    model = CLIPTextModel(config).eval()
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    state = {k: hash_param(f, shapes[k]) for k, f in file_names(model).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing), (missing, unexpected)
    return model


def final_layer_norm(model):
    return getattr(model, "text_model", model).final_layer_norm


def run(model, ids):
    """last_hidden_state, clip_skip_1, clip_skip_2 for the id rows."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids, dtype=torch.long), output_hidden_states=True)
        final_ln = final_layer_norm(model)
        # hidden_states: the embeddings, then each layer's output (before the final norm).
        assert len(out.hidden_states) == model.config.num_hidden_layers + 1
        assert torch.equal(final_ln(out.hidden_states[-1]), out.last_hidden_state)
        return {
            "last_hidden_state": out.last_hidden_state.float().contiguous(),
            "clip_skip_1": final_ln(out.hidden_states[-2]).contiguous(),
            "clip_skip_2": final_ln(out.hidden_states[-3]).contiguous(),
        }


_DTYPES = {torch.float32: ("F32", "<f4"), torch.float16: ("F16", "<f2")}


def save_safetensors(tensors, path, metadata=None):
    """Canonical safetensors writer (sorted names and metadata keys) so reruns are
    byte-identical."""
    header = {"__metadata__": dict(sorted((metadata or {}).items()))} if metadata else {}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        tag, np_type = _DTYPES[t.dtype]
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
    print(f"  {os.path.relpath(path, ROOT)}  {os.path.getsize(path)} bytes")


def openclip_state(state, cfg, extra_layers):
    """transformers names -> SD 2.x single-file (OpenCLIP) names, q/k/v fused into in_proj."""
    p = "cond_stage_model.model."
    out = {
        p + "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
        p + "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
        p + "ln_final.weight": state["text_model.final_layer_norm.weight"],
        p + "ln_final.bias": state["text_model.final_layer_norm.bias"],
    }
    n = cfg["num_hidden_layers"]
    for i in range(n + extra_layers):
        src = f"text_model.encoder.layers.{min(i, n - 1)}."
        dst = f"{p}transformer.resblocks.{i}."

        def get(name):
            t = state[src + name]
            # The unused extra resblock gets different values, so using it would show.
            return t if i < n else (t * -1.5).to(t.dtype)

        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat(
                [get(f"self_attn.{x}_proj.{kind}") for x in "qkv"], 0)
            out[dst + f"attn.out_proj.{kind}"] = get(f"self_attn.out_proj.{kind}")
            out[dst + f"ln_1.{kind}"] = get(f"layer_norm1.{kind}")
            out[dst + f"ln_2.{kind}"] = get(f"layer_norm2.{kind}")
            out[dst + f"mlp.c_fc.{kind}"] = get(f"mlp.fc1.{kind}")
            out[dst + f"mlp.c_proj.{kind}"] = get(f"mlp.fc2.{kind}")
    # Other tensors an SD 2.x file has next to the text tower; the loader must ignore them.
    out[p + "text_projection"] = torch.zeros(4, 4, dtype=torch.float16)
    out[p + "logit_scale"] = torch.zeros(1, dtype=torch.float16)
    return out


def make_tiny():
    cfg = CONFIGS["tiny"]
    model = build_model(cfg)
    with torch.no_grad():  # the reference runs on the fp16-rounded weights the files hold
        for t in model.parameters():
            t.copy_(t.half().float())
    state = {f: model.state_dict()[k].half() for k, f in file_names(model).items()}
    folder = os.path.join(OUT, "tiny", "text_encoder")
    save_safetensors(state, os.path.join(folder, "model.safetensors"))
    v = cfg["vocab_size"]
    config = dict(architectures=["CLIPTextModel"], model_type="clip_text_model",
                  torch_dtype="float16", bos_token_id=v - 2, eos_token_id=v - 1,
                  pad_token_id=v - 1, **cfg)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    save_safetensors(openclip_state(state, cfg, 1),
                     os.path.join(OUT, "tiny", "sd2_single_file.safetensors"))

    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, cfg["vocab_size"], (2, 77), generator=gen)
    ids[1, 20:] = cfg["vocab_size"] - 1  # a short prompt followed by padding
    ids = ids.tolist()
    refs = run(model, ids)
    print(f"  tiny: last_hidden_state std {refs['last_hidden_state'].std():.3f}")
    save_safetensors(refs, os.path.join(OUT, "tiny", "reference.safetensors"),
                     {"input_ids": json.dumps(ids)})


def make_full(name):
    from transformers import CLIPTokenizer

    tokenizer_name, prompt = PROMPTS[name]
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(TOKENIZERS, tokenizer_name))
    ids = [tokenizer(prompt, padding="max_length", max_length=77, truncation=True).input_ids]
    model = build_model(CONFIGS[name])
    refs = run(model, ids)
    for k, v in refs.items():
        print(f"  {name}: {k} std {v.std():.3f}")
    save_safetensors(refs, os.path.join(OUT, f"{name}.safetensors"),
                     {"input_ids": json.dumps(ids), "prompt": prompt, "tokenizer": tokenizer_name})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("which", nargs="*", default=["tiny", "vit_l14", "vit_h14"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for which in args.which:
        print(which)
        make_tiny() if which == "tiny" else make_full(which)


if __name__ == "__main__":
    main()
