// describe_model_path (streamdiff/tools.hpp), the text of `streamdiff info PATH`: says what a
// model path is without loading any weights (only safetensors headers and config files are
// read): a diffusers model folder (which parts are present, the family, per part the class,
// weights file, parameter count and dtypes), a component folder (unet/, vae/, text_encoder/, a
// TAESD folder, ...), a single-file LDM checkpoint (family, parts, the configs a load assumes) or
// any other .safetensors file; plus safetensors metadata. Errors are Status::Io.
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/api_common.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/autoencoder_kl.h"
#include "models/ldm_checkpoint.h"
#include "models/lora.h"
#include "streamdiff/tools.hpp"

namespace streamdiff {
namespace {

using sd::LdmCheckpoint;
using sd::LoraFile;
using sd::LoraPart;
using sd::SafetensorsFile;

// The text being built: print() appends what std::printf would write.
struct Out {
  __attribute__((format(printf, 2, 3))) void print(const char* fmt, ...) {
    va_list args, measure;
    va_start(args, fmt);
    va_copy(measure, args);
    const int n = std::vsnprintf(nullptr, 0, fmt, measure);
    va_end(measure);
    if (n > 0) {
      const size_t at = text.size();
      text.resize(at + size_t(n) + 1);  // vsnprintf writes a terminating NUL
      std::vsnprintf(text.data() + at, size_t(n) + 1, fmt, args);
      text.resize(at + size_t(n));
    }
    va_end(args);
  }
  std::string text;
};

namespace fs = std::filesystem;

// Parameter statistics of one or more safetensors files (headers only).
struct WeightStats {
  int64_t tensors = 0, params = 0;
  uint64_t bytes = 0;
  std::map<std::string, int64_t> params_by_dtype;

  void add(const sd::SafetensorsEntry& e) {
    ++tensors;
    params += e.shape.numel();
    bytes += e.end - e.begin;
    params_by_dtype[e.dtype] += e.shape.numel();
  }
  void add(const SafetensorsFile& f) {
    for (const auto& e : f.entries()) add(e);
  }
};

std::string with_commas(int64_t n) {
  const std::string digits = std::to_string(n);
  std::string s;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0 && digits[i - 1] != '-') s += ',';
    s += digits[i];
  }
  return s;
}

std::string short_count(int64_t n) {
  char buf[32];
  if (n >= 1000000000)
    std::snprintf(buf, sizeof buf, "%.2fB", double(n) / 1e9);
  else if (n >= 1000000)
    std::snprintf(buf, sizeof buf, "%.1fM", double(n) / 1e6);
  else if (n >= 1000)
    std::snprintf(buf, sizeof buf, "%.1fK", double(n) / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

// "F16" when uniform, else "F16 99.9%, F32 0.1%" (share of parameters).
std::string dtypes(const WeightStats& s) {
  if (s.params_by_dtype.size() == 1) return s.params_by_dtype.begin()->first;
  std::string out;
  for (const auto& [dtype, n] : s.params_by_dtype) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s%s %.1f%%", out.empty() ? "" : ", ", dtype.c_str(),
                  s.params ? 100.0 * double(n) / double(s.params) : 0.0);
    out += buf;
  }
  return out.empty() ? "-" : out;
}

std::string describe(const WeightStats& s) {
  char mib[32];
  std::snprintf(mib, sizeof mib, "%.1f MiB", double(s.bytes) / (1024.0 * 1024.0));
  return std::to_string(s.tensors) + " tensors, " + with_commas(s.params) + " params (" +
         short_count(s.params) + "), " + dtypes(s) + ", " + mib;
}

void print_metadata(Out& out, const std::map<std::string, std::string>& metadata,
                    const std::string& what) {
  if (metadata.empty()) return;
  out.print("metadata%s:\n", what.c_str());
  for (const auto& [k, v] : metadata) {
    std::string shown = v.size() > 160 ? v.substr(0, 157) + "..." : v;
    for (char& c : shown)
      if (c == '\n' || c == '\r') c = ' ';
    out.print("  %s: %s\n", k.c_str(), shown.c_str());
  }
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  SD_CHECK(in, "cannot read '", p.string(), "'");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  SD_CHECK(!j.is_discarded() && j.is_object(), "'", p.string(), "' is not a JSON object");
  return j;
}

std::string json_string(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

// ---- single files ----------------------------------------------------------------------------

// What a non-LDM safetensors file holds, from its tensor names.
std::string guess_content(const SafetensorsFile& f) {
  auto has = [&](const char* name) { return f.contains(name); };
  bool lora = false, text_model = false;
  for (const auto& e : f.entries()) {
    lora |= e.name.find("lora_") != std::string::npos || e.name.find(".lora.") != std::string::npos;
    text_model |= e.name.rfind("text_model.", 0) == 0;
  }
  if (lora) return "LoRA weights";
  if (has("conv_in.weight") && has("time_embedding.linear_1.weight"))
    return "diffusers UNet weights (UNet2DConditionModel names)";
  if (has("encoder.conv_in.weight") && has("decoder.conv_in.weight"))
    return "diffusers AutoencoderKL weights";
  if (has("encoder.layers.0.weight") || has("decoder.layers.0.weight"))
    return "TAESD weights (AutoencoderTiny names)";
  if (has("0.weight") && has("1.weight")) return "TAESD encoder or decoder (original names)";
  if (text_model) return "CLIP text encoder weights (transformers names)";
  return "safetensors file";
}

void info_ldm(Out& out, const SafetensorsFile& file) {
  std::unique_ptr<LdmCheckpoint> ckpt;
  try {
    ckpt = LdmCheckpoint::open(file.path());
  } catch (const sd::Error& e) {
    out.print("kind: single-file checkpoint (original LDM layout), not loadable\n");
    out.print("reason: %s\n", e.what());
  }
  std::map<std::string, WeightStats> parts;
  for (const auto& e : file.entries()) {
    const char* part = e.name.rfind(LdmCheckpoint::kUNetPrefix, 0) == 0   ? "unet"
                       : e.name.rfind(LdmCheckpoint::kVaePrefix, 0) == 0  ? "vae"
                       : e.name.rfind(LdmCheckpoint::kTextPrefix, 0) == 0 ? "text_encoder"
                                                                          : "other";
    parts[part].add(e);
  }
  if (ckpt) {
    const sd::LdmCheckpointInfo& i = ckpt->info();
    out.print("kind: single-file checkpoint (original LDM layout)\n");
    out.print("family: %s (cross-attention width %d, %s proj_in, %d base channels)\n",
              sd::ldm_family_name(i.family), i.cross_attention_dim,
              i.linear_projection ? "linear" : "conv 1x1", i.model_channels);
    std::string vae = "no VAE";
    if (i.has_vae) {
      try {
        ckpt->default_vae_config();
        vae = "SD VAE (scaling_factor 0.18215)";
      } catch (const sd::Error&) {
        vae = "VAE not the SD one (loading it needs an explicit config)";
      }
    }
    if (i.full_size) {
      out.print("assumed configs: %s UNet, %s\n",
                i.family == sd::LdmFamily::kSD1 ? "SD 1.5" : "SD 2.1 (sd-turbo: the same, at 512)",
                vae.c_str());
    } else {
      out.print(
          "assumed configs: none (not the SD 1.5 / SD 2.1 widths; loading needs explicit "
          "configs); %s\n",
          vae.c_str());
    }
  }
  out.print("parts:\n");
  const char* text_kind = "";
  if (ckpt && ckpt->info().text_encoder == sd::LdmTextEncoder::kOpenAIClip)
    text_kind = " [OpenAI CLIP: cond_stage_model.transformer.*]";
  if (ckpt && ckpt->info().text_encoder == sd::LdmTextEncoder::kOpenClip)
    text_kind = " [OpenCLIP: cond_stage_model.model.*]";
  for (const char* part : {"unet", "vae", "text_encoder", "other"}) {
    auto it = parts.find(part);
    if (it == parts.end()) {
      if (std::string(part) != "other") out.print("  %-13s absent\n", part);
      continue;
    }
    out.print("  %-13s %s%s\n", part, describe(it->second).c_str(),
              std::string(part) == "text_encoder" ? text_kind : "");
  }
}

// A LoRA file as fusing reads it: format, layers per part, ranks, alpha / rank.
void info_lora(Out& out, const std::string& path) {
  const LoraFile lora = LoraFile::load(path);
  out.print("LoRA format: %s\n",
            lora.format() == sd::LoraFormat::kKohya ? "kohya-ss / A1111" : "diffusers / PEFT");
  for (LoraPart part : {LoraPart::kUNet, LoraPart::kTextEncoder}) {
    int64_t min_rank = 0, max_rank = 0;
    float min_ratio = 0, max_ratio = 0;
    bool first = true;
    for (const sd::LoraFileLayer& l : lora.layers()) {
      if (l.part != part) continue;
      const int64_t r = l.layer.rank();
      const float q = l.layer.ratio;
      min_rank = first ? r : std::min(min_rank, r);
      max_rank = first ? r : std::max(max_rank, r);
      min_ratio = first ? q : std::min(min_ratio, q);
      max_ratio = first ? q : std::max(max_ratio, q);
      first = false;
    }
    if (first) continue;
    auto range = [](double a, double b) {
      char buf[64];
      if (a == b)
        std::snprintf(buf, sizeof buf, "%g", a);
      else
        std::snprintf(buf, sizeof buf, "%g..%g", a, b);
      return std::string(buf);
    };
    out.print("  %s: %d layers, rank %s, alpha/rank %s\n",
              part == LoraPart::kUNet ? "UNet" : "text encoder", lora.count(part),
              range(double(min_rank), double(max_rank)).c_str(),
              range(min_ratio, max_ratio).c_str());
  }
}

void info_file(Out& out, const std::string& path) {
  sd::refuse_pickle_checkpoint(path);
  auto file = SafetensorsFile::open(path);
  out.print("path: %s\n", path.c_str());
  if (LdmCheckpoint::is_ldm(*file)) {
    info_ldm(out, *file);
  } else {
    const std::string kind = guess_content(*file);
    out.print("kind: %s\n", kind.c_str());
    if (kind == "LoRA weights") {
      try {
        info_lora(out, path);
      } catch (const sd::Error& e) {
        out.print("LoRA: cannot be fused: %s\n", e.what());
      }
    }
  }
  WeightStats total;
  total.add(*file);
  out.print("total: %s\n", describe(total).c_str());
  print_metadata(out, file->metadata(), "");
}

// ---- folders ---------------------------------------------------------------------------------

struct ComponentInfo {
  std::string cls;                 // _class_name / architectures[0] / scheduler class
  std::string weights;             // the weights file(s) found, as a loader picks them
  std::vector<std::string> notes;  // other variants, pickles, details
  WeightStats stats;
  std::map<std::string, std::string> metadata;
  nlohmann::json config;
};

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// Reads the config and the weights headers of a component folder.
ComponentInfo inspect_component(const fs::path& dir) {
  ComponentInfo c;
  for (const char* name : {"config.json", "scheduler_config.json"}) {
    if (!is_file(dir / name)) continue;
    c.config = read_json(dir / name);
    c.cls = json_string(c.config, "_class_name");
    if (c.cls.empty() && c.config.contains("architectures") &&
        c.config["architectures"].is_array() && !c.config["architectures"].empty() &&
        c.config["architectures"][0].is_string())
      c.cls = c.config["architectures"][0].get<std::string>();
    break;
  }
  std::vector<std::string> found;
  for (const char* base : {"diffusion_pytorch_model", "model"}) {
    for (const char* variant : {"", ".fp16"}) {
      const std::string single = std::string(base) + variant + ".safetensors";
      if (is_file(dir / single)) found.push_back(single);
      if (is_file(dir / (single + ".index.json"))) found.push_back(single + ".index.json");
    }
  }
  for (const auto& f : found) {
    if (!c.weights.empty()) {
      c.notes.push_back("also " + f);
      continue;
    }
    c.weights = f;
    if (f.size() > 11 && f.compare(f.size() - 11, 11, ".index.json") == 0) {
      const nlohmann::json index = read_json(dir / f);
      std::set<std::string> shards;
      if (index.contains("weight_map") && index["weight_map"].is_object())
        for (const auto& [k, v] : index["weight_map"].items())
          if (v.is_string()) shards.insert(v.get<std::string>());
      for (const auto& s : shards) {
        auto shard = SafetensorsFile::open((dir / s).string());
        c.stats.add(*shard);
      }
      c.weights += " (" + std::to_string(shards.size()) + " shards)";
    } else {
      auto file = SafetensorsFile::open((dir / f).string());
      c.stats.add(*file);
      c.metadata = file->metadata();
    }
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string ext = entry.path().extension().string();
    if (ext == ".bin" || ext == ".ckpt" || ext == ".pt" || ext == ".pth")
      c.notes.push_back(entry.path().filename().string() +
                        " is a PyTorch pickle (not loaded: convert it to .safetensors)");
  }
  const nlohmann::json& j = c.config;
  auto num = [&](const char* key) -> std::string {
    return j.contains(key) && !j[key].is_null() ? j[key].dump() : "";
  };
  if (c.cls == "UNet2DConditionModel")
    c.notes.push_back("cross_attention_dim " + num("cross_attention_dim") +
                      ", block_out_channels " + num("block_out_channels"));
  if (c.cls == "AutoencoderKL" || c.cls == "AutoencoderTiny")
    c.notes.push_back("latent_channels " + num("latent_channels") + ", scaling_factor " +
                      num("scaling_factor"));
  if (c.cls.rfind("CLIPText", 0) == 0)
    c.notes.push_back("hidden_size " + num("hidden_size") + ", layers " + num("num_hidden_layers") +
                      ", " + json_string(j, "hidden_act"));
  return c;
}

// The family from a UNet config (cross-attention width and projection kind).
std::string family_of_unet_config(const nlohmann::json& j) {
  const int dim = j.contains("cross_attention_dim") && j["cross_attention_dim"].is_number_integer()
                      ? j["cross_attention_dim"].get<int>()
                      : 0;
  const bool linear = j.contains("use_linear_projection") &&
                      j["use_linear_projection"].is_boolean() &&
                      j["use_linear_projection"].get<bool>();
  if (dim == 768 && !linear) return "SD 1.x (cross_attention_dim 768)";
  if (dim == 1024 && linear) return "SD 2.x (SD 2.0/2.1, sd-turbo; cross_attention_dim 1024)";
  return std::string("unknown (cross_attention_dim ") + std::to_string(dim) + ", " +
         (linear ? "linear" : "conv") + " proj_in; " + (linear ? "SD 2.x" : "SD 1.x") +
         "-like layout)";
}

void print_component(Out& out, const char* part, const ComponentInfo& c) {
  out.print("  %-13s %s", part, c.cls.empty() ? "(no class in config)" : c.cls.c_str());
  if (!c.weights.empty()) out.print(": %s, %s", c.weights.c_str(), describe(c.stats).c_str());
  out.print("\n");
  for (const auto& n : c.notes) out.print("  %-13s   %s\n", "", n.c_str());
}

void info_component_folder(Out& out, const fs::path& dir) {
  ComponentInfo c = inspect_component(dir);
  out.print("path: %s\n", dir.string().c_str());
  out.print("kind: component folder\n");
  if (c.cls == "UNet2DConditionModel")
    out.print("family: %s\n", family_of_unet_config(c.config).c_str());
  print_component(out,
                  dir.filename().empty() ? dir.parent_path().filename().string().c_str()
                                         : dir.filename().string().c_str(),
                  c);
  print_metadata(out, c.metadata, "");
}

void info_model_folder(Out& out, const fs::path& dir) {
  const bool has_index = is_file(dir / "model_index.json");
  out.print("path: %s\n", dir.string().c_str());
  nlohmann::json index;
  if (has_index) index = read_json(dir / "model_index.json");
  out.print("kind: diffusers model folder%s\n",
            has_index ? (" (model_index.json: " + json_string(index, "_class_name") + ")").c_str()
                      : " (no model_index.json)");
  if (is_file(dir / "unet" / "config.json"))
    out.print("family: %s\n",
              family_of_unet_config(read_json(dir / "unet" / "config.json")).c_str());
  out.print("parts:\n");
  std::set<std::string> shown;
  for (const char* part : {"unet", "vae", "text_encoder", "tokenizer", "scheduler", "taesd"}) {
    shown.insert(part);
    const fs::path sub = dir / part;
    std::error_code ec;
    if (!fs::is_directory(sub, ec)) {
      const bool listed = index.contains(part) && index[part].is_array() && !index[part].empty() &&
                          !index[part][0].is_null();
      out.print("  %-13s %s\n", part,
                listed ? "MISSING (listed in model_index.json, no folder)" : "absent");
      continue;
    }
    if (std::string(part) == "tokenizer") {
      const bool ok = is_file(sub / "vocab.json") && is_file(sub / "merges.txt");
      out.print(
          "  %-13s %s\n", part,
          ok ? "present (vocab.json, merges.txt)" : "INCOMPLETE (needs vocab.json and merges.txt)");
      continue;
    }
    print_component(out, part, inspect_component(sub));
  }
  // Other component folders (safety_checker, feature_extractor, a TAESD under another name, ...).
  std::error_code ec;
  std::vector<fs::path> others;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_directory() && !shown.count(entry.path().filename().string()))
      others.push_back(entry.path());
  std::sort(others.begin(), others.end());
  for (const auto& p : others)
    print_component(out, p.filename().string().c_str(), inspect_component(p));
}

void run_info(Out& out, const std::string& path) {
  std::error_code ec;
  SD_CHECK(fs::exists(path, ec), "'", path, "' does not exist");
  if (!fs::is_directory(path, ec)) return info_file(out, path);
  const fs::path dir(path);
  if (is_file(dir / "config.json") || is_file(dir / "scheduler_config.json"))
    return info_component_folder(out, dir);
  bool any_part = is_file(dir / "model_index.json");
  for (const char* part : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"})
    any_part |= fs::is_directory(dir / part, ec);
  SD_CHECK(any_part, "'", path,
           "' is neither a diffusers model folder (model_index.json, unet/, vae/, ...) nor a "
           "component folder (config.json)");
  info_model_folder(out, dir);
}

}  // namespace

std::string describe_model_path(const std::string& path) {
  return detail::guarded(Status::Io, [&] {
    Out out;
    run_info(out, path);
    return std::move(out.text);
  });
}

}  // namespace streamdiff
