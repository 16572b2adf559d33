// streamdiff tools: the parts of a model on their own (tokenizer, text encoder, TAESD), tensor
// files, model inspection and machine facts; the CLI's tokenize, encode-prompt, taesd, info and
// bench commands are written on these. Failures throw streamdiff::Error.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "streamdiff/media.hpp"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff {

// A host f32 tensor, row-major.
struct TensorF32 {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// safetensors files: write (atomically: a temporary file renamed into place) and read, stored
// f32, f16 or bf16 converted to f32 (another dtype is an error naming the tensor).
STREAMDIFF_API void save_tensors(const std::string& path,
                                 const std::map<std::string, TensorF32>& tensors,
                                 const std::map<std::string, std::string>& metadata = {});
STREAMDIFF_API std::map<std::string, TensorF32> load_tensors(const std::string& path);

// What a model path holds, without loading weights (headers and configs only): a diffusers
// folder, a component folder, a single-file checkpoint, a LoRA or any .safetensors file. Text
// as `streamdiff info` prints it.
STREAMDIFF_API std::string describe_model_path(const std::string& path);

// The facts about a model that settings are checked against, read from its configs and tensor
// headers only (milliseconds, no weights): what a program needs to refuse a bad size or a
// missing part before Model::load. Throws Error (Io) for a path that Model::load cannot take as
// a model (missing, not a diffusers folder or a single-file SD 1.x / 2.x .safetensors checkpoint,
// a pickle, a single file whose UNet is not full-size).
struct ModelSummary {
  std::string path;               // as given
  std::string kind;               // "diffusers folder" or "single-file checkpoint"
  std::string family;             // "sd1" or "sd2" (SD 2.x: linear projections, OpenCLIP)
  int size_multiple = 64;         // width and height must be multiples of this: the VAE's (or
                                  // the TAESD's) downscale x 2^(UNet down blocks − 1)
  bool has_vae = false;           // vae/config.json, or first_stage_model.* tensors
  bool has_text_encoder = false;  // text_encoder/config.json, or cond_stage_model.* tensors
  bool has_tokenizer = false;     // tokenizer/vocab.json (single files: the built-in vocabulary)
  int text_layers = 0;            // the text encoder's layers (clip_skip must be below this)
  // The model's name: the folder's or file's name, or for a Hugging Face cache snapshot
  // (.../models--org--name/snapshots/<revision>) the repository's folder.
  std::string name;
  // The settings the model is most likely made for, from its name (configs cannot tell sd-turbo
  // from SD 2.1): "sd-turbo" when the name contains "turbo" (any case), else "sd15-lcm" (SD 1.5
  // with LCM-LoRA, StreamDiffusion's defaults).
  std::string suggested_preset;
};
// `taesd`, when given, is the TAESD used instead of the model's VAE (its downscale counts).
STREAMDIFF_API ModelSummary inspect_model(const std::string& path, const std::string& taesd = "");

// The CLIP BPE tokenizer.
class STREAMDIFF_API Tokenizer {
 public:
  // The built-in CLIP vocabulary; SD 2.x models pad with '!' (pad_with_exclamation), SD 1.x
  // with <|endoftext|>.
  static Tokenizer builtin(bool pad_with_exclamation = false);
  // A tokenizer/ folder (vocab.json + merges.txt), or a model folder that has one.
  static Tokenizer from_folder(const std::string& path);
  std::vector<int> encode(const std::string& text) const;  // ids only
  // BOS, ids truncated to max_len − 2, EOS, padding to max_len: what a text encoder consumes.
  std::vector<int> tokenize_for_model(const std::string& text, int max_len = 77) const;

  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A model's text encoder (CLIP ViT-L/14 or OpenCLIP ViT-H/14) with its tokenizer.
class STREAMDIFF_API TextEncoder {
 public:
  // A diffusers model folder, its text_encoder/ folder, or a single-file checkpoint (or the
  // repository id of one in the Hugging Face cache). Uses options.device / dtype / threads / pull.
  static TextEncoder load(const std::string& path, const ModelOptions& options = {});
  // [77, width] f32. clip_skip: layers skipped at the end (1 = the penultimate layer's output).
  TensorF32 encode(const std::string& prompt, int clip_skip = 0);
  int num_layers() const;
  std::string description() const;  // source, layers, width, activation
  std::string backend() const;

  ~TextEncoder();
  TextEncoder(TextEncoder&&) noexcept;
  TextEncoder& operator=(TextEncoder&&) noexcept;
  struct Impl;

 private:
  explicit TextEncoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// TAESD on its own: image <-> latents.
class STREAMDIFF_API Autoencoder {
 public:
  // A TAESD diffusers folder, a folder or file of the original taesd_encoder/decoder files, or
  // one diffusers-layout .safetensors file (or the repository id of one in the Hugging Face
  // cache). Uses options.device / dtype / threads / pull.
  static Autoencoder load_taesd(const std::string& path, const ModelOptions& options = {});
  // image (multiples of downscale()) -> latents [1, h, w, latent_channels] NHWC, unscaled.
  TensorF32 encode(const Image& image);
  // latents [1, h, w, latent_channels] -> image.
  Image decode(const TensorF32& latents);
  int downscale() const;
  int latent_channels() const;
  std::string description() const;
  std::string backend() const;

  ~Autoencoder();
  Autoencoder(Autoencoder&&) noexcept;
  Autoencoder& operator=(Autoencoder&&) noexcept;
  struct Impl;

 private:
  explicit Autoencoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Facts about this machine and process, for benchmark and log lines.
STREAMDIFF_API std::string cpu_model_name();  // "/proc/cpuinfo"'s model name
struct ProcessMemory {
  int64_t rss = -1;       // bytes resident now (-1: unknown)
  int64_t peak_rss = -1;  // high-water mark
};
STREAMDIFF_API ProcessMemory process_memory();
STREAMDIFF_API bool reset_peak_rss();
// Whether this build has a usable CUDA device, and whether this CPU runs bf16 natively.
STREAMDIFF_API bool cuda_available();
STREAMDIFF_API bool cpu_has_native_bf16();

}  // namespace streamdiff
