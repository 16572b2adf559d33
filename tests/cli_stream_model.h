// The tiny diffusers-layout model folder the CLI stream tests run on, assembled from the
// committed fixtures: the tiny SD 1.x-like UNet (fixtures/stream/unet), the sd15 tokenizer, the
// tiny AutoencoderKL (fixtures/vae/tiny/vae), and a text encoder with the hash-random weights
// tests/test_stream.cpp uses (ClipTextModel::hash_param written to a safetensors file, config
// from fixtures/stream/prompt_embeds.safetensors), so no text encoder is committed.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "models/clip_text.h"

namespace sd::test {

inline const std::filesystem::path kStreamFixtures(SD_FIXTURE_DIR);

// The hash-random text encoder of the stream fixtures as a diffusers text_encoder/ folder.
inline void write_text_encoder(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  auto meta =
      SafetensorsFile::open((kStreamFixtures / "stream" / "prompt_embeds.safetensors").string())
          ->metadata();
  nlohmann::json cfg = nlohmann::json::parse(meta.at("text_config"));
  cfg["architectures"] = {"CLIPTextModel"};
  cfg["model_type"] = "clip_text_model";
  std::ofstream(dir / "config.json") << cfg.dump(2);
  const int64_t w = cfg["hidden_size"], inter = cfg["intermediate_size"];
  const int64_t vocab = cfg["vocab_size"], pos = cfg["max_position_embeddings"];
  std::map<std::string, Tensor> t;
  auto add = [&](const std::string& name, Shape shape) {
    t[name] = ClipTextModel::hash_param(name, shape);
  };
  add("text_model.embeddings.token_embedding.weight", {vocab, w});
  add("text_model.embeddings.position_embedding.weight", {pos, w});
  for (int i = 0; i < int(cfg["num_hidden_layers"]); ++i) {
    const std::string l = "text_model.encoder.layers." + std::to_string(i) + ".";
    for (const char* n : {"layer_norm1", "layer_norm2"}) {
      add(l + n + ".weight", {w});
      add(l + n + ".bias", {w});
    }
    for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      add(l + "self_attn." + n + ".weight", {w, w});
      add(l + "self_attn." + n + ".bias", {w});
    }
    add(l + "mlp.fc1.weight", {inter, w});
    add(l + "mlp.fc1.bias", {inter});
    add(l + "mlp.fc2.weight", {w, inter});
    add(l + "mlp.fc2.bias", {w});
  }
  add("text_model.final_layer_norm.weight", {w});
  add("text_model.final_layer_norm.bias", {w});
  write_safetensors((dir / "model.safetensors").string(), t);
}

// unet/, tokenizer/, vae/ and text_encoder/ under `model` (created).
inline void write_tiny_stream_model(const std::filesystem::path& model) {
  namespace fs = std::filesystem;
  fs::create_directories(model);
  fs::copy(kStreamFixtures / "stream" / "unet", model / "unet");
  fs::copy(kStreamFixtures / "tokenizer" / "sd15", model / "tokenizer");
  fs::copy(kStreamFixtures / "vae" / "tiny" / "vae", model / "vae");
  write_text_encoder(model / "text_encoder");
}

}  // namespace sd::test
