#include "io/safetensors_set.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_config.h"

namespace sd {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr uintmax_t kMaxIndexBytes = 100ull << 20;

// Parses `text`, rejecting duplicate keys in any object (nlohmann keeps the last one silently);
// `where` starts every message.
json parse_strict(const std::string& text, const std::string& where) {
  std::string duplicate;
  json j = parse_json_rejecting_duplicates(text.data(), text.data() + text.size(), &duplicate);
  SD_CHECK(!j.is_discarded(), where, "not valid JSON");
  SD_CHECK(duplicate.empty(), where, "duplicate key '", duplicate, "'");
  return j;
}

}  // namespace

bool SafetensorsSet::is_index(const std::string& path) {
  return path.ends_with(".index.json");
}

SafetensorsSet::~SafetensorsSet() = default;

std::unique_ptr<SafetensorsSet> SafetensorsSet::open(const std::string& path) {
  std::unique_ptr<SafetensorsSet> set(new SafetensorsSet());
  set->path_ = path;
  if (is_index(path)) {
    set->sharded_ = true;
    set->open_index();
  } else {
    set->files_.push_back(SafetensorsFile::open(path));
    set->metadata_ = set->files_.front()->metadata();
  }
  set->index_entries();
  return set;
}

void SafetensorsSet::open_index() {
  const std::string where = "safetensors index '" + path_ + "': ";
  std::error_code ec;
  const uintmax_t bytes = fs::file_size(path_, ec);
  SD_CHECK(!ec, where, "cannot be read (", ec.message(), ")");
  SD_CHECK(bytes <= kMaxIndexBytes, where, bytes, " bytes exceeds the limit of ", kMaxIndexBytes);
  std::ifstream in(path_, std::ios::binary);
  SD_CHECK(in, where, "cannot be opened");
  std::ostringstream text;
  text << in.rdbuf();
  const json index = parse_strict(text.str(), where);
  SD_CHECK(index.is_object(), where, "not a JSON object (", index.type_name(), ")");
  SD_CHECK(index.contains("weight_map"), where,
           "has no \"weight_map\" (expected {\"weight_map\": {\"tensor\": \"shard file\"}})");
  const json& map = index["weight_map"];
  SD_CHECK(map.is_object(), where, "\"weight_map\" is ", map.type_name(), ", not an object");
  SD_CHECK(!map.empty(), where, "\"weight_map\" lists no tensors");
  if (index.contains("metadata") && index["metadata"].is_object())
    for (const auto& [k, v] : index["metadata"].items())
      metadata_[k] = v.is_string() ? v.get<std::string>() : v.dump();

  // tensor -> shard name, and the shards in name order.
  std::map<std::string, std::string> listed;
  std::set<std::string> shard_names;
  for (const auto& [tensor, shard] : map.items()) {
    SD_CHECK(shard.is_string(), where, "tensor '", tensor, "' is mapped to ", shard.dump(),
             ", not a shard file name");
    const std::string name = shard.get<std::string>();
    SD_CHECK(!name.empty() && name != "." && name != ".." &&
                 name.find_first_of("/\\") == std::string::npos,
             where, "shard name '", name, "' (for tensor '", tensor,
             "') must be a plain file name in the index's folder (no path separator, not '.' or "
             "'..')");
    listed.emplace(tensor, name);
    shard_names.insert(name);
  }

  const fs::path dir = fs::path(path_).parent_path();
  std::map<std::string, const SafetensorsFile*> by_name;
  for (const std::string& name : shard_names) {
    const fs::path p = dir / name;
    SD_CHECK(fs::is_regular_file(p, ec), where, "shard '", name, "' is missing (looked for '",
             p.string(), "')");
    files_.push_back(SafetensorsFile::open(p.string()));
    by_name[name] = files_.back().get();
  }

  // Every tensor of every shard: in no other shard, and listed for this one.
  std::map<std::string, std::string> found;  // tensor -> shard holding it
  for (const auto& [name, file] : by_name) {
    for (const SafetensorsEntry& e : file->entries()) {
      auto [it, fresh] = found.emplace(e.name, name);
      SD_CHECK(fresh, where, "tensor '", e.name, "' is in two shards, '", it->second, "' and '",
               name, "'");
      auto l = listed.find(e.name);
      SD_CHECK(l != listed.end(), where, "shard '", name, "' holds tensor '", e.name,
               "', which the weight_map does not list");
      SD_CHECK(l->second == name, where, "shard '", name, "' holds tensor '", e.name,
               "', which the weight_map maps to shard '", l->second, "'");
    }
  }
  for (const auto& [tensor, name] : listed)
    SD_CHECK(found.count(tensor), where, "tensor '", tensor, "' is mapped to shard '", name,
             "', which does not hold it");
}

void SafetensorsSet::index_entries() {
  for (const auto& f : files_)
    for (const SafetensorsEntry& e : f->entries()) {
      // A single file has unique names by construction; open_index() checked the shards.
      owner_.emplace(e.name, f.get());
      entries_.push_back(e);
    }
  std::sort(entries_.begin(), entries_.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.name < b.name; });
}

std::string SafetensorsSet::describe() const {
  if (!sharded_) return path_;
  return path_ + " (" + std::to_string(files_.size()) + " shard" + (files_.size() == 1 ? "" : "s") +
         ")";
}

std::vector<std::string> SafetensorsSet::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->path());
  return out;
}

const SafetensorsFile& SafetensorsSet::file_of(const std::string& name) const {
  auto it = owner_.find(name);
  SD_CHECK(it != owner_.end(), "'", describe(), "': no tensor '", name, "'");
  return *it->second;
}

const SafetensorsEntry& SafetensorsSet::entry(const std::string& name) const {
  return file_of(name).entry(name);
}

Tensor SafetensorsSet::view(const std::string& name) const {
  return file_of(name).view(name);
}

Tensor SafetensorsSet::load(const std::string& name, DType dtype, const Shape& expect) const {
  return file_of(name).load(name, dtype, expect);
}

void SafetensorsSet::release_resident() const {
  for (const auto& f : files_) f->release_resident();
}

}  // namespace sd
