// UNetConfig: reading diffusers' unet/config.json (UNet2DConditionModel) and checking it against
// what this implementation builds.
#include <utility>

#include "io/json_config.h"
#include "models/unet.h"

namespace sd {

namespace {

// An int or a list of ints, expanded to `n` entries (diffusers' per-block parameters).
void read_per_block(const JsonConfig& j, const char* key, size_t n, std::vector<int>* out) {
  if (!j.has(key)) {
    out->assign(n, out->empty() ? 0 : (*out)[0]);
    return;
  }
  const nlohmann::json& v = j.json()[key];
  if (!v.is_array()) {
    out->assign(n, j.to_int(v, key));
    return;
  }
  SD_CHECK(v.size() == n, j.path(), ": '", key, "' ", v.dump(), " has ", v.size(),
           " entries; the UNet has ", n, " down blocks");
  out->clear();
  for (const nlohmann::json& e : v) {
    SD_CHECK(!e.is_array(), j.path(), ": '", key, "' ", v.dump(),
             " holds lists (per-layer values, as SDXL-style configs); only one value per block "
             "is supported");
    out->push_back(j.to_int(e, key));
  }
}

// A bool or a list of bools, expanded to `n` entries.
void read_per_block_bool(const JsonConfig& j, const char* key, size_t n, std::vector<bool>* out) {
  out->assign(n, false);
  if (!j.has(key)) return;
  const nlohmann::json& v = j.json()[key];
  if (v.is_boolean()) {
    out->assign(n, v.get<bool>());
    return;
  }
  SD_CHECK(v.is_array() && v.size() == n, j.path(), ": '", key, "' ", v.dump(),
           " is neither a bool nor a list of ", n, " bools (one per down block)");
  for (size_t i = 0; i < n; ++i) {
    SD_CHECK(v[i].is_boolean(), j.path(), ": '", key, "' ", v.dump(), " holds a non-bool");
    (*out)[i] = v[i].get<bool>();
  }
}

}  // namespace

UNetConfig UNetConfig::from_json_file(const std::string& path) {
  JsonConfig j = JsonConfig::load(path, "UNet config");
  j.expect_class("UNet2DConditionModel");

  // Unsupported features: each must be absent or at its default.
  j.expect_false("center_input_sample");
  j.expect_one_of("time_embedding_type", {"positional"});
  j.expect_null("time_embedding_act_fn", "an activation after the time embedding");
  j.expect_null("timestep_post_act", "a post-activation in the time embedding");
  j.expect_null("time_cond_proj_dim", "a timestep condition projection (LCM-distilled UNet)");
  j.expect_null("class_embed_type", "class embedding");
  j.expect_null("num_class_embeds", "class embedding");
  j.expect_null("addition_embed_type", "an addition embedding (SDXL-style)");
  j.expect_null("encoder_hid_dim", "an encoder hidden-state projection");
  j.expect_null("encoder_hid_dim_type", "an encoder hidden-state projection");
  j.expect_null("num_attention_heads",
                "num_attention_heads (diffusers itself rejects it; heads come from "
                "attention_head_dim)");
  j.expect_null("reverse_transformer_layers_per_block", "an asymmetric UNet");
  j.expect_null("cross_attention_norm", "a cross-attention norm");
  j.expect_one_of("act_fn", {"silu", "swish"});
  j.expect_one_of("resnet_time_scale_shift", {"default"});
  j.expect_one_of("attention_type", {"default"});
  j.expect_false("dual_cross_attention");
  j.expect_false("class_embeddings_concat");

  UNetConfig c;
  j.read("in_channels", &c.in_channels);
  j.read("out_channels", &c.out_channels);
  j.read("flip_sin_to_cos", &c.flip_sin_to_cos);
  j.read("freq_shift", &c.freq_shift);
  j.read("down_block_types", &c.down_block_types);
  j.read("up_block_types", &c.up_block_types);
  if (j.json().contains("mid_block_type")) {
    c.has_mid_block = j.has("mid_block_type");
    if (c.has_mid_block) j.expect_one_of("mid_block_type", {"UNetMidBlock2DCrossAttn"});
  }
  j.read("block_out_channels", &c.block_out_channels);
  const size_t n = c.down_block_types.size();
  read_per_block(j, "layers_per_block", n, &c.layers_per_block);
  read_per_block(j, "transformer_layers_per_block", n, &c.transformer_layers_per_block);
  read_per_block(j, "attention_head_dim", n, &c.num_heads);
  read_per_block_bool(j, "only_cross_attention", n, &c.only_cross_attention);
  std::vector<int> cross{c.cross_attention_dim};
  read_per_block(j, "cross_attention_dim", n, &cross);
  for (int d : cross)
    SD_CHECK(d == cross[0], path, ": 'cross_attention_dim' ", join_ints(cross),
             " differs between blocks; all blocks see the same text encoder states here");
  c.cross_attention_dim = cross.empty() ? c.cross_attention_dim : cross[0];
  SD_CHECK(!j.json().contains("norm_num_groups") || j.has("norm_num_groups"), path,
           ": 'norm_num_groups' null (no output norm) is not supported");
  j.read("norm_num_groups", &c.norm_num_groups);
  j.read("norm_eps", &c.norm_eps);
  j.read("use_linear_projection", &c.use_linear_projection);
  j.read("mid_block_scale_factor", &c.mid_block_scale_factor);
  int downsample_padding = 1;
  j.read("downsample_padding", &downsample_padding);
  SD_CHECK(downsample_padding == 1, path, ": 'downsample_padding' ", downsample_padding,
           " is not supported (only 1)");
  j.read("conv_in_kernel", &c.conv_in_kernel);
  j.read("conv_out_kernel", &c.conv_out_kernel);
  j.read("time_embedding_dim", &c.time_embedding_dim);
  // Accepted and without effect here: dropout (inference), upcast_attention (softmax is f32
  // anyway), sample_size; resnet_out_scale_factor, resnet_skip_time_act and
  // mid_block_only_cross_attention, which diffusers does not pass to the supported block types
  // (UNetMidBlock2DCrossAttn's attn1 is self-attention whatever only_cross_attention says).
  c.validate(path);
  return c;
}

UNetConfig sd15_unet_config() {
  UNetConfig c;  // UNetConfig's defaults are diffusers' (and SD 1.5's) block layout
  c.block_out_channels = {320, 640, 1280, 1280};
  c.layers_per_block = {2, 2, 2, 2};
  c.transformer_layers_per_block = {1, 1, 1, 1};
  c.num_heads = {8, 8, 8, 8};
  c.cross_attention_dim = 768;
  c.use_linear_projection = false;
  return c;
}

UNetConfig sd21_unet_config() {
  UNetConfig c = sd15_unet_config();
  c.num_heads = {5, 10, 20, 20};
  c.cross_attention_dim = 1024;
  c.use_linear_projection = true;
  return c;
}

UNetConfig bk_sdm_base_unet_config() {
  UNetConfig c = sd15_unet_config();
  c.layers_per_block = {1, 1, 1, 1};
  return c;
}

UNetConfig bk_sdm_small_unet_config() {
  UNetConfig c = bk_sdm_base_unet_config();
  c.has_mid_block = false;
  return c;
}

namespace {

// SD's layout without its innermost (attention-free) down block and the up block mirroring it.
UNetConfig without_innermost_stage(UNetConfig c) {
  c.down_block_types.pop_back();
  c.up_block_types.erase(c.up_block_types.begin());
  c.block_out_channels.pop_back();
  c.layers_per_block.pop_back();
  c.transformer_layers_per_block.pop_back();
  c.num_heads.pop_back();
  return c;
}

}  // namespace

UNetConfig bk_sdm_tiny_unet_config() {
  return without_innermost_stage(bk_sdm_small_unet_config());
}

UNetConfig sdxs_512_unet_config() {
  UNetConfig c = sd21_unet_config();  // made tiny as BK-SDM-Tiny is made from SD 1.5
  c.has_mid_block = false;
  c.layers_per_block = {1, 1, 1, 1};
  c = without_innermost_stage(std::move(c));
  c.num_heads[0] = 1;  // one head of 320 at the first stage, 64 wide elsewhere
  c.only_cross_attention = {true, false, false};
  return c;
}

const std::vector<std::string>& reference_unet_archs() {
  static const std::vector<std::string> archs{"sd15",         "sd21",        "bk-sdm-base",
                                              "bk-sdm-small", "bk-sdm-tiny", "sdxs-512"};
  return archs;
}

UNetConfig reference_unet_config(const std::string& arch) {
  if (arch == "sd15") return sd15_unet_config();
  if (arch == "sd21") return sd21_unet_config();
  if (arch == "bk-sdm-base") return bk_sdm_base_unet_config();
  if (arch == "bk-sdm-small") return bk_sdm_small_unet_config();
  if (arch == "bk-sdm-tiny") return bk_sdm_tiny_unet_config();
  if (arch == "sdxs-512") return sdxs_512_unet_config();
  std::string names;
  for (const std::string& a : reference_unet_archs()) names += (names.empty() ? "" : ", ") + a;
  fail("UNet architecture '", arch, "' is not one of ", names);
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
  SD_CHECK(block_out_channels.size() == n, where, ": block_out_channels ",
           join_ints(block_out_channels), " has ", block_out_channels.size(), " entries for ", n,
           " down blocks");
  SD_CHECK(layers_per_block.size() == n && transformer_layers_per_block.size() == n &&
               num_heads.size() == n,
           where, ": per-block lists must have ", n, " entries");
  SD_CHECK(only_cross_attention.empty() || only_cross_attention.size() == n, where,
           ": only_cross_attention has ", only_cross_attention.size(), " entries for ", n,
           " down blocks");
  SD_CHECK(in_channels > 0 && out_channels > 0 && cross_attention_dim > 0, where, ": in_channels ",
           in_channels, ", out_channels ", out_channels, ", cross_attention_dim ",
           cross_attention_dim, " must be positive");
  SD_CHECK(norm_num_groups > 0, where, ": norm_num_groups ", norm_num_groups, " must be positive");
  for (size_t i = 0; i < n; ++i) {
    const int ch = block_out_channels[i];
    SD_CHECK(ch > 0 && ch % norm_num_groups == 0, where, ": block_out_channels ",
             join_ints(block_out_channels), " must be positive multiples of norm_num_groups ",
             norm_num_groups);
    SD_CHECK(layers_per_block[i] >= 1, where, ": layers_per_block ", join_ints(layers_per_block),
             " must be >= 1");
    SD_CHECK(transformer_layers_per_block[i] >= 1, where, ": transformer_layers_per_block ",
             join_ints(transformer_layers_per_block), " must be >= 1");
    SD_CHECK(num_heads[i] >= 1 && num_heads[i] <= ch, where, ": attention_head_dim ",
             join_ints(num_heads),
             " (the number of heads, in diffusers' legacy naming) must be in [1, ",
             "channels] for block_out_channels ", join_ints(block_out_channels));
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
