// `streamdiff serve` under load (bench "serve"), in-process on loopback:
//
// 1. The server's own work per frame at 512²: JPEG decode of the input and encode of the output
//    (TurboJPEG), against the engine's frame time.
// 2. Throughput with 1, 4 and 16 clients, each a WebSocket client that answers every send_frame
//    with the next frame (the portrait at the session's size), on the committed tiny model and on
//    a full-size sd-turbo-architecture model with random weights (Model::random("sd21") + the
//    full-size random TAESD) at 256², img2img one step (t_index [35], cfg none) for the full
//    model. Reported: total outputs per second, per-client fps, latency p50 (receive -> output)
//    and the engine's time per frame, from /api/stats.
//
// Environment: SD_BENCH_SERVE_SECONDS (per row, default 10 for the tiny model, 6x that for the
// full one), SD_BENCH_SERVE_FULL=0 skips the full-size model, SD_BENCH_SERVE_CLIENTS (e.g. "1,4").
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../tests/serve_client.h"
#include "bench.h"
#include "serve/server.h"
#include "streamdiff/media.hpp"
#include "streamdiff/streamdiff.hpp"

namespace {

using namespace streamdiff;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

std::vector<int> client_counts() {
  std::vector<int> v;
  std::stringstream in(env_or("SD_BENCH_SERVE_CLIENTS", "1,4,16"));
  std::string x;
  while (std::getline(in, x, ',')) v.push_back(std::atoi(x.c_str()));
  return v;
}

std::string uuid(int k) {
  char s[40];
  std::snprintf(s, sizeof s, "00000000-0000-4000-8000-%012d", k);
  return s;
}

void jpeg_costs(const Image& portrait) {
  const Image frame = resize_cover(portrait, 512, 512);
  const std::vector<uint8_t> jpeg = encode_jpeg(frame, 90);
  const auto dec = sd::bench::time_it([&] { decode_image(jpeg.data(), jpeg.size(), "f"); }, 50);
  const auto enc = sd::bench::time_it([&] { encode_jpeg(frame, 85); }, 50);
  std::printf(
      "  server work per 512² frame: JPEG decode %.2f / %.2f ms, encode %.2f / %.2f ms "
      "(min / median of 50; input %zu bytes)\n",
      dec.min_ms, dec.median_ms, enc.min_ms, enc.median_ms, jpeg.size());
}

// Runs `clients` clients against a fresh server for `seconds` once all are connected.
void load_row(const Model& model, const StreamConfig& config, const Image& portrait, int clients,
              double seconds) {
  serve::ServerOptions o;
  o.port = 0;
  o.max_clients = std::max(16, clients);
  o.img2img = config;
  o.txt2img = config;
  serve::Server server(model, o);
  const int port = server.port();
  const std::vector<uint8_t> jpeg =
      encode_jpeg(resize_cover(portrait, config.width, config.height), 90);
  std::atomic<int> connected{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      test::WsClient ws(port, uuid(c));
      if (!ws.read_until("send_frame")) return;
      ++connected;
      while (connected < clients && !stop)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      while (!stop) {
        ws.frame({{"width", config.width}, {"height", config.height}}, jpeg);
        if (!ws.read_until("send_frame")) return;
      }
      ws.close();
    });
  while (connected < clients) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto frames_out = [&] {
    int64_t n = 0;
    for (const json& s : json::parse(test::http_get(port, "/api/stats").body)["sessions"])
      n += s["frames_out"].get<int64_t>();
    return n;
  };
  const int64_t before = frames_out();
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const json stats = json::parse(test::http_get(port, "/api/stats").body);
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  int64_t after = 0;
  std::vector<double> p50, compute;
  for (const json& s : stats["sessions"]) {
    after += s["frames_out"].get<int64_t>();
    p50.push_back(s["latency_ms"]["p50"].get<double>());
    compute.push_back(s["compute_ms"].get<double>());
  }
  stop = true;
  for (auto& t : threads) t.join();
  std::sort(p50.begin(), p50.end());
  std::sort(compute.begin(), compute.end());
  const double fps = double(after - before) / wall;
  std::printf(
      "  %2d client%s: %6.2f frames/s in all, %6.2f per client; latency p50 %.0f ms "
      "(median over clients); engine %.1f ms per frame\n",
      clients, clients == 1 ? " " : "s", fps, fps / clients, p50[p50.size() / 2],
      compute[compute.size() / 2]);
}

}  // namespace

SD_BENCH("serve") {
  const Image portrait = read_image(SD_DATA_DIR "/images/portrait.png");
  jpeg_costs(portrait);
  const double seconds = std::atof(env_or("SD_BENCH_SERVE_SECONDS", "10").c_str());

  ModelOptions tiny;
  tiny.taesd = std::string(SD_FIXTURE_DIR) + "/taesd/tiny";
  tiny.dtype = "f32";
  const Model small = Model::load(std::string(SD_FIXTURE_DIR) + "/tiny_sd", tiny);
  StreamConfig c;
  c.width = c.height = 256;
  c.t_index_list = {32, 45};
  c.prompt = "an oil painting";
  std::printf(
      "  tiny model (tests/fixtures/tiny_sd + tiny TAESD), 256², t_index [32, 45], "
      "cfg self, %s:\n",
      small.info().backend.c_str());
  for (int n : client_counts()) load_row(small, c, portrait, n, seconds);

  if (env_or("SD_BENCH_SERVE_FULL", "1") == "0") return;
  ModelOptions full = tiny;
  full.taesd = std::string(SD_FIXTURE_DIR) + "/taesd/full";
  full.dtype = env_or("SD_BENCH_SERVE_DTYPE", "auto");
  const Model turbo = Model::random("sd21", full);
  c.t_index_list = {35};
  c.cfg_type = CfgType::None;
  std::printf(
      "  full-size sd-turbo architecture (random weights) + full TAESD, 256², one step, "
      "%s:\n",
      turbo.info().backend.c_str());
  for (int n : client_counts()) load_row(turbo, c, portrait, n, seconds * 6);
}
