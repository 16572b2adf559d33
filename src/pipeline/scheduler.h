// The LCM scheduler constants StreamDiffusion uses, computed as diffusers' `LCMScheduler`
// (0.24) computes them in float32 torch arithmetic: β and ᾱ are torch's bit for bit, the per-slot
// constants too except that torch's float sqrt is sometimes 1 ulp off the correctly rounded
// value computed here (a, b within 1 ulp, c_out within 2):
//   betas          scaled_linear: linspace(√β_start, √β_end, T)² (f32; torch's CPU linspace is
//                  start + step·i for i < T/2 and end − step·(T−1−i) above, each one FMA, with
//                  step = (end − start)/(T − 1) in f32); linear: linspace(β_start, β_end, T)
//   ᾱ              cumprod(1 − β): f32 values, product accumulated in double (torch's CPU cumprod)
//   timesteps      for n inference steps: k = T / original_steps, origin = [k−1, 2k−1, ...,
//                  original_steps·k − 1] reversed, indices ⌊i·original_steps/n⌋ (numpy
//                  linspace(0, original_steps, n, endpoint=False)); 50 of 50: 999 − 20i
//   per timestep t a = √ᾱ_t, b = √(1 − ᾱ_t) (f32), and with s = 10·t (timestep_scaling):
//                  c_skip = 0.25 / (s² + 0.25), c_out = s / √(s² + 0.25) (f32, σ_data = 0.5)
// Prediction type ε: x̂₀ = c_out·(x − b·ε)/a + c_skip·x.
#pragma once

#include <string>
#include <vector>

namespace sd {

struct LcmSchedulerConfig {
  int num_train_timesteps = 1000;
  double beta_start = 0.00085;
  double beta_end = 0.012;
  std::string beta_schedule = "scaled_linear";  // or "linear"
  int original_inference_steps = 50;
  double timestep_scaling = 10.0;
  std::string prediction_type = "epsilon";

  // Reads a diffusers scheduler_config.json (any SD scheduler class: only the beta schedule,
  // prediction type and LCM keys matter; absent keys keep the defaults above). Unsupported
  // values throw sd::Error naming the file and the key.
  static LcmSchedulerConfig from_json_file(const std::string& path);
  void validate(const std::string& where) const;
};

// Constants of one denoising slot.
struct SlotConstants {
  int timestep = 0;
  float alpha_sqrt = 0;  // a = √ᾱ_t
  float beta_sqrt = 0;   // b = √(1 − ᾱ_t)
  float c_skip = 0;
  float c_out = 0;
};

class LcmScheduler {
 public:
  explicit LcmScheduler(LcmSchedulerConfig config = {});

  const LcmSchedulerConfig& config() const { return config_; }
  const std::vector<float>& betas() const { return betas_; }
  const std::vector<float>& alphas_cumprod() const { return alphas_cumprod_; }

  // LCMScheduler.set_timesteps(num_inference_steps).timesteps; throws sd::Error when
  // num_inference_steps is not in [1, original_inference_steps].
  std::vector<int> timesteps(int num_inference_steps) const;
  // a, b, c_skip, c_out for training timestep t in [0, num_train_timesteps).
  SlotConstants constants(int timestep) const;
  // StreamDiffusion's per-slot constants: timesteps(num_inference_steps)[t_index_list[i]]; each
  // index must be in [0, num_inference_steps).
  std::vector<SlotConstants> slots(int num_inference_steps,
                                   const std::vector<int>& t_index_list) const;

 private:
  LcmSchedulerConfig config_;
  std::vector<float> betas_;
  std::vector<float> alphas_cumprod_;
};

}  // namespace sd
