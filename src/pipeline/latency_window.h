// LatencyWindow: per-frame latency figures of a long-running stream in bounded memory. The count,
// mean and maximum cover every sample; percentiles cover the most recent `capacity` samples (a
// ring), so an hours-long live session keeps a fixed footprint.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sd {

class LatencyWindow {
 public:
  static constexpr size_t kDefaultCapacity = 1024;
  explicit LatencyWindow(size_t capacity = kDefaultCapacity);

  void add(double ms);
  void clear();
  int64_t count() const { return count_; }
  double mean() const { return count_ > 0 ? sum_ / double(count_) : 0; }
  double max() const { return max_; }
  // Nearest-rank percentile (p in [0, 100]) of the samples in the window; 0 when empty.
  double percentile(double p) const;

 private:
  size_t capacity_;
  std::vector<double> ring_;
  size_t next_ = 0;
  int64_t count_ = 0;
  double sum_ = 0, max_ = 0;
  mutable std::vector<double> sorted_;  // scratch, sized at construction
};

// Nearest-rank percentile (p in [0, 100]) of unsorted values; 0 for none.
double percentile(std::vector<double> values, double p);

}  // namespace sd
