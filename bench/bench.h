// A small benchmark harness: each bench/*.cpp registers named benchmarks with SD_BENCH; the
// `streamdiff_bench` binary runs the ones whose name matches its arguments (all by default)
// and prints what ran, the machine, and min/median times.
#pragma once

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace sd::bench {

struct Registry {
  struct Entry {
    std::string name;
    std::function<void()> fn;
  };
  static std::vector<Entry>& all() {
    static std::vector<Entry> v;
    return v;
  }
};

struct Registrar {
  Registrar(const char* name, std::function<void()> fn) {
    Registry::all().push_back({name, std::move(fn)});
  }
};

struct Stats {
  double min_ms = 0, median_ms = 0;
  int runs = 0;
};

// Runs fn `warmup` times untimed, then `runs` times (at least), returns min/median in ms.
Stats time_it(const std::function<void()>& fn, int runs = 5, int warmup = 1);
// Min and median of measured times in ms (zeros for none).
Stats stats_of(std::vector<double> ms);

// A persistent device tensor in the backend's compute dtype filled with sin(freq * i): a
// deterministic, non-trivial model input.
Tensor persistent_input(Backend& b, const Shape& shape, float freq);

// The compute dtypes this CPU can benchmark: f32, and bf16 where it runs natively.
std::vector<std::string> cpu_dtypes();

// Prints the machine line: CPU model, cores, ISA oneDNN uses, date.
void print_machine();

// Writes `root`/unet/{config.json, diffusion_pytorch_model.fp16.safetensors}: the full-size
// SD 1.5 UNet with hash-random weights, as a diffusers folder (bench_load.cpp).
void write_random_sd15_unet(const std::filesystem::path& root, Backend& backend);

}  // namespace sd::bench

#define SD_BENCH_CAT2(a, b) a##b
#define SD_BENCH_CAT(a, b) SD_BENCH_CAT2(a, b)
#define SD_BENCH(name)                                                 \
  static void SD_BENCH_CAT(sd_bench_fn_, __LINE__)();                  \
  static ::sd::bench::Registrar SD_BENCH_CAT(sd_bench_reg_, __LINE__)( \
      name, SD_BENCH_CAT(sd_bench_fn_, __LINE__));                     \
  static void SD_BENCH_CAT(sd_bench_fn_, __LINE__)()
