// Summary lines and --stats-json of img2img / vid2vid (see run_report.h).
#include "run_report.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "commands.h"

namespace streamdiff::cli {

namespace {

constexpr size_t kWindow = 4096;

const char* kLatencyMeaning =
    "from reading a frame to writing its output; includes the time it waited in the input queue";
const char* kComputeMeaning = "the model's time on the frame, without the waiting";

}  // namespace

void ComputeTimes::add(double ms) {
  if (recent_.size() < kWindow)
    recent_.push_back(ms);
  else
    recent_[next_] = ms;
  next_ = (next_ + 1) % kWindow;
  ++count_;
  sum_ += ms;
  max_ = std::max(max_, ms);
}

double ComputeTimes::percentile(double p) const {
  if (recent_.empty()) return 0;
  std::vector<double> v = recent_;
  const size_t k = std::min(v.size() - 1, size_t(p / 100.0 * double(v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(k), v.end());
  return v[k];
}

void print_summary(const RunReport& r) {
  const StreamStats& s = r.stats;
  say("frames %lld, skipped %lld, dropped %lld, %.2f fps\n", static_cast<long long>(r.written),
      static_cast<long long>(s.skipped), static_cast<long long>(s.dropped),
      r.wall_s > 0 ? double(r.written) / r.wall_s : 0);
  say("latency (%s): mean %.1f ms, p50 %.1f ms, p99 %.1f ms\n",
      r.live ? "from reading to writing" : "from reading to writing, includes waiting in the queue",
      s.latency_mean_ms, s.latency_p50_ms, s.latency_p99_ms);
  say("compute per frame (the model's time, without waiting): mean %.1f ms, p50 %.1f ms, p99 "
      "%.1f ms\n",
      r.compute.mean(), r.compute.percentile(50), r.compute.percentile(99));
}

void write_stats_json(const std::string& path, const RunReport& r) {
  const StreamStats& s = r.stats;
  nlohmann::json j;
  j["frames_read"] = s.frames_in;
  j["frames_written"] = r.written;
  j["frames_skipped"] = s.skipped;
  j["frames_dropped"] = s.dropped;
  j["inputs_unreadable"] = r.unreadable;
  j["input_damage"] = r.input_damage;
  j["wall_s"] = r.wall_s;
  j["fps"] = r.wall_s > 0 ? double(r.written) / r.wall_s : 0;
  j["latency_ms"] = {{"mean", s.latency_mean_ms},
                     {"p50", s.latency_p50_ms},
                     {"p99", s.latency_p99_ms},
                     {"max", s.latency_max_ms},
                     {"meaning", kLatencyMeaning}};
  j["compute_ms"] = {{"mean", r.compute.mean()},
                     {"p50", r.compute.percentile(50)},
                     {"p99", r.compute.percentile(99)},
                     {"max", r.compute.max()},
                     {"meaning", kComputeMeaning}};
  j["live"] = r.live;
  j["ended"] = r.ended.empty() ? "end of input" : r.ended;
  j["load_ms"] = r.load_ms;
  j["prepare_ms"] = r.prepare_ms;
  j["written_s"] = r.written_s;
  j["frame_compute_ms"] = r.frame_compute_ms;
  // Through a temporary name, as every output: the final name never holds half a file.
  const std::string partial = path + ".partial";
  std::ofstream out(partial);
  out << j.dump(2) << "\n";
  out.close();
  std::error_code ec;
  if (out.good()) std::filesystem::rename(partial, path, ec);
  if (!out.good() || ec) {
    const std::string why = ec ? ec.message() : std::strerror(errno);
    std::filesystem::remove(partial, ec);
    check(false, "--stats-json '", path, "': cannot write the file: ", why);
  }
}

}  // namespace streamdiff::cli
