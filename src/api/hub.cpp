// The public hub functions (streamdiff/hub.hpp) over src/hub: pulling, resolving repository ids
// in the cache, and the cache folder.
#include "streamdiff/hub.hpp"

#include <exception>
#include <filesystem>

#include "api/api_common.h"
#include "api/model_impl.h"
#include "hub/hub_cache.h"
#include "hub/hub_env.h"
#include "hub/hub_pull.h"

namespace streamdiff {

namespace {

namespace fs = std::filesystem;

PullProgress to_public(const sd::hub::PullEvent& e) {
  PullProgress p;
  p.stage = PullProgress::Stage(int(e.kind));
  p.repo_id = e.repo_id;
  p.revision = e.revision;
  p.commit = e.commit;
  p.snapshot = e.snapshot;
  p.file = e.file;
  p.file_bytes = e.file_bytes;
  p.file_size = e.file_size;
  p.resumed_from = e.resumed_from;
  p.bytes = e.bytes;
  p.total_bytes = e.total_bytes;
  p.received = e.received;
  p.files_done = e.files_done;
  p.files_total = e.files_total;
  p.files_cached = e.files_cached;
  p.bytes_per_second = e.rate;
  return p;
}

// A repository id as resolve_model_path takes one: "org/name" (a lone name is a local path).
bool looks_like_repo_id(const std::string& s) {
  return s.find('/') != std::string::npos && sd::hub::is_repo_id(s);
}

}  // namespace

std::string pull(const std::string& repo_id, const PullOptions& options) {
  // The caller's exception (a cancel) leaves pull() as it was thrown, not as an Error.
  std::exception_ptr cancel;
  try {
    return detail::guarded(Status::Io, [&] {
      try {
        sd::hub::check_repo_id(repo_id);
      } catch (const sd::Error& e) {
        throw Error(Status::InvalidArgument, e.what());
      }
      sd::hub::PullRequest r;
      r.repo_id = repo_id;
      r.revision = options.revision;
      r.variant = options.variant;
      r.include = options.include;
      if (options.on_progress)
        r.on_event = [&](const sd::hub::PullEvent& e) {
          try {
            options.on_progress(to_public(e));
          } catch (...) {
            cancel = std::current_exception();
            throw;
          }
        };
      return sd::hub::pull_repo(r);
    });
  } catch (...) {
    if (cancel) std::rethrow_exception(cancel);
    throw;
  }
}

std::string resolve_model_path(const std::string& path_or_repo_id, const std::string& revision) {
  return detail::guarded(Status::Io, [&]() -> std::string {
    std::error_code ec;
    if (path_or_repo_id.empty() || fs::exists(path_or_repo_id, ec) ||
        !looks_like_repo_id(path_or_repo_id))
      return path_or_repo_id;
    const std::string cache = sd::hub::hub_cache_dir();
    const std::string found = sd::hub::resolve_cached_model(cache, path_or_repo_id, revision);
    if (!found.empty()) return found;
    const std::string rev = revision == "main" ? "" : " --revision " + revision;
    throw Error(Status::Io, "'" + path_or_repo_id +
                                "' is not a local file or folder, and is not in the Hugging Face "
                                "cache (" +
                                cache + "); fetch it with: streamdiff pull " + path_or_repo_id +
                                rev + " (or load it with --pull / ModelOptions::pull)");
  });
}

std::string resolve_or_pull(const std::string& path_or_repo_id, const PullOptions& options) {
  std::error_code ec;
  if (path_or_repo_id.empty() || fs::exists(path_or_repo_id, ec) ||
      !looks_like_repo_id(path_or_repo_id))
    return path_or_repo_id;
  const std::string found = detail::guarded(Status::Io, [&] {
    return sd::hub::resolve_cached_model(sd::hub::hub_cache_dir(), path_or_repo_id,
                                         options.revision);
  });
  if (!found.empty()) return found;
  pull(path_or_repo_id, options);
  return resolve_model_path(path_or_repo_id, options.revision);
}

std::string hub_cache_dir() {
  return detail::guarded(Status::Io, [] { return sd::hub::hub_cache_dir(); });
}

std::string format_bytes(int64_t bytes) {
  return sd::hub::format_bytes(bytes);
}

namespace detail {

std::string local_model_path(const std::string& path, const ModelOptions& options) {
  if (!options.pull) return resolve_model_path(path);
  PullOptions p;
  if (options.on_progress)
    p.on_progress = [&](const PullProgress& e) {
      if (e.stage == PullProgress::Stage::Start)
        options.on_progress(sd::detail::concat("pulling ", e.repo_id, ": ",
                                               e.files_total - e.files_cached, " of ",
                                               e.files_total, " files to download"));
      if (e.stage == PullProgress::Stage::FileDone)
        options.on_progress(sd::detail::concat("pulled ", e.repo_id, ": ", e.file, " (",
                                               sd::hub::format_bytes(e.file_bytes), ")"));
    };
  return resolve_or_pull(path, p);
}

ModelOptions with_local_paths(const ModelOptions& options) {
  ModelOptions o = options;
  if (!o.taesd.empty()) o.taesd = local_model_path(o.taesd, options);
  for (LoraSpec& l : o.loras) l.path = local_model_path(l.path, options);
  return o;
}

}  // namespace detail

}  // namespace streamdiff
