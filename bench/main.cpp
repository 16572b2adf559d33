// streamdiff_bench [filter ...]: runs the registered benchmarks whose name contains a filter.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>

#include <oneapi/dnnl/dnnl.hpp>

#include <cmath>
#include "backend/cpu/cpu_backend.h"
#include "bench.h"
#include "core/error.h"
#include "core/machine.h"

namespace sd::bench {

Stats time_it(const std::function<void()>& fn, int runs, int warmup) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return stats_of(ms);
}

Stats stats_of(std::vector<double> ms) {
  if (ms.empty()) return Stats{};
  std::sort(ms.begin(), ms.end());
  return Stats{ms.front(), ms[ms.size() / 2], int(ms.size())};
}

Tensor persistent_input(Backend& b, const Shape& shape, float freq) {
  Tensor h = Tensor::host(shape, DType::F32);
  for (int64_t i = 0; i < h.numel(); ++i) h.data_as<float>()[i] = std::sin(freq * float(i));
  Tensor d = b.empty(shape, b.compute_dtype());
  b.copy_from_host(h, d);
  b.synchronize();
  return d;
}

std::vector<std::string> cpu_dtypes() {
  std::vector<std::string> dtypes = {"f32"};
  if (cpu_has_native_bf16()) dtypes.push_back("bf16");
  return dtypes;
}

static const char* isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    default:
      return "other";
  }
}

void print_machine() {
  char date[32];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  std::printf("machine: %s, %u hardware threads, oneDNN ISA %s, %s\n", cpu_model_name().c_str(),
              std::thread::hardware_concurrency(), isa_name(dnnl::get_effective_cpu_isa()), date);
}

}  // namespace sd::bench

namespace {

void print_usage(std::FILE* f) {
  std::fprintf(
      f,
      "usage: streamdiff_bench [--csv-dir DIR] [NAME ...]\n"
      "Runs the benchmarks whose name contains one of the NAMEs (all but soak without one) and "
      "prints the machine, what ran and min/median times.\n"
      "--csv-dir DIR: where `soak` writes its CSVs (default build/soak).\nBenchmarks:");
  for (const auto& e : sd::bench::Registry::all()) std::fprintf(f, " %s", e.name.c_str());
  std::fprintf(f, "\n");
}

}  // namespace

// Exit codes: 0 every benchmark ran, 1 one failed, 2 a NAME that matches no benchmark.
int main(int argc, char** argv) {
  using namespace sd::bench;
  // Options are taken out of argv; what remains are names.
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--csv-dir") == 0) {
      if (i + 1 == argc) {
        std::fprintf(stderr, "error: --csv-dir needs a directory\n");
        return 2;
      }
      setenv("SD_SOAK_CSV_DIR", argv[++i], 1);
      continue;
    }
    argv[kept++] = argv[i];
  }
  argc = kept;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      print_usage(stdout);
      return 0;
    }
  for (int i = 1; i < argc; ++i) {
    bool matched = false;
    for (const auto& e : Registry::all())
      matched = matched || e.name.find(argv[i]) != std::string::npos;
    if (!matched) {
      std::fprintf(stderr, "error: no benchmark matches '%s'\n", argv[i]);
      print_usage(stderr);
      return 2;
    }
  }
  print_machine();
  int failures = 0;
  for (const auto& e : Registry::all()) {
    bool run = argc < 2 && e.name != "soak";  // the 20-minute soak runs only when named
    for (int i = 1; i < argc; ++i) run = run || e.name.find(argv[i]) != std::string::npos;
    if (!run) continue;
    std::printf("\n== %s\n", e.name.c_str());
    std::fflush(stdout);
    try {
      e.fn();
    } catch (const std::exception& ex) {
      std::printf("FAILED: %s\n", ex.what());
      ++failures;
    }
    std::fflush(stdout);
  }
  return failures ? 1 : 0;
}
