// UNetConfig: reading diffusers' unet/config.json (UNet2DConditionModel) and checking it against
// what this implementation builds.
#include <fstream>

#include <nlohmann/json.hpp>

#include "models/unet.h"

namespace sd {

namespace {

using json = nlohmann::json;

bool present(const json& j, const char* key) {
  return j.contains(key) && !j[key].is_null();
}

int as_int(const json& v, const std::string& file, const char* key) {
  SD_CHECK(
      v.is_number_integer() || (v.is_number_float() && v.get<double>() == int(v.get<double>())),
      file, ": '", key, "' must be an integer, got ", v.dump());
  return int(v.get<double>());
}

void read_int(const json& j, const std::string& file, const char* key, int* out) {
  if (present(j, key)) *out = as_int(j[key], file, key);
}

void read_float(const json& j, const std::string& file, const char* key, float* out) {
  if (!present(j, key)) return;
  SD_CHECK(j[key].is_number(), file, ": '", key, "' must be a number, got ", j[key].dump());
  *out = j[key].get<float>();
}

void read_bool(const json& j, const std::string& file, const char* key, bool* out) {
  if (!present(j, key)) return;
  SD_CHECK(j[key].is_boolean(), file, ": '", key, "' must be true or false, got ", j[key].dump());
  *out = j[key].get<bool>();
}

// An int or a list of ints, expanded to `n` entries (diffusers' per-block parameters).
void read_per_block(const json& j, const std::string& file, const char* key, size_t n,
                    std::vector<int>* out) {
  if (!present(j, key)) {
    out->assign(n, out->empty() ? 0 : (*out)[0]);
    return;
  }
  const json& v = j[key];
  if (!v.is_array()) {
    out->assign(n, as_int(v, file, key));
    return;
  }
  SD_CHECK(v.size() == n, file, ": '", key, "' ", v.dump(), " has ", v.size(),
           " entries; the UNet has ", n, " down blocks");
  out->clear();
  for (const json& e : v) {
    SD_CHECK(!e.is_array(), file, ": '", key, "' ", v.dump(),
             " holds lists (per-layer values, as SDXL-style configs); only one value per block "
             "is supported");
    out->push_back(as_int(e, file, key));
  }
}

void read_strings(const json& j, const std::string& file, const char* key,
                  std::vector<std::string>* out) {
  if (!present(j, key)) return;
  const json& v = j[key];
  SD_CHECK(v.is_array() && !v.empty(), file, ": '", key, "' must be a non-empty list, got ",
           v.dump());
  out->clear();
  for (const json& e : v) {
    SD_CHECK(e.is_string(), file, ": '", key, "' must hold strings, got ", v.dump());
    out->push_back(e.get<std::string>());
  }
}

// Options that must keep diffusers' default (null / false / a given string) here.
void expect_null(const json& j, const std::string& file, const char* key, const char* what) {
  SD_CHECK(!present(j, key), file, ": '", key, "' is ", j[key].dump(), "; ", what,
           " is not supported (only null)");
}

void expect_false(const json& j, const std::string& file, const char* key) {
  if (!present(j, key)) return;
  const json& v = j[key];
  bool ok = v.is_boolean() && !v.get<bool>();
  if (v.is_array()) {
    ok = true;
    for (const json& e : v) ok = ok && e.is_boolean() && !e.get<bool>();
  }
  SD_CHECK(ok, file, ": '", key, "' is ", v.dump(), "; only false is supported");
}

void expect_string(const json& j, const std::string& file, const char* key,
                   std::initializer_list<const char*> allowed) {
  if (!present(j, key)) return;
  bool ok = false;
  for (const char* a : allowed) ok = ok || (j[key].is_string() && j[key].get<std::string>() == a);
  std::string list;
  for (const char* a : allowed) list += std::string(list.empty() ? "\"" : ", \"") + a + "\"";
  SD_CHECK(ok, file, ": '", key, "' is ", j[key].dump(), "; supported: ", list);
}

std::string join(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

}  // namespace

UNetConfig UNetConfig::from_json_file(const std::string& path) {
  std::ifstream f(path);
  SD_CHECK(f.good(), "cannot open UNet config '", path, "'");
  json j = json::parse(f, nullptr, /*allow_exceptions=*/false);
  SD_CHECK(!j.is_discarded(), "UNet config '", path, "' is not valid JSON");
  SD_CHECK(j.is_object(), "UNet config '", path, "' is not a JSON object");
  if (j.contains("_class_name"))
    SD_CHECK(j["_class_name"] == "UNet2DConditionModel", "'", path, "' describes a ",
             j["_class_name"].dump(), ", not a UNet2DConditionModel");

  // Unsupported features: each must be absent or at its default.
  expect_false(j, path, "center_input_sample");
  expect_string(j, path, "time_embedding_type", {"positional"});
  expect_null(j, path, "time_embedding_act_fn", "an activation after the time embedding");
  expect_null(j, path, "timestep_post_act", "a post-activation in the time embedding");
  expect_null(j, path, "time_cond_proj_dim",
              "a timestep condition projection (LCM-distilled UNet)");
  expect_null(j, path, "class_embed_type", "class embedding");
  expect_null(j, path, "num_class_embeds", "class embedding");
  expect_null(j, path, "addition_embed_type", "an addition embedding (SDXL-style)");
  expect_null(j, path, "encoder_hid_dim", "an encoder hidden-state projection");
  expect_null(j, path, "encoder_hid_dim_type", "an encoder hidden-state projection");
  expect_null(j, path, "num_attention_heads",
              "num_attention_heads (diffusers itself rejects it; heads come from "
              "attention_head_dim)");
  expect_null(j, path, "reverse_transformer_layers_per_block", "an asymmetric UNet");
  expect_null(j, path, "cross_attention_norm", "a cross-attention norm");
  expect_string(j, path, "act_fn", {"silu", "swish"});
  expect_string(j, path, "resnet_time_scale_shift", {"default"});
  expect_string(j, path, "attention_type", {"default"});
  expect_false(j, path, "dual_cross_attention");
  expect_false(j, path, "only_cross_attention");
  expect_false(j, path, "class_embeddings_concat");

  UNetConfig c;
  read_int(j, path, "in_channels", &c.in_channels);
  read_int(j, path, "out_channels", &c.out_channels);
  read_bool(j, path, "flip_sin_to_cos", &c.flip_sin_to_cos);
  read_float(j, path, "freq_shift", &c.freq_shift);
  read_strings(j, path, "down_block_types", &c.down_block_types);
  read_strings(j, path, "up_block_types", &c.up_block_types);
  if (j.contains("mid_block_type")) {
    c.has_mid_block = !j["mid_block_type"].is_null();
    if (c.has_mid_block) expect_string(j, path, "mid_block_type", {"UNetMidBlock2DCrossAttn"});
  }
  if (present(j, "block_out_channels")) {
    const json& v = j["block_out_channels"];
    SD_CHECK(v.is_array() && !v.empty(), path,
             ": 'block_out_channels' must be a non-empty list, got ", v.dump());
    c.block_out_channels.clear();
    for (const json& e : v) c.block_out_channels.push_back(as_int(e, path, "block_out_channels"));
  }
  const size_t n = c.down_block_types.size();
  read_per_block(j, path, "layers_per_block", n, &c.layers_per_block);
  read_per_block(j, path, "transformer_layers_per_block", n, &c.transformer_layers_per_block);
  read_per_block(j, path, "attention_head_dim", n, &c.num_heads);
  std::vector<int> cross{c.cross_attention_dim};
  read_per_block(j, path, "cross_attention_dim", n, &cross);
  for (int d : cross)
    SD_CHECK(d == cross[0], path, ": 'cross_attention_dim' ", join(cross),
             " differs between blocks; all blocks see the same text encoder states here");
  c.cross_attention_dim = cross.empty() ? c.cross_attention_dim : cross[0];
  SD_CHECK(!j.contains("norm_num_groups") || !j["norm_num_groups"].is_null(), path,
           ": 'norm_num_groups' null (no output norm) is not supported");
  read_int(j, path, "norm_num_groups", &c.norm_num_groups);
  read_float(j, path, "norm_eps", &c.norm_eps);
  read_bool(j, path, "use_linear_projection", &c.use_linear_projection);
  read_float(j, path, "mid_block_scale_factor", &c.mid_block_scale_factor);
  int downsample_padding = 1;
  read_int(j, path, "downsample_padding", &downsample_padding);
  SD_CHECK(downsample_padding == 1, path, ": 'downsample_padding' ", downsample_padding,
           " is not supported (only 1)");
  read_int(j, path, "conv_in_kernel", &c.conv_in_kernel);
  read_int(j, path, "conv_out_kernel", &c.conv_out_kernel);
  read_int(j, path, "time_embedding_dim", &c.time_embedding_dim);
  // Accepted and without effect here: dropout (inference), upcast_attention (softmax is f32
  // anyway), sample_size; resnet_out_scale_factor, resnet_skip_time_act and
  // mid_block_only_cross_attention, which diffusers does not pass to the supported block types.
  c.validate(path);
  return c;
}

void UNetConfig::validate(const std::string& where) const {
  const size_t n = down_block_types.size();
  SD_CHECK(n >= 1 && n <= 6, where, ": ", n, " down blocks; 1 to 6 are supported");
  for (const std::string& t : down_block_types)
    SD_CHECK(t == "CrossAttnDownBlock2D" || t == "DownBlock2D", where, ": down block type '", t,
             "' is not supported (only CrossAttnDownBlock2D and DownBlock2D)");
  for (const std::string& t : up_block_types)
    SD_CHECK(t == "CrossAttnUpBlock2D" || t == "UpBlock2D", where, ": up block type '", t,
             "' is not supported (only CrossAttnUpBlock2D and UpBlock2D)");
  SD_CHECK(up_block_types.size() == n, where, ": ", n, " down_block_types but ",
           up_block_types.size(), " up_block_types");
  SD_CHECK(block_out_channels.size() == n, where, ": block_out_channels ", join(block_out_channels),
           " has ", block_out_channels.size(), " entries for ", n, " down blocks");
  SD_CHECK(layers_per_block.size() == n && transformer_layers_per_block.size() == n &&
               num_heads.size() == n,
           where, ": per-block lists must have ", n, " entries");
  SD_CHECK(in_channels > 0 && out_channels > 0 && cross_attention_dim > 0, where, ": in_channels ",
           in_channels, ", out_channels ", out_channels, ", cross_attention_dim ",
           cross_attention_dim, " must be positive");
  SD_CHECK(norm_num_groups > 0, where, ": norm_num_groups ", norm_num_groups, " must be positive");
  for (size_t i = 0; i < n; ++i) {
    const int ch = block_out_channels[i];
    SD_CHECK(ch > 0 && ch % norm_num_groups == 0, where, ": block_out_channels ",
             join(block_out_channels), " must be positive multiples of norm_num_groups ",
             norm_num_groups);
    SD_CHECK(layers_per_block[i] >= 1, where, ": layers_per_block ", join(layers_per_block),
             " must be >= 1");
    SD_CHECK(transformer_layers_per_block[i] >= 1, where, ": transformer_layers_per_block ",
             join(transformer_layers_per_block), " must be >= 1");
    SD_CHECK(num_heads[i] >= 1 && num_heads[i] <= ch, where, ": attention_head_dim ",
             join(num_heads), " (the number of heads, in diffusers' legacy naming) must be in [1, ",
             "channels] for block_out_channels ", join(block_out_channels));
  }
  SD_CHECK(conv_in_kernel % 2 == 1 && conv_in_kernel > 0 && conv_out_kernel % 2 == 1 &&
               conv_out_kernel > 0,
           where, ": conv_in_kernel ", conv_in_kernel, " and conv_out_kernel ", conv_out_kernel,
           " must be odd and positive");
  SD_CHECK(time_embedding_dim >= 0, where, ": time_embedding_dim ", time_embedding_dim,
           " must be positive");
  SD_CHECK(norm_eps > 0.f && mid_block_scale_factor != 0.f, where, ": norm_eps ", norm_eps,
           " must be positive and mid_block_scale_factor nonzero");
}

}  // namespace sd
