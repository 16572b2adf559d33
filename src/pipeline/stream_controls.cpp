// Stream's settings and the controls that change them between frames: cfg type names, prompt
// and guidance updates, the similarity filter, the timestep list and the initial noise.
#include <cmath>
#include <cstring>

#include "pipeline/stream.h"

namespace sd {

CfgType parse_cfg_type(const std::string& name) {
  if (name == "none") return CfgType::None;
  if (name == "full") return CfgType::Full;
  if (name == "self") return CfgType::Self;
  if (name == "initialize") return CfgType::Initialize;
  fail("unknown cfg_type \"", name, "\" (none, full, self, initialize)");
}

const char* cfg_type_name(CfgType t) {
  switch (t) {
    case CfgType::None:
      return "none";
    case CfgType::Full:
      return "full";
    case CfgType::Self:
      return "self";
    case CfgType::Initialize:
      return "initialize";
  }
  return "?";
}

void Stream::update_prompt(const std::string& prompt) {
  check_prepared("update_prompt");
  SD_CHECK(text_ != nullptr, "stream: update_prompt needs a text encoder");
  update_embeddings(text_->encode(prompt));
}

void Stream::update_embeddings(const Tensor& cond) {
  update_embeddings(cond, uncond_);
}

void Stream::update_embeddings(const Tensor& cond, const Tensor& uncond) {
  check_prepared("update_embeddings");
  for (const Tensor* t : {&cond, &uncond})
    SD_CHECK(t->shape() == cond_.shape(), "stream: new prompt embedding ", t->shape().str(),
             " must match ", cond_.shape().str());
  cond_ = cond.to_host_dtype(DType::F32);
  if (uncond.data() != uncond_.data()) uncond_ = uncond.to_host_dtype(DType::F32);
  build_kv();
}

void Stream::set_guidance(float guidance_scale, float delta) {
  SD_CHECK(std::isfinite(guidance_scale) && std::isfinite(delta),
           "stream: guidance_scale and delta must be finite");
  s_.guidance_scale = guidance_scale;
  s_.delta = delta;
  if (!prepared_) return;
  const bool before = guidance_;
  guidance_ = s_.cfg_type != CfgType::None && s_.guidance_scale > 1.f;
  const bool rows_change =
      before != guidance_ && (s_.cfg_type == CfgType::Full || s_.cfg_type == CfgType::Initialize);
  if (rows_change) {
    cache_time_embeddings();
    build_kv();
    plan_arena();
  }
}

void Stream::set_similarity_filter(bool enabled, float threshold, int max_skip_frame) {
  ssf_.set_threshold(threshold);
  ssf_.set_max_skip_frame(max_skip_frame);
  if (enabled && !s_.similar_image_filter) ssf_.reset(frame_in_.numel());  // no stale reference
  s_.similar_image_filter = enabled;
  s_.similar_image_filter_threshold = threshold;
  s_.similar_image_filter_max_skip_frame = max_skip_frame;
}

void Stream::update_t_index_list(const std::vector<int>& t_index_list) {
  SD_CHECK(t_index_list.size() == s_.t_index_list.size(), "stream: update_t_index_list got ",
           t_index_list.size(), " indices, the stream was configured with ", s_.t_index_list.size(),
           " (changing the length needs a new prepare)");
  slots_ = scheduler_.slots(s_.num_inference_steps, t_index_list);
  s_.t_index_list = t_index_list;
  build_row_constants();
}

void Stream::set_init_noise(const Tensor& noise) {
  check_prepared("set_init_noise");
  SD_CHECK(noise.shape() == init_noise_.shape() && noise.dtype() == DType::F32,
           "stream: init noise ", noise.shape().str(), " must be f32 ", init_noise_.shape().str());
  std::memcpy(init_noise_.data(), noise.data(), init_noise_.nbytes());
}

}  // namespace sd
