// The full AutoencoderKL of SD 1.x / 2.x (channels 128, 256, 512, 512; 2 layers per block) on
// deterministic hash-random weights (core/hash_random.h): decode and encode at 256x256 and (unless
// SD_BENCH_VAE_SIZES=256) 512x512 images, f32 (and bf16 where the CPU runs it natively). The
// arena is planned before timing (one untimed pass, then reserve(peak())). GFLOP are counted from
// the config (convolutions, attention matmuls; the encoder's downsampling convs as the 3x3 convs
// diffusers runs, although they run here as 4x4 kernels: see autoencoder_kl.h).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "bench.h"
#include "core/hash_random.h"
#include "models/autoencoder_kl.h"
#include "models/unet.h"

namespace {

using namespace sd;

// Random weights by name: conv kernels and matrices uniform with variance 1 / fan_in, norm
// scales 1 ± 0.1, biases and norm shifts ± 0.05.
class HashVaeWeights : public UNetWeightSource {
 public:
  Tensor get(const std::string& name, const Shape& expect) override {
    Tensor t = Tensor::host(expect, DType::F32);
    float scale = 0.05f, offset = 0.f;
    const bool is_weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
    if (expect.rank >= 2) {
      scale = std::sqrt(3.f / float(expect.numel() / expect[0]));
    } else if (is_weight) {
      scale = 0.1f;
      offset = 1.f;
    }
    hash_uniform(name, scale, offset, t.data_as<float>(), size_t(t.numel()));
    params_ += t.numel();
    return t;
  }
  std::string describe() const override { return "hash-random SD AutoencoderKL weights"; }
  int64_t params() const { return params_; }

 private:
  int64_t params_ = 0;
};

double conv_flop(double pixels, int64_t cin, int64_t cout, int k) {
  return 2.0 * pixels * double(cin) * double(cout) * k * k;
}

double resnet_flop(double pixels, int64_t cin, int64_t cout) {
  return conv_flop(pixels, cin, cout, 3) + conv_flop(pixels, cout, cout, 3) +
         (cin != cout ? conv_flop(pixels, cin, cout, 1) : 0.0);
}

double mid_flop(const AutoencoderKLConfig& c, double pixels) {
  const int64_t ch = c.block_out_channels.back();
  double f = 2 * resnet_flop(pixels, ch, ch);
  if (c.mid_block_add_attention)
    f += 4 * conv_flop(pixels, ch, ch, 1) + 2 * 2.0 * pixels * pixels * double(ch);
  return f;
}

// image h x w
double encode_gflop(const AutoencoderKLConfig& c, int64_t h, int64_t w) {
  double px = double(h * w);
  double f = conv_flop(px, c.in_channels, c.block_out_channels[0], 3);
  int64_t ch = c.block_out_channels[0];
  for (size_t i = 0; i < c.block_out_channels.size(); ++i) {
    const int64_t out = c.block_out_channels[i];
    for (int j = 0; j < c.layers_per_block; ++j, ch = out) f += resnet_flop(px, ch, out);
    if (i + 1 < c.block_out_channels.size()) {
      px /= 4;
      f += conv_flop(px, out, out, 3);
    }
  }
  const int64_t lat2 = 2 * c.latent_channels;
  f += mid_flop(c, px) + conv_flop(px, ch, lat2, 3) + conv_flop(px, lat2, c.latent_channels, 1);
  return f * 1e-9;
}

// latents h x w
double decode_gflop(const AutoencoderKLConfig& c, int64_t h, int64_t w) {
  double px = double(h * w);
  const int64_t lat = c.latent_channels;
  int64_t ch = c.block_out_channels.back();
  double f = conv_flop(px, lat, lat, 1) + conv_flop(px, lat, ch, 3) + mid_flop(c, px);
  const size_t n = c.block_out_channels.size();
  for (size_t i = 0; i < n; ++i) {
    const int64_t out = c.block_out_channels[n - 1 - i];
    for (int j = 0; j < c.layers_per_block + 1; ++j, ch = out) f += resnet_flop(px, ch, out);
    if (i + 1 < n) {
      px *= 4;
      f += conv_flop(px, out, out, 3);
    }
  }
  return (f + conv_flop(px, ch, c.out_channels, 3)) * 1e-9;
}

}  // namespace

SD_BENCH("vae") {
  std::vector<int> sizes = {256, 512};
  if (const char* env = std::getenv("SD_BENCH_VAE_SIZES"); env && std::string(env) == "256")
    sizes = {256};
  const std::vector<std::string> dtypes = sd::bench::cpu_dtypes();
  const AutoencoderKLConfig config = AutoencoderKLConfig::stable_diffusion();
  for (const std::string& dtype : dtypes) {
    BackendOptions opts;
    opts.dtype = dtype;
    auto backend = make_backend(opts);
    HashVaeWeights weights;
    auto t0 = std::chrono::steady_clock::now();
    auto model = AutoencoderKL::create(config, weights, *backend);
    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("backend: %s\nSD AutoencoderKL: %.1f M parameters, built in %.1f s\n",
                backend->description().c_str(), double(weights.params()) * 1e-6, load_s);
    std::fflush(stdout);
    for (int size : sizes) {
      const int lat = size / config.downscale();
      Tensor latents = sd::bench::persistent_input(*backend, Shape{1, lat, lat, 4}, 0.017f);
      Tensor image = sd::bench::persistent_input(*backend, Shape{1, size, size, 3}, 0.013f);
      auto decode = [&] {
        Tensor y = model->decode(latents);
        backend->synchronize();
      };
      auto encode = [&] {
        Tensor z = model->encode(image);
        backend->synchronize();
      };
      decode();  // plan
      encode();
      backend->arena().reserve(backend->arena().peak());
      backend->arena().reset_stats();
      const int runs = size == 512 ? 1 : 2;
      struct Part {
        const char* name;
        std::function<void()> fn;
        double gflop;
      } parts[] = {{"decode", decode, decode_gflop(config, lat, lat)},
                   {"encode", encode, encode_gflop(config, size, size)}};
      for (const Part& p : parts) {
        sd::bench::Stats s = sd::bench::time_it(p.fn, runs, 0);
        std::printf(
            "vae sd %dx%d %s %s: min %.0f ms, median %.0f ms (%d runs), %.0f GFLOP -> %.0f "
            "GFLOP/s at min\n",
            size, size, dtype.c_str(), p.name, s.min_ms, s.median_ms, s.runs, p.gflop,
            p.gflop / (s.min_ms * 1e-3));
        std::fflush(stdout);
      }
      std::printf("arena: %.1f MiB reserved, %zu overflow allocations while timing\n",
                  double(backend->arena().capacity()) / (1 << 20),
                  backend->arena().overflow_count());
    }
  }
}
