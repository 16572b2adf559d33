// What an img2img / vid2vid run reports: the summary lines and the --stats-json file. Two
// latencies are reported because they answer different questions: the latency from reading a
// frame to writing its output includes the time the frame waited in the input queue (without
// --live every frame waits for the ones before it, so on a slow machine this is mostly
// queueing), and the compute time is what the model spent on the frame.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "streamdiff/streamdiff.hpp"

namespace streamdiff::cli {

// Compute times of the frames (bounded memory: percentiles over the last 4096).
class ComputeTimes {
 public:
  void add(double ms);
  double mean() const { return count_ ? sum_ / double(count_) : 0; }
  double percentile(double p) const;
  double max() const { return max_; }

 private:
  std::vector<double> recent_;
  size_t next_ = 0;
  int64_t count_ = 0;
  double sum_ = 0, max_ = 0;
};

struct RunReport {
  StreamStats stats;
  ComputeTimes compute;
  int64_t written = 0;
  int64_t unreadable = 0;  // inputs skipped because they could not be read
  double wall_s = 0;       // from the first frame read to the last output written
  double load_ms = 0, prepare_ms = 0;
  std::vector<double> written_s;         // when each output was written, from the run's start
  std::vector<double> frame_compute_ms;  // each written frame's compute time (FrameInfo)
  bool live = false;
  std::string ended;         // "" (the input ended), "interrupted", "stdout closed"
  std::string input_damage;  // a video input damaged after its first frame (FrameSource::damage)
};

// The summary lines (frames, fps, both latencies) through say().
void print_summary(const RunReport& r);
// --stats-json: the same numbers for scripts; throws naming the flag when it cannot be written.
void write_stats_json(const std::string& path, const RunReport& r);

}  // namespace streamdiff::cli
