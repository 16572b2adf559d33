// Model::Impl: the loaded parts of a model (backend, UNet, text encoder, VAE or TAESD), shared by
// the streams opened on it. exec serializes the work of those streams on the backend (one frame
// at a time: the backend's stream, kernel caches and activation arena are single-threaded).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "backend/backend.h"
#include "models/autoencoder_kl.h"
#include "models/prompt_encoder.h"
#include "models/taesd.h"
#include "models/unet.h"
#include "pipeline/stream.h"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff {

struct Model::Impl {
  ModelInfo info;
  int threads = 0;  // resolved: the CPU threads every call of this model uses
  std::unique_ptr<sd::Backend> backend;
  std::unique_ptr<sd::UNet> unet;
  std::unique_ptr<sd::PromptEncoder> text;  // null for random models
  std::unique_ptr<sd::Taesd> taesd;
  std::unique_ptr<sd::AutoencoderKL> vae;
  std::unique_ptr<sd::LatentCodec> codec;
  std::mutex exec;

  // A prompt's embedding [tokens, cross_attention_dim] host f32 (the text encoder's without its
  // last clip_skip layers, cached per text and clip_skip; for random models a hash of the text).
  // Call with exec held.
  sd::Tensor encode_prompt(const std::string& prompt, int clip_skip = 0);
  // The text encoder's layers (the largest clip_skip is one less); 0 without a text encoder.
  int text_layers() const;
  int latent_downscale() const { return codec->downscale(); }
};

// The library's access to a Model's parts (Stream, and the tests and benchmarks of the engine).
struct ModelAccess {
  static const std::shared_ptr<Model::Impl>& impl(const Model& m) { return m.impl_; }
};

namespace detail {

// Checks `options` (device, dtype, threads, files named) before anything is loaded.
void check_model_options(const ModelOptions& options);
// A model argument as a local path: a repository id resolved in the Hugging Face cache, pulled
// first when options.pull (progress lines go to options.on_progress); other paths unchanged.
std::string local_model_path(const std::string& path, const ModelOptions& options);
// `options` with the TAESD and LoRA paths made local the same way.
ModelOptions with_local_paths(const ModelOptions& options);
// The backend `options` asks for, with the resolved thread count.
std::unique_ptr<sd::Backend> make_backend_for(const ModelOptions& options, int* threads);

}  // namespace detail

}  // namespace streamdiff
