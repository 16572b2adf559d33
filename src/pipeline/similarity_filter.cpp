#include "pipeline/similarity_filter.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace sd {

SimilarityFilter::SimilarityFilter(float threshold, int max_skip_frame, uint64_t seed,
                                   UniformSource uniform)
    : uniform_(std::move(uniform)), engine_(seed) {
  set_threshold(threshold);
  set_max_skip_frame(max_skip_frame);
  if (!uniform_) {
    uniform_ = [this] { return std::uniform_real_distribution<double>(0.0, 1.0)(engine_); };
  }
}

void SimilarityFilter::set_threshold(float threshold) {
  SD_CHECK(std::isfinite(threshold) && threshold >= 0.f, "similar image filter threshold ",
           threshold, " must be a finite value >= 0 (0.98 by default; >= 1 never skips)");
  threshold_ = threshold;
}

void SimilarityFilter::set_max_skip_frame(int max_skip_frame) {
  SD_CHECK(max_skip_frame >= 0, "similar image filter max_skip_frame ", max_skip_frame,
           " must be >= 0");
  max_skip_ = max_skip_frame;
}

void SimilarityFilter::reset(int64_t numel) {
  prev_.assign(size_t(numel), 0.f);
  has_prev_ = false;
  skip_count_ = 0;
}

bool SimilarityFilter::should_skip(const float* x, int64_t numel) {
  SD_CHECK(numel == int64_t(prev_.size()), "similar image filter: frame of ", numel,
           " values, prepared for ", prev_.size());
  if (!has_prev_) {
    std::memcpy(prev_.data(), x, size_t(numel) * sizeof(float));
    has_prev_ = true;
    return false;
  }
  double dot = 0, nx = 0, np = 0;
  for (int64_t i = 0; i < numel; ++i) {
    dot += double(prev_[size_t(i)]) * x[i];
    nx += double(x[i]) * x[i];
    np += double(prev_[size_t(i)]) * prev_[size_t(i)];
  }
  last_cos_ = dot / std::max(std::sqrt(nx * np), 1e-6);
  const double u = uniform_();
  last_p_ = threshold_ >= 1.f ? 0.0 : std::max(0.0, 1.0 - (1.0 - last_cos_) / (1.0 - threshold_));
  bool skip = !(last_p_ < u);
  if (skip && skip_count_ > max_skip_) {
    skip_count_ = 0;
    skip = false;
  } else if (skip) {
    ++skip_count_;
  }
  if (!skip) std::memcpy(prev_.data(), x, size_t(numel) * sizeof(float));
  return skip;
}

}  // namespace sd
