// Downloading a model from the Hugging Face Hub into the shared cache (hub_cache.h): the
// repository's file list at a revision, the files the model needs (hub_select.h), and for each
// one not yet in the snapshot: its ETag and size (HEAD on resolve/{commit}/{path}), then the
// bytes into blobs/{etag}.incomplete under the blob's lock, resumed with Range after a cut
// transfer (retried here) or an interrupted run (the next run), checked (size; SHA-256 for LFS
// files: a mismatch deletes the download), and renamed into place; then the snapshot's symlink.
// refs/{revision} is written last, so a revision resolves only once its files are all there.
// HF_HUB_OFFLINE forbids the network: the cached snapshot is returned, or an error.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sd::hub {

struct PullEvent {
  enum class Kind {
    Start,     // the plan is known: files_total, files_cached, total_bytes
    Waiting,   // another process is downloading `file`; this one waits for its lock
    Progress,  // bytes of `file` arrived (at most every 100 ms), or a wait goes on
    FileDone,  // `file` is in the snapshot
    Done,      // all files are there: `snapshot`
  };
  Kind kind = Kind::Start;
  std::string repo_id, revision, commit;
  std::string snapshot;      // the snapshot folder (once the commit is known)
  std::string file;          // the file this event is about (its path in the repository)
  int64_t file_bytes = 0;    // bytes of `file` on disk
  int64_t file_size = -1;    // its size (-1: unknown)
  int64_t resumed_from = 0;  // bytes of `file` found from an earlier, interrupted download
  int64_t bytes = 0;         // of everything this pull downloads: bytes on disk so far
  int64_t total_bytes = 0;   //   and in all
  int64_t received = 0;      // bytes received over the network by this pull
  int files_done = 0;        // files in the snapshot (downloaded, or found there)
  int files_total = 0;       // files the model needs
  int files_cached = 0;      // of them, found in the cache at the start
  double rate = 0;           // bytes per second over the last few seconds
};

struct PullRequest {
  std::string repo_id;
  std::string revision = "main";
  std::string variant = "fp16";      // preferred weight variant; "" or "none": plain weights
  std::vector<std::string> include;  // globs: exactly these files instead of the rules
  std::string cache_dir;             // "" = hub_cache_dir()
  // Called on the pulling thread. It may throw to cancel the pull: the exception propagates
  // from pull_repo unchanged, and a partial download is kept (blobs/{etag}.incomplete) for the
  // next pull to resume.
  std::function<void(const PullEvent&)> on_event;
};

// Downloads what `request` asks for (only what the cache lacks) and returns the snapshot folder.
std::string pull_repo(const PullRequest& request);

}  // namespace sd::hub
