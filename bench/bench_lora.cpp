// LoRA fusing on the full-size SD 1.5 UNet (hash-random weights, f32): a synthetic adapter with
// the shape of LCM-LoRA SD 1.5 (rank 64 on every attention q/k/v/out, proj_in/out, feed-forward,
// ResNet conv1/conv2/time_emb_proj/conv_shortcut and sampler conv; kohya format) is written to a
// temporary file, read, fused, re-fused with another scale and un-fused. Prints the adapter's
// size and the time of each step (each touches every targeted weight of the UNet). The UNet is
// the full-size SD 1.5 one with hash-random weights, written to a temporary fp16 diffusers
// folder and loaded from it, so fusing re-reads the base weights from the mapped file as it
// does for real models.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "bench.h"
#include "core/hash_random.h"
#include "io/safetensors.h"
#include "models/ldm_checkpoint.h"
#include "models/lora.h"
#include "models/unet.h"
#include "models/unet_hash_weights.h"

using namespace sd;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool lcm_lora_target(const std::string& m) {
  for (const char* s : {"to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
                        "ff.net.2", "conv1", "conv2", "time_emb_proj", "conv_shortcut"})
    if (m.ends_with(s)) return true;
  return m.find("samplers.0.conv") != std::string::npos;
}

}  // namespace

SD_BENCH("lora") {
  BackendOptions opts;
  opts.dtype = "f32";
  auto backend = make_backend(opts);
  // A file-backed UNet, as users load one: fusing re-reads the base weights from the mapping.
  const std::filesystem::path root =
      std::filesystem::temp_directory_path() / ("sd_bench_lora_" + std::to_string(getpid()));
  sd::bench::write_random_sd15_unet(root, *backend);
  auto model = UNet::load((root / "unet").string(), *backend);
  LoraTargets& targets = model->lora_targets();

  const int64_t rank = 64;
  std::map<std::string, Tensor> tensors;
  int64_t params = 0;
  for (const std::string& m : targets.modules()) {
    if (!lcm_lora_target(m)) continue;
    const Shape& s = targets.shape(m);
    Shape down = s, up{s[0], rank};
    down[0] = rank;
    if (s.rank == 4) up = Shape{s[0], rank, 1, 1};
    std::string key = "lora_unet_" + m;
    for (char& c : key)
      if (c == '.') c = '_';
    tensors[key + ".lora_down.weight"] = hash_host_tensor(key + ".down", down, 0.01f);
    tensors[key + ".lora_up.weight"] = hash_host_tensor(key + ".up", up, 0.01f);
    Tensor alpha = Tensor::host(Shape{}, DType::F32);
    alpha.data_as<float>()[0] = float(rank);
    tensors[key + ".alpha"] = alpha;
    params += down.numel() + up.numel();
  }
  const std::string path = (root / "lora.safetensors").string();
  write_safetensors(path, tensors);

  auto t0 = std::chrono::steady_clock::now();
  const LoraFile lora = LoraFile::load(path);
  const double read_s = seconds_since(t0);
  std::printf(
      "backend: %s\nadapter: %zu layers, rank %lld, %.1f M parameters (%.0f MB f32; "
      "LCM-LoRA SD 1.5 has 67.5 M)\n",
      backend->description().c_str(), lora.layers().size(), (long long)rank, double(params) * 1e-6,
      double(params) * 4e-6);
  t0 = std::chrono::steady_clock::now();
  const LoraFuseReport r = fuse_lora(lora, 1.f, model.get(), nullptr);
  const double fuse_s = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  fuse_lora(lora, 0.5f, model.get(), nullptr);
  const double refuse_s = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  unfuse_lora(model.get(), nullptr);
  const double unfuse_s = seconds_since(t0);
  std::filesystem::remove_all(root);
  std::printf("%-28s %10s\n", "step (UNet weights touched)", "seconds");
  std::printf("%-28s %10.2f\n", "read file", read_s);
  std::printf("%-28s %10.2f   (%d weights)\n", "fuse, scale 1", fuse_s, r.unet_layers);
  std::printf("%-28s %10.2f\n", "re-fuse, scale 0.5", refuse_s);
  std::printf("%-28s %10.2f\n", "unfuse", unfuse_s);
}
