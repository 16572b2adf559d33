// The C API's hub functions (streamdiff.h: sd_pull, sd_resolve_model_path, sd_hub_cache_dir).
#include <string>

#include "api/api_common.h"
#include "api/c_api_common.h"
#include "streamdiff/hub.hpp"
#include "streamdiff/streamdiff.h"

using streamdiff::capi::c_call;
using streamdiff::detail::require;

namespace {

void write_path(const std::string& path, char* out, size_t size, const char* fn) {
  require(out != nullptr, fn, ": null out_path");
  require(path.size() < size, fn, ": out_size ", size, " is too small for the path (",
          path.size() + 1, " bytes with its NUL)");
  path.copy(out, path.size());
  out[path.size()] = '\0';
}

}  // namespace

extern "C" {

sd_status sd_pull(const char* repo_id, const char* revision, char* out_path, size_t out_size) {
  return c_call([&] {
    require(repo_id != nullptr, "sd_pull: null repo_id");
    require(out_path != nullptr, "sd_pull: null out_path");
    streamdiff::PullOptions o;
    if (revision) o.revision = revision;
    write_path(streamdiff::pull(repo_id, o), out_path, out_size, "sd_pull");
  });
}

sd_status sd_resolve_model_path(const char* path_or_repo_id, const char* revision, char* out_path,
                                size_t out_size) {
  return c_call([&] {
    require(path_or_repo_id != nullptr, "sd_resolve_model_path: null path_or_repo_id");
    const std::string rev = revision ? std::string(revision) : std::string("main");
    write_path(streamdiff::resolve_model_path(path_or_repo_id, rev), out_path, out_size,
               "sd_resolve_model_path");
  });
}

sd_status sd_hub_cache_dir(char* out_path, size_t out_size) {
  return c_call(
      [&] { write_path(streamdiff::hub_cache_dir(), out_path, out_size, "sd_hub_cache_dir"); });
}

}  // extern "C"
