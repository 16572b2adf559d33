// The Hugging Face cache layout, shared with huggingface_hub and diffusers both ways:
//
//   {cache}/models--{org}--{name}/blobs/{etag}                 the files' bytes, named by ETag
//                                /snapshots/{commit}/{path}    relative symlinks to the blobs
//                                /refs/{revision}              the commit a branch or tag names
//   {cache}/.locks/models--{org}--{name}/{etag}.lock           one lock per blob (flock)
//
// A blob being downloaded is `blobs/{etag}.incomplete` and is renamed into place only once it is
// complete and verified. Names that come from the network (repository paths, ETags, commits,
// revisions) are checked before they become paths: nothing may escape the repository's folder.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace sd::hub {

// huggingface_hub's repository ids: "name" or "org/name", each part of letters, digits, '-',
// '_' and '.', at most 96 characters, not starting or ending with '-' or '.', no "--" or "..",
// not ending in ".git".
bool is_repo_id(const std::string& s);
void check_repo_id(const std::string& s);  // throws sd::Error saying what is wrong
// 40 lower-case hex digits.
bool is_commit_hash(const std::string& s);
// A branch, tag or commit ("main", "v1.0", "refs/pr/1"): a safe relative path.
void check_revision(const std::string& revision);
// A file path in a repository as the Hub lists it: relative, '/'-separated, without empty, "."
// or ".." parts, backslashes or control characters. Throws naming the path and the repository.
void check_repo_path(const std::string& path, const std::string& repo_id);
// An ETag header's value without a weak marker (W/) and quotes.
std::string normalize_etag(const std::string& header);
// An ETag used as a blob's file name: letters, digits, '-' and '_' only.
void check_etag(const std::string& etag, const std::string& file);

// "models--org--name".
std::string repo_folder_name(const std::string& repo_id);

// One repository's folder in a cache.
class RepoCache {
 public:
  RepoCache(std::string cache_dir, std::string repo_id);

  const std::string& cache_dir() const { return cache_dir_; }
  const std::string& repo_id() const { return repo_id_; }
  const std::string& repo_dir() const { return repo_dir_; }
  std::string blobs_dir() const { return repo_dir_ + "/blobs"; }
  std::string blob_path(const std::string& etag) const { return blobs_dir() + "/" + etag; }
  std::string incomplete_path(const std::string& etag) const {
    return blob_path(etag) + ".incomplete";
  }
  std::string lock_path(const std::string& etag) const;
  std::string snapshot_dir(const std::string& commit) const;
  std::string snapshot_file(const std::string& commit, const std::string& path) const;

  // The commit `revision` stands for in this cache: itself when it is a commit hash with a
  // snapshot folder, else the content of refs/{revision}; "" when the cache does not know it.
  std::string cached_commit(const std::string& revision) const;
  // Writes refs/{revision} = commit (atomically; nothing for a commit hash).
  void write_ref(const std::string& revision, const std::string& commit) const;
  // Makes snapshots/{commit}/{path} a relative symlink to blobs/{etag} (atomically replacing
  // an older link). Its parent folders are created as real folders; an existing one that is a
  // symlink or not a folder is refused.
  void link_snapshot_file(const std::string& commit, const std::string& path,
                          const std::string& etag) const;

 private:
  std::string cache_dir_, repo_id_, repo_dir_;
};

// The snapshot folder of `repo_id` at `revision` in the cache, or "" when it is not there.
std::string find_cached_snapshot(const std::string& cache_dir, const std::string& repo_id,
                                 const std::string& revision);

// What a model's repository id resolves to in the cache: the snapshot folder, or for a repository
// whose snapshot holds exactly one .safetensors at its top and neither model_index.json nor
// config.json (a LoRA or a single-file checkpoint) that file; "" when not cached.
std::string resolve_cached_model(const std::string& cache_dir, const std::string& repo_id,
                                 const std::string& revision);

// An exclusive flock(2) on `path` (created), held while the object lives. When another process
// holds it, `on_wait` is called before waiting and again each time a signal interrupts the wait
// (it may throw to give up).
class FileLock {
 public:
  FileLock(const std::string& path, const std::function<void()>& on_wait);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

// Bytes an unprivileged user may still write on the file system holding `dir`.
int64_t free_bytes(const std::string& dir);
// Throws (naming `what`, the folder and both sizes) unless `need` bytes fit on it.
void check_free_space(const std::string& dir, int64_t need, const std::string& what);

// "1.73 GB", "135 MB", "612 bytes".
std::string format_bytes(int64_t bytes);

}  // namespace sd::hub
