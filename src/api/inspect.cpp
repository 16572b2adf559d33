// inspect_model (streamdiff/tools.hpp): the facts about a model path that settings are checked
// against, read from its configs and safetensors headers only (no weights), so that a program
// can refuse a bad size or a missing part before the slow loading. The rules follow what
// Model::load does: a folder's UNet config is unet/config.json, its VAE vae/config.json; a
// single file's configs are the ones LdmCheckpoint assumes for the family its tensors show.
// Errors are Status::Io naming the path.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <string>

#include "api/api_common.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "models/autoencoder_kl.h"
#include "models/clip_text.h"
#include "models/ldm_checkpoint.h"
#include "models/taesd.h"
#include "models/unet.h"
#include "streamdiff/tools.hpp"

namespace streamdiff {
namespace {

namespace fs = std::filesystem;
using sd::is_file;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

// The name a model goes by: the folder's or file's name, or for a Hugging Face cache snapshot
// (.../models--org--name/snapshots/<revision>) the repository's folder.
std::string model_name(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "folder/" -> "folder"
  if (p.parent_path().filename() == "snapshots" && !p.parent_path().parent_path().empty())
    return p.parent_path().parent_path().filename().string();
  return fs::is_regular_file(p) ? p.stem().string() : p.filename().string();
}

// TAESD's image pixels per latent pixel: from its diffusers config.json, else TAESD's 8.
int taesd_downscale(const std::string& taesd) {
  std::error_code ec;
  if (!fs::exists(taesd, ec)) sd::fail("TAESD '", taesd, "' does not exist");
  const fs::path config = fs::path(taesd) / "config.json";
  if (fs::is_directory(taesd, ec) && is_file(config))
    return sd::TaesdConfig::from_json_file(config.string()).encoder_downscale();
  return sd::TaesdConfig{}.encoder_downscale();
}

int count_layers(const sd::SafetensorsFile& f, const std::string& prefix,
                 const std::string& suffix) {
  int n = 0;
  while (f.contains(prefix + std::to_string(n) + suffix)) ++n;
  return n;
}

void inspect_folder(const fs::path& dir, int taesd_ds, ModelSummary& s) {
  s.kind = "diffusers folder";
  const fs::path unet = dir / "unet";
  if (!is_file(unet / "config.json"))
    sd::fail("'", dir.string(), "' is not a diffusers model folder: it has no unet/config.json");
  const sd::UNetConfig u = sd::UNetConfig::from_json_file((unet / "config.json").string());
  s.family = u.use_linear_projection ? "sd2" : "sd1";
  s.has_vae = is_file(dir / "vae" / "config.json");
  const fs::path text = dir / "text_encoder" / "config.json";
  s.has_text_encoder = is_file(text);
  s.has_tokenizer = is_file(dir / "tokenizer" / "vocab.json");
  if (s.has_text_encoder)
    s.text_layers = sd::ClipTextConfig::from_json_file(text.string()).num_hidden_layers;
  int vae_downscale = taesd_ds > 0 ? taesd_ds : 8;
  if (taesd_ds == 0 && s.has_vae)
    vae_downscale =
        sd::AutoencoderKLConfig::from_json_file((dir / "vae" / "config.json").string()).downscale();
  s.size_multiple = vae_downscale * u.size_multiple();
}

void inspect_file(const std::string& path, int taesd_ds, ModelSummary& s) {
  s.kind = "single-file checkpoint";
  sd::refuse_pickle_checkpoint(path);
  if (fs::path(path).extension() != ".safetensors")
    sd::fail("'", path, "' is not a .safetensors checkpoint or a diffusers model folder");
  const std::unique_ptr<sd::LdmCheckpoint> ckpt = sd::LdmCheckpoint::open(path);
  const sd::LdmCheckpointInfo& i = ckpt->info();
  s.family = i.family == sd::LdmFamily::kSD2 ? "sd2" : "sd1";
  s.has_vae = i.has_vae;
  s.has_text_encoder = i.text_encoder != sd::LdmTextEncoder::kNone;
  s.has_tokenizer = s.has_text_encoder;  // the built-in CLIP vocabulary
  const sd::SafetensorsFile& f = ckpt->file();
  if (i.text_encoder == sd::LdmTextEncoder::kOpenAIClip)
    s.text_layers = count_layers(f, "cond_stage_model.transformer.text_model.encoder.layers.",
                                 ".self_attn.q_proj.weight");
  if (i.text_encoder == sd::LdmTextEncoder::kOpenClip)  // SD 2.x leaves the last block out
    s.text_layers = std::max(
        0, count_layers(f, "cond_stage_model.model.transformer.resblocks.", ".ln_1.weight") - 1);
  const sd::UNetConfig u = ckpt->default_unet_config();  // throws for non-full-size UNets
  int vae_downscale = taesd_ds > 0 ? taesd_ds : 8;
  if (taesd_ds == 0 && s.has_vae) vae_downscale = ckpt->default_vae_config().downscale();
  s.size_multiple = vae_downscale * u.size_multiple();
}

}  // namespace

ModelSummary inspect_model(const std::string& path, const std::string& taesd) {
  return detail::guarded(Status::Io, [&] {
    ModelSummary s;
    s.path = path;
    std::error_code ec;
    if (!fs::exists(path, ec)) sd::fail("'", path, "' does not exist");
    const int taesd_ds = taesd.empty() ? 0 : taesd_downscale(taesd);
    if (fs::is_directory(path, ec))
      inspect_folder(fs::path(path), taesd_ds, s);
    else
      inspect_file(path, taesd_ds, s);
    s.name = model_name(path);
    s.suggested_preset = lower(s.name).find("turbo") != std::string::npos ? "sd-turbo" : "sd15-lcm";
    return s;
  });
}

}  // namespace streamdiff
