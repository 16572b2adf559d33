// The parameters a client of `streamdiff serve` sends with its frames: a JSON object as the
// original StreamDiffusion realtime-img2img demo sends it (`prompt`, `width`, `height`, ...), plus
// streamdiff's own (`negative_prompt`, `guidance_scale`, `delta`, `seed`, `t_index_list`,
// `similarity_filter`, `similarity_threshold`, `prompt_blend`). Every key is optional: an absent
// key keeps the session's current value; an unknown key is ignored (the demo's pydantic model
// does the same); a key of the wrong type or out of range is an error naming it.
//
// input_params_schema() describes them for GET /api/settings as the demo's pydantic schema does
// (`properties` with `title`, `type`, `default`, and the UI hints `field`, `id`, `min`, `max`,
// `step`, `hide`), so that the demo's front end renders its controls unchanged.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "streamdiff/streamdiff.hpp"

namespace streamdiff::serve {

// A parameter that cannot be taken; what() names the key and the value.
class ParamError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What the server's model and command line allow.
struct ParamLimits {
  int size_multiple = 64;
  int max_size = 1024;  // width and height
  int steps = 50;       // num_inference_steps: t_index values are below it
};

struct FrameParams {
  std::optional<std::string> prompt, negative_prompt;
  std::optional<int> width, height;
  std::optional<float> guidance_scale, delta, similarity_threshold;
  std::optional<uint64_t> seed;
  std::optional<std::vector<int>> t_index_list;
  std::optional<bool> similarity_filter;
  std::optional<std::vector<WeightedPrompt>> prompt_blend;  // empty list: back to `prompt`
  std::optional<Blend> blend;                               // "linear" or "slerp"
};

// Parses and checks one params message; throws ParamError.
FrameParams parse_params(const nlohmann::json& j, const ParamLimits& limits);

// Applies what `p` sets to `stream`, calling a setter only for a value that differs from
// `current` (the settings the stream was last given), which it then updates.
void apply_params(const FrameParams& p, Stream& stream, StreamConfig& current);

// GET /api/settings' input_params: a JSON schema of the parameters with the session defaults.
nlohmann::json input_params_schema(const StreamConfig& defaults, const ParamLimits& limits);

// The largest JSON params message accepted, and the most prompts in a blend.
constexpr size_t kMaxParamsBytes = 64 << 10;
constexpr size_t kMaxBlendPrompts = 8;
constexpr size_t kMaxPromptBytes = 4096;

}  // namespace streamdiff::serve
