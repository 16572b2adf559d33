// A soak test (bench "soak"): is latency stable and memory flat over a long run? Run by hand,
// not a ctest; exits nonzero (FAILED: ...) when file descriptors grew or the resident memory
// grew by more than 1% after the warm-up, naming the measured numbers.
//
// 1. "api": the committed tiny model (tests/fixtures/tiny_sd + tiny TAESD, f32), one img2img
//    stream at 256², t_index [32, 45], N frames through the public API (Stream::img2img), each
//    frame timed; resident memory (VmRSS) and open file descriptors sampled every 100 frames.
// 2. "serve": the server in-process on 127.0.0.1 (ephemeral port) with the same model; C
//    WebSocket connections in all, up to 4 at a time. Each joins with a new uuid, opens its
//    MJPEG stream, sends 1-5 frames (the demo's protocol) and times each from sending to its
//    output JPEG arriving, then leaves: a clean close, an abrupt one (RST) or an abrupt one with
//    a frame still in the engine, in turn. Every 50 connections, once the server has no session
//    left, memory and descriptors are sampled.
//
// The client side runs in the same process, so its sockets count too; samples are taken when no
// client is connected. Warm-up: the first 5% of frames / connections. CSVs go to
// $SD_SOAK_CSV_DIR (`streamdiff_bench soak --csv-dir DIR`), default build/soak: api.csv
// (frame, latency_ms, rss_mib, fds; the last two every 100 frames) and serve.csv (connection,
// frames, latency_p50_ms, latency_p99_ms, rss_mib, fds; one row per window of 50 connections).
// bench/plot_soak.py draws them.
//
// Environment: SD_SOAK_FRAMES (default 10000), SD_SOAK_CONNECTIONS (default 2000),
// SD_SOAK_PHASES ("api,serve"), SD_SOAK_CSV_DIR, SD_SOAK_THREADS (the model's CPU threads,
// default all cores).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "../tests/serve_client.h"
#include "bench.h"
#include "serve/server.h"
#include "streamdiff/media.hpp"
#include "streamdiff/streamdiff.hpp"

namespace {

using namespace streamdiff;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr int kApiSampleEvery = 100;
constexpr int kServeWindow = 50;
constexpr int kMaxConcurrent = 4;

std::atomic<int64_t> g_progress{0};  // for the watchdog: bumped by every frame and connection

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// VmRSS from /proc/self/status, in MiB.
double rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return -1;
}

// The open file descriptors as "N -> target", from /proc/self/fd (less the one listing it).
std::vector<std::string> open_fds() {
  const std::string self = "/proc/" + std::to_string(getpid()) + "/fd";
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = fs::read_symlink(e.path(), ec).string();
    if (target != self) v.push_back(e.path().filename().string() + " -> " + target);
  }
  std::sort(v.begin(), v.end());
  return v;
}

// The 1-, 5- and 15-minute load averages: other work on the machine shows in the latencies.
std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(q * double(v.size())))];
}

struct Sample {
  int64_t x = 0;  // frames or connections done
  double rss = 0;
  int fds = 0;
  std::vector<std::string> fd_list;
};

Sample sample_now(int64_t x) {
  Sample s{x, rss_mib(), 0, open_fds()};
  s.fds = int(s.fd_list.size());
  return s;
}

struct Timed {
  int64_t x = 0;  // frame or connection index
  double ms = 0;
};

// Prints the phase's summary; returns what failed ("" when nothing did).
std::string summarize(const std::string& phase, const char* unit, int64_t total,
                      const std::vector<Timed>& lat, const std::vector<Sample>& samples) {
  const int64_t warm = total * 5 / 100, tenth = std::max<int64_t>(1, total / 10);
  std::vector<double> early, late;
  for (const Timed& t : lat) {
    if (t.x >= warm && t.x < warm + tenth) early.push_back(t.ms);
    if (t.x >= total - tenth) late.push_back(t.ms);
  }
  const Sample* w = &samples.back();
  for (const Sample& s : samples)
    if (s.x >= warm) {
      w = &s;
      break;
    }
  const Sample& start = samples.front();
  const Sample& end = samples.back();
  const double growth = 100.0 * (end.rss - w->rss) / w->rss;
  std::printf(
      "  %s: %lld %s, %zu timed frames; latency p50 / p99: %s %lld-%lld %.1f / %.1f ms, "
      "last %lld %.1f / %.1f ms\n",
      phase.c_str(), (long long)total, unit, lat.size(), unit, (long long)warm,
      (long long)(warm + tenth - 1), percentile(early, 0.5), percentile(early, 0.99),
      (long long)tenth, percentile(late, 0.5), percentile(late, 0.99));
  std::printf(
      "  %s: RSS %.1f MiB after warm-up (%s %lld), %.1f MiB at the end: %+.2f%%; fds %d at the "
      "start, %d at the end; load average %s\n",
      phase.c_str(), w->rss, unit, (long long)w->x, end.rss, growth, start.fds, end.fds,
      load_average().c_str());
  std::string failed;
  if (end.fds > start.fds) {
    failed += phase + ": file descriptors grew from " + std::to_string(start.fds) + " to " +
              std::to_string(end.fds) + " (new:";
    for (const std::string& fd : end.fd_list)
      if (!std::binary_search(start.fd_list.begin(), start.fd_list.end(), fd)) failed += " " + fd;
    failed += "); ";
  }
  if (growth > 1.0) {
    char s[200];
    std::snprintf(s, sizeof s, "%s: RSS grew %.2f%% after warm-up (%.1f -> %.1f MiB, limit 1%%); ",
                  phase.c_str(), growth, w->rss, end.rss);
    failed += s;
  }
  if (percentile(late, 0.99) > 1.5 * percentile(early, 0.99))
    std::printf("  %s: note: the late p99 is over 1.5x the early one (a shared machine?)\n",
                phase.c_str());
  return failed;
}

fs::path csv_dir() {
  fs::path dir = env_or("SD_SOAK_CSV_DIR", "build/soak");
  fs::create_directories(dir);
  return dir;
}

Model tiny_model() {
  ModelOptions o;
  o.taesd = std::string(SD_FIXTURE_DIR) + "/taesd/tiny";
  o.dtype = "f32";
  o.threads = std::atoi(env_or("SD_SOAK_THREADS", "0").c_str());
  return Model::load(std::string(SD_FIXTURE_DIR) + "/tiny_sd", o);
}

StreamConfig tiny_config() {
  StreamConfig c;
  c.width = c.height = 256;
  c.t_index_list = {32, 45};
  c.prompt = "an oil painting";
  return c;
}

std::string api_phase(const Model& model, const Image& portrait, int frames) {
  const StreamConfig c = tiny_config();
  const Image in = resize_cover(portrait, c.width, c.height);
  Image out = in;
  std::vector<Timed> lat;
  std::vector<Sample> samples;
  std::vector<double> rss_col(size_t(frames), -1);
  std::vector<int> fds_col(size_t(frames), -1);
  {
    Stream stream(model, c);
    for (int i = 0; i < frames; ++i) {
      const auto t0 = Clock::now();
      stream.img2img(in.view(), out.mutable_view());
      lat.push_back({i, ms_since(t0)});
      ++g_progress;
      if (i % kApiSampleEvery == 0 || i == frames - 1) {
        samples.push_back(sample_now(i));
        rss_col[size_t(i)] = samples.back().rss;
        fds_col[size_t(i)] = samples.back().fds;
      }
      if ((i + 1) % 1000 == 0) {
        std::printf("  api: %d frames, last %.1f ms, RSS %.1f MiB\n", i + 1, lat.back().ms,
                    rss_mib());
        std::fflush(stdout);
      }
    }
  }
  const fs::path path = csv_dir() / "api.csv";
  std::ofstream f(path);
  f << "frame,latency_ms,rss_mib,fds\n";
  char row[96];
  for (int i = 0; i < frames; ++i) {
    if (rss_col[size_t(i)] >= 0)
      std::snprintf(row, sizeof row, "%d,%.3f,%.2f,%d\n", i, lat[size_t(i)].ms, rss_col[size_t(i)],
                    fds_col[size_t(i)]);
    else
      std::snprintf(row, sizeof row, "%d,%.3f,,\n", i, lat[size_t(i)].ms);
    f << row;
  }
  std::printf("  api: wrote %s\n", path.c_str());
  return summarize("api", "frames", frames, lat, samples);
}

std::string uuid(int k) {
  char s[40];
  std::snprintf(s, sizeof s, "00000000-0000-4000-8000-%012d", k);
  return s;
}

// Drops the connection with a RST (SO_LINGER 0) instead of a close handshake.
template <class Socket>
void abort_on_close(Socket& socket) {
  boost::system::error_code ec;
  socket.set_option(boost::asio::socket_base::linger(true, 0), ec);
}

// One client: joins, opens its MJPEG stream, sends 1-5 frames, leaves (clean, abrupt, or abrupt
// with a frame in flight). Appends each answered frame's round trip to `lat`.
void one_connection(int port, int k, const std::vector<uint8_t>& jpeg, const StreamConfig& c,
                    std::vector<Timed>& lat) {
  const std::string id = uuid(k);
  test::WsClient ws(port, id);
  if (!ws.read_until("send_frame"))
    throw std::runtime_error("connection " + std::to_string(k) + ": no send_frame");
  test::MjpegReader mjpeg(port, "/api/stream/" + id);
  if (mjpeg.status_line.find(" 200 ") == std::string::npos)
    throw std::runtime_error("connection " + std::to_string(k) + ": MJPEG " + mjpeg.status_line);
  const int frames = 1 + k % 5, leave = k % 3;  // 0 clean, 1 abrupt, 2 abrupt mid-frame
  const nlohmann::json params = {{"width", c.width}, {"height", c.height}};
  for (int f = 0; f < frames; ++f) {
    const auto t0 = Clock::now();
    ws.frame(params, jpeg);
    if (leave == 2 && f == frames - 1) break;  // leave with this frame in the engine
    if (mjpeg.next().empty() || !ws.read_until("send_frame"))
      throw std::runtime_error("connection " + std::to_string(k) + ": frame " + std::to_string(f) +
                               " got no output");
    lat.push_back({k, ms_since(t0)});
    ++g_progress;
  }
  if (leave == 0)
    ws.close();
  else
    abort_on_close(test::beast::get_lowest_layer(ws.stream()).socket());
  ++g_progress;
}

int server_sessions(int port) {
  const auto h = nlohmann::json::parse(test::http_get(port, "/api/health").body);
  return h["sessions"].get<int>();
}

std::string serve_phase(const Model& model, const Image& portrait, int connections) {
  const StreamConfig c = tiny_config();
  serve::ServerOptions o;
  o.port = 0;
  o.max_clients = 8;
  o.img2img = c;
  o.txt2img = c;
  serve::Server server(model, o);
  const int port = server.port();
  const std::vector<uint8_t> jpeg = encode_jpeg(resize_cover(portrait, c.width, c.height), 90);

  std::vector<Timed> lat;
  std::vector<Sample> samples;
  // A sample once every client is gone and the server has closed its sessions.
  auto sample = [&](int64_t done) {
    const auto t0 = Clock::now();
    while (server_sessions(port) > 0) {
      if (ms_since(t0) > 30000) throw std::runtime_error("serve: sessions did not end in 30 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the server's HTTP close
    samples.push_back(sample_now(done));
  };
  std::FILE* csv = std::fopen((csv_dir() / "serve.csv").c_str(), "w");
  if (!csv) throw std::runtime_error("serve: cannot write serve.csv");
  sample(0);
  std::fprintf(csv, "connection,frames,latency_p50_ms,latency_p99_ms,rss_mib,fds\n");
  std::fprintf(csv, "0,0,,,%.2f,%d\n", samples[0].rss, samples[0].fds);
  std::string error;
  for (int begin = 0; begin < connections && error.empty(); begin += kServeWindow) {
    const int end = std::min(connections, begin + kServeWindow);
    std::atomic<int> next{begin};
    std::vector<std::vector<Timed>> per_thread(kMaxConcurrent);
    std::vector<std::string> errors(kMaxConcurrent);
    std::vector<std::thread> threads;
    for (int t = 0; t < kMaxConcurrent; ++t)
      threads.emplace_back([&, t] {
        try {
          for (int k = next++; k < end; k = next++)
            one_connection(port, k, jpeg, c, per_thread[size_t(t)]);
        } catch (const std::exception& e) {
          errors[size_t(t)] = e.what();
          next = end;
        }
      });
    for (auto& t : threads) t.join();
    for (const std::string& e : errors)
      if (!e.empty()) error = "serve: " + e;
    std::vector<double> window;
    for (const auto& v : per_thread)
      for (const Timed& t : v) {
        lat.push_back(t);
        window.push_back(t.ms);
      }
    sample(end);
    std::fprintf(csv, "%d,%zu,%.3f,%.3f,%.2f,%d\n", end, lat.size(), percentile(window, 0.5),
                 percentile(window, 0.99), samples.back().rss, samples.back().fds);
    std::fflush(csv);
    if (end % 500 == 0) {
      std::printf("  serve: %d connections, %zu frames, window p50 %.1f ms, RSS %.1f MiB, %d fds\n",
                  end, lat.size(), percentile(window, 0.5), samples.back().rss, samples.back().fds);
      std::fflush(stdout);
    }
  }
  std::fclose(csv);
  if (!error.empty()) return error;
  std::printf("  serve: wrote %s\n", (csv_dir() / "serve.csv").c_str());
  return summarize("serve", "connections", connections, lat, samples);
}

}  // namespace

SD_BENCH("soak") {
  const int frames = std::max(20, std::atoi(env_or("SD_SOAK_FRAMES", "10000").c_str()));
  const int connections = std::max(20, std::atoi(env_or("SD_SOAK_CONNECTIONS", "2000").c_str()));
  const std::string phases = env_or("SD_SOAK_PHASES", "api,serve");
  const Image portrait = read_image(SD_DATA_DIR "/images/portrait.png");
  const Model model = tiny_model();
  std::printf(
      "  tiny model (tests/fixtures/tiny_sd + tiny TAESD), 256², t_index [32, 45], cfg self, "
      "%s; CSVs in %s\n",
      model.info().backend.c_str(), csv_dir().c_str());
  std::fflush(stdout);

  // A hung client or server would block forever: give up after 2 minutes without progress.
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    int64_t seen = -1;
    auto since = Clock::now();
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      if (g_progress != seen) {
        seen = g_progress;
        since = Clock::now();
      } else if (ms_since(since) > 120000) {
        std::fprintf(stderr, "soak: no progress for 2 minutes, giving up\n");
        std::_Exit(3);
      }
    }
  });
  std::string failed;
  try {
    if (phases.find("api") != std::string::npos) {
      ++g_progress;
      failed += api_phase(model, portrait, frames);
    }
    ++g_progress;
    if (phases.find("serve") != std::string::npos)
      failed += serve_phase(model, portrait, connections);
  } catch (...) {
    done = true;
    watchdog.join();
    throw;
  }
  done = true;
  watchdog.join();
  if (!failed.empty()) throw std::runtime_error("soak: " + failed);
  std::printf("  soak: passed (fds flat, RSS growth within 1%% after warm-up)\n");
}
