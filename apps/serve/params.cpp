#include "params.h"

#include <cmath>
#include <sstream>

namespace streamdiff::serve {

namespace {

using json = nlohmann::json;

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw ParamError(os.str());
}

std::string shown(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

std::string text(const json& v, const char* key) {
  if (!v.is_string()) fail("params: '", key, "' must be a string, got ", shown(v));
  std::string s = v.get<std::string>();
  if (s.size() > kMaxPromptBytes)
    fail("params: '", key, "' is ", s.size(), " bytes long (at most ", kMaxPromptBytes, ")");
  return s;
}

double number(const json& v, const char* key, double lo, double hi) {
  if (!v.is_number()) fail("params: '", key, "' must be a number, got ", shown(v));
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    fail("params: '", key, "' is ", shown(v), ", not in [", lo, ", ", hi, "]");
  return d;
}

int64_t integer(const json& v, const char* key, double lo, double hi) {
  const double d = number(v, key, lo, hi);
  if (d != std::floor(d)) fail("params: '", key, "' must be a whole number, got ", shown(v));
  return int64_t(d);
}

int size(const json& v, const char* key, const ParamLimits& l) {
  const int s = int(integer(v, key, l.size_multiple, l.max_size));
  if (s % l.size_multiple != 0)
    fail("params: '", key, "' is ", s, ", not a multiple of ", l.size_multiple, " (this model)");
  return s;
}

json field(const char* title, const char* type, const json& dflt, const char* ui, const char* id) {
  json f = {{"title", title}, {"type", type}, {"default", dflt}, {"id", id}};
  if (ui) f["field"] = ui;
  return f;
}

}  // namespace

FrameParams parse_params(const json& j, const ParamLimits& l) {
  if (!j.is_object()) fail("params: expected a JSON object, got ", shown(j));
  FrameParams p;
  for (const auto& [key, v] : j.items()) {
    const char* k = key.c_str();
    if (key == "prompt") {
      p.prompt = text(v, k);
    } else if (key == "negative_prompt") {
      p.negative_prompt = text(v, k);
    } else if (key == "width") {
      p.width = size(v, k, l);
    } else if (key == "height") {
      p.height = size(v, k, l);
    } else if (key == "guidance_scale") {
      p.guidance_scale = float(number(v, k, 0, 20));
    } else if (key == "delta") {
      p.delta = float(number(v, k, 0, 10));
    } else if (key == "seed") {
      // JSON numbers are doubles in the browser: seeds up to 2^53 survive the trip.
      p.seed = uint64_t(integer(v, k, 0, 9007199254740991.0));
    } else if (key == "t_index_list") {
      if (!v.is_array() || v.empty() || v.size() > 50)
        fail("params: 't_index_list' must be a list of 1 to 50 indices, got ", shown(v));
      std::vector<int> t;
      for (const json& e : v) t.push_back(int(integer(e, k, 0, l.steps - 1)));
      for (size_t i = 1; i < t.size(); ++i)
        if (t[i] <= t[i - 1]) fail("params: 't_index_list' must be ascending, got ", shown(v));
      p.t_index_list = std::move(t);
    } else if (key == "similarity_filter") {
      if (!v.is_boolean()) fail("params: 'similarity_filter' must be true or false");
      p.similarity_filter = v.get<bool>();
    } else if (key == "similarity_threshold") {
      p.similarity_threshold = float(number(v, k, 0.5, 1.0));
    } else if (key == "prompt_blend") {
      if (!v.is_array() || v.size() > kMaxBlendPrompts)
        fail("params: 'prompt_blend' must be a list of at most ", kMaxBlendPrompts,
             " [prompt, weight] pairs, got ", shown(v));
      std::vector<WeightedPrompt> blend;
      double sum = 0;
      for (const json& e : v) {
        if (!e.is_array() || e.size() != 2)
          fail("params: 'prompt_blend' entries must be [prompt, weight], got ", shown(e));
        blend.push_back({text(e[0], k), float(number(e[1], k, 0, 1e6))});
        sum += blend.back().weight;
      }
      if (!blend.empty() && sum <= 0) fail("params: 'prompt_blend' weights sum to 0");
      p.prompt_blend = std::move(blend);
    } else if (key == "blend") {
      const std::string b = v.is_string() ? v.get<std::string>() : "";
      if (b != "linear" && b != "slerp")
        fail("params: 'blend' must be \"linear\" or \"slerp\", got ", shown(v));
      p.blend = b == "slerp" ? Blend::Slerp : Blend::Linear;
    }  // other keys (the demo's `image`, ...) are ignored
  }
  if (p.blend == Blend::Slerp && p.prompt_blend && p.prompt_blend->size() != 2)
    fail("params: slerp blends exactly two prompts, 'prompt_blend' has ", p.prompt_blend->size());
  return p;
}

void apply_params(const FrameParams& p, Stream& s, StreamConfig& c) {
  if (p.width || p.height) {
    const int w = p.width.value_or(c.width), h = p.height.value_or(c.height);
    if (w != c.width || h != c.height) s.set_resolution(w, h);
    c.width = w, c.height = h;
  }
  if (p.negative_prompt && *p.negative_prompt != c.negative_prompt) {
    s.set_negative_prompt(*p.negative_prompt);
    c.negative_prompt = *p.negative_prompt;
  }
  // A blend replaces the prompt until an empty blend (or a new prompt) ends it; the embeddings of
  // a known text come from the model's cache, so resending the same blend costs nothing.
  if (p.prompt_blend && !p.prompt_blend->empty()) {
    s.set_prompt_blend(*p.prompt_blend, p.blend.value_or(Blend::Linear));
  } else if (p.prompt_blend || (p.prompt && *p.prompt != c.prompt)) {
    s.set_prompt(p.prompt.value_or(c.prompt));
  }
  if (p.prompt) c.prompt = *p.prompt;
  if (p.guidance_scale && *p.guidance_scale != c.guidance_scale) {
    s.set_guidance_scale(*p.guidance_scale);
    c.guidance_scale = *p.guidance_scale;
  }
  if (p.delta && *p.delta != c.delta) {
    s.set_delta(*p.delta);
    c.delta = *p.delta;
  }
  if (p.seed && *p.seed != c.seed) {
    s.set_seed(*p.seed);
    c.seed = *p.seed;
  }
  if (p.t_index_list && *p.t_index_list != c.t_index_list) {
    s.set_t_index_list(*p.t_index_list);
    c.t_index_list = *p.t_index_list;
  }
  const bool ssf = p.similarity_filter.value_or(c.similarity_filter);
  const float thr = p.similarity_threshold.value_or(c.similarity_threshold);
  if (ssf != c.similarity_filter || thr != c.similarity_threshold) {
    s.set_similarity_filter(ssf, thr, c.similarity_max_skip);
    c.similarity_filter = ssf, c.similarity_threshold = thr;
  }
}

json input_params_schema(const StreamConfig& d, const ParamLimits& l) {
  json props;
  props["prompt"] = field("Prompt", "string", d.prompt, "textarea", "prompt");
  props["negative_prompt"] =
      field("Negative Prompt", "string", d.negative_prompt, "textarea", "negative_prompt");
  for (const char* side : {"width", "height"}) {
    json f = field(side[0] == 'w' ? "Width" : "Height", "integer",
                   side[0] == 'w' ? d.width : d.height, nullptr, side);
    f["min"] = l.size_multiple;
    f["max"] = l.max_size;
    f["step"] = l.size_multiple;
    f["hide"] = true;  // the page offers size presets; the demo's front end hides them too
    props[side] = f;
  }
  json g = field("Guidance Scale", "number", d.guidance_scale, "range", "guidance_scale");
  g["min"] = 0, g["max"] = 5, g["step"] = 0.05;
  props["guidance_scale"] = g;
  json delta = field("Delta", "number", d.delta, "range", "delta");
  delta["min"] = 0, delta["max"] = 1, delta["step"] = 0.05;
  props["delta"] = delta;
  props["seed"] = field("Seed", "integer", d.seed, "seed", "seed");
  json t =
      field("Denoising steps (t_index_list)", "array", d.t_index_list, nullptr, "t_index_list");
  t["items"] = {{"type", "integer"}, {"minimum", 0}, {"maximum", l.steps - 1}};
  t["hide"] = true;  // a list: the demo's front end has no control for it; ours does
  props["t_index_list"] = t;
  props["similarity_filter"] =
      field("Similarity filter", "boolean", d.similarity_filter, "checkbox", "similarity_filter");
  json thr = field("Similarity threshold", "number", d.similarity_threshold, "range",
                   "similarity_threshold");
  thr["min"] = 0.5, thr["max"] = 1, thr["step"] = 0.005;
  props["similarity_threshold"] = thr;
  return {{"title", "InputParams"}, {"type", "object"}, {"properties", props}};
}

}  // namespace streamdiff::serve
