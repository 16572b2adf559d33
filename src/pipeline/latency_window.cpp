#include "pipeline/latency_window.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace sd {

namespace {

// The nearest-rank percentile of `v` (reordered in place; not empty).
double nearest_rank(std::vector<double>& v, double p) {
  const double rank = std::ceil(p / 100.0 * double(v.size()));
  const size_t i = size_t(std::clamp(rank, 1.0, double(v.size()))) - 1;
  std::nth_element(v.begin(), v.begin() + long(i), v.end());
  return v[i];
}

}  // namespace

double percentile(std::vector<double> values, double p) {
  return values.empty() ? 0 : nearest_rank(values, p);
}

LatencyWindow::LatencyWindow(size_t capacity) : capacity_(capacity) {
  SD_CHECK(capacity > 0, "LatencyWindow: capacity must be positive");
  ring_.reserve(capacity);
  sorted_.reserve(capacity);
}

void LatencyWindow::add(double ms) {
  if (ring_.size() < capacity_) {
    ring_.push_back(ms);
  } else {
    ring_[next_] = ms;
  }
  next_ = (next_ + 1) % capacity_;
  ++count_;
  sum_ += ms;
  max_ = std::max(max_, ms);
}

void LatencyWindow::clear() {
  ring_.clear();
  next_ = 0;
  count_ = 0;
  sum_ = max_ = 0;
}

double LatencyWindow::percentile(double p) const {
  if (ring_.empty()) return 0;
  sorted_.assign(ring_.begin(), ring_.end());
  return nearest_rank(sorted_, p);
}

}  // namespace sd
