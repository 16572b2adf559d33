// TAESD encode and decode with the full-size (madebyollin/taesd) architecture on deterministic
// random weights, at 512x512 and 256x256, in f32 and bf16 (where the CPU runs bf16 natively).
// The arena is planned before timing (one untimed pass, then reserve(peak())), so the timed runs
// allocate nothing; the overflow count printed with each line shows it. Then the convolution
// chain (Backend::conv_chain: oneDNN's blocked layout between convolutions, the default) against
// the same layers conv by conv (NHWC between them), interleaved.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "bench.h"
#include "io/safetensors.h"
#include "models/taesd.h"

namespace {

namespace fs = std::filesystem;
using namespace sd;

// Multiply-adds x 2 of every conv of the encoder / decoder at an H x W image.
double conv_flops(int64_t h, int64_t w, int64_t cin, int64_t cout, int64_t k = 3) {
  return 2.0 * double(h * w) * double(cin * cout * k * k);
}

double encoder_gflop(const TaesdConfig& c, int64_t h, int64_t w) {
  double f = 0;
  int64_t ch = c.in_channels;
  for (size_t s = 0; s < c.num_encoder_blocks.size(); ++s) {
    int64_t out = c.encoder_block_out_channels[s];
    if (s > 0) h /= 2, w /= 2;
    f += conv_flops(h, w, ch, out) + 3 * c.num_encoder_blocks[s] * conv_flops(h, w, out, out);
    ch = out;
  }
  return (f + conv_flops(h, w, ch, c.latent_channels)) * 1e-9;
}

double decoder_gflop(const TaesdConfig& c, int64_t h, int64_t w) {
  int64_t ch = c.decoder_block_out_channels[0];
  double f = conv_flops(h, w, c.latent_channels, ch);
  for (size_t s = 0; s < c.num_decoder_blocks.size(); ++s) {
    bool last = s + 1 == c.num_decoder_blocks.size();
    f += 3 * c.num_decoder_blocks[s] * conv_flops(h, w, ch, ch);
    if (!last) h *= 2, w *= 2;
    f += conv_flops(h, w, ch, last ? c.out_channels : ch);
  }
  return f * 1e-9;
}

// A diffusers-layout TAESD file with the default config and random weights (scaled like
// He-uniform so activations stay finite through the residual blocks).
std::string write_random_taesd(const fs::path& path) {
  TaesdConfig c;
  std::mt19937 rng(1234);
  std::map<std::string, Tensor> t;
  auto conv = [&](const std::string& name, int64_t out, int64_t in, bool bias) {
    Tensor w = Tensor::host(Shape{out, in, 3, 3}, DType::F16);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    const float a = std::sqrt(6.f / float(in * 9)) * 0.5f;
    for (int64_t i = 0; i < w.numel(); ++i) w.data_as<f16>()[i] = to_f16(a * u(rng));
    t[name + ".weight"] = w;
    if (bias) {
      Tensor b = Tensor::host(Shape{out}, DType::F16);
      for (int64_t i = 0; i < out; ++i) b.data_as<f16>()[i] = to_f16(0.05f * u(rng));
      t[name + ".bias"] = b;
    }
  };
  auto block = [&](const std::string& name, int64_t ch) {
    for (const char* k : {".conv.0", ".conv.2", ".conv.4"}) conv(name + k, ch, ch, true);
  };
  int i = 0;
  int64_t ch = c.in_channels;
  for (size_t s = 0; s < c.num_encoder_blocks.size(); ++s) {
    int64_t out = c.encoder_block_out_channels[s];
    conv("encoder.layers." + std::to_string(i++), out, s == 0 ? ch : out, s == 0);
    for (int b = 0; b < c.num_encoder_blocks[s]; ++b)
      block("encoder.layers." + std::to_string(i++), out);
    ch = out;
  }
  conv("encoder.layers." + std::to_string(i), c.latent_channels, ch, true);
  ch = c.decoder_block_out_channels[0];
  conv("decoder.layers.0", ch, c.latent_channels, true);
  i = 2;
  for (size_t s = 0; s < c.num_decoder_blocks.size(); ++s) {
    bool last = s + 1 == c.num_decoder_blocks.size();
    for (int b = 0; b < c.num_decoder_blocks[s]; ++b)
      block("decoder.layers." + std::to_string(i++), ch);
    if (!last) ++i;  // upsample
    conv("decoder.layers." + std::to_string(i++), last ? c.out_channels : ch, ch, last);
  }
  write_safetensors(path.string(), t);
  return path.string();
}

// A persistent (non-arena) device tensor filled with a smooth pattern in [-1, 1].
Tensor input(Backend& b, const Shape& shape) {
  Tensor h = Tensor::host(shape, DType::F32);
  for (int64_t i = 0; i < h.numel(); ++i) h.data_as<float>()[i] = std::sin(0.013f * float(i));
  Tensor d = b.empty(shape, b.compute_dtype());
  b.copy_from_host(h, d);
  b.synchronize();
  return d;
}

}  // namespace

SD_BENCH("taesd") {
  const fs::path file =
      fs::temp_directory_path() / ("sd_bench_taesd_" + std::to_string(::getpid()) + ".safetensors");
  write_random_taesd(file);
  const std::vector<std::string> dtypes = sd::bench::cpu_dtypes();
  for (const std::string& dtype : dtypes) {
    BackendOptions opts;
    opts.dtype = dtype;
    auto backend = make_backend(opts);
    auto model = Taesd::load(file.string(), *backend);
    std::printf("backend: %s\n", backend->description().c_str());
    for (int size : {512, 256}) {
      Tensor image = input(*backend, Shape{1, size, size, 3});
      Tensor latents = input(*backend, Shape{1, size / 8, size / 8, 4});
      auto encode = [&] {
        Tensor z = model->encode(image);
        backend->synchronize();
      };
      auto decode = [&] {
        Tensor y = model->decode(latents);
        backend->synchronize();
      };
      // Plan: one pass of each (both chain modes) sizes the arena; then every timed pass fits.
      for (bool fused : {false, true}) {
        cpu_set_conv_chain_fused(*backend, fused);
        encode();
        decode();
      }
      backend->arena().reserve(backend->arena().peak());
      backend->arena().reset_stats();
      const TaesdConfig& c = model->config();
      struct Part {
        const char* name;
        std::function<void()> fn;
        double gflop;
      } parts[] = {{"encode", encode, encoder_gflop(c, size, size)},
                   {"decode", decode, decoder_gflop(c, size / 8, size / 8)}};
      for (const Part& p : parts) {
        sd::bench::Stats s = sd::bench::time_it(p.fn, 3, 1);
        std::printf(
            "taesd %s %dx%d %s: min %.1f ms, median %.1f ms (%d runs), %.0f GFLOP -> %.0f "
            "GFLOP/s at min\n",
            p.name, size, size, dtype.c_str(), s.min_ms, s.median_ms, s.runs, p.gflop,
            p.gflop / (s.min_ms * 1e-3));
        std::fflush(stdout);
      }
      // The convolution chain (intermediates in oneDNN's layout, the default) against conv by
      // conv (NHWC between convolutions), timed calls interleaved.
      for (const Part& p : parts) {
        std::vector<double> chained, stepwise;
        for (int r = 0; r < 3; ++r)
          for (bool fused : {true, false}) {
            cpu_set_conv_chain_fused(*backend, fused);
            (fused ? chained : stepwise).push_back(sd::bench::time_it(p.fn, 1, 0).min_ms);
          }
        cpu_set_conv_chain_fused(*backend, true);
        const sd::bench::Stats a = sd::bench::stats_of(chained), b = sd::bench::stats_of(stepwise);
        std::printf(
            "taesd %s %dx%d %s, chained vs conv by conv (interleaved): min %.1f / %.1f ms, "
            "median %.1f / %.1f ms -> %.2fx at median\n",
            p.name, size, size, dtype.c_str(), a.min_ms, b.min_ms, a.median_ms, b.median_ms,
            b.median_ms / a.median_ms);
        std::fflush(stdout);
      }
      std::printf("arena: %.1f MiB reserved, %zu overflow allocations while timing\n",
                  double(backend->arena().capacity()) / (1 << 20),
                  backend->arena().overflow_count());
    }
  }
  fs::remove(file);
}
