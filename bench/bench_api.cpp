// The public API's cost and memory (bench "api"), on a full-size model with random weights
// (Model::random, SD 2.1 / sd-turbo UNet by default, the committed full-size random TAESD):
//
// 1. Per-frame overhead: img2img through the API (u8 RGB in, u8 RGB out, settings sync, stats)
//    against the engine's Stream::img2img_tensor on the same model (f32 in, f32 out), frames
//    interleaved in one run; min / median of each, and the API's own work (input and output
//    conversion) timed on its own.
// 2. Memory: resident memory after loading the model, after a first stream's first frames, and
//    after a second stream on the same model: a second stream must not load the weights again.
//
// Environment: SD_BENCH_API_ARCH (a Model::random name, default sd21), SD_BENCH_API_SIZE
// (default 256), SD_BENCH_API_FRAMES (timed frames per path, default 6), SD_BENCH_API_DTYPE
// (default f32).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "api/frame_convert.h"
#include "api/model_impl.h"
#include "bench.h"
#include "core/machine.h"
#include "pipeline/stream.h"
#include "streamdiff/media.hpp"
#include "streamdiff/streamdiff.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

double mib(int64_t bytes) {
  return double(bytes) / double(1 << 20);
}

void min_median(std::vector<double> v, double* min, double* median) {
  std::sort(v.begin(), v.end());
  *min = v.front();
  *median = v[v.size() / 2];
}

}  // namespace

SD_BENCH("api") {
  using namespace streamdiff;
  const std::string arch = env_or("SD_BENCH_API_ARCH", "sd21");
  const int size = std::atoi(env_or("SD_BENCH_API_SIZE", "256").c_str());
  const int frames = std::max(2, std::atoi(env_or("SD_BENCH_API_FRAMES", "6").c_str()));
  ModelOptions o;
  o.taesd = std::string(SD_FIXTURE_DIR) + "/taesd/full";
  o.dtype = env_or("SD_BENCH_API_DTYPE", "f32");

  const int64_t rss0 = sd::process_memory().rss;
  auto t0 = Clock::now();
  const Model model = Model::random(arch, o);
  const double load_ms = ms_since(t0);
  const int64_t rss_model = sd::process_memory().rss;
  std::printf("api: random %s UNet + full-size random TAESD, %dx%d, %s; loaded in %.0f ms\n",
              arch.c_str(), size, size, model.info().backend.c_str(), load_ms);

  StreamConfig c;
  c.width = c.height = size;
  c.t_index_list = {35};  // sd-turbo img2img: one step
  c.cfg_type = CfgType::None;
  c.prompt = "an oil painting";
  Stream api(model, c);
  const Image in = resize_cover(read_image(SD_DATA_DIR "/images/portrait.png"), size, size);
  Image out = in;
  api.img2img(in.view(), out.mutable_view());
  api.img2img(in.view(), out.mutable_view());
  const int64_t rss_one = sd::process_memory().rss;

  // The engine's Stream on the same model parts (the API serializes work per model with exec).
  Model::Impl& m = *ModelAccess::impl(model);
  sd::StreamSettings s;
  s.width = s.height = size;
  s.t_index_list = c.t_index_list;
  s.cfg_type = sd::CfgType::None;
  sd::Stream engine(*m.backend, *m.unet, *m.codec, nullptr, s);
  sd::Tensor x = sd::Tensor::host(sd::Shape{1, size, size, 3}, sd::DType::F32);
  {
    std::lock_guard<std::mutex> lock(m.exec);
    engine.prepare_embeddings(m.encode_prompt(c.prompt), m.encode_prompt(""));
    for (int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = in.rgb[size_t(i)] / 127.5f - 1;
    engine.img2img_tensor(x);
  }

  std::vector<double> api_ms, engine_ms;
  for (int k = 0; k < frames; ++k) {
    t0 = Clock::now();
    api.img2img(in.view(), out.mutable_view());
    api_ms.push_back(ms_since(t0));
    t0 = Clock::now();
    {
      std::lock_guard<std::mutex> lock(m.exec);
      engine.img2img_tensor(x);
    }
    engine_ms.push_back(ms_since(t0));
  }
  double amin, amed, emin, emed;
  min_median(api_ms, &amin, &amed);
  min_median(engine_ms, &emin, &emed);
  // The API's own per-frame work, timed alone: u8 -> f32 input and f32 -> u8 output.
  std::vector<float> buf(size_t(size) * size * 3, 0.5f);
  detail::InputConverter conv;
  t0 = Clock::now();
  constexpr int kReps = 50;
  for (int r = 0; r < kReps; ++r) {
    conv.convert(in.view(), size, size, buf.data());
    detail::write_output(buf.data(), out.mutable_view());
  }
  const double convert_ms = ms_since(t0) / kReps;
  std::printf(
      "  per frame, %d frames each, interleaved: API min %.1f / median %.1f ms, Stream "
      "min %.1f / median %.1f ms; API/Stream median %.4f\n",
      frames, amin, amed, emin, emed, amed / emed);
  std::printf("  the API's own work (u8 -> f32 in, f32 -> u8 out): %.3f ms = %.3f%% of a frame\n",
              convert_ms, 100.0 * convert_ms / emed);

  Stream second(model, c);
  second.img2img(in.view(), out.mutable_view());
  second.img2img(in.view(), out.mutable_view());
  const int64_t rss_two = sd::process_memory().rss;
  std::printf(
      "  memory (RSS): model %.0f MiB; + first stream %.0f MiB; + second stream on the "
      "same model %.0f MiB (%.1f%% of the model)\n",
      mib(rss_model - rss0), mib(rss_one - rss_model), mib(rss_two - rss_one),
      100.0 * double(rss_two - rss_one) / double(rss_model - rss0));
}
