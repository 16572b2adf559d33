// Text encoders: encode time for one 77-token prompt with the full-size ViT-L/14 (SD 1.x) and
// OpenCLIP ViT-H/14 (SD 2.x, 23 layers) architectures, f32 and bf16, on hash_random weights
// (the time does not depend on the values). Also the cost of a cached prompt.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "bench.h"
#include "models/clip_text.h"
#include "models/prompt_encoder.h"
#include "text/clip_tokenizer.h"

namespace {

void bench_encoder(const char* name, const sd::ClipTextConfig& config, const char* dtype,
                   const std::shared_ptr<const sd::text::ClipTokenizer>& tokenizer) {
  sd::BackendOptions o;
  o.dtype = dtype;
  auto backend = sd::make_backend(o);
  const auto t0 = std::chrono::steady_clock::now();
  std::shared_ptr<sd::ClipTextModel> model = sd::ClipTextModel::hash_random(config, *backend);
  const double build_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::vector<int> ids =
      tokenizer->tokenize_for_model("a photo of an astronaut riding a horse on mars");
  const double gflop = config.flops(77) / 1e9;
  const auto t1 = std::chrono::steady_clock::now();
  model->forward_to_host(ids, 1);  // first run: creates the kernels and packs the weights
  const double first_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::printf("%-8s %-4s weights generated + converted %.2f s, first encode %.2f s\n", name, dtype,
              build_s, first_s);
  sd::bench::Stats s = sd::bench::time_it([&] { model->forward_to_host(ids, 1); }, 5, 1);
  std::printf(
      "%-8s %-4s encode 77 tokens: min %7.1f ms  median %7.1f ms  %5.1f GFLOP  %6.1f GFLOP/s\n",
      name, dtype, s.min_ms, s.median_ms, gflop, gflop / (s.min_ms / 1e3));

  sd::PromptEncoder encoder(tokenizer, model);
  encoder.encode("a photo of an astronaut riding a horse on mars");
  const int lookups = 10000;
  sd::bench::Stats c = sd::bench::time_it(
      [&] {
        for (int i = 0; i < lookups; ++i)
          encoder.encode("a photo of an astronaut riding a horse on mars");
      },
      5, 1);
  std::printf("%-8s %-4s cached prompt: %.3f us per lookup (%zu encodes)\n", name, dtype,
              c.min_ms * 1e3 / lookups, encoder.forward_count());
}

}  // namespace

SD_BENCH("text") {
  auto tokenizer =
      std::make_shared<const sd::text::ClipTokenizer>(sd::text::ClipTokenizer::builtin());
  for (const char* dtype : {"f32", "bf16"}) {
    if (std::string(dtype) == "bf16" && !sd::cpu_has_native_bf16()) {
      std::printf("bf16: skipped, this CPU has no native bf16\n");
      continue;
    }
    bench_encoder("ViT-L/14", sd::ClipTextConfig::vit_l14(), dtype, tokenizer);
    bench_encoder("ViT-H/14", sd::ClipTextConfig::vit_h14(), dtype, tokenizer);
  }
}
