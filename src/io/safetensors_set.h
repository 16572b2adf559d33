// SafetensorsSet: the weights of one model part, either one .safetensors file or sharded
// weights — an index JSON (diffusers / transformers `*.safetensors.index.json`)
//   {"metadata": {...}, "weight_map": {"tensor name": "shard file name", ...}}
// plus the shard files in the index's folder. The read API is SafetensorsFile's (contains, entry,
// entries, view, load), over the union of the shards.
//
// Validation of an index (every message names the index and, where there is one, the shard and
// the tensor): valid JSON without duplicate keys, an object whose "weight_map" is a non-empty
// object of strings; a shard name is a plain file name (no path separator, not "." or "..") of
// an existing file in the index's folder; every shard is a valid safetensors file; every listed
// tensor is in the shard it is mapped to; every tensor of a shard is listed, for that shard; no
// tensor is in two shards. The index's "metadata" (e.g. total_size) is informational and not
// checked.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace sd {

class SafetensorsSet {
 public:
  // True when `path` names an index (ends in ".index.json").
  static bool is_index(const std::string& path);
  // Opens a .safetensors file or an index and its shards (see above); throws sd::Error.
  static std::unique_ptr<SafetensorsSet> open(const std::string& path);
  ~SafetensorsSet();

  // The path given to open(): the file, or the index.
  const std::string& path() const { return path_; }
  // `path()`, with the shard count for an index: "<index> (3 shards)".
  std::string describe() const;
  bool sharded() const { return sharded_; }
  // The files read: the one file, or the shards in name order.
  std::vector<std::string> files() const;
  void release_resident() const;  // SafetensorsFile::release_resident for every file
  // The metadata of the one file; for an index its "metadata" object (strings as they are,
  // other values as JSON text).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // in name order
  bool contains(const std::string& name) const { return owner_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;  // throws if absent
  // The file that holds `name` (throws if absent).
  const SafetensorsFile& file_of(const std::string& name) const;

  // As SafetensorsFile::view / load, from the shard that holds the tensor.
  Tensor view(const std::string& name) const;
  Tensor load(const std::string& name, DType dtype, const Shape& expect = Shape()) const;

 private:
  SafetensorsSet() = default;
  void open_index();
  void index_entries();

  std::string path_;
  bool sharded_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> owner_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace sd
