// `streamdiff bench`: the paper's comparisons (arXiv 2312.12491) on this machine, img2img on a
// synthetic frame, printed as tables:
//   batch     Stream Batch vs sequential denoising, n = 1..--max-steps (cfg self)
//   cfg       cfg none / self / initialize / full (guidance 1.2), n = 1..--max-steps
//   ablation  the full pipeline (Stream Batch, cfg self, TAESD, K/V cache, IO threads) at
//             n = --max-steps vs the same without one of them
// Models: --model, a diffusers model folder or a single-file checkpoint (loaded with --taesd; a
// VAE in it adds the full-VAE row; checked with inspect_model before loading), or, without it, a
// full-size random UNet of --arch (Model::random: hash-random weights
// and prompt embeddings). TAESD: --taesd, or the committed full-size random TAESD
// (tests/fixtures/taesd/full, looked up from the working directory and the binary's). Written
// on the public API: each row is a Stream with StreamConfig::time_stages.
//
// Timing: per frame, pre+enc = input conversion + VAE encode (+ the output's conversion), unet =
// the UNet passes plus the scheduler arithmetic, decode = VAE decode; the stream synchronizes
// the device after each stage. The first frame (which fills the pipeline and prepares kernels)
// is excluded; min / median are over --frames frames of each of --repeats rounds, fps = 1000 /
// median frame ms. Rounds interleave the rows of a table (every row once per round, odd rounds in
// reverse order), so that a slow spell of the machine falls on all rows alike; "spread" is the
// range of the rows' per-round medians over their median, and each table ends with the ratios
// the paper states (sequential / Stream Batch, full / self CFG, ablation / full), each with the
// range of its per-round values: a ratio whose range includes 1 is within the noise. With IO
// threads (the stream's asynchronous mode, a producer thread submitting) a frame's time is the
// interval between consecutive outputs. No row reads, decodes, encodes or writes an image (the
// frame is synthetic, the output stays in memory): "without IO threads" compares the synchronous
// call with the worker thread and its queues, nothing more. Before the first row, one untimed frame
// prepares the kernels every row shares (oneDNN primitives, packed weights): without it the first
// row of
// `--tables batch,cfg --max-steps 1` at 256² was 6-8% slower than the later row doing the same
// work (2601 vs 2412 ms min), with it within 1% (2379 vs 2408). After the first row, the total
// time is estimated from it and the rows' relative costs (row_weight).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "commands.h"
#include "paths.h"
#include "streamdiff/media.hpp"
#include "streamdiff/tools.hpp"

namespace streamdiff::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

struct BenchArgs {
  std::string model, taesd, arch = "sd15";
  int width = 256, height = 256, frames = 5, max_steps = 4, repeats = 1;
  std::vector<std::string> tables{"batch", "cfg", "ablation"};
  ModelOptions backend;
};

struct BenchModels {
  std::optional<Model> taesd;  // the UNet with TAESD
  std::optional<Model> vae;    // the same UNet with the AutoencoderKL (--model with vae/ only)
  std::string what;            // one line: which weights
};

// One measured configuration (a table row).
struct RowResult {
  std::string label;
  bool available = true;
  std::string note;  // why n/a, or how the row was obtained
  double min_ms = 0, median_ms = 0, pre_ms = 0, unet_ms = 0, post_ms = 0;
  double spread_pct = 0;             // (max - min) of the per-round medians / median, in %
  std::vector<double> round_median;  // one per round
};

// A row's per-frame samples, pooled over rounds.
struct RowSamples {
  std::vector<double> total, pre, unet, post;
  std::vector<double> round_median;  // median frame time of each round
};

struct RowSpec {
  int n = 1;
  bool batch = true;
  CfgType cfg = CfgType::Self;
  bool io_threads = false;
  bool full_vae = false;
  bool precompute_kv = true;  // StreamConfig::precompute_kv
};

std::string find_default_taesd() {
  const fs::path rel = fs::path("tests") / "fixtures" / "taesd" / "full";
  std::vector<fs::path> roots{fs::current_path()};
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (fs::path p = exe.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path())
      roots.push_back(p);
  for (const fs::path& r : roots)
    if (fs::is_regular_file(r / rel / "config.json")) return (r / rel).string();
  check(false, "bench: no --taesd given and the committed random TAESD (", rel.string(),
        ") was not found from the working directory or the binary's folder; pass --taesd");
  return "";
}

void print_machine(const BenchArgs& a, const ModelInfo& info) {
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::printf("machine: %s, %u hardware threads, %d used; backend %s; dtype %s; %s\n",
              cpu_model_name().c_str(), std::thread::hardware_concurrency(),
              a.backend.threads > 0 ? a.backend.threads : int(std::thread::hardware_concurrency()),
              info.backend.c_str(), info.dtype.c_str(), date);
}

// `model`, `taesd`: the resolved --model path ("" for random weights) and --taesd path ("" for
// the committed random TAESD).
BenchModels load_models(const BenchArgs& a, const std::string& model, const std::string& taesd,
                        bool have_vae) {
  const auto t0 = Clock::now();
  BenchModels m;
  ModelOptions o = a.backend;
  o.taesd = taesd.empty() ? find_default_taesd() : taesd;
  if (!model.empty()) {
    m.taesd = Model::load(model, o);
    m.what = "weights: " + a.model;
    if (have_vae) {
      ModelOptions v = a.backend;
      m.vae = Model::load(model, v);
    }
  } else {
    m.taesd = Model::random(a.arch, o);
    m.what = "weights: full-size hash-random " + a.arch + " UNet";
  }
  m.what += ", TAESD " + o.taesd + (m.vae ? ", AutoencoderKL from the model" : "");
  m.what += a.model.empty() ? ", hash-random prompt embeddings"
                            : ", prompt embeddings from text_encoder/";
  std::printf("%s; loaded in %.0f ms\n", m.what.c_str(), ms_between(t0, Clock::now()));
  return m;
}

// A deterministic test card: gradients plus a checkerboard, so encode sees real structure.
Image synthetic_frame(int w, int h) {
  Image img;
  img.width = w, img.height = h;
  img.rgb.resize(size_t(w) * size_t(h) * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &img.rgb[(size_t(y) * size_t(w) + size_t(x)) * 3];
      p[0] = uint8_t(255 * x / std::max(1, w - 1));
      p[1] = uint8_t(255 * y / std::max(1, h - 1));
      p[2] = ((x / 16 + y / 16) % 2) ? 200 : 40;
    }
  return img;
}

std::vector<int> spread_t_index(int n) {
  // n indices spread over [0, 45] of 50 LCM steps (the paper's 4-step list is 0, 16, 32, 45).
  if (n == 1) return {45};
  std::vector<int> t;
  for (int i = 0; i < n; ++i) t.push_back(int(std::lround(45.0 * i / (n - 1))));
  return t;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[(v.size() - 1) / 2];
}

// Pooled per-frame samples -> min / median; stage columns are medians.
RowResult summarize(std::string label, RowSamples x) {
  check(!x.total.empty(), "bench: no timed frames");
  RowResult r;
  r.label = std::move(label);
  r.min_ms = *std::min_element(x.total.begin(), x.total.end());
  r.median_ms = median(std::move(x.total));
  r.pre_ms = median(std::move(x.pre));
  r.unet_ms = median(std::move(x.unet));
  r.post_ms = median(std::move(x.post));
  const auto [lo, hi] = std::minmax_element(x.round_median.begin(), x.round_median.end());
  r.spread_pct = 100.0 * (*hi - *lo) / r.median_ms;
  r.round_median = std::move(x.round_median);
  return r;
}

// One round of a row: appends its frames' samples to `x`.
void run_row(const BenchArgs& a, BenchModels& m, const RowSpec& spec, RowSamples& x) {
  StreamConfig s;
  s.width = a.width, s.height = a.height;
  s.t_index_list = spread_t_index(spec.n);
  s.use_denoising_batch = spec.batch;
  s.cfg_type = spec.cfg;
  s.precompute_kv = spec.precompute_kv;
  s.time_stages = true;  // encode / UNet / decode times per frame (the device synchronizes)
  s.prompt = "a photo of a cat, best quality";
  Stream stream(spec.full_vae ? *m.vae : *m.taesd, s);
  const Image frame = synthetic_frame(a.width, a.height);
  Image out = frame;

  const size_t F = size_t(a.frames);
  std::vector<double> total;  // this round's frame times (x.total pools all rounds)
  if (!spec.io_threads) {
    // The first frame fills the pipeline (n - 1 warm-up passes) and prepares the kernels.
    stream.img2img(frame.view(), out.mutable_view());
    for (size_t k = 0; k < F; ++k) {
      const auto t0 = Clock::now();
      const FrameInfo info = stream.img2img(frame.view(), out.mutable_view());
      const double ms = ms_between(t0, Clock::now());
      x.pre.push_back(ms - info.unet_ms - info.decode_ms);  // conversions + VAE encode
      x.unet.push_back(info.unet_ms);
      x.post.push_back(info.decode_ms);
      total.push_back(ms);
    }
  } else {
    // A producer thread submits F + 1 frames (the first warms up); outputs are polled here.
    AsyncOptions async;
    stream.start(async);
    std::thread producer([&] {
      for (size_t k = 0; k <= F; ++k)
        if (!stream.submit(frame.view(), int64_t(k))) break;
      stream.end_input();
    });
    std::vector<Clock::time_point> done;
    FrameInfo info;
    while (stream.poll(out.mutable_view(), &info)) {
      done.push_back(Clock::now());
      if (info.tag == 0) continue;  // the warm-up frame
      x.pre.push_back(info.encode_ms);
      x.unet.push_back(info.unet_ms);
      x.post.push_back(info.decode_ms);
    }
    producer.join();
    stream.stop();
    // The first output's time includes filling the pipeline; later ones are the steady rate.
    for (size_t k = 1; k < done.size(); ++k) total.push_back(ms_between(done[k - 1], done[k]));
  }
  check(!total.empty(), "bench: no timed frames");
  x.round_median.push_back(median(total));
  x.total.insert(x.total.end(), total.begin(), total.end());
}

void print_table(const char* title, const std::vector<RowResult>& rows, int repeats) {
  std::printf("\n%s\n", title);
  std::printf("%-34s %8s %10s %10s %11s %10s %11s %9s\n", "config", "fps", "min ms", "median ms",
              "pre+enc ms", "unet ms", "decode ms", repeats > 1 ? "spread %" : "");
  for (const RowResult& r : rows) {
    if (!r.available) {
      std::printf("%-34s %8s   %s\n", r.label.c_str(), "n/a", r.note.c_str());
      continue;
    }
    char spread[32] = "";
    if (repeats > 1) std::snprintf(spread, sizeof spread, "%9.1f", r.spread_pct);
    std::printf("%-34s %8.3f %10.1f %10.1f %11.1f %10.1f %11.1f %s%s%s\n", r.label.c_str(),
                1000.0 / r.median_ms, r.min_ms, r.median_ms, r.pre_ms, r.unet_ms, r.post_ms, spread,
                r.note.empty() ? "" : "  ", r.note.c_str());
  }
  std::fflush(stdout);
}

// The ratios a table exists to show, as (numerator, denominator) row labels.
std::vector<std::pair<std::string, std::string>> table_ratios(const std::string& table,
                                                              const std::vector<RowResult>& rows) {
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const RowResult& r : rows) {
    const std::string& l = r.label;
    const size_t at = l.find(' ');
    const std::string n = l.substr(0, at);  // "n=3" in the batch and cfg tables
    if (table == "batch" && l.ends_with(" sequential")) pairs.emplace_back(l, n + " stream batch");
    if (table == "cfg" && l.ends_with(" cfg full")) pairs.emplace_back(l, n + " cfg self");
    if (table == "cfg" && l.ends_with(" cfg none")) pairs.emplace_back(l, n + " cfg self");
    if (table == "ablation" && l != "full pipeline") pairs.emplace_back(l, "full pipeline");
  }
  return pairs;
}

// Ratio of the rows' medians, with the range of the per-round ratios (rounds interleave rows,
// so round k of both rows ran close together).
void print_ratios(const std::string& table, const std::vector<RowResult>& rows, int repeats) {
  auto find = [&](const std::string& label) -> const RowResult* {
    for (const RowResult& r : rows)
      if (r.label == label && r.available) return &r;
    return nullptr;
  };
  bool any = false;
  for (const auto& [num, den] : table_ratios(table, rows)) {
    const RowResult *a = find(num), *b = find(den);
    if (!a || !b) continue;
    if (!any)
      std::printf("ratios of median frame times%s:\n", repeats > 1 ? " (per-round range)" : "");
    any = true;
    std::printf("  %-30s / %-18s %6.2f", num.c_str(), den.c_str(), a->median_ms / b->median_ms);
    if (repeats > 1) {
      double lo = 1e300, hi = 0;
      for (size_t k = 0; k < a->round_median.size() && k < b->round_median.size(); ++k) {
        const double q = a->round_median[k] / b->round_median[k];
        lo = std::min(lo, q), hi = std::max(hi, q);
      }
      std::printf("  (%.2f-%.2f)", lo, hi);
    }
    std::printf("\n");
  }
  std::fflush(stdout);
}

void announce(const char* table, const std::string& ran) {
  std::printf("\n== %s: %s\n", table, ran.c_str());
  std::fflush(stdout);
}

// A row to run: its table, label and configuration (or why it is not available).
struct PlannedRow {
  std::string table;
  std::string label;
  RowSpec spec;
  std::string unavailable;  // non-empty: not run, shown as n/a with this note
};

// A row's cost relative to others, for the time estimate: UNet rows per pass (cfg none / self
// n, initialize n + 1, full 2n) plus the VAE (TAESD ≈ 0.4 of a UNet row at 256², the full
// AutoencoderKL ≈ 4), times the passes the row runs.
double row_weight(const BenchArgs& a, const RowSpec& s) {
  const int unet = s.cfg == CfgType::Full ? 2 * s.n : s.cfg == CfgType::Initialize ? s.n + 1 : s.n;
  // The untimed first frame, the timed ones, and with Stream Batch n - 1 pipeline-filling passes.
  const int passes = a.frames + 1 + (s.batch ? s.n - 1 : 0);
  return double(passes) * (unet + (s.full_vae ? 4.0 : 0.4));
}

std::vector<PlannedRow> plan_rows(const BenchArgs& a, bool have_vae) {
  const int N = a.max_steps;
  auto wants = [&](const std::string& t) {
    return std::find(a.tables.begin(), a.tables.end(), t) != a.tables.end();
  };
  std::vector<PlannedRow> rows;
  if (wants("batch"))
    for (int n = 1; n <= N; ++n)
      for (bool batch : {true, false})
        rows.push_back({"batch",
                        "n=" + std::to_string(n) + (batch ? " stream batch" : " sequential"),
                        {n, batch, CfgType::Self, false},
                        ""});
  if (wants("cfg"))
    for (int n = 1; n <= N; ++n)
      for (CfgType c : {CfgType::None, CfgType::Self, CfgType::Initialize, CfgType::Full})
        rows.push_back({"cfg",
                        "n=" + std::to_string(n) + " cfg " + cfg_type_name(c),
                        {n, true, c, false},
                        ""});
  if (wants("ablation")) {
    const RowSpec full{N, true, CfgType::Self, true};
    rows.push_back({"ablation", "full pipeline", full, ""});
    RowSpec vae = full;
    vae.full_vae = true;
    rows.push_back({"ablation", "without TAESD (AutoencoderKL)", vae,
                    have_vae ? "" : "no VAE (needs --model with a vae/ folder or VAE tensors)"});
    RowSpec plain_kv = full;  // every UNet pass projects the prompt's K/V itself
    plain_kv.precompute_kv = false;
    rows.push_back({"ablation", "without K/V precompute", plain_kv, ""});
    RowSpec seq = full;
    seq.batch = false;
    rows.push_back({"ablation", "without batching (sequential)", seq, ""});
    RowSpec sync = full;
    sync.io_threads = false;
    rows.push_back({"ablation", "without IO threads", sync, ""});
  }
  return rows;
}

// The kernels every row shares (the first convolutions and matmuls of each shape, oneDNN's
// primitive creation, the weights' packing) are prepared by an untimed frame of a stream of the
// first row's size, so that the first timed row does not pay for them.
void warm_up(const BenchArgs& a, BenchModels& m) {
  const auto t0 = Clock::now();
  StreamConfig s;
  s.width = a.width, s.height = a.height;
  s.t_index_list = {45};
  s.prompt = "a photo of a cat, best quality";
  Stream stream(*m.taesd, s);
  const Image frame = synthetic_frame(a.width, a.height);
  Image out = frame;
  stream.img2img(frame.view(), out.mutable_view());
  std::printf("warm-up (kernels and weights prepared, untimed): %.1f s\n",
              ms_between(t0, Clock::now()) / 1000.0);
  std::fflush(stdout);
}

void run_bench(const BenchArgs& a) {
  for (const auto& [flag, v] : {std::pair{"--width", a.width}, std::pair{"--height", a.height}})
    check(v > 0 && v <= 4096 && v % 8 == 0, flag, " ", v,
          " must be a positive multiple of 8 (of 64 for a real SD model), at most 4096");
  check(a.frames >= 1, "--frames ", a.frames, " must be at least 1");
  check(a.repeats >= 1 && a.repeats <= 100, "--repeats ", a.repeats, " must be in [1, 100]");
  check(a.max_steps >= 1 && a.max_steps <= 50, "--max-steps ", a.max_steps, " must be in [1, 50]");
  const std::string taesd =
      a.taesd.empty() ? std::string() : resolve_model_arg(a.taesd, "--taesd", a.backend.pull);
  bool have_vae = false;
  std::string model;
  if (!a.model.empty()) {
    model = resolve_model_arg(a.model, "--model", a.backend.pull);
    try {
      const ModelSummary summary = inspect_model(model, taesd);
      have_vae = summary.has_vae;
      for (const auto& [flag, v] : {std::pair{"--width", a.width}, std::pair{"--height", a.height}})
        check(v % summary.size_multiple == 0, flag, " ", v, " must be a multiple of ",
              summary.size_multiple, " for this model");
    } catch (const Error& e) {
      if (e.status() == Status::InvalidArgument) throw;
      throw Error(e.status(), "--model '" + a.model + "': " + e.what());
    }
  }
  BenchModels m = load_models(a, model, taesd, have_vae);
  print_machine(a, m.taesd->info());
  char common[160];
  std::snprintf(common, sizeof common,
                "img2img %dx%d, 50 LCM steps, t_index spread over [0, 45], %d timed frames after "
                "warm-up, per-frame min/median",
                a.width, a.height, a.frames);
  const std::string n_max = std::to_string(a.max_steps);
  const std::vector<std::pair<std::string, std::string>> tables = {
      {"batch", std::string("Stream Batch vs sequential denoising, cfg self (g 1.2), TAESD, no IO "
                            "threads; ") +
                    common},
      {"cfg", std::string("cfg none / self / initialize / full (g 1.2), Stream Batch, TAESD, no "
                          "IO threads; ") +
                  common},
      {"ablation", "n=" + n_max +
                       ", cfg self (g 1.2); full = Stream Batch + TAESD + K/V cache + IO "
                       "threads; " +
                       common}};
  const std::map<std::string, const char*> titles = {{"batch", "(a) Stream Batch vs sequential"},
                                                     {"cfg", "(b) residual CFG"},
                                                     {"ablation", "(c) ablation"}};
  const std::vector<PlannedRow> plan = plan_rows(a, m.vae.has_value());
  double total_weight = 0;
  for (const PlannedRow& r : plan)
    if (r.unavailable.empty()) total_weight += row_weight(a, r.spec);
  warm_up(a, m);

  const auto t0 = Clock::now();
  total_weight *= a.repeats;
  double done_weight = 0;
  bool estimated = false;
  for (const auto& [table, description] : tables) {
    std::vector<const PlannedRow*> in_table;
    for (const PlannedRow& r : plan)
      if (r.table == table) in_table.push_back(&r);
    if (in_table.empty()) continue;
    announce(table.c_str(), description);
    std::vector<RowSamples> samples(in_table.size());
    for (int round = 0; round < a.repeats; ++round)
      for (size_t k = 0; k < in_table.size(); ++k) {
        const size_t i = round % 2 ? in_table.size() - 1 - k : k;  // odd rounds in reverse
        if (!in_table[i]->unavailable.empty()) continue;
        run_row(a, m, in_table[i]->spec, samples[i]);
        done_weight += row_weight(a, in_table[i]->spec);
        if (!estimated) {  // the first row's time, scaled by the rows' relative costs
          estimated = true;
          const double s = ms_between(t0, Clock::now()) / 1000.0;
          std::printf(
              "first row: %.1f s; estimated total for %zu rows x %d round%s: about %.0f s\n", s,
              plan.size(), a.repeats, a.repeats > 1 ? "s" : "", s * total_weight / done_weight);
          std::fflush(stdout);
        }
      }
    std::vector<RowResult> rows;
    for (size_t i = 0; i < in_table.size(); ++i) {
      if (in_table[i]->unavailable.empty()) {
        rows.push_back(summarize(in_table[i]->label, std::move(samples[i])));
        continue;
      }
      RowResult na;
      na.label = in_table[i]->label, na.available = false, na.note = in_table[i]->unavailable;
      rows.push_back(std::move(na));
    }
    print_table(titles.at(table), rows, a.repeats);
    print_ratios(table, rows, a.repeats);
  }
}

}  // namespace

void register_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Time the StreamDiffusion pipeline: Stream Batch, residual CFG, ablation tables");
  cmd->add_option("--model", a->model,
                  "Diffusers model folder (unet/, optional vae/, text_encoder/) or single-file "
                  ".safetensors checkpoint, or a Hugging Face repository id; default: full-size "
                  "hash-random weights of --arch");
  cmd->add_option("--arch", a->arch, "Architecture of the random UNet without --model")
      ->check(
          CLI::IsMember({"sd15", "sd21", "bk-sdm-base", "bk-sdm-small", "bk-sdm-tiny", "sdxs-512"}))
      ->capture_default_str();
  cmd->add_option("--taesd", a->taesd,
                  "TAESD folder or repository id (default: the committed random "
                  "tests/fixtures/taesd/full)");
  cmd->add_option("--width", a->width, "Width (multiple of 8)")->capture_default_str();
  cmd->add_option("--height", a->height, "Height (multiple of 8)")->capture_default_str();
  cmd->add_option("--frames", a->frames, "Timed frames per row (after warm-up)")
      ->capture_default_str();
  cmd->add_option("--repeats", a->repeats,
                  "Rounds per table: every row runs once per round, rounds interleaved; "
                  "min/median pool all rounds' frames")
      ->capture_default_str();
  cmd->add_option("--tables", a->tables, "Tables to run: batch, cfg, ablation")
      ->delimiter(',')
      ->check(CLI::IsMember({"batch", "cfg", "ablation"}))
      ->capture_default_str();
  cmd->add_option("--max-steps", a->max_steps, "Largest number of denoising steps n")
      ->capture_default_str();
  add_backend_options(*cmd, a->backend);
  cmd->callback([a] { run_bench(*a); });
}

}  // namespace streamdiff::cli
