#include "models/lora.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <regex>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "models/clip_text.h"
#include "models/ldm_checkpoint.h"
#include "models/unet.h"

namespace sd {

namespace {

std::string underscored(std::string s) {
  for (char& c : s)
    if (c == '.') c = '_';
  return s;
}

enum class Role { kDown, kUp, kAlpha };

struct Pending {
  LoraPart part = LoraPart::kUNet;
  Tensor down, up;
  float alpha = NAN;
  std::string first_key;
};

// Splits a diffusers / PEFT key into (module with part prefix, role); false if it is not one.
bool split_diffusers_key(const std::string& key, std::string* module, Role* role) {
  static const std::pair<const char*, Role> kSuffixes[] = {
      {".lora_A.weight", Role::kDown},
      {".lora_B.weight", Role::kUp},
      {".lora.down.weight", Role::kDown},
      {".lora.up.weight", Role::kUp},
      {".lora_linear_layer.down.weight", Role::kDown},
      {".lora_linear_layer.up.weight", Role::kUp},
      {"_lora.down.weight", Role::kDown},  // attention processors: attn1.processor.to_q_lora
      {"_lora.up.weight", Role::kUp},
      {".alpha", Role::kAlpha},
  };
  for (const auto& [suffix, r] : kSuffixes) {
    if (!key.ends_with(suffix)) continue;
    std::string m = key.substr(0, key.size() - std::string(suffix).size());
    if (std::string(suffix).front() == '_') {  // processor spelling
      const std::string proc = ".processor.";
      const size_t at = m.rfind(proc);
      if (at != std::string::npos) m = m.substr(0, at) + "." + m.substr(at + proc.size());
      if (m.ends_with(".to_out")) m += ".0";
    }
    *module = m;
    *role = r;
    return true;
  }
  return false;
}

// The part a diffusers module belongs to, with the part prefix removed.
LoraPart diffusers_part(std::string* module, const std::string& path, const std::string& key) {
  std::string& m = *module;
  if (m.starts_with("base_model.model.")) m = m.substr(17);
  SD_CHECK(!m.starts_with("text_encoder_2.") && !m.starts_with("lora_te2_"), "LoRA '", path,
           "': key '", key, "' is for a second text encoder (SDXL), which these models lack");
  if (m.starts_with("unet.")) {
    m = m.substr(5);
    return LoraPart::kUNet;
  }
  if (m.starts_with("text_encoder.")) {
    m = m.substr(13);
    if (!m.starts_with("text_model.")) m = "text_model." + m;  // transformers 5 drops it
    return LoraPart::kTextEncoder;
  }
  if (m.starts_with("text_model.")) return LoraPart::kTextEncoder;
  return LoraPart::kUNet;
}

float scalar_value(const SafetensorsFile& f, const std::string& key) {
  const SafetensorsEntry& e = f.entry(key);
  SD_CHECK(e.shape.numel() == 1, "LoRA '", f.path(), "': alpha '", key, "' has shape ",
           e.shape.str(), ", expected a scalar");
  const Tensor t = f.load(key, DType::F32);
  return t.data_as<float>()[0];
}

// PEFT's LoraConfig fields diffusers stores per part ("unet.lora_alpha", ...).
struct PeftAlpha {
  bool present = false;
  double alpha = 0;
  bool rslora = false;
  std::vector<std::pair<std::regex, double>> alpha_pattern;
};

PeftAlpha peft_alpha(const nlohmann::json& meta, const std::string& part, const std::string& path) {
  PeftAlpha a;
  auto get = [&](const char* k) -> const nlohmann::json* {
    auto it = meta.find(part + "." + k);
    return it == meta.end() || it->is_null() ? nullptr : &*it;
  };
  if (const nlohmann::json* d = get("use_dora"))
    SD_CHECK(!(d->is_boolean() && d->get<bool>()), "LoRA '", path, "': ", part,
             " is a DoRA adapter (use_dora), which is not supported");
  if (const nlohmann::json* r = get("use_rslora")) a.rslora = r->is_boolean() && r->get<bool>();
  if (const nlohmann::json* al = get("lora_alpha")) {
    SD_CHECK(al->is_number(), "LoRA '", path, "': metadata ", part, ".lora_alpha is not a number");
    a.present = true;
    a.alpha = al->get<double>();
  }
  if (const nlohmann::json* pat = get("alpha_pattern")) {
    SD_CHECK(pat->is_object(), "LoRA '", path, "': metadata ", part,
             ".alpha_pattern is not an object");
    for (const auto& [k, v] : pat->items()) {
      SD_CHECK(v.is_number(), "LoRA '", path, "': alpha_pattern '", k, "' is not a number");
      try {  // PEFT matches a pattern against the end of the module name
        a.alpha_pattern.emplace_back(std::regex("(.*\\.)?(" + k + ")"), v.get<double>());
      } catch (const std::regex_error&) {
        fail("LoRA '", path, "': alpha_pattern key '", k, "' is not a valid pattern");
      }
    }
  }
  return a;
}

}  // namespace

int LoraFile::count(LoraPart part) const {
  int n = 0;
  for (const LoraFileLayer& l : layers_) n += l.part == part;
  return n;
}

LoraFile LoraFile::load(const std::string& path) {
  refuse_pickle_checkpoint(path);
  SD_CHECK(std::filesystem::path(path).extension() == ".safetensors", "LoRA '", path,
           "' is not a .safetensors file");
  std::unique_ptr<SafetensorsFile> file = SafetensorsFile::open(path);
  const SafetensorsFile& f = *file;
  LoraFile out;
  out.path_ = path;
  bool kohya = false;
  for (const SafetensorsEntry& e : f.entries())
    kohya |= e.name.starts_with("lora_unet_") || e.name.starts_with("lora_te");
  out.format_ = kohya ? LoraFormat::kKohya : LoraFormat::kDiffusers;

  std::map<std::string, Pending> pending;  // by module (kohya: its underscored name)
  for (const SafetensorsEntry& e : f.entries()) {
    const std::string& key = e.name;
    for (const char* unsupported : {"dora_scale", "lora_magnitude_vector", "hada_", "lokr_"})
      SD_CHECK(
          key.find(unsupported) == std::string::npos, "LoRA '", path, "': key '", key,
          "' belongs to a LoRA type that is not supported (DoRA, LoHa, LoKr); plain LoRA only");
    std::string module;
    Role role = Role::kDown;
    LoraPart part = LoraPart::kUNet;
    if (kohya) {
      const size_t dot = key.find('.');
      const std::string name = key.substr(0, dot),
                        suffix = dot == std::string::npos ? "" : key.substr(dot + 1);
      if (suffix == "lora_down.weight")
        role = Role::kDown;
      else if (suffix == "lora_up.weight")
        role = Role::kUp;
      else if (suffix == "alpha")
        role = Role::kAlpha;
      else
        fail("LoRA '", path, "': key '", key,
             "' is not a kohya LoRA key (lora_down.weight, "
             "lora_up.weight, alpha)");
      SD_CHECK(!name.starts_with("lora_te2_"), "LoRA '", path, "': key '", key,
               "' is for a second text encoder (SDXL), which these models lack");
      if (name.starts_with("lora_unet_")) {
        module = name.substr(10);
      } else if (name.starts_with("lora_te1_") || name.starts_with("lora_te_")) {
        module = name.substr(name.starts_with("lora_te1_") ? 9 : 8);
        part = LoraPart::kTextEncoder;
      } else {
        fail("LoRA '", path, "': key '", key, "' has neither a lora_unet_ nor a lora_te_ prefix");
      }
    } else {
      SD_CHECK(split_diffusers_key(key, &module, &role), "LoRA '", path, "': key '", key,
               "' is not a LoRA weight (expected lora_A / lora_B, lora.down / lora.up or alpha)");
      part = diffusers_part(&module, path, key);
    }
    Pending& p = pending[(part == LoraPart::kUNet ? "u:" : "t:") + module];
    if (p.first_key.empty()) p.first_key = key;
    p.part = part;
    if (role == Role::kAlpha) {
      p.alpha = scalar_value(f, key);
      continue;
    }
    SD_CHECK(e.shape.rank == 2 || e.shape.rank == 4, "LoRA '", path, "': '", key, "' has shape ",
             e.shape.str(), ", expected a matrix or a conv kernel");
    Tensor& slot = role == Role::kDown ? p.down : p.up;
    SD_CHECK(!slot.defined() || slot.numel() == 0, "LoRA '", path, "': two tensors for '", key,
             "'");
    slot = f.load(key, DType::F32);
  }

  nlohmann::json meta = nlohmann::json::object();
  auto m = f.metadata().find("lora_adapter_metadata");
  if (m != f.metadata().end()) {
    meta = nlohmann::json::parse(m->second, nullptr, false);
    SD_CHECK(meta.is_object(), "LoRA '", path,
             "': metadata lora_adapter_metadata is not a JSON "
             "object");
  }
  const PeftAlpha peft[2] = {peft_alpha(meta, "unet", path),
                             peft_alpha(meta, "text_encoder", path)};

  for (auto& [tagged, p] : pending) {
    const std::string module = tagged.substr(2);
    SD_CHECK(p.down.defined() && p.down.numel() > 0 && p.up.defined() && p.up.numel() > 0, "LoRA '",
             path, "': '", p.first_key, "' has no matching ",
             p.down.defined() && p.down.numel() > 0 ? "up" : "down", " weight");
    const int64_t rank = p.down.dim(0);
    SD_CHECK(rank > 0 && p.up.dim(1) == rank, "LoRA '", path, "': '", module, "' down ",
             p.down.shape().str(), " and up ", p.up.shape().str(), " have different ranks");
    double alpha = rank;
    bool rslora = false;
    if (!std::isnan(p.alpha)) {
      alpha = p.alpha;
    } else {
      const PeftAlpha& a = peft[p.part == LoraPart::kUNet ? 0 : 1];
      rslora = a.rslora;
      if (a.present) alpha = a.alpha;
      for (const auto& [re, value] : a.alpha_pattern)
        if (std::regex_match(module, re)) alpha = value;
    }
    LoraFileLayer l;
    l.part = p.part;
    l.module = module;
    l.layer.key = module;
    l.layer.down = p.down;
    l.layer.up = p.up;
    l.layer.ratio = float(alpha / (rslora ? std::sqrt(double(rank)) : double(rank)));
    out.layers_.push_back(std::move(l));
  }
  SD_CHECK(!out.layers_.empty(), "LoRA '", path, "' holds no LoRA layers");
  return out;
}

// ---- fusing ------------------------------------------------------------------------------------

namespace {

// Maps a file's module name to the model's, per part.
class ModuleResolver {
 public:
  ModuleResolver(const LoraTargets& targets, bool kohya, const UNetConfig* ldm_config) {
    if (!kohya) return;
    for (const std::string& m : targets.modules()) {
      by_underscore_.emplace(underscored(m), m);
      if (m.starts_with("text_model."))  // also as named from transformers 5's module tree
        by_underscore_.emplace(underscored(m.substr(11)), m);
      if (!ldm_config) continue;
      try {  // the LDM block names of the original checkpoint, as many kohya files use
        const std::string ldm = ldm_unet_tensor_name(m + ".weight", *ldm_config);
        by_underscore_.emplace(underscored(ldm.substr(0, ldm.size() - 7)), m);
      } catch (const Error&) {
      }
    }
    kohya_ = true;
  }
  // The model's module name, or "" when none matches.
  std::string resolve(const std::string& module, const LoraTargets& targets) const {
    if (!kohya_) return targets.contains(module) ? module : "";
    auto it = by_underscore_.find(module);
    return it == by_underscore_.end() ? "" : it->second;
  }

 private:
  bool kohya_ = false;
  std::map<std::string, std::string> by_underscore_;
};

}  // namespace

LoraFuseReport fuse_lora(const LoraFile& lora, float scale, UNet* unet, ClipTextModel* text,
                         bool allow_unmatched, std::string name) {
  SD_CHECK(std::isfinite(scale), "LoRA scale ", scale, " is not a finite number");
  if (name.empty()) name = lora.path();
  const bool kohya = lora.format() == LoraFormat::kKohya;
  LoraTargets* targets[2] = {unet ? &unet->lora_targets() : nullptr,
                             text ? &text->lora_targets() : nullptr};
  std::unique_ptr<ModuleResolver> resolvers[2];
  if (unet) resolvers[0] = std::make_unique<ModuleResolver>(*targets[0], kohya, &unet->config());
  if (text) resolvers[1] = std::make_unique<ModuleResolver>(*targets[1], kohya, nullptr);

  std::map<std::string, const LoraLayer*> matched[2];
  LoraFuseReport report;
  for (const LoraFileLayer& l : lora.layers()) {
    const int i = l.part == LoraPart::kUNet ? 0 : 1;
    const std::string module = targets[i] ? resolvers[i]->resolve(l.module, *targets[i]) : "";
    if (module.empty()) {
      report.unmatched.push_back((i == 0 ? "unet: " : "text encoder: ") + l.module);
      continue;
    }
    matched[i][module] = &l.layer;
  }
  if (!report.unmatched.empty() && !allow_unmatched) {
    std::string list;
    for (size_t k = 0; k < report.unmatched.size() && k < 5; ++k)
      list += (k ? ", " : "") + report.unmatched[k];
    fail("LoRA '", lora.path(), "': ", report.unmatched.size(), " of ", lora.layers().size(),
         " layers match no weight of the model (", list, report.unmatched.size() > 5 ? ", ..." : "",
         "); is it for another model family? (allow_unmatched / --lora-allow-unmatched fuses "
         "the rest)");
  }
  // Check every shape first so a mismatch changes no weight.
  for (int i = 0; i < 2; ++i)
    for (const auto& [module, layer] : matched[i])
      check_lora_shapes(*layer, targets[i]->shape(module));
  if (unet && !matched[0].empty()) targets[0]->fuse(unet->backend(), name, matched[0], scale);
  if (text && !matched[1].empty()) targets[1]->fuse(text->backend(), name, matched[1], scale);
  report.unet_layers = int(matched[0].size());
  report.text_layers = int(matched[1].size());
  return report;
}

void unfuse_lora(UNet* unet, ClipTextModel* text, const std::string& name) {
  auto has = [&](const LoraTargets& t) {
    if (name.empty()) return true;
    for (const std::string& n : t.fused())
      if (n == name) return true;
    return false;
  };
  if (unet && has(unet->lora_targets())) unet->lora_targets().unfuse(unet->backend(), name);
  if (text && has(text->lora_targets())) text->lora_targets().unfuse(text->backend(), name);
}

}  // namespace sd
