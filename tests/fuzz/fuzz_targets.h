// Fuzz targets for the parsers of streamdiff: each function feeds arbitrary bytes to a real
// parser of the product and swallows only the error the product reports bad input with
// (sd::Error; for the server's params, ParamError). Anything else (another exception, a crash,
// a sanitizer report, a hang) is a bug.
//
// The functions are plain C++ so that both the libFuzzer binaries (fuzz_main.cpp, one target per
// binary, built by run.sh) and the regression test (tests/test_fuzz_regressions.cpp, which
// replays tests/fuzz/corpus/<name>/ and tests/fuzz/regressions/<name>/) call the same code.
//
// Inputs made of several files (an index and its shards, a tokenizer folder, a Hub listing and a
// model_index.json) are split at kPartSeparator. Parsers that only read files get the bytes
// through a file in a scratch folder of this process (removed at exit).
#pragma once

#include <cstddef>
#include <cstdint>

namespace sd::fuzz {

// Separates the parts of a multi-file input.
inline constexpr const char* kPartSeparator = "\n----\n";

// safetensors: SafetensorsFile::from_bytes, then every float tensor loaded as f32.
int fuzz_safetensors(const uint8_t* data, size_t size);
// A sharded-weights index JSON (model.safetensors.index.json) next to two valid shards
// (a.safetensors: "x", "y"; b.safetensors: "z"): SafetensorsSet::open, then every tensor loaded.
int fuzz_safetensors_index(const uint8_t* data, size_t size);
// One config.json read as each model's config: UNet, VAE, TAESD, CLIP text encoder and the
// scheduler, with the values the product derives from them.
int fuzz_model_config(const uint8_t* data, size_t size);
// A LoRA .safetensors (diffusers / PEFT / kohya keys, alphas, lora_adapter_metadata):
// LoraFile::load.
int fuzz_lora(const uint8_t* data, size_t size);
// A single-file LDM checkpoint: LdmCheckpoint::open (family detection, pickle refusal), then its
// default UNet and VAE configs.
int fuzz_ldm_checkpoint(const uint8_t* data, size_t size);
// A UTF-8 (or not) prompt through the built-in CLIP tokenizer: encode and tokenize_for_model.
int fuzz_clip_tokenizer(const uint8_t* data, size_t size);
// A tokenizer folder: vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json
// (parts 1-4; absent parts are absent files), then a fixed prompt and part 5 encoded with it.
int fuzz_clip_tokenizer_folder(const uint8_t* data, size_t size);
// decode_image (PNG or JPEG, sniffed) with the server's largest side (4096). Two targets with the
// same function and different seed corpora.
int fuzz_image_png(const uint8_t* data, size_t size);
int fuzz_image_jpeg(const uint8_t* data, size_t size);
// A WebSocket text message / POST /api/predict body of `streamdiff serve`: JSON, then
// parse_params (ParamError is the expected rejection).
int fuzz_serve_params(const uint8_t* data, size_t size);
// An HTTP request of `streamdiff serve`: the first line is the target (split_target,
// percent_decode, uuid_after, is_uuid), the next lines "name: value" headers (authorized,
// origin_allowed).
int fuzz_serve_http(const uint8_t* data, size_t size);
// A sequence of WebSocket messages of one client (parts; each part's first byte 'T' makes it a
// text message, anything else a binary one, the rest is the message) through WsProtocol, the
// demo's next_frame / params / JPEG sequence, as the server runs it.
int fuzz_serve_ws(const uint8_t* data, size_t size);
// An HTTP request to route(), the server's plain routes, on the committed tiny model: the first
// line is "METHOD target", the next lines headers, part 2 the body (POST /api/predict with a
// valid body, which would run the model, is left to serve_params).
int fuzz_serve_routes(const uint8_t* data, size_t size);
// A video file through our FFmpeg wrapper: VideoReader on the bytes (probing, demuxing,
// decoding, conversion to RGB), at most 3 frames read.
int fuzz_video(const uint8_t* data, size_t size);
// The Hub API's revision listing (part 1: parse_repo_listing), a model_index.json (part 2) and
// include globs (part 3, one a line): choose_files.
int fuzz_hub_listing(const uint8_t* data, size_t size);
// Names the Hub and the user give `streamdiff pull`: repository id, revision, ETag header, weight
// file variant, each line checked by the functions that take it.
int fuzz_hub_names(const uint8_t* data, size_t size);

struct Target {
  const char* name;  // without "fuzz_": the folder name under tests/fuzz/corpus/
  int (*function)(const uint8_t* data, size_t size);
};

// Every target, ending with {nullptr, nullptr}.
extern const Target kTargets[];

}  // namespace sd::fuzz
