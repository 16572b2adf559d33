#include "hub/hub_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "io/output_file.h"

namespace sd::hub {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t at = s.find(sep, start);
    parts.push_back(s.substr(start, at - start));
    if (at == std::string::npos) return parts;
    start = at + 1;
  }
}

bool is_id_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
}

// Why `s` is not a repository id, or "" when it is one.
std::string repo_id_problem(const std::string& s) {
  const std::vector<std::string> parts = split(s, '/');
  if (parts.size() > 2) return "it has more than one '/'";
  for (const std::string& p : parts) {
    if (p.empty()) return "it has an empty part";
    if (p.size() > 96) return "a part is longer than 96 characters";
    for (char c : p)
      if (!is_id_char(c)) return "it has characters other than letters, digits, '-', '_', '.'";
    if (p.front() == '-' || p.front() == '.' || p.back() == '-' || p.back() == '.')
      return "a part starts or ends with '-' or '.'";
  }
  if (s.find("--") != std::string::npos || s.find("..") != std::string::npos)
    return "it contains '--' or '..'";
  if (s.ends_with(".git")) return "it ends in .git";
  return "";
}

// Why `path` is not a safe relative '/'-separated path, or "".
std::string path_problem(const std::string& path) {
  if (path.empty()) return "it is empty";
  if (path.front() == '/') return "it is absolute";
  for (char c : path) {
    if (c == '\\') return "it contains a backslash";
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "it contains a control character";
  }
  for (const std::string& part : split(path, '/')) {
    if (part.empty()) return "it has an empty part";
    if (part == "." || part == "..") return "it has a '" + part + "' part";
  }
  return "";
}

// Creates `dir` (and its parents) as real folders: a part that exists as anything else, a
// symlink included, is refused.
void make_real_dirs(const std::string& root, const std::string& relative) {
  std::string dir = root;
  for (const std::string& part : split(relative, '/')) {
    dir += "/" + part;
    struct stat st;
    if (::lstat(dir.c_str(), &st) == 0) {
      SD_CHECK(S_ISDIR(st.st_mode), "refusing to write into '", dir, "': it is ",
               S_ISLNK(st.st_mode) ? "a symlink" : "not a folder",
               " (a snapshot's folders must be real folders inside the cache)");
      continue;
    }
    SD_CHECK(::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST, "cannot create the folder '", dir,
             "': ", std::strerror(errno));
  }
}

}  // namespace

bool is_repo_id(const std::string& s) {
  return repo_id_problem(s).empty();
}

void check_repo_id(const std::string& s) {
  const std::string problem = repo_id_problem(s);
  SD_CHECK(problem.empty(), "'", s, "' is not a Hugging Face repository id (org/name): ", problem);
}

bool is_commit_hash(const std::string& s) {
  if (s.size() != 40) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

void check_revision(const std::string& revision) {
  const std::string problem = path_problem(revision);
  SD_CHECK(problem.empty(), "revision '", revision, "' is not a branch, tag or commit: ", problem);
}

void check_repo_path(const std::string& path, const std::string& repo_id) {
  const std::string problem = path_problem(path);
  SD_CHECK(problem.empty(), "refusing the file list of ", repo_id, ": the remote path '", path,
           "' would not stay inside the cache (", problem, ")");
}

std::string normalize_etag(const std::string& header) {
  std::string e = header;
  if (e.starts_with("W/")) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

void check_etag(const std::string& etag, const std::string& file) {
  bool ok = !etag.empty() && etag.size() <= 128;
  for (char c : etag)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
  SD_CHECK(ok, "the server gave '", file, "' the ETag '", etag,
           "', which cannot name a file in the cache");
}

std::string repo_folder_name(const std::string& repo_id) {
  std::string name = "models--" + repo_id;
  for (size_t at = name.find('/'); at != std::string::npos; at = name.find('/', at))
    name.replace(at, 1, "--");
  return name;
}

RepoCache::RepoCache(std::string cache_dir, std::string repo_id)
    : cache_dir_(std::move(cache_dir)), repo_id_(std::move(repo_id)) {
  check_repo_id(repo_id_);
  repo_dir_ = cache_dir_ + "/" + repo_folder_name(repo_id_);
}

std::string RepoCache::lock_path(const std::string& etag) const {
  return cache_dir_ + "/.locks/" + repo_folder_name(repo_id_) + "/" + etag + ".lock";
}

std::string RepoCache::snapshot_dir(const std::string& commit) const {
  SD_CHECK(is_commit_hash(commit), "'", commit, "' is not a commit hash (40 hex digits)");
  return repo_dir_ + "/snapshots/" + commit;
}

std::string RepoCache::snapshot_file(const std::string& commit, const std::string& path) const {
  check_repo_path(path, repo_id_);
  return snapshot_dir(commit) + "/" + path;
}

std::string RepoCache::cached_commit(const std::string& revision) const {
  std::error_code ec;
  if (is_commit_hash(revision) && fs::is_directory(snapshot_dir(revision), ec)) return revision;
  if (!path_problem(revision).empty()) return "";
  std::ifstream in(repo_dir_ + "/refs/" + revision);
  std::string commit;
  if (in) std::getline(in, commit);
  return is_commit_hash(commit) ? commit : std::string();
}

void RepoCache::write_ref(const std::string& revision, const std::string& commit) const {
  check_revision(revision);
  SD_CHECK(is_commit_hash(commit), "'", commit, "' is not a commit hash (40 hex digits)");
  if (revision == commit) return;
  fs::create_directories(repo_dir_ + "/refs");
  if (revision.find('/') != std::string::npos)
    make_real_dirs(repo_dir_ + "/refs", revision.substr(0, revision.rfind('/')));
  write_file_atomically(repo_dir_ + "/refs/" + revision, {{commit.data(), commit.size()}},
                        "Hub ref");
}

void RepoCache::link_snapshot_file(const std::string& commit, const std::string& path,
                                   const std::string& etag) const {
  check_repo_path(path, repo_id_);
  check_etag(etag, path);
  const std::string snapshot = snapshot_dir(commit);
  fs::create_directories(snapshot);
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos) make_real_dirs(snapshot, path.substr(0, slash));
  // From snapshots/{commit}/{a/b/}file up to the repository folder: one "../" per folder.
  std::string target;
  for (size_t k = 0, n = std::count(path.begin(), path.end(), '/') + 2; k < n; ++k) target += "../";
  target += "blobs/" + etag;
  const std::string link = snapshot + "/" + path;
  static std::atomic<int> counter{0};
  const std::string tmp =
      link + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  SD_CHECK(::symlink(target.c_str(), tmp.c_str()) == 0, "cannot create the symlink '", tmp,
           "': ", std::strerror(errno));
  if (std::rename(tmp.c_str(), link.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fail("cannot put the snapshot file '", link, "' in place: ", std::strerror(err));
  }
}

std::string find_cached_snapshot(const std::string& cache_dir, const std::string& repo_id,
                                 const std::string& revision) {
  if (!is_repo_id(repo_id)) return "";
  const RepoCache repo(cache_dir, repo_id);
  const std::string commit = repo.cached_commit(revision);
  if (commit.empty()) return "";
  std::error_code ec;
  const std::string dir = repo.snapshot_dir(commit);
  return fs::is_directory(dir, ec) ? dir : std::string();
}

std::string resolve_cached_model(const std::string& cache_dir, const std::string& repo_id,
                                 const std::string& revision) {
  const std::string dir = find_cached_snapshot(cache_dir, repo_id, revision);
  if (dir.empty()) return "";
  std::error_code ec;
  if (fs::exists(dir + "/model_index.json", ec) || fs::exists(dir + "/config.json", ec)) return dir;
  std::vector<std::string> files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".safetensors" && fs::is_regular_file(e.path(), ec))
      files.push_back(e.path().string());
  return files.size() == 1 ? files.front() : dir;
}

FileLock::FileLock(const std::string& path, const std::function<void()>& on_wait) {
  fs::create_directories(fs::path(path).parent_path());
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  SD_CHECK(fd_ >= 0, "cannot open the lock file '", path, "': ", std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
  try {
    SD_CHECK(errno == EWOULDBLOCK || errno == EINTR, "cannot lock '", path,
             "': ", std::strerror(errno));
    for (;;) {
      if (on_wait) on_wait();
      if (::flock(fd_, LOCK_EX) == 0) return;
      SD_CHECK(errno == EINTR, "cannot lock '", path, "': ", std::strerror(errno));
    }
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

FileLock::~FileLock() {
  ::close(fd_);  // releases the flock
}

int64_t free_bytes(const std::string& dir) {
  struct statvfs s;
  SD_CHECK(::statvfs(dir.c_str(), &s) == 0, "cannot find the free space of '", dir,
           "': ", std::strerror(errno));
  return int64_t(s.f_bavail) * int64_t(s.f_frsize);
}

void check_free_space(const std::string& dir, int64_t need, const std::string& what) {
  const int64_t free = free_bytes(dir);
  SD_CHECK(need <= free, "not enough disk space for ", what, ": it needs ", format_bytes(need),
           ", and ", dir, " has ", format_bytes(free),
           " free (set HF_HUB_CACHE to a folder on a larger disk)");
}

std::string format_bytes(int64_t bytes) {
  char buf[32];
  if (bytes >= 1000LL * 1000 * 1000)
    std::snprintf(buf, sizeof buf, "%.2f GB", double(bytes) / 1e9);
  else if (bytes >= 1000LL * 1000)
    std::snprintf(buf, sizeof buf, "%.1f MB", double(bytes) / 1e6);
  else if (bytes >= 1000)
    std::snprintf(buf, sizeof buf, "%.1f kB", double(bytes) / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%lld bytes", static_cast<long long>(bytes));
  return buf;
}

}  // namespace sd::hub
