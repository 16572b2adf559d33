#include "io/json_config.h"

#include <fstream>
#include <set>

#include "core/error.h"

namespace sd {

using Json = nlohmann::json;

JsonConfig JsonConfig::load(const std::string& path, const std::string& what) {
  std::ifstream f(path);
  SD_CHECK(f.good(), "cannot open ", what, " '", path, "'");
  JsonConfig c;
  c.path_ = path;
  c.j_ = Json::parse(f, nullptr, /*allow_exceptions=*/false);
  SD_CHECK(!c.j_.is_discarded(), what, " '", path, "' is not valid JSON");
  SD_CHECK(c.j_.is_object(), what, " '", path, "' is not a JSON object");
  return c;
}

int JsonConfig::to_int(const Json& v, const char* key) const {
  bool integral =
      v.is_number_integer() || (v.is_number_float() && v.get<double>() == int(v.get<double>()));
  SD_CHECK(integral, path_, ": '", key, "' must be an integer, got ", v.dump());
  return int(v.get<double>());
}

void JsonConfig::read(const char* key, int* out) const {
  if (has(key)) *out = to_int(j_[key], key);
}

void JsonConfig::read(const char* key, float* out) const {
  if (!has(key)) return;
  const Json& v = j_[key];
  SD_CHECK(v.is_number(), path_, ": '", key, "' must be a number, got ", v.dump());
  *out = v.get<float>();
}

void JsonConfig::read(const char* key, bool* out) const {
  if (!has(key)) return;
  const Json& v = j_[key];
  SD_CHECK(v.is_boolean(), path_, ": '", key, "' must be true or false, got ", v.dump());
  *out = v.get<bool>();
}

void JsonConfig::read(const char* key, std::string* out) const {
  if (!has(key)) return;
  const Json& v = j_[key];
  SD_CHECK(v.is_string(), path_, ": '", key, "' must be a string, got ", v.dump());
  *out = v.get<std::string>();
}

void JsonConfig::read(const char* key, std::vector<int>* out) const {
  if (!has(key)) return;
  const Json& v = j_[key];
  SD_CHECK(v.is_array() && !v.empty(), path_, ": '", key,
           "' must be a non-empty array of integers, got ", v.dump());
  out->clear();
  for (const Json& e : v) {
    SD_CHECK(e.is_number_integer(), path_, ": '", key, "' must hold integers, got ", v.dump());
    out->push_back(e.get<int>());
  }
}

void JsonConfig::read(const char* key, std::vector<std::string>* out) const {
  if (!has(key)) return;
  const Json& v = j_[key];
  SD_CHECK(v.is_array(), path_, ": '", key, "' must be an array of strings, got ", v.dump());
  out->clear();
  for (const Json& e : v) {
    SD_CHECK(e.is_string(), path_, ": '", key, "' must hold strings, got ", v.dump());
    out->push_back(e.get<std::string>());
  }
}

void JsonConfig::expect_one_of(const char* key, std::initializer_list<const char*> allowed) const {
  if (!has(key)) return;
  const Json& v = j_[key];
  std::string list;
  bool ok = false;
  for (const char* a : allowed) {
    ok = ok || (v.is_string() && v.get<std::string>() == a);
    list += std::string(list.empty() ? "\"" : ", \"") + a + "\"";
  }
  SD_CHECK(ok, path_, ": '", key, "' is ", v.dump(), "; supported: ", list);
}

void JsonConfig::expect_null(const char* key, const char* what) const {
  SD_CHECK(!has(key), path_, ": '", key, "' is ", j_[key].dump(), "; ", what,
           " is not supported (only null)");
}

void JsonConfig::expect_false(const char* key) const {
  if (!has(key)) return;
  const Json& v = j_[key];
  bool ok = v.is_boolean() && !v.get<bool>();
  if (v.is_array()) {
    ok = true;
    for (const Json& e : v) ok = ok && e.is_boolean() && !e.get<bool>();
  }
  SD_CHECK(ok, path_, ": '", key, "' is ", v.dump(), "; only false is supported");
}

void JsonConfig::expect_class(const char* name) const {
  if (!has("_class_name")) return;
  SD_CHECK(j_["_class_name"] == name, "'", path_, "' describes a ", j_["_class_name"].dump(),
           ", not a ", name);
}

std::string join_ints(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

nlohmann::json parse_json_rejecting_duplicates(const char* begin, const char* end,
                                               std::string* duplicate) {
  std::vector<std::set<std::string>> open_objects;
  duplicate->clear();
  nlohmann::json::parser_callback_t on_event = [&](int, nlohmann::json::parse_event_t ev,
                                                   nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (ev == Event::object_start) {
      open_objects.emplace_back();
    } else if (ev == Event::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (ev == Event::key && !open_objects.empty() && parsed.is_string()) {
      if (!open_objects.back().insert(parsed.get<std::string>()).second && duplicate->empty())
        *duplicate = parsed.get<std::string>();
    }
    return true;
  };
  return nlohmann::json::parse(begin, end, on_event, /*allow_exceptions=*/false);
}

}  // namespace sd
