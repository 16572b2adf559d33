// Model load time and memory: per component, the seconds to load it (read + convert + pack what
// is packed at load), the size of its weight files, the process's resident memory (VmRSS) and
// its peak (VmHWM) after the load and after the first use (a forward pass, where kernels that
// reorder weights lazily do so), plus the time of a second use for comparison.
//
// Model: SD_BENCH_LOAD_MODEL, a diffusers model root with any of unet/, text_encoder/, vae/ and
// taesd/ (a TAESD folder); SD_BENCH_LOAD_TAESD names a TAESD folder or file elsewhere. Without
// SD_BENCH_LOAD_MODEL a full-size SD 1.5 UNet on hash-random weights (models/unet_hash_weights.h)
// is first written as diffusers' fp16 variant to a temp folder (1.7 GB; removed afterwards), so
// its load reads a real file from the page cache. SD_BENCH_LOAD_SIZE: image size of the first
// use (default 256, i.e. 32x32 latents); SD_BENCH_LOAD_DTYPE: compute dtype (default f32).
// The peak is reset (Linux /proc/self/clear_refs) before each component, so it is that
// component's; each model is freed before the next is loaded.
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "bench.h"
#include "core/error.h"
#include "core/machine.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/safetensors_set.h"
#include "models/autoencoder_kl.h"
#include "models/clip_text.h"
#include "models/ldm_checkpoint.h"
#include "models/taesd.h"
#include "models/unet.h"
#include "models/unet_hash_weights.h"

using namespace sd;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double mib(int64_t bytes) {
  return bytes < 0 ? -1.0 : double(bytes) / double(1 << 20);
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

// Total size of the files holding a component's weights (an index: its shards).
int64_t weight_bytes(const std::string& weights) {
  int64_t total = 0;
  for (const std::string& f : SafetensorsSet::open(weights)->files())
    total += int64_t(fs::file_size(f));
  return total;
}

// Hands out hash-random weights and keeps an f16 copy of each, to be written as a file.
class RecordingHashWeights : public UNetWeightSource {
 public:
  Tensor get(const std::string& name, const Shape& expect) override {
    Tensor t = hash_.get(name, expect);
    tensors_[name] = t.to_host_dtype(DType::F16);
    return t;
  }
  std::string describe() const override { return hash_.describe(); }
  const std::map<std::string, Tensor>& tensors() const { return tensors_; }

 private:
  HashUNetWeights hash_{"hash-random SD 1.5 UNet weights"};
  std::map<std::string, Tensor> tensors_;
};

// SD 1.5's unet/config.json (the keys the loader reads; as published with the model).
const char* kSd15UNetConfig = R"({
  "_class_name": "UNet2DConditionModel",
  "act_fn": "silu",
  "attention_head_dim": 8,
  "block_out_channels": [320, 640, 1280, 1280],
  "center_input_sample": false,
  "cross_attention_dim": 768,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                       "DownBlock2D"],
  "downsample_padding": 1,
  "flip_sin_to_cos": true,
  "freq_shift": 0,
  "in_channels": 4,
  "layers_per_block": 2,
  "mid_block_scale_factor": 1,
  "norm_eps": 1e-05,
  "norm_num_groups": 32,
  "out_channels": 4,
  "sample_size": 64,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                     "CrossAttnUpBlock2D"]
})";

// Memory now, and the RSS once the allocator has returned its free pages (what is live).
struct Reading {
  ProcessMemory now;
  int64_t trimmed_rss = -1;
};

Reading read_memory() {
  Reading r;
  r.now = process_memory();
  ::malloc_trim(0);
  r.trimmed_rss = process_memory().rss;
  return r;
}

void print_memory(const char* when, const Reading& r, const ProcessMemory& base) {
  std::printf("  %-16s RSS %8.1f MiB (+%.1f; +%.1f after malloc_trim), peak %8.1f MiB (+%.1f)\n",
              when, mib(r.now.rss), mib(r.now.rss - base.rss), mib(r.trimmed_rss - base.rss),
              mib(r.now.peak_rss), mib(r.now.peak_rss - base.rss));
}

// Loads one component, uses it twice, prints times and memory, frees it.
template <class Load, class Use>
void measure(const std::string& what, const std::string& weights, Backend& backend, Load load,
             Use use) {
  const int64_t bytes = weights.empty() ? -1 : weight_bytes(weights);
  ::malloc_trim(0);  // what earlier components freed
  const bool reset = reset_peak_rss();
  const ProcessMemory base = process_memory();
  auto t0 = Clock::now();
  auto model = load();
  const double load_s = seconds_since(t0);
  const Reading loaded = read_memory();
  t0 = Clock::now();
  use(*model);
  backend.synchronize();
  const double first_s = seconds_since(t0);
  const Reading used = read_memory();
  t0 = Clock::now();
  use(*model);
  backend.synchronize();
  const double second_s = seconds_since(t0);
  std::printf("%s: %s\n", what.c_str(), model->source().c_str());
  if (bytes >= 0) std::printf("  weight files %.1f MiB\n", mib(bytes));
  std::printf("  load %.3f s, first use %.3f s, second use %.3f s\n", load_s, first_s, second_s);
  std::printf("  RSS before %.1f MiB%s; below, + is over that\n", mib(base.rss),
              reset ? "" : " (peak could not be reset: peaks include earlier work)");
  print_memory("after load", loaded, base);
  print_memory("after first use", used, base);
  std::fflush(stdout);
}

}  // namespace

// Writes `root`/unet/{config.json, diffusion_pytorch_model.fp16.safetensors}.
void sd::bench::write_random_sd15_unet(const std::filesystem::path& root, Backend& backend) {
  namespace fs = std::filesystem;
  const auto t0 = Clock::now();
  const fs::path dir = root / "unet";
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << kSd15UNetConfig;
  const std::string file = (dir / "diffusion_pytorch_model.fp16.safetensors").string();
  {
    RecordingHashWeights weights;
    UNet::create(sd15_unet_config(), weights, backend);  // asks for every parameter once
    write_safetensors(file, weights.tensors(), {{"format", "pt"}});
  }
  ::malloc_trim(0);  // hand the freed model and copies back, so the load starts from a low RSS
  std::printf("wrote %s (%.0f MiB) in %.1f s\n", file.c_str(), mib(int64_t(fs::file_size(file))),
              seconds_since(t0));
  std::fflush(stdout);
}

SD_BENCH("load") {
  BackendOptions opts;
  opts.dtype = env_or("SD_BENCH_LOAD_DTYPE", "f32");
  auto backend = make_backend(opts);
  Backend& be = *backend;
  const int size = std::stoi(env_or("SD_BENCH_LOAD_SIZE", "256"));
  SD_CHECK(size > 0 && size % 64 == 0, "SD_BENCH_LOAD_SIZE ", size,
           " must be a positive multiple of 64");
  const int64_t lat = size / 8;
  std::printf("backend: %s; first use at %dx%d (latents %lldx%lld)\n", be.description().c_str(),
              size, size, (long long)lat, (long long)lat);

  fs::path root = env_or("SD_BENCH_LOAD_MODEL", "");
  fs::path temp;
  if (root.empty()) {
    temp = fs::temp_directory_path() / ("sd_bench_load_" + std::to_string(::getpid()));
    sd::bench::write_random_sd15_unet(temp, be);
    root = temp;
  }
  SD_CHECK(fs::is_directory(root), "SD_BENCH_LOAD_MODEL '", root.string(), "' is not a folder");
  try {
    const fs::path unet = root / "unet";
    if (is_file(unet / "config.json")) {
      measure(
          "UNet", find_component_weights(unet, "diffusion_pytorch_model", "UNet folder"), be,
          [&] { return UNet::load(unet.string(), be); },
          [&](UNet& m) {
            const auto& c = m.config();
            Tensor x = bench::persistent_input(be, Shape{1, lat, lat, c.in_channels}, 0.017f);
            Tensor s = bench::persistent_input(be, Shape{1, 77, c.cross_attention_dim}, 0.011f);
            m.forward(x, {500}, s);
          });
    }
    const fs::path text = root / "text_encoder";
    if (is_file(text / "config.json")) {
      measure(
          "text encoder", find_component_weights(text, "model", "text encoder folder"), be,
          [&] { return ClipTextModel::load(text.string(), be); },
          [&](ClipTextModel& m) {
            const int n = m.config().max_position_embeddings, vocab = m.config().vocab_size;
            std::vector<int> ids;
            for (int i = 0; i < n; ++i) ids.push_back((i * 7919) % vocab);
            m.forward(ids, 1);
          });
    }
    const fs::path vae = root / "vae";
    if (is_file(vae / "config.json")) {
      measure(
          "VAE (AutoencoderKL, decode)",
          find_component_weights(vae, "diffusion_pytorch_model", "VAE folder"), be,
          [&] { return AutoencoderKL::load(vae.string(), be); },
          [&](AutoencoderKL& m) {
            const int64_t c = m.config().latent_channels;
            m.decode(bench::persistent_input(be, Shape{1, lat, lat, c}, 0.013f));
          });
    }
    std::string taesd = env_or("SD_BENCH_LOAD_TAESD", "");
    if (taesd.empty() && fs::is_directory(root / "taesd")) taesd = (root / "taesd").string();
    if (!taesd.empty()) {
      const fs::path t(taesd);
      const std::string weights =
          is_file(t / "config.json")
              ? find_component_weights(t, "diffusion_pytorch_model", "TAESD folder")
              : (is_file(t) ? taesd : "");
      measure(
          "TAESD (decode)", weights, be, [&] { return Taesd::load(taesd, be); },
          [&](Taesd& m) {
            const int64_t c = m.config().latent_channels;
            m.decode(bench::persistent_input(be, Shape{1, lat, lat, c}, 0.013f));
          });
    }
  } catch (...) {
    if (!temp.empty()) fs::remove_all(temp);
    throw;
  }
  if (!temp.empty()) fs::remove_all(temp);
}
