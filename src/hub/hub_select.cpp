#include "hub/hub_select.h"

#include <fnmatch.h>

#include <algorithm>
#include <map>
#include <set>

#include "core/error.h"
#include "hub/hub_cache.h"

namespace sd::hub {

namespace {

using Json = nlohmann::json;

// Components of a diffusers pipeline that streamdiff never reads.
const std::set<std::string> kUnusedComponents = {"safety_checker", "feature_extractor",
                                                 "image_encoder"};

std::string base_name(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string folder_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

// "name-00001-of-00002" -> "name".
std::string strip_shard(const std::string& s) {
  const size_t of = s.rfind("-of-");
  if (of == std::string::npos) return s;
  const size_t dash = s.rfind('-', of - 1);
  if (dash == std::string::npos) return s;
  auto digits = [](const std::string& d) {
    return !d.empty() &&
           std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!digits(s.substr(dash + 1, of - dash - 1)) || !digits(s.substr(of + 4))) return s;
  return s.substr(0, dash);
}

std::vector<std::string> split_dots(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t at; (at = s.find('.', start)) != std::string::npos; start = at + 1)
    parts.push_back(s.substr(start, at - start));
  parts.push_back(s.substr(start));
  return parts;
}

bool is_safetensors_weight(const std::string& name) {
  if (name.ends_with(".safetensors")) return true;
  // Sharded weights' index: x.safetensors.index.json, x.safetensors.index.fp16.json.
  return name.ends_with(".json") && name.find(".safetensors.index.") != std::string::npos;
}

bool is_other_weight(const std::string& name) {
  for (const char* ext : {".bin", ".ckpt", ".pt", ".pth", ".onnx", ".onnx_data", ".msgpack", ".h5",
                          ".pb", ".gguf", ".xml"})
    if (name.ends_with(ext)) return true;
  return false;
}

bool is_config_file(const std::string& name) {
  if (is_safetensors_weight(name)) return false;
  return name.ends_with(".json") || name.ends_with(".txt") || name.ends_with(".model");
}

// The weight stem: "diffusion_pytorch_model" for every spelling of its files.
std::string weight_stem(const std::string& name) {
  return strip_shard(split_dots(name).front());
}

// The chosen .safetensors weights among the files of one folder: the primary stem's (diffusers'
// or transformers' name) when present, in `variant` when the folder has it, else plain ones.
std::vector<const RemoteFile*> choose_weights(const std::vector<const RemoteFile*>& files,
                                              const std::string& variant) {
  std::vector<const RemoteFile*> weights;
  bool primary = false;
  for (const RemoteFile* f : files) {
    if (!is_safetensors_weight(base_name(f->path))) continue;
    weights.push_back(f);
    const std::string stem = weight_stem(base_name(f->path));
    primary = primary || stem == "diffusion_pytorch_model" || stem == "model";
  }
  if (primary)
    std::erase_if(weights, [](const RemoteFile* f) {
      const std::string stem = weight_stem(base_name(f->path));
      return stem != "diffusion_pytorch_model" && stem != "model";
    });
  bool has_variant = false;
  for (const RemoteFile* f : weights)
    has_variant =
        has_variant || (!variant.empty() && weight_variant(base_name(f->path)) == variant);
  const std::string wanted = has_variant ? variant : std::string();
  std::erase_if(weights,
                [&](const RemoteFile* f) { return weight_variant(base_name(f->path)) != wanted; });
  return weights;
}

// The files of one component folder ("" for the repository's top): configuration and tokenizer
// files, and the chosen weights.
void choose_component(const std::vector<RemoteFile>& all, const std::string& folder,
                      const std::string& variant, const std::string& repo_id,
                      std::vector<RemoteFile>& out) {
  std::vector<const RemoteFile*> files;
  for (const RemoteFile& f : all)
    if (folder_of(f.path) == folder) files.push_back(&f);
  const std::vector<const RemoteFile*> weights = choose_weights(files, variant);
  std::string pickle;
  for (const RemoteFile* f : files) {
    if (is_config_file(base_name(f->path))) out.push_back(*f);
    if (pickle.empty() && is_other_weight(base_name(f->path))) pickle = base_name(f->path);
  }
  for (const RemoteFile* w : weights) out.push_back(*w);
  const std::string where = folder.empty() ? repo_id : repo_id + ": " + folder + "/";
  SD_CHECK(!weights.empty() || pickle.empty(), where, " has no .safetensors weights (only ", pickle,
           "), and streamdiff loads only .safetensors");
}

std::vector<RemoteFile> choose_by_globs(const RepoListing& listing,
                                        const std::vector<std::string>& include,
                                        const std::string& repo_id) {
  std::vector<RemoteFile> out;
  for (const RemoteFile& f : listing.files)
    for (const std::string& glob : include)
      if (::fnmatch(glob.c_str(), f.path.c_str(), 0) == 0) {
        out.push_back(f);
        break;
      }
  std::string globs;
  for (const std::string& g : include) globs += (globs.empty() ? "'" : ", '") + g + "'";
  SD_CHECK(!out.empty(), "no file of ", repo_id, " matches ", globs);
  return out;
}

std::vector<RemoteFile> choose_diffusers(const RepoListing& listing, const Json& model_index,
                                         const std::string& variant, const std::string& repo_id) {
  SD_CHECK(model_index.is_object(), repo_id, ": model_index.json is not a JSON object");
  std::vector<RemoteFile> out;
  for (const RemoteFile& f : listing.files)
    if (f.path == "model_index.json") out.push_back(f);
  for (const auto& [name, value] : model_index.items()) {
    if (name.starts_with("_") || kUnusedComponents.count(name)) continue;
    // A component is ["library", "Class"]; [null, null] is an absent one.
    if (!value.is_array() || value.size() != 2 || value[0].is_null()) continue;
    check_repo_path(name, repo_id);
    SD_CHECK(name.find('/') == std::string::npos, repo_id,
             ": model_index.json names the component '", name, "', which is not a folder name");
    choose_component(listing.files, name, variant, repo_id, out);
  }
  return out;
}

}  // namespace

std::string weight_variant(const std::string& file_name) {
  const std::vector<std::string> parts = split_dots(file_name);
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string p = strip_shard(parts[i]);
    if (p != "safetensors" && p != "index" && p != "json" && !p.empty()) return p;
  }
  return "";
}

RepoListing parse_repo_listing(const std::string& json, const std::string& repo_id) {
  const Json j = Json::parse(json, nullptr, false);
  SD_CHECK(j.is_object(), "the Hub's answer for ", repo_id, " is not a JSON object");
  RepoListing listing;
  SD_CHECK(j.contains("sha") && j["sha"].is_string(), "the Hub's answer for ", repo_id,
           " has no commit (sha)");
  listing.commit = j["sha"].get<std::string>();
  SD_CHECK(is_commit_hash(listing.commit), "the Hub's answer for ", repo_id, " gives the commit '",
           listing.commit, "', which is not 40 hex digits");
  SD_CHECK(j.contains("siblings") && j["siblings"].is_array(), "the Hub's answer for ", repo_id,
           " has no file list (siblings)");
  for (const Json& s : j["siblings"]) {
    SD_CHECK(s.is_object() && s.contains("rfilename") && s["rfilename"].is_string(),
             "the Hub's file list for ", repo_id, " has an entry without rfilename");
    RemoteFile f;
    f.path = s["rfilename"].get<std::string>();
    check_repo_path(f.path, repo_id);
    if (s.contains("size") && s["size"].is_number_integer()) f.size = s["size"].get<int64_t>();
    if (s.contains("lfs") && s["lfs"].is_object()) {
      const Json& lfs = s["lfs"];
      if (lfs.contains("sha256") && lfs["sha256"].is_string())
        f.sha256 = lfs["sha256"].get<std::string>();
      if (lfs.contains("size") && lfs["size"].is_number_integer())
        f.size = lfs["size"].get<int64_t>();
    }
    listing.files.push_back(std::move(f));
  }
  return listing;
}

std::vector<RemoteFile> choose_files(const RepoListing& listing, const Json* model_index,
                                     const std::string& variant,
                                     const std::vector<std::string>& include,
                                     const std::string& repo_id) {
  if (!include.empty()) return choose_by_globs(listing, include, repo_id);
  if (model_index) return choose_diffusers(listing, *model_index, variant, repo_id);
  std::vector<RemoteFile> out;
  for (const RemoteFile& f : listing.files)
    if (f.path == "config.json") {
      choose_component(listing.files, "", variant, repo_id, out);
      return out;
    }
  std::string names;
  for (const RemoteFile& f : listing.files)
    if (f.path.find('/') == std::string::npos && f.path.ends_with(".safetensors")) {
      out.push_back(f);
      names += (names.empty() ? "" : ", ") + f.path;
    }
  SD_CHECK(!out.empty(), repo_id,
           " is neither a diffusers model (model_index.json), a component (config.json) nor has a "
           ".safetensors file at its top: nothing streamdiff can load");
  SD_CHECK(out.size() == 1, repo_id, " holds ", out.size(), " .safetensors files (", names,
           "): choose one with --include NAME (PullOptions::include)");
  return out;
}

}  // namespace sd::hub
