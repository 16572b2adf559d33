// JsonConfig: a model's config.json (diffusers / transformers) with checked accessors. A key
// that is absent or null leaves the output at its default; a key of the wrong type throws
// sd::Error naming the file, the key and the value found.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sd {

class JsonConfig {
 public:
  // Reads and parses `path`; `what` names the file's role in messages ("UNet config").
  static JsonConfig load(const std::string& path, const std::string& what);

  const std::string& path() const { return path_; }
  const nlohmann::json& json() const { return j_; }
  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

  void read(const char* key, int* out) const;    // integers (also 3.0)
  void read(const char* key, float* out) const;  // any number
  void read(const char* key, bool* out) const;
  void read(const char* key, std::string* out) const;
  void read(const char* key, std::vector<int>* out) const;  // non-empty integer array
  void read(const char* key, std::vector<std::string>* out) const;

  // An integer value found under `key` (also 3.0), for keys with several accepted forms.
  int to_int(const nlohmann::json& v, const char* key) const;

  // The key, if present, must be one of `allowed` (strings).
  void expect_one_of(const char* key, std::initializer_list<const char*> allowed) const;
  // Options left at diffusers' default: absent or null (`what` names the feature), or false
  // (also a list of falses).
  void expect_null(const char* key, const char* what) const;
  void expect_false(const char* key) const;
  // "_class_name" (diffusers), if present, must be `name`.
  void expect_class(const char* name) const;

 private:
  std::string path_;
  nlohmann::json j_;
};

// Parses [begin, end) like nlohmann::json::parse without exceptions (a discarded value when it
// is not JSON), and sets *duplicate to the first key repeated inside one object (nlohmann keeps
// the last one silently), or leaves it empty.
nlohmann::json parse_json_rejecting_duplicates(const char* begin, const char* end,
                                               std::string* duplicate);

// "[1, 2, 3]", for messages.
std::string join_ints(const std::vector<int>& v);

}  // namespace sd
