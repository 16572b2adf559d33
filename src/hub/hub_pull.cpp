#include "hub/hub_pull.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "hub/hub_cache.h"
#include "hub/hub_env.h"
#include "hub/hub_hash.h"
#include "hub/hub_http.h"
#include "hub/hub_select.h"

namespace sd::hub {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Kind = PullEvent::Kind;

constexpr int kMaxFailures = 5;  // transfers in a row that fail without new bytes: give up

int64_t parse_size(const std::string& s) {
  if (s.empty()) return -1;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  return end && *end == '\0' && v >= 0 ? int64_t(v) : -1;
}

// The size of the file `path` (following symlinks), or -1.
int64_t file_size_of(const std::string& path) {
  std::error_code ec;
  const uintmax_t n = fs::file_size(path, ec);
  return ec ? -1 : int64_t(n);
}

void write_all(int fd, const char* data, size_t size, const std::string& path) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    SD_CHECK(n > 0, "cannot write '", path, "': ", std::strerror(errno));
    data += n;
    size -= size_t(n);
  }
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

class Puller {
 public:
  explicit Puller(const PullRequest& request)
      : req_(request),
        cache_dir_(request.cache_dir.empty() ? hub_cache_dir() : request.cache_dir),
        repo_(cache_dir_, request.repo_id) {
    check_revision(req_.revision);
  }

  std::string run();

 private:
  std::string api_url() const {
    return endpoint() + "/api/models/" + req_.repo_id + "/revision/" +
           url_escape(req_.revision, false) + "?blobs=true";
  }
  std::string resolve_url_of(const std::string& path) const {
    return endpoint() + "/" + req_.repo_id + "/resolve/" + commit_ + "/" + url_escape(path, true);
  }
  const std::string& endpoint() const { return http().settings().endpoint; }
  HttpClient& http() const {
    if (!http_) http_ = std::make_unique<HttpClient>(http_settings_from_env());
    return *http_;
  }

  RepoListing list();
  bool in_snapshot(const RemoteFile& f) const {
    const int64_t n = file_size_of(repo_.snapshot_file(commit_, f.path));
    return n >= 0 && (f.size < 0 || n == f.size);
  }
  void fetch(const RemoteFile& f);
  void fetch_once(const RemoteFile& f);
  void download_blob(const std::string& url, const std::string& etag, int64_t size,
                     const std::string& sha256);
  void pause(int failures);
  void check_http(const HttpResponse& r, const std::string& file) const;
  void emit(Kind kind, bool throttle = false);

  const PullRequest& req_;
  std::string cache_dir_;
  RepoCache repo_;
  mutable std::unique_ptr<HttpClient> http_;
  std::string commit_;
  std::set<std::string> fetched_;  // files downloaded by this pull
  // Progress.
  std::string file_;
  int64_t file_bytes_ = 0, file_size_ = -1, resumed_ = 0;
  int64_t bytes_done_ = 0, total_bytes_ = 0, received_ = 0;
  int files_done_ = 0, files_total_ = 0, files_cached_ = 0;
  bool started_ = false;  // Start was emitted (the plan needs model_index.json first)
  Clock::time_point last_emit_{};
  std::deque<std::pair<Clock::time_point, int64_t>> samples_;  // (time, received_)
};

void Puller::emit(Kind kind, bool throttle) {
  if (!started_ && kind != Kind::Start && kind != Kind::Done) return;  // Start comes first
  if (kind == Kind::Start) started_ = true;
  const auto now = Clock::now();
  if (throttle && now - last_emit_ < std::chrono::milliseconds(100)) return;
  last_emit_ = now;
  samples_.emplace_back(now, received_);
  while (samples_.size() > 2 && now - samples_.front().first > std::chrono::seconds(5))
    samples_.pop_front();
  PullEvent e;
  e.kind = kind;
  e.repo_id = req_.repo_id;
  e.revision = req_.revision;
  e.commit = commit_;
  e.snapshot = commit_.empty() ? std::string() : repo_.snapshot_dir(commit_);
  e.file = file_;
  e.file_bytes = file_bytes_;
  e.file_size = file_size_;
  e.resumed_from = resumed_;
  e.bytes = bytes_done_ + (kind == Kind::FileDone || kind == Kind::Done ? 0 : file_bytes_);
  e.total_bytes = total_bytes_;
  e.received = received_;
  e.files_done = files_done_;
  e.files_total = files_total_;
  e.files_cached = files_cached_;
  const double dt = std::chrono::duration<double>(now - samples_.front().first).count();
  e.rate = dt > 0.2 ? double(received_ - samples_.front().second) / dt : 0;
  if (req_.on_event) req_.on_event(e);
}

void Puller::check_http(const HttpResponse& r, const std::string& file) const {
  if (r.status >= 200 && r.status < 400) return;
  const long s = r.status;
  if (s == 429 || s == 500 || s == 502 || s == 503 || s == 504)
    throw NetworkError(detail::concat("the server answered HTTP ", s, " for ", r.url));
  const std::string code = r.header("x-error-code");
  std::string message = r.header("x-error-message");
  if (message.empty()) {
    const nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_string())
      message = j["error"].get<std::string>();
  }
  const std::string page = endpoint() + "/" + req_.repo_id;
  const bool token = !http().settings().token.empty();
  const std::string token_hint =
      token ? "the token in use (HF_TOKEN, or the one huggingface-cli login saved) has no access"
            : "set HF_TOKEN to a read token of an account with access (" + endpoint() +
                  "/settings/tokens)";
  if (code == "GatedRepo" || (s == 403 && code != "RepoNotFound"))
    fail(req_.repo_id, " is a gated repository and access was refused (HTTP ", s, "): accept ",
         "its conditions at ", page, " while logged in, then ", token_hint);
  if (code == "RepoNotFound" || (s == 404 && file.empty()))
    fail("repository ", req_.repo_id, " was not found on ", endpoint(), " (HTTP ", s,
         "): check the id; if it is private, ", token_hint);
  if (code == "RevisionNotFound")
    fail("revision '", req_.revision, "' of ", req_.repo_id, " was not found (HTTP ", s, ")");
  if (s == 401)
    fail(endpoint(), " refused access to ", req_.repo_id, " (HTTP 401", message.empty() ? "" : ": ",
         message, "): ", token_hint);
  if (s == 404)
    fail(req_.repo_id, ": the file '", file,
         "' is listed but the server does not have it (HTTP 404)");
  fail("HTTP ", s, " from ", r.url, message.empty() ? "" : ": ", message);
}

RepoListing Puller::list() {
  HttpResponse r;
  for (int attempt = 1;; ++attempt) {
    r = HttpResponse();
    try {
      r = http().get(api_url());
      check_http(r, "");
      break;
    } catch (const NetworkError& e) {
      if (r.status == 0 || attempt == 3)  // no answer at all: no network, not worth retrying
        fail("cannot get the file list of ", req_.repo_id, " from ", endpoint(), ": ", e.what(),
             " (no network? with HF_HUB_OFFLINE=1 only the cache is used)");
      pause(attempt);
    }
  }
  return parse_repo_listing(r.body, req_.repo_id);
}

void Puller::pause(int failures) {
  const auto until = Clock::now() + std::chrono::milliseconds(500 * failures);
  while (Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    emit(Kind::Progress);  // lets the caller cancel while this waits
  }
}

void Puller::fetch(const RemoteFile& f) {
  int failures = 0;
  for (;;) {
    const int64_t before = received_;
    try {
      fetch_once(f);
      fetched_.insert(f.path);
      return;
    } catch (const NetworkError& e) {
      if (received_ > before) failures = 0;  // progress was made: keep going
      if (++failures >= kMaxFailures)
        fail("cannot download ", f.path, " of ", req_.repo_id, ": ", e.what(), " (", failures,
             " tries without progress; what arrived is kept: run the same command to resume)");
      pause(failures);
    }
  }
}

void Puller::fetch_once(const RemoteFile& f) {
  const std::string url = resolve_url_of(f.path);
  const HttpResponse meta = http().head(url);
  check_http(meta, f.path);
  const std::string linked = normalize_etag(meta.header("x-linked-etag"));
  const std::string etag = linked.empty() ? normalize_etag(meta.header("etag")) : linked;
  SD_CHECK(!etag.empty(), "the server gave no ETag for ", f.path, " of ", req_.repo_id);
  check_etag(etag, f.path);
  int64_t size = parse_size(meta.header("x-linked-size"));
  if (size < 0 && meta.status == 200) size = parse_size(meta.header("content-length"));
  if (size < 0) size = f.size;
  // LFS files: the listing's SHA-256, which is also their ETag.
  const std::string sha256 = !f.sha256.empty() ? f.sha256 : linked.size() == 64 ? linked : "";
  const std::string location = meta.header("location");
  const bool redirect = meta.status >= 300 && meta.status < 400 && !location.empty();
  const std::string download_url = redirect ? resolve_url(meta.url, location) : url;

  file_ = f.path;
  file_size_ = size;
  file_bytes_ = resumed_ = 0;
  const std::string blob = repo_.blob_path(etag);
  auto complete = [&] {
    const int64_t n = file_size_of(blob);
    return n >= 0 && (size < 0 || n == size);
  };
  if (!complete()) {
    fs::create_directories(repo_.blobs_dir());
    FileLock lock(repo_.lock_path(etag), [&] { emit(Kind::Waiting); });
    if (!complete()) download_blob(download_url, etag, size, sha256);
  }
  file_bytes_ = file_size_of(blob);
  repo_.link_snapshot_file(commit_, f.path, etag);
}

void Puller::download_blob(const std::string& url, const std::string& etag, int64_t size,
                           const std::string& sha256) {
  const std::string part = repo_.incomplete_path(etag);
  const Fd fd(::open(part.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  SD_CHECK(fd.get() >= 0, "cannot open '", part, "': ", std::strerror(errno));
  int64_t offset = ::lseek(fd.get(), 0, SEEK_END);
  SD_CHECK(offset >= 0, "cannot seek in '", part, "'");
  auto start_over = [&] {
    SD_CHECK(::ftruncate(fd.get(), 0) == 0 && ::lseek(fd.get(), 0, SEEK_SET) == 0,
             "cannot truncate '", part, "': ", std::strerror(errno));
    offset = 0;
  };
  if (size >= 0 && offset > size) start_over();  // not a prefix of this file
  Sha256 hash;
  if (!sha256.empty() && offset > 0) hash_file_prefix(part, offset, hash);
  file_bytes_ = resumed_ = offset;
  if (size >= 0) check_free_space(repo_.blobs_dir(), size - offset, file_);
  emit(Kind::Progress);

  if (size < 0 || offset < size) {
    const HttpResponse r = http().download(
        url, offset,
        [&](const char* data, size_t n) {
          write_all(fd.get(), data, n, part);
          if (!sha256.empty()) hash.update(data, n);
          offset += int64_t(n);
          file_bytes_ = offset;
          received_ += int64_t(n);
          emit(Kind::Progress, true);
        },
        [&] {
          start_over();
          hash.reset();
          file_bytes_ = resumed_ = 0;
        },
        [&] { emit(Kind::Progress, true); });
    if (r.status == 416) {  // the partial file does not fit the remote one: start again
      start_over();
      throw NetworkError(detail::concat("the server refused to resume ", file_, " (HTTP 416)"));
    }
    check_http(r, file_);
  }
  if (size >= 0 && offset < size)
    throw NetworkError(detail::concat("the transfer of ", file_, " stopped after ", offset, " of ",
                                      size, " bytes"));
  if (size >= 0 && offset > size) {
    ::unlink(part.c_str());
    fail(req_.repo_id, ": ", file_, " arrived with ", offset, " bytes instead of ", size,
         "; the download was deleted");
  }
  if (!sha256.empty()) {
    const std::string got = hash.hex_digest();
    if (got != sha256) {
      ::unlink(part.c_str());
      fail(req_.repo_id, ": ", file_, " failed its SHA-256 check (expected ", sha256, ", got ", got,
           "); the download was deleted: run the same command to fetch it again");
    }
  }
  SD_CHECK(::fsync(fd.get()) == 0, "cannot flush '", part, "': ", std::strerror(errno));
  const std::string blob = repo_.blob_path(etag);
  SD_CHECK(std::rename(part.c_str(), blob.c_str()) == 0, "cannot rename '", part, "' to '", blob,
           "': ", std::strerror(errno));
}

std::string Puller::run() {
  if (hub_offline()) {
    const std::string snapshot = find_cached_snapshot(cache_dir_, req_.repo_id, req_.revision);
    SD_CHECK(!snapshot.empty(), "HF_HUB_OFFLINE is set, so ", req_.repo_id, " (revision ",
             req_.revision, ") cannot be downloaded, and it is not in the Hugging Face cache (",
             cache_dir_, ")");
    commit_ = fs::path(snapshot).filename().string();
    emit(Kind::Done);
    return snapshot;
  }
  const RepoListing listing = list();
  commit_ = listing.commit;

  // A diffusers model's components come from its model_index.json: fetched first (unless
  // include globs choose the files).
  nlohmann::json model_index;
  for (const RemoteFile& f : listing.files) {
    if (f.path != "model_index.json" || !req_.include.empty()) continue;
    if (!in_snapshot(f)) fetch(f);
    const std::string path = repo_.snapshot_file(commit_, f.path);
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    model_index = nlohmann::json::parse(text.str(), nullptr, false);
    SD_CHECK(model_index.is_object(), "'", path, "' (", req_.repo_id,
             ") is not a JSON object: not a diffusers model_index.json");
  }
  const std::vector<RemoteFile> files = choose_files(
      listing, model_index.is_object() ? &model_index : nullptr,
      req_.variant == "none" ? std::string() : req_.variant, req_.include, req_.repo_id);

  std::vector<const RemoteFile*> to_fetch;
  int64_t partial = 0;  // bytes of LFS files already in .incomplete files
  for (const RemoteFile& f : files) {
    if (fetched_.count(f.path)) {
      total_bytes_ += std::max<int64_t>(f.size, 0);
      bytes_done_ += std::max<int64_t>(f.size, 0);
      ++files_done_;
    } else if (in_snapshot(f)) {
      ++files_cached_;
      ++files_done_;
    } else {
      to_fetch.push_back(&f);
      total_bytes_ += std::max<int64_t>(f.size, 0);
      if (!f.sha256.empty())
        partial += std::max<int64_t>(file_size_of(repo_.incomplete_path(f.sha256)), 0);
    }
  }
  files_total_ = int(files.size());
  fs::create_directories(repo_.blobs_dir());
  check_free_space(repo_.blobs_dir(), total_bytes_ - bytes_done_ - partial,
                   "the files of " + req_.repo_id);
  file_.clear();
  emit(Kind::Start);
  for (const RemoteFile* f : to_fetch) {
    fetch(*f);
    const int64_t size =
        f->size >= 0 ? f->size : file_size_of(repo_.snapshot_file(commit_, f->path));
    if (f->size < 0) total_bytes_ += size;
    bytes_done_ += size;
    ++files_done_;
    emit(Kind::FileDone);
  }
  repo_.write_ref(req_.revision, commit_);
  file_.clear();
  file_bytes_ = 0;
  file_size_ = -1;
  emit(Kind::Done);
  return repo_.snapshot_dir(commit_);
}

}  // namespace

std::string pull_repo(const PullRequest& request) {
  return Puller(request).run();
}

}  // namespace sd::hub
