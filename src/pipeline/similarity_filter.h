// Stochastic Similarity Filter (SSF), as StreamDiffusion's SimilarImageFilter (image_filter.py):
// a frame that looks like the last processed one is skipped with a probability that grows with
// the similarity, and the previous output is shown again.
//   cos  = cosine similarity of the flattened preprocessed input and the last processed input
//          (x·y / max(‖x‖‖y‖, 1e-6))
//   p    = max(0, 1 − (1 − cos) / (1 − η))   (p = 0 when η ≥ 1)
//   a uniform draw u in [0, 1) is taken for every frame after the first; the frame is processed
//   when p < u. Otherwise it is skipped, unless the skip counter already exceeds max_skip: then
//   the counter goes back to 0 and the frame is processed. The counter is not reset by frames
//   processed because p < u (the original's behaviour, kept). A processed frame becomes the new
//   reference; the first frame is always processed.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace sd {

class SimilarityFilter {
 public:
  using UniformSource = std::function<double()>;  // values in [0, 1)

  // `uniform` defaults to a std::mt19937_64 seeded with `seed`.
  SimilarityFilter(float threshold = 0.98f, int max_skip_frame = 10, uint64_t seed = 0,
                   UniformSource uniform = {});

  void set_threshold(float threshold);
  void set_max_skip_frame(int max_skip_frame);
  float threshold() const { return threshold_; }
  int max_skip_frame() const { return max_skip_; }

  // Makes room for inputs of `numel` values and forgets the reference frame (called at
  // prepare, so filtering allocates nothing per frame).
  void reset(int64_t numel);
  // True when the frame x[0, numel) should be skipped; updates the reference and the counter.
  bool should_skip(const float* x, int64_t numel);

  int skip_count() const { return skip_count_; }
  double last_similarity() const { return last_cos_; }
  double last_probability() const { return last_p_; }

 private:
  float threshold_;
  int max_skip_;
  UniformSource uniform_;
  std::mt19937_64 engine_;
  std::vector<float> prev_;
  bool has_prev_ = false;
  int skip_count_ = 0;
  double last_cos_ = 0, last_p_ = 0;
};

}  // namespace sd
