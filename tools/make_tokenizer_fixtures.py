#!/usr/bin/env python3
"""Writes the CLIP tokenizer reference fixtures under tests/fixtures/tokenizer/:

  sd15/  a diffusers-style tokenizer folder (vocab.json, merges.txt, tokenizer_config.json,
         special_tokens_map.json) built from OpenAI's bpe_simple_vocab_16e6.txt.gz the way CLIP
         builds its vocabulary; pad token <|endoftext|> as in SD 1.x.
  sd21/  the same with pad token "!" as in SD 2.x / sd-turbo (vocab.json and merges.txt are
         symlinks to sd15's).
  corpus.jsonl  one prompt a line: "text" (or "bytes_hex" for invalid UTF-8, decoded by the
         reference with errors="replace"), and for each folder the ids diffusers gives the text
         encoder (`<name>`: 77 ids) and the untruncated ids without BOS/EOS (`<name>_raw`).

The reference is transformers' slow CLIPTokenizer from transformers 4.x (transformers 5 replaced
it by a tokenizers-backed class), without ftfy, so its BasicTokenizer cleanup path runs:
  python3 -m venv tools/.venv-tok && tools/.venv-tok/bin/pip install transformers==4.46.3
  tools/.venv-tok/bin/python tools/make_tokenizer_fixtures.py
"""
import gzip
import json
import os
import random
import sys

import transformers
from transformers import CLIPTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
BPE = os.environ.get("CLIP_BPE", os.path.join(ROOT, "data", "clip", "bpe_simple_vocab_16e6.txt.gz"))


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def added_token(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
            "rstrip": False, "single_word": False}


def write_folders():
    lines = gzip.open(BPE).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 == len(set(vocab))
    for name, pad in [("sd15", "<|endoftext|>"), ("sd21", "!")]:
        folder = os.path.join(OUT, name)
        os.makedirs(folder, exist_ok=True)
        if name == "sd15":
            with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
                json.dump({v: i for i, v in enumerate(vocab)}, f, ensure_ascii=False,
                          separators=(",", ":"))
            with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
                f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
        else:
            for fname in ("vocab.json", "merges.txt"):
                link = os.path.join(folder, fname)
                if os.path.lexists(link):
                    os.remove(link)
                os.symlink(os.path.join("..", "sd15", fname), link)
        config = {"add_prefix_space": False, "bos_token": added_token("<|startoftext|>"),
                  "do_lower_case": True, "eos_token": added_token("<|endoftext|>"),
                  "errors": "replace", "model_max_length": 77,
                  "name_or_path": "openai/clip-vit-large-patch14", "pad_token": pad,
                  "special_tokens_map_file": "./special_tokens_map.json",
                  "tokenizer_class": "CLIPTokenizer", "unk_token": added_token("<|endoftext|>")}
        special = {k: {kk: vv for kk, vv in added_token(v).items() if kk != "__type"}
                   for k, v in [("bos_token", "<|startoftext|>"), ("eos_token", "<|endoftext|>"),
                                ("unk_token", "<|endoftext|>")]}
        special["pad_token"] = pad
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump(config, f, indent=2)
        with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
            json.dump(special, f, indent=2)


SUBJECTS = ["a cat", "an astronaut riding a horse", "portrait of a woman", "a castle on a hill",
            "cyberpunk city street", "a bowl of ramen", "mountain lake at dawn", "an old fisherman",
            "a red sports car", "steampunk owl", "the Eiffel Tower", "a dragon", "a robot barista"]
STYLES = ["highly detailed", "8k", "trending on artstation", "by Greg Rutkowski",
          "studio ghibli style", "oil painting", "octane render", "cinematic lighting",
          "bokeh", "unreal engine 5", "masterpiece", "best quality", "photorealistic",
          "35mm film", "f/1.8", "sharp focus", "volumetric fog", "golden hour"]

HANDWRITTEN = [
    "", " ", "   ", "\t", "\n", "\r\n", " \t \n ", "\u00a0", "\u3000", "\u2028", "\u200b",
    "a", "A", "!", "!!", "!!!", "?!", "...", "a!b", "hello!!! world!", "!a!", "wow! amazing!!",
    "a photo of a cat", "A Photo Of A CAT", "a photo of a cat.", "a  photo\tof\na\r\ncat",
    "(masterpiece:1.2), best quality, (ultra detailed:1.4), [blurry], ((eyes))",
    "(((sharp))) [[[soft]]] {curly} <angle> |pipe|", "a (red:0.8) and (blue:1.3) ball",
    "cat:dog::bird:::fish", "1girl, solo, looking at viewer, smile, 2boys",
    "photo, 4k, 8K, 1080p, 16:9, 3.14159, 1,000,000, 2024-05-17, 12:30pm, #1, 100%",
    "ISO 100, 1/250s, f/2.8, 85mm", "x1.5 x2 x10 2x 10x", "0123456789", "1e-5 -3 +4 ~5",
    "don't can't won't it's we're they've I'm you'll she'd", "DON'T CAN'T IT'S WE'RE I'M",
    "rock'n'roll o'clock 'quoted' ''double'' '''triple'''", "'s 't 're 've 'm 'll 'd",
    "the cat's toy", "James' book", "it’s a curly apostrophe", "“smart quotes” ‘single’",
    "https://example.com/path?query=1&x=y#frag", "www.example.org", "user@example.com",
    "a &amp; b &lt;tag&gt; &quot;q&quot; &#39; &nbsp;", "<b>bold</b> <i>it</i>",
    "C:\\Users\\me\\file.png", "/usr/bin/env python3", "snake_case and kebab-case and CamelCase",
    "hashtag #sunset #nofilter @someone", "$100 €50 £20 ¥1000 ₿", "50% off!!!",
    "----- ===== _____ ~~~~~ ***** +++++", "-_-  ^_^  o_O  :)  :-(  <3  xD",
    "emoji 😀 🎨 🐱‍👤 👩🏽‍🚀 ❤️ 🇯🇵 ✨", "🔥🔥🔥", "😀😀 😀", "☕️ ☀ ★ ☆ ♥ ♪",
    "日本の桜の木", "一只猫在草地上", "中文和English混合", "한국어 텍스트 서울", "ひらがな カタカナ",
    "Привет мир", "Γειά σου Κόσμε", "ΟΔΟΣ", "ΣΊΣΥΦΟΣ", "Σ", "ΑΣ ΣΑ Α.Σ ΑΣ.", "ὈΔΥΣΣΕΎΣ",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Tiếng Việt có dấu",
    "café naïve résumé façade jalapeño Ångström", "cafe\u0301 nai\u0308ve", "e\u0301\u0301",
    "\u0301start", "A\u030a", "ﬁ ﬂ ﬀ ligatures", "Ⅻ ⅻ ① ⑽ ²³ ½ ¼", "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３",
    "İstanbul ıi İI", "straße STRASSE ẞ", "ǅ ǆ Ǆ", "ſtraße 'ſ", "Ω Ω K K Å Å",
    "\u1100\u1161\u11a8 \u1100\u1161", "ᄀ ᅡ ᆨ", "\u0345 α\u0345 ᾳ ᾼ", "\u0130\u0307",
    "tab\there", "nul\x00here", "bell\x07 esc\x1b del\x7f", "c1\x85\x9f", "soft\u00adhyphen",
    "zero\u200bwidth\u200cjoin\u200d", "bidi\u202etxet\u202c", "bom\ufeffhere", "\ufffd replacement",
    "private\ue000use", "unassigned\u0378\U0001fbff", "line\u2028sep\u2029para", "vt\x0bff\x0c",
    "<|startoftext|>", "<|endoftext|>", "a<|endoftext|>b", "!!<|endoftext|>x", "!!<|ENDOFTEXT|>x",
    "<|startoftext|>cat<|endoftext|>", "<|ſtartoftext|>", "< |endoftext| >", "<|endoftext",
    "<|STARTOFTEXT|> <|EndOfText|>", "<<|endoftext|>>", "x!<|startoftext|>!y",
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "ab" * 60, "!" * 90, "the " * 100, "a, " * 80, "1 2 3 " * 40,
]


def fuzz_prompts(rng, count):
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
            + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + [" "] * 8 + ["\t", "\n", "\r"]
            + list("éèêëàâäôöûüçñÉÈÅØåøßÆæŒœĳ") + ["\u0301", "\u0308", "\u0323", "\u0345", "\u0327",
                                                    "\u05b0", "\u0f71", "\u0f72", "\u302a"]
            + list("ΑΒΓΔΣσςαβγΌΐ") + list("АБВабвЁё") + list("日本語中文字漢") + list("가각힣각")
            + list("😀🎨👍🏽\u200d❤\ufe0f") + ["\x00", "\x07", "\x1f", "\x7f", "\x85", "\xa0",
                                               "\u2028", "\u3000", "\ufeff", "\ufffd", "\ue000"]
            + list("İıſKÅΩǅ½²①ＦＵ") + ["<|endoftext|>", "<|startoftext|>", "'s", "'ll", "&amp;"])
    out = []
    for _ in range(count):
        n = rng.randint(1, 40)
        out.append("".join(rng.choice(pool) for _ in range(n)))
    return out


INVALID_UTF8 = ["ff", "c0af", "e282", "e282ac", "612062ff63", "edb080", "eda080e282ac",
                "f4908080", "f09f98", "f09f9880", "80", "6162c3", "c328", "e0808061",
                "2128ff21", "3c7c656e646f66ffffffff746578747c3e", "e2ffac21"]


def build_corpus():
    rng = random.Random(1234)
    prompts = list(HANDWRITTEN)
    for _ in range(140):
        subject = rng.choice(SUBJECTS)
        styles = rng.sample(STYLES, rng.randint(1, 6))
        parts = [subject] + styles
        if rng.random() < 0.4:
            parts = [f"({p}:{rng.choice([0.8, 1.1, 1.2, 1.5])})" if rng.random() < 0.3 else p
                     for p in parts]
        if rng.random() < 0.2:
            parts = [f"[{p}]" if rng.random() < 0.3 else p for p in parts]
        sep = rng.choice([", ", ",", " , ", ". ", " | ", "\n"])
        text = sep.join(parts)
        if rng.random() < 0.15:
            text = text.upper()
        if rng.random() < 0.1:
            text = text * rng.randint(3, 6)  # well over 77 tokens
        prompts.append(text)
    prompts += fuzz_prompts(rng, 160)
    return [{"text": p} for p in prompts] + [{"bytes_hex": h} for h in INVALID_UTF8]


def main():
    assert transformers.__version__.startswith("4."), "needs the slow CLIPTokenizer (4.x)"
    try:
        import ftfy  # noqa: F401
        sys.exit("ftfy is installed: the reference would take its ftfy path; uninstall it")
    except ImportError:
        pass
    write_folders()
    toks = {name: CLIPTokenizer.from_pretrained(os.path.join(OUT, name)) for name in ("sd15", "sd21")}
    for t in toks.values():
        assert type(t).__name__ == "CLIPTokenizer" and t.fix_text is None  # slow, BasicTokenizer path
    entries = build_corpus()
    with open(os.path.join(OUT, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for e in entries:
            text = e["text"] if "text" in e else bytes.fromhex(e["bytes_hex"]).decode("utf-8", "replace")
            for name, t in toks.items():
                e[name] = t(text, padding="max_length", max_length=t.model_max_length,
                            truncation=True).input_ids
                e[name + "_raw"] = t(text, add_special_tokens=False).input_ids
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    print(f"{len(entries)} prompts; transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
