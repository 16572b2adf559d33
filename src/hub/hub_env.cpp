#include "hub/hub_env.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace sd::hub {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

namespace {

std::string expand_user(const std::string& p) {
  if (p == "~" || p.starts_with("~/")) return env("HOME") + p.substr(1);
  return p;
}

}  // namespace

std::string hf_home() {
  if (const std::string h = env("HF_HOME"); !h.empty()) return expand_user(h);
  if (const std::string x = env("XDG_CACHE_HOME"); !x.empty())
    return expand_user(x) + "/huggingface";
  return expand_user("~/.cache/huggingface");
}

std::string hub_cache_dir() {
  for (const char* name : {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"})
    if (const std::string c = env(name); !c.empty()) return expand_user(c);
  return hf_home() + "/hub";
}

bool hub_offline() {
  std::string v = env("HF_HUB_OFFLINE");
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::toupper(c); });
  return v == "1" || v == "ON" || v == "YES" || v == "TRUE";
}

std::string hub_endpoint() {
  std::string e = env("HF_ENDPOINT");
  if (e.empty()) e = "https://huggingface.co";
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e;
}

}  // namespace sd::hub
