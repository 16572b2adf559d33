// streamdiff: the C++ API. Real-time Stable Diffusion (StreamDiffusion, arXiv 2312.12491) for
// programs that embed it: load a Model once, open any number of Streams on it, push frames.
//
//   streamdiff::ModelOptions options;
//   options.taesd = "models/taesd";
//   streamdiff::Model model = streamdiff::Model::load("models/sd-turbo", options);
//   streamdiff::StreamConfig cfg;
//   cfg.prompt = "oil painting";  cfg.t_index_list = {35};  cfg.cfg_type = CfgType::None;
//   streamdiff::Stream stream(model, cfg);
//   stream.img2img(camera_frame, output_frame);          // u8 RGB/BGR/RGBA/BGRA, any stride
//   stream.set_prompt("watercolor");                      // takes effect at the next frame
//
// Errors: every failure throws streamdiff::Error, whose status() says what kind it is and whose
// message names the file, tensor or value at fault. The C API (streamdiff.h) is built on this one.
//
// Threads (the contract the tests check):
// - A Model is immutable after load() and may be shared by any number of Streams on any
//   threads; copies of a Model are handles to the same weights. Streams on one Model share its
//   weights, its compute device and its activation memory: their frames run one at a time on
//   the device (a frame of one stream waits while another stream's frame runs), so two streams
//   cost the weights once. Each Stream's own state (latents, noise, prompt embeddings, plans) is
//   private to it.
// - A Stream's frame calls (img2img, txt2img, submit/poll, start/stop, reset) must not run
//   concurrently with each other: use one Stream from one thread at a time, or hand frames over
//   with the asynchronous interface. The setters (set_prompt, set_seed, ...) and config()/stats()
//   may be called from any thread at any time, also while a frame runs; they take effect at the
//   next frame.
// - The library leaves the host's global state alone: the OpenMP thread count of a calling
//   thread is restored before each call returns, and no process-wide setting (locale, signal
//   handlers, FFmpeg's log level, ...) is changed.
//
// Frames: u8 pixels with a row stride, in the formats of PixelFormat. An input of another size
// than the stream's is scaled to cover it and centre-cropped; an input of the right size is used
// as it is. Outputs go into the caller's buffer: after the first frame of a given size the frame
// path allocates no memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "streamdiff/export.h"
#include "streamdiff/version.h"

namespace streamdiff {

// ---- errors -------------------------------------------------------------------------------------

// The kinds of failure; the same values as the C API's sd_status.
enum class Status : int {
  Ok = 0,
  InvalidArgument = 1,  // a value out of range, a wrong size, a setting the model cannot take
  InvalidHandle = 2,    // (C API) a null, freed or wrong-kind handle
  Io = 3,               // a file that cannot be read or written, or is not what it should be
  Unsupported = 4,      // a device, dtype or format that this build or machine does not offer
  OutOfMemory = 5,
  NotReady = 6,  // poll: no output within the time given
  Closed = 7,    // the stream's asynchronous mode is not running
  Internal = 8,  // anything else (a bug: please report it)
};
STREAMDIFF_API const char* status_name(Status s);  // "invalid argument", ...

class STREAMDIFF_API Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message);
  ~Error() override;
  Status status() const noexcept { return status_; }

 private:
  Status status_;
};

// ---- pixels
// ---------------------------------------------------------------------------------------

enum class PixelFormat : int { RGB8 = 0, BGR8 = 1, RGBA8 = 2, BGRA8 = 3 };
STREAMDIFF_API int bytes_per_pixel(PixelFormat f);  // 3 or 4

// Pixels the library reads: row y starts at data + y * stride. stride 0 means packed rows
// (width * bytes_per_pixel). Alpha is ignored on input.
struct ImageView {
  const uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  size_t stride = 0;
  PixelFormat format = PixelFormat::RGB8;
};

// Pixels the library writes: the size must be the stream's; alpha is written as 255.
struct MutableImageView {
  uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  size_t stride = 0;
  PixelFormat format = PixelFormat::RGB8;
};

// ---- models
// ---------------------------------------------------------------------------------------

struct LoraSpec {
  std::string path;   // a LoRA .safetensors file (diffusers/PEFT or kohya), e.g. LCM-LoRA, or
                      // the repository id of one ("latent-consistency/lcm-lora-sdv1-5")
  float scale = 1.f;  // W = W0 + scale * (alpha / rank) * up * down
};

// "path" or "path:scale" (a trailing ":number"), as the CLI's --lora takes it.
STREAMDIFF_API LoraSpec parse_lora_spec(const std::string& spec);

// Every path of a load (the model, taesd, LoRA files) may also be a Hugging Face repository id,
// "org/name", found in the Hugging Face cache (streamdiff/hub.hpp: resolve_model_path).
struct ModelOptions {
  std::string taesd;                  // a TAESD folder or file used instead of the model's own VAE
  std::vector<LoraSpec> loras;        // fused after loading, in order
  bool lora_allow_unmatched = false;  // fuse even when some LoRA layers match no weight
  std::string device = "cpu";         // "cpu" or "cuda"
  std::string dtype = "auto";  // "auto" (bf16 where the hardware is fast at it), "f32", "bf16"
  int threads = 0;             // CPU threads used by this model's work; 0 = all cores
  // Repository ids missing from the cache are downloaded first (streamdiff::pull with its
  // defaults); otherwise a missing one is an Error naming the `streamdiff pull` command.
  bool pull = false;
  // Called on the loading thread with one line per step (e.g. "loading unet/", "fused LoRA x").
  std::function<void(const std::string& message)> on_progress;
};

struct ModelInfo {
  std::string path;        // as given to load()
  std::string family;      // "sd1" (CLIP ViT-L text encoder) or "sd2" (OpenCLIP ViT-H; sd-turbo)
  std::string vae;         // "taesd" or "autoencoder_kl"
  std::string backend;     // e.g. "cpu: oneDNN 2.6.3, avx2, f32, 2 threads"
  std::string dtype;       // compute dtype: "f32" or "bf16"
  int size_multiple = 64;  // width and height must be multiples of this
  int cross_attention_dim = 0;
  bool random_weights = false;     // made by Model::random
  std::vector<std::string> loras;  // one line per fused LoRA: path, scale, layers
  double load_ms = 0;
};

class STREAMDIFF_API Model {
 public:
  // Loads a model in one call: a diffusers folder (unet/, text_encoder/, tokenizer/, and vae/
  // unless options.taesd is given) or a single-file SD 1.x / 2.x .safetensors checkpoint, or
  // the repository id of one in the Hugging Face cache; then fuses options.loras. Throws Error
  // (Io for unreadable, missing or malformed files, and repository ids not in the cache).
  static Model load(const std::string& path, const ModelOptions& options = {});
  // A model with deterministic random weights of a full-size architecture: "sd15" or "sd21"
  // (the UNet of SD 1.5 or of SD 2.1 / sd-turbo), "bk-sdm-base", "bk-sdm-small" or
  // "bk-sdm-tiny" (SD 1.x with blocks removed, 580 M / 482 M / 323 M parameters; the first and
  // last are segmind/small-sd's and tiny-sd's layouts), or "sdxs-512" (SDXS-512-0.9's layout as
  // stable-diffusion.cpp reads it), for benchmarks and tests without downloads.
  // options.taesd is required (the VAE); there is no text encoder: a prompt's embedding is
  // derived from a hash of its text.
  static Model random(const std::string& arch, const ModelOptions& options);

  ModelInfo info() const;

  Model(const Model&) = default;
  Model& operator=(const Model&) = default;
  Model(Model&&) noexcept = default;
  Model& operator=(Model&&) noexcept = default;
  ~Model();

  struct Impl;

 private:
  explicit Model(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
  friend struct ModelAccess;  // the library's own access to impl_ (src/api/model_impl.h)
};

// ---- streams
// --------------------------------------------------------------------------------------

enum class CfgType : int { None = 0, Full = 1, Self = 2, Initialize = 3 };
STREAMDIFF_API const char* cfg_type_name(CfgType t);  // "none", "full", "self", "initialize"
STREAMDIFF_API CfgType parse_cfg_type(const std::string& name);  // throws InvalidArgument

// How blended prompts (their embeddings) and blended seeds (their noises) are combined. Weights
// are divided by their sum. Linear: Σ wᵢ·xᵢ. Slerp (exactly two entries): spherical
// interpolation from the first to the second at t = w₂, over the whole tensor.
enum class Blend : int { Linear = 0, Slerp = 1 };

struct WeightedPrompt {
  std::string prompt;
  float weight = 1.f;
};
struct WeightedSeed {
  uint64_t seed = 0;
  float weight = 1.f;
};

struct StreamConfig {
  int width = 512;  // multiples of Model::info().size_multiple
  int height = 512;
  std::vector<int> t_index_list{32, 45};  // denoising steps used, ascending, in [0, steps)
  int num_inference_steps = 50;           // the LCM schedule's length
  int frame_buffer_size = 1;              // frames per call
  CfgType cfg_type = CfgType::Self;
  float guidance_scale = 1.2f;
  float delta = 1.0f;  // residual CFG's delta
  uint64_t seed = 2;
  std::string prompt;
  std::string negative_prompt;  // used by cfg full / initialize
  // The stochastic similarity filter: a frame much like the last processed one is skipped (the
  // previous output is given again) with a probability that grows with the similarity.
  bool similarity_filter = false;
  float similarity_threshold = 0.98f;
  int similarity_max_skip = 10;
  // img2img: the first frame (and the first after a reset or a resolution change) fills the
  // pipeline, so that every input gets an output; output k then shows input k − (n − 1).
  bool warmup = true;
  // Advanced, for comparisons: Stream Batch (all steps as one batched UNet call) or sequential
  // steps; re-noising between steps; the cross-attention K/V cache; stage timing (synchronizes
  // the device after each stage; FrameInfo gets encode/unet/decode times).
  bool use_denoising_batch = true;
  bool do_add_noise = true;
  bool precompute_kv = true;
  bool time_stages = false;
  // Text-encoder layers skipped at the end when encoding the prompts, as diffusers' clip_skip
  // (1 = the penultimate layer's output, 0 = all layers); a change re-encodes the prompts.
  int clip_skip = 0;
};

// What one frame call did.
struct FrameInfo {
  int64_t index = -1;     // outputs of this stream so far, counting this one, minus one
  bool skipped = false;   // the similarity filter skipped the denoiser: the previous output again
  double latency_ms = 0;  // this frame's time in the library (async: from submit to output)
  double encode_ms = 0, unet_ms = 0, decode_ms = 0;  // with StreamConfig::time_stages
  int64_t tag = -1;        // async: the tag submit() was given for the input this call consumed
  int64_t shown_tag = -1;  // async: the tag of the input this output shows (n − 1 inputs back)
  // This frame's computing time: latency_ms without the time it waited (in the async input
  // queue, or for another stream's frame on the same model).
  double compute_ms = 0;
};

// Running figures of a stream (bounded memory: percentiles are over the last 1024 frames).
struct StreamStats {
  int64_t frames_in = 0;   // inputs accepted (img2img calls, or submits)
  int64_t frames_out = 0;  // outputs delivered
  int64_t skipped = 0;     // outputs the similarity filter skipped
  int64_t dropped = 0;     // async DropOldest: inputs or outputs discarded
  double fps = 0;          // outputs per second since the first frame
  double latency_mean_ms = 0, latency_p50_ms = 0, latency_p99_ms = 0, latency_max_ms = 0;
  double prepare_ms = 0;  // time spent preparing plans (first frame, new shapes, new settings)
  int plans = 0;          // prepared plans held (one per resolution and layout, at most 4)
};

enum class QueuePolicy : int {
  Block = 0,       // submit waits for room; nothing is dropped (files, offline work)
  DropOldest = 1,  // submit never waits: the oldest queued input (or undelivered output) is
                   // dropped and counted (live cameras: always the freshest frame)
};

struct AsyncOptions {
  size_t queue_capacity = 2;  // inputs waiting for the worker
  QueuePolicy policy = QueuePolicy::Block;
  PixelFormat output_format = PixelFormat::RGB8;
  size_t output_capacity = 4;  // outputs waiting for poll() (unused with on_output)
  // Called on the worker thread with each output (valid during the call), instead of queueing
  // it for poll(). It must not call this stream's frame functions.
  std::function<void(const ImageView& output, const FrameInfo& info)> on_output;
};

class STREAMDIFF_API Stream {
 public:
  // Prepares a stream on `model`: encodes the prompt, draws the noise, plans the memory for the
  // size and step layout. Throws InvalidArgument naming a setting the model cannot take.
  Stream(const Model& model, const StreamConfig& config);
  ~Stream();  // stops the asynchronous worker (queued inputs are dropped)
  Stream(Stream&&) noexcept;
  Stream& operator=(Stream&&) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // ---- settings: any thread, any time; checked now, applied at the next frame, rebuilding only
  // what depends on them (a prompt: its embedding (cached per text) and the K/V cache; seeds: the
  // noise; t_index_list of the same length: the step constants; another length, cfg_type,
  // frame_buffer_size or resolution: a plan, cached per shape so that switching back is
  // immediate).
  void set_prompt(const std::string& prompt);
  void set_negative_prompt(const std::string& negative_prompt);
  void set_prompt_blend(const std::vector<WeightedPrompt>& prompts, Blend blend = Blend::Linear);
  void set_seed(uint64_t seed);
  void set_seed_blend(const std::vector<WeightedSeed>& seeds, Blend blend = Blend::Linear);
  void set_guidance_scale(float guidance_scale);
  void set_delta(float delta);
  void set_similarity_filter(bool enabled, float threshold = 0.98f, int max_skip = 10);
  void set_t_index_list(const std::vector<int>& t_index_list);
  void set_resolution(int width, int height);
  void set_cfg_type(CfgType cfg_type);
  // Several settings at once (the checks of all of them pass, or nothing changes).
  void set_config(const StreamConfig& config);
  StreamConfig config() const;  // the settings the next frame uses

  // ---- synchronous frames (the calling thread runs the model) ----
  // img2img on one frame (frame_buffer_size 1) or on `count` = frame_buffer_size frames.
  FrameInfo img2img(const ImageView& input, const MutableImageView& output);
  FrameInfo img2img(const ImageView* inputs, const MutableImageView* outputs, size_t count);
  // The same on f32 RGB [frame_buffer_size, height, width, 3] in [0, 1], packed; width and height
  // are the caller's buffers' (they must be the stream's).
  FrameInfo img2img_f32(const float* input, float* output, int width, int height);
  // txt2img: frame_buffer_size images from fresh noise. one_step_turbo: the original's
  // txt2img_sd_turbo (one t_index, no guidance): x0 = (x - b*eps)/a without LCM's boundary terms.
  FrameInfo txt2img(const MutableImageView& output, bool one_step_turbo = false);
  FrameInfo txt2img(const MutableImageView* outputs, size_t count, bool one_step_turbo = false);
  FrameInfo txt2img_f32(float* output, int width, int height, bool one_step_turbo = false);

  // ---- asynchronous frames (a worker thread owned by the stream runs the model) ----
  // submit() and end_input() (the producer) and poll() (the consumer) may run on two different
  // threads at once; start(), stop() and the synchronous calls must not overlap them.
  void start(const AsyncOptions& options = {});
  // Queues a copy of `input` (any size; frame_buffer_size must be 1). Block: waits for room.
  // Returns false once the worker has stopped (Closed is thrown if start() was never called).
  bool submit(const ImageView& input, int64_t tag = -1);
  // No more inputs: the worker processes what is queued and then finishes; poll() gives the
  // remaining outputs and then false.
  void end_input();
  // The next output, copied into `output` (the stream's size, any format); false when none came
  // within timeout_ms (0: do not wait; negative: wait until one comes or the worker finishes).
  bool poll(const MutableImageView& output, FrameInfo* info = nullptr, int timeout_ms = -1);
  // Stops the worker now: queued inputs are dropped; outputs already made stay available to
  // poll(). Rethrows the first error the worker met, if any.
  void stop();
  bool running() const;  // the worker is processing or waiting for inputs

  // Forgets the frames in flight (the next img2img warms up again); settings are kept.
  void reset();
  StreamStats stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace streamdiff
