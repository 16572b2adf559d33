#include "models/ldm_checkpoint.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <utility>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "models/autoencoder_kl.h"
#include "models/clip_text.h"

namespace sd {

namespace fs = std::filesystem;

// ---- pickles ---------------------------------------------------------------------------------

void refuse_pickle_checkpoint(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  bool pickle = ext == ".ckpt" || ext == ".pt" || ext == ".pth" || ext == ".bin" || ext == ".pkl";
  if (!pickle) {
    unsigned char head[4] = {};
    size_t got = 0;
    if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
      got = std::fread(head, 1, sizeof head, f);
      std::fclose(f);
    }
    // torch.save writes a zip archive ("PK\3\4"); older files are a raw pickle stream
    // (PROTO opcode 0x80 followed by protocol 2..5).
    pickle = (got == 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) ||
             (got >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5);
  }
  SD_CHECK(!pickle, "'", path,
           "' is a PyTorch pickle checkpoint (.ckpt/.pt/.bin), which streamdiff does not load "
           "(unpickling can run arbitrary code). Convert it to .safetensors first, e.g. with "
           "python: safetensors.torch.save_file(torch.load(path, weights_only=True)"
           "[\"state_dict\"], \"model.safetensors\"), or load it in diffusers and "
           "save_pretrained(..., safe_serialization=True)");
}

// ---- family ----------------------------------------------------------------------------------

const char* ldm_family_name(LdmFamily family) {
  return family == LdmFamily::kSD1 ? "SD 1.x" : "SD 2.x (SD 2.0/2.1, sd-turbo)";
}

namespace {

// Replaces the leading `from` of `rest` by `to` (first match of the table); fails otherwise.
std::string rename_head(const std::string& rest,
                        const std::vector<std::pair<const char*, const char*>>& table,
                        const std::string& full_name) {
  for (const auto& [from, to] : table)
    if (rest.starts_with(from)) return to + rest.substr(std::string(from).size());
  fail("no LDM name for parameter '", full_name, "'");
}

const std::vector<std::pair<const char*, const char*>> kUNetResnet = {
    {"norm1.", "in_layers.0."},          {"conv1.", "in_layers.2."},
    {"time_emb_proj.", "emb_layers.1."}, {"norm2.", "out_layers.0."},
    {"conv2.", "out_layers.3."},         {"conv_shortcut.", "skip_connection."}};

const std::vector<std::pair<const char*, const char*>> kVaeResnet = {
    {"norm1.", "norm1."},
    {"conv1.", "conv1."},
    {"norm2.", "norm2."},
    {"conv2.", "conv2."},
    {"conv_shortcut.", "nin_shortcut."}};

const std::vector<std::pair<const char*, const char*>> kVaeAttention = {{"group_norm.", "norm."},
                                                                        {"to_q.", "q."},
                                                                        {"to_k.", "k."},
                                                                        {"to_v.", "v."},
                                                                        {"to_out.0.", "proj_out."}};

std::vector<std::string> split_dots(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t dot = s.find('.', start);
    parts.push_back(s.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

std::string join_from(const std::vector<std::string>& parts, size_t first) {
  std::string s;
  for (size_t i = first; i < parts.size(); ++i) s += (i > first ? "." : "") + parts[i];
  return s;
}

int parse_index(const std::string& s, const std::string& full_name) {
  SD_CHECK(!s.empty() && s.size() < 6 &&
               std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); }),
           "no LDM name for parameter '", full_name, "'");
  return std::stoi(s);
}

}  // namespace

std::string ldm_unet_tensor_name(const std::string& name, const UNetConfig& c) {
  static const std::vector<std::pair<const char*, const char*>> fixed = {
      {"time_embedding.linear_1.", "time_embed.0."},
      {"time_embedding.linear_2.", "time_embed.2."},
      {"conv_in.", "input_blocks.0.0."},
      {"conv_norm_out.", "out.0."},
      {"conv_out.", "out.2."}};
  for (const auto& [from, to] : fixed)
    if (name.starts_with(from)) return to + name.substr(std::string(from).size());

  const std::vector<std::string> p = split_dots(name);
  const int n = int(c.block_out_channels.size());
  auto no_name = [&]() -> std::string { fail("no LDM name for UNet parameter '", name, "'"); };
  if (p.size() < 5) return no_name();
  const std::string& kind = p[p[0] == "mid_block" ? 1 : 2];

  if (p[0] == "mid_block") {
    const int j = parse_index(p[2], name);
    const std::string rest = join_from(p, 3);
    if (kind == "resnets" && j <= 1)
      return "middle_block." + std::to_string(2 * j) + "." + rename_head(rest, kUNetResnet, name);
    if (kind == "attentions" && j == 0) return "middle_block.1." + rest;
    return no_name();
  }
  if (p[0] != "down_blocks" && p[0] != "up_blocks") return no_name();
  const int b = parse_index(p[1], name);
  const int j = parse_index(p[3], name);
  if (b >= n) return no_name();
  const std::string rest = join_from(p, 4);

  if (p[0] == "down_blocks") {
    int first = 1;  // input_blocks.0 is conv_in
    for (int k = 0; k < b; ++k) first += c.layers_per_block[k] + 1;
    const std::string at = "input_blocks." + std::to_string(first + j);
    if (kind == "resnets") return at + ".0." + rename_head(rest, kUNetResnet, name);
    if (kind == "attentions") return at + ".1." + rest;
    if (kind == "downsamplers" && j == 0 && rest.starts_with("conv."))
      return "input_blocks." + std::to_string(first + c.layers_per_block[b]) + ".0.op." +
             rest.substr(5);
    return no_name();
  }
  int first = 0;
  for (int k = 0; k < b; ++k) first += c.layers_per_block[n - 1 - k] + 1;
  const int last = first + c.layers_per_block[n - 1 - b];
  const std::string at = "output_blocks." + std::to_string(first + j);
  if (kind == "resnets") return at + ".0." + rename_head(rest, kUNetResnet, name);
  if (kind == "attentions") return at + ".1." + rest;
  if (kind == "upsamplers" && j == 0) {
    const bool has_attention = c.up_block_types[b] == "CrossAttnUpBlock2D";
    return "output_blocks." + std::to_string(last) + (has_attention ? ".2." : ".1.") + rest;
  }
  return no_name();
}

std::string ldm_vae_tensor_name(const std::string& name, int num_blocks) {
  const std::vector<std::string> p = split_dots(name);
  auto no_name = [&]() -> std::string { fail("no LDM name for VAE parameter '", name, "'"); };
  if (p.size() < 2) return no_name();
  if (p[0] == "quant_conv" || p[0] == "post_quant_conv") return name;
  if (p[0] != "encoder" && p[0] != "decoder") return no_name();
  const std::string& part = p[0];
  if (p[1] == "conv_in" || p[1] == "conv_out") return name;
  if (p[1] == "conv_norm_out") return part + ".norm_out." + join_from(p, 2);
  if (p.size() < 5) return no_name();

  if (p[1] == "mid_block") {
    const int j = parse_index(p[3], name);
    const std::string rest = join_from(p, 4);
    if (p[2] == "resnets" && j <= 1)
      return part + ".mid.block_" + std::to_string(j + 1) + "." +
             rename_head(rest, kVaeResnet, name);
    if (p[2] == "attentions" && j == 0)
      return part + ".mid.attn_1." + rename_head(rest, kVaeAttention, name);
    return no_name();
  }
  if (p.size() < 6) return no_name();
  const int b = parse_index(p[2], name);
  if (b >= num_blocks) return no_name();
  const std::string rest = join_from(p, 5);
  if (part == "encoder" && p[1] == "down_blocks") {
    const std::string at = "encoder.down." + std::to_string(b);
    if (p[3] == "resnets") return at + ".block." + p[4] + "." + rename_head(rest, kVaeResnet, name);
    if (p[3] == "downsamplers" && p[4] == "0") return at + ".downsample." + rest;
  }
  if (part == "decoder" && p[1] == "up_blocks") {
    const std::string at = "decoder.up." + std::to_string(num_blocks - 1 - b);
    if (p[3] == "resnets") return at + ".block." + p[4] + "." + rename_head(rest, kVaeResnet, name);
    if (p[3] == "upsamplers" && p[4] == "0") return at + ".upsample." + rest;
  }
  return no_name();
}

// ---- weight sources --------------------------------------------------------------------------

LdmUNetWeights::LdmUNetWeights(const SafetensorsFile& file, UNetConfig config)
    : file_(file), config_(std::move(config)) {}

LdmUNetWeights::LdmUNetWeights(std::shared_ptr<const SafetensorsFile> file, UNetConfig config)
    : keep_(std::move(file)), file_(*keep_), config_(std::move(config)) {}

void LdmUNetWeights::release_resident() {
  file_.release_resident();
}

std::string LdmUNetWeights::describe() const {
  return file_.path() + " (LDM single file, model.diffusion_model.*)";
}

Tensor LdmUNetWeights::get(const std::string& name, const Shape& expect) {
  const std::string ldm = LdmCheckpoint::kUNetPrefix + ldm_unet_tensor_name(name, config_);
  SD_CHECK(file_.contains(ldm), "'", file_.path(), "': missing tensor '", ldm, "' ", expect.str(),
           " (UNet parameter '", name, "'; does the UNet config match the checkpoint?)");
  const SafetensorsEntry& e = file_.entry(ldm);
  SD_CHECK(e.shape == expect, "'", file_.path(), "': tensor '", ldm, "' (UNet parameter '", name,
           "') has shape ", e.shape.str(), ", the UNet config expects ", expect.str());
  used_.insert(ldm);
  return file_.load(ldm, DType::F32, expect);
}

void LdmUNetWeights::check_all_used() const {
  for (const auto& e : file_.entries())
    SD_CHECK(!e.name.starts_with(LdmCheckpoint::kUNetPrefix) || used_.count(e.name), "'",
             file_.path(), "': unexpected UNet tensor '", e.name, "' ", e.shape.str(),
             " (the UNet config does not use it; do config and checkpoint match?)");
}

LdmVaeWeights::LdmVaeWeights(const SafetensorsFile& file, int num_blocks)
    : file_(file), num_blocks_(num_blocks) {}

std::string LdmVaeWeights::describe() const {
  return file_.path() + " (LDM single file, first_stage_model.*)";
}

Tensor LdmVaeWeights::get(const std::string& name, const Shape& expect) {
  const std::string ldm = LdmCheckpoint::kVaePrefix + ldm_vae_tensor_name(name, num_blocks_);
  SD_CHECK(file_.contains(ldm), "'", file_.path(), "': missing tensor '", ldm, "' ", expect.str(),
           " (VAE parameter '", name, "'; does the VAE config match the checkpoint?)");
  const SafetensorsEntry& e = file_.entry(ldm);
  // LDM's mid-block attention projections are 1x1 convs; diffusers' are linears.
  const bool conv_as_linear = expect.rank == 2 && e.shape.rank == 4 && e.shape[2] == 1 &&
                              e.shape[3] == 1 && e.shape[0] == expect[0] && e.shape[1] == expect[1];
  SD_CHECK(e.shape == expect || conv_as_linear, "'", file_.path(), "': tensor '", ldm,
           "' (VAE parameter '", name, "') has shape ", e.shape.str(), ", the VAE config expects ",
           expect.str());
  used_.insert(ldm);
  Tensor t = file_.load(ldm, DType::F32, e.shape);
  return conv_as_linear ? t.reshape(expect) : t;
}

void LdmVaeWeights::check_all_used() const {
  for (const auto& e : file_.entries())
    SD_CHECK(!e.name.starts_with(LdmCheckpoint::kVaePrefix) || used_.count(e.name), "'",
             file_.path(), "': unexpected VAE tensor '", e.name, "' ", e.shape.str(),
             " (the VAE config does not use it; do config and checkpoint match?)");
}

// ---- the checkpoint --------------------------------------------------------------------------

bool LdmCheckpoint::is_ldm(const SafetensorsFile& file) {
  for (const auto& e : file.entries())
    if (e.name.starts_with(kUNetPrefix)) return true;
  return false;
}

namespace {

LdmCheckpointInfo inspect(const SafetensorsFile& f) {
  const std::string& path = f.path();
  const std::string u = LdmCheckpoint::kUNetPrefix;
  LdmCheckpointInfo info;
  std::set<int64_t> context_dims;
  std::set<int> proj_ranks;
  bool openai = false, openclip = false, sdxl = false, label_emb = false;
  for (const auto& e : f.entries()) {
    const int64_t n = e.shape.numel();
    if (e.name.starts_with(u)) {
      info.unet_params += n;
      if (e.name.ends_with(".attn2.to_k.weight") && e.shape.rank == 2)
        context_dims.insert(e.shape[1]);
      if (e.name.ends_with(".proj_in.weight")) proj_ranks.insert(e.shape.rank);
      if (e.name.starts_with(u + "label_emb.")) label_emb = true;
    } else if (e.name.starts_with(LdmCheckpoint::kVaePrefix)) {
      info.vae_params += n;
      info.has_vae = true;
    } else if (e.name.starts_with(LdmCheckpoint::kTextPrefix)) {
      info.text_encoder_params += n;
      openai |= e.name.starts_with("cond_stage_model.transformer.");
      openclip |= e.name.starts_with("cond_stage_model.model.");
    } else {
      info.other_params += n;
      sdxl |= e.name.starts_with("conditioner.embedders.");
    }
  }
  SD_CHECK(!sdxl, "'", path,
           "' is an SDXL checkpoint (conditioner.embedders.*); only SD 1.x and SD 2.x / sd-turbo "
           "are supported");
  SD_CHECK(info.unet_params > 0, "'", path,
           "' is not a single-file Stable Diffusion checkpoint: it has no model.diffusion_model.* "
           "tensors",
           f.entries().empty() ? std::string(" (it has no tensors)")
                               : " (first tensor: '" + f.entries().front().name + "')");
  const std::string conv_in = u + "input_blocks.0.0.weight";
  SD_CHECK(f.contains(conv_in) && f.entry(conv_in).shape.rank == 4, "'", path,
           "': unknown UNet architecture: no 4-D conv_in '", conv_in, "'");
  info.model_channels = int(f.entry(conv_in).shape[0]);
  info.in_channels = int(f.entry(conv_in).shape[1]);
  SD_CHECK(info.in_channels == 4, "'", path, "': unknown UNet architecture: conv_in '", conv_in,
           "' takes ", info.in_channels,
           " channels, not 4 (inpainting / depth / instruct-pix2pix UNets are not supported)");
  SD_CHECK(!label_emb, "'", path,
           "': unknown UNet architecture: class-conditioned (label_emb.*), as in SD 2.x upscale "
           "or unCLIP models, which are not supported");
  SD_CHECK(context_dims.size() == 1, "'", path,
           "': unknown UNet architecture: expected one cross-attention width "
           "(*.attn2.to_k.weight columns), found ",
           context_dims.size());
  SD_CHECK(proj_ranks.size() == 1 && (*proj_ranks.begin() == 2 || *proj_ranks.begin() == 4), "'",
           path,
           "': unknown UNet architecture: proj_in weights are neither all linear (2-D) nor "
           "all 1x1 convs (4-D)");
  info.cross_attention_dim = int(*context_dims.begin());
  info.linear_projection = *proj_ranks.begin() == 2;
  info.family = info.linear_projection ? LdmFamily::kSD2 : LdmFamily::kSD1;
  SD_CHECK(!(openai && openclip), "'", path,
           "': holds both cond_stage_model.transformer.* and cond_stage_model.model.* tensors");
  info.text_encoder = openai     ? LdmTextEncoder::kOpenAIClip
                      : openclip ? LdmTextEncoder::kOpenClip
                                 : LdmTextEncoder::kNone;
  const bool sd1 = info.family == LdmFamily::kSD1;
  SD_CHECK(info.text_encoder == LdmTextEncoder::kNone ||
               (info.text_encoder == LdmTextEncoder::kOpenAIClip) == sd1,
           "'", path, "': inconsistent checkpoint: the UNet is ",
           sd1 ? "SD 1.x-like (conv proj_in)" : "SD 2.x-like (linear proj_in)",
           " but the text encoder is ",
           info.text_encoder == LdmTextEncoder::kOpenAIClip ? "OpenAI CLIP (SD 1.x)"
                                                            : "OpenCLIP (SD 2.x)");
  info.full_size = info.model_channels == 320 && info.cross_attention_dim == (sd1 ? 768 : 1024);
  return info;
}

}  // namespace

std::unique_ptr<LdmCheckpoint> LdmCheckpoint::open(const std::string& path) {
  refuse_pickle_checkpoint(path);
  std::unique_ptr<LdmCheckpoint> ckpt(new LdmCheckpoint());
  ckpt->file_ = SafetensorsFile::open(path);
  ckpt->info_ = inspect(*ckpt->file_);
  return ckpt;
}

LdmCheckpoint::~LdmCheckpoint() = default;

const std::string& LdmCheckpoint::path() const {
  return file_->path();
}

UNetConfig LdmCheckpoint::default_unet_config() const {
  const LdmCheckpointInfo& i = info_;
  SD_CHECK(i.full_size, "'", path(),
           "': unknown UNet architecture: ", i.family == LdmFamily::kSD1 ? "conv" : "linear",
           " proj_in with cross-attention width ", i.cross_attention_dim, " and ", i.model_channels,
           " base channels matches neither SD 1.5 (768, 320) nor SD 2.1 (1024, 320); "
           "give its UNet config explicitly");
  return i.family == LdmFamily::kSD1 ? sd15_unet_config() : sd21_unet_config();
}

std::unique_ptr<UNet> LdmCheckpoint::load_unet(Backend& backend, const UNetConfig* config) const {
  const UNetConfig c = config ? *config : default_unet_config();
  return UNet::create(c, std::make_shared<LdmUNetWeights>(file_, c), backend);
}

AutoencoderKLConfig LdmCheckpoint::default_vae_config() const {
  SD_CHECK(info_.has_vae, "'", path(), "' holds no VAE (first_stage_model.*)");
  const std::string conv_in = std::string(kVaePrefix) + "encoder.conv_in.weight";
  const std::string last = std::string(kVaePrefix) + "encoder.down.3.block.0.conv1.weight";
  const std::string beyond = std::string(kVaePrefix) + "encoder.down.4.block.0.conv1.weight";
  const bool sd = file_->contains(conv_in) && file_->entry(conv_in).shape == Shape{128, 3, 3, 3} &&
                  file_->contains(last) && !file_->contains(beyond);
  SD_CHECK(sd, "'", path(),
           "': unknown VAE architecture: first_stage_model.* is not the SD VAE "
           "(encoder.conv_in [128, 3, 3, 3], 4 down blocks); give its VAE config explicitly");
  return AutoencoderKLConfig::stable_diffusion();
}

std::unique_ptr<AutoencoderKL> LdmCheckpoint::load_vae(Backend& backend,
                                                       const AutoencoderKLConfig* config) const {
  const AutoencoderKLConfig c = config ? *config : default_vae_config();
  LdmVaeWeights weights(*file_, int(c.block_out_channels.size()));
  return AutoencoderKL::create(c, weights, backend);
}

std::unique_ptr<ClipTextModel> LdmCheckpoint::load_text_encoder(
    Backend& backend, const ClipTextConfig* config) const {
  SD_CHECK(info_.text_encoder != LdmTextEncoder::kNone, "'", path(),
           "' holds no text encoder (cond_stage_model.*)");
  return ClipTextModel::load(path(), backend, config);
}

}  // namespace sd
