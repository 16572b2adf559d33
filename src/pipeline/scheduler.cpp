// float32 arithmetic as torch does it: no contraction except where torch itself uses an FMA
// (linspace, written with std::fma).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "pipeline/scheduler.h"

#include <cmath>

#include "core/error.h"
#include "io/json_config.h"

namespace sd {

namespace {

// torch.linspace(start, end, steps, dtype=float32) on the CPU.
std::vector<float> linspace_f32(double start_d, double end_d, int steps) {
  std::vector<float> out(static_cast<size_t>(steps));
  const float start = float(start_d), end = float(end_d);
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  const float step = (end - start) / float(steps - 1);
  const int halfway = steps / 2;
  for (int i = 0; i < steps; ++i) {
    out[size_t(i)] =
        i < halfway ? std::fma(step, float(i), start) : std::fma(-step, float(steps - i - 1), end);
  }
  return out;
}

}  // namespace

LcmSchedulerConfig LcmSchedulerConfig::from_json_file(const std::string& path) {
  const JsonConfig j = JsonConfig::load(path, "scheduler config");
  LcmSchedulerConfig c;
  j.read("num_train_timesteps", &c.num_train_timesteps);
  float f;
  if (j.has("beta_start")) {
    j.read("beta_start", &f);
    c.beta_start = j.json()["beta_start"].get<double>();
  }
  if (j.has("beta_end")) {
    j.read("beta_end", &f);  // checks the type; the value is kept in double
    c.beta_end = j.json()["beta_end"].get<double>();
  }
  j.read("beta_schedule", &c.beta_schedule);
  j.read("original_inference_steps", &c.original_inference_steps);
  if (j.has("timestep_scaling")) {
    j.read("timestep_scaling", &f);
    c.timestep_scaling = j.json()["timestep_scaling"].get<double>();
  }
  j.read("prediction_type", &c.prediction_type);
  if (j.has("trained_betas"))
    fail(path, ": trained_betas is not supported (use beta_schedule linear or scaled_linear)");
  bool rescale = false;
  j.read("rescale_betas_zero_snr", &rescale);
  SD_CHECK(!rescale, path, ": rescale_betas_zero_snr is not supported");
  c.validate(path);
  return c;
}

void LcmSchedulerConfig::validate(const std::string& where) const {
  SD_CHECK(num_train_timesteps >= 2, where, ": num_train_timesteps ", num_train_timesteps,
           " must be at least 2");
  SD_CHECK(beta_schedule == "scaled_linear" || beta_schedule == "linear", where,
           ": beta_schedule \"", beta_schedule, "\" is not supported (scaled_linear, linear)");
  SD_CHECK(beta_start > 0 && beta_end > beta_start && beta_end < 1, where, ": betas (", beta_start,
           ", ", beta_end, ") must satisfy 0 < beta_start < beta_end < 1");
  SD_CHECK(original_inference_steps >= 1 && original_inference_steps <= num_train_timesteps, where,
           ": original_inference_steps ", original_inference_steps, " must be in [1, ",
           num_train_timesteps, "]");
  SD_CHECK(timestep_scaling > 0, where, ": timestep_scaling must be positive");
  SD_CHECK(prediction_type == "epsilon", where, ": prediction_type \"", prediction_type,
           "\" is not supported (epsilon)");
}

LcmScheduler::LcmScheduler(LcmSchedulerConfig config) : config_(std::move(config)) {
  config_.validate("LCM scheduler");
  const int n = config_.num_train_timesteps;
  if (config_.beta_schedule == "scaled_linear") {
    betas_ = linspace_f32(std::sqrt(config_.beta_start), std::sqrt(config_.beta_end), n);
    for (float& b : betas_) b = b * b;
  } else {
    betas_ = linspace_f32(config_.beta_start, config_.beta_end, n);
  }
  alphas_cumprod_.resize(size_t(n));
  double acc = 1.0;
  for (int i = 0; i < n; ++i) {
    const float alpha = 1.f - betas_[size_t(i)];
    acc *= double(alpha);
    alphas_cumprod_[size_t(i)] = float(acc);
  }
}

std::vector<int> LcmScheduler::timesteps(int num_inference_steps) const {
  const int original = config_.original_inference_steps;
  SD_CHECK(num_inference_steps >= 1 && num_inference_steps <= original, "num_inference_steps ",
           num_inference_steps, " must be in [1, ", original,
           "] (the LCM schedule takes its steps from original_inference_steps = ", original, ")");
  const int k = config_.num_train_timesteps / original;
  std::vector<int> out;
  const double step = double(original) / double(num_inference_steps);
  for (int i = 0; i < num_inference_steps; ++i) {
    const int index = int(std::floor(double(i) * step));
    out.push_back((original - index) * k - 1);
  }
  return out;
}

SlotConstants LcmScheduler::constants(int timestep) const {
  SD_CHECK(timestep >= 0 && timestep < config_.num_train_timesteps, "timestep ", timestep,
           " is outside [0, ", config_.num_train_timesteps, ")");
  SlotConstants c;
  c.timestep = timestep;
  const float ac = alphas_cumprod_[size_t(timestep)];
  c.alpha_sqrt = std::sqrt(ac);
  c.beta_sqrt = std::sqrt(1.f - ac);
  const float s = float(timestep) * float(config_.timestep_scaling);
  const float s2 = s * s;
  const float denom = s2 + 0.25f;
  c.c_skip = (1.f / denom) * 0.25f;
  c.c_out = s / std::sqrt(denom);
  return c;
}

std::vector<SlotConstants> LcmScheduler::slots(int num_inference_steps,
                                               const std::vector<int>& t_index_list) const {
  const std::vector<int> ts = timesteps(num_inference_steps);
  SD_CHECK(!t_index_list.empty(), "t_index_list is empty");
  std::vector<SlotConstants> out;
  for (int idx : t_index_list) {
    SD_CHECK(idx >= 0 && idx < num_inference_steps, "t_index_list entry ", idx,
             " is outside [0, num_inference_steps = ", num_inference_steps, ")");
    out.push_back(constants(ts[size_t(idx)]));
  }
  return out;
}

}  // namespace sd
