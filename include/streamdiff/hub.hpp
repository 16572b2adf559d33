// streamdiff hub: models from the Hugging Face Hub, through the cache that huggingface_hub and
// diffusers use (so a model downloaded by either is found here, and the other way round).
//
//   std::string dir = streamdiff::pull("stabilityai/sd-turbo");   // fetches what is missing
//   streamdiff::ModelOptions o;  o.taesd = "madebyollin/taesd";  o.pull = true;
//   streamdiff::Model m = streamdiff::Model::load("stabilityai/sd-turbo", o);  // repo ids work
//
// The cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub, holding
// models--{org}--{name}/{blobs,snapshots,refs}. The endpoint: $HF_ENDPOINT, else
// https://huggingface.co. $HF_TOKEN (else the token `huggingface-cli login` saved) is sent to
// the endpoint for gated or private repositories, and never printed. HF_HUB_OFFLINE=1 forbids
// the network: only what the cache holds is used. Failures throw streamdiff::Error with
// Status::Io (network, HTTP, disk, checksum) or InvalidArgument (a malformed repository id).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "streamdiff/export.h"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff {

// What a pull is doing, for progress bars.
struct PullProgress {
  enum class Stage {
    Start,     // the plan is known: files_total, files_cached, total_bytes
    Waiting,   // another process is downloading `file`; this pull waits for it
    Progress,  // bytes of `file` arrived (at most every 100 ms), or a wait goes on
    FileDone,  // `file` is in place
    Done,      // everything is in place: `snapshot`
  };
  Stage stage = Stage::Start;
  std::string repo_id;
  std::string revision;
  std::string commit;           // the commit the revision names (once known)
  std::string snapshot;         // its snapshot folder in the cache (once known)
  std::string file;             // the file this is about, its path in the repository
  int64_t file_bytes = 0;       // bytes of `file` on disk
  int64_t file_size = -1;       // its size (-1: unknown)
  int64_t resumed_from = 0;     // bytes of `file` kept from an earlier, interrupted download
  int64_t bytes = 0;            // this pull's downloads: bytes on disk so far,
  int64_t total_bytes = 0;      //   and in all
  int64_t received = 0;         // bytes received over the network by this pull
  int files_done = 0;           // files in place (downloaded, or found in the cache)
  int files_total = 0;          // files the model needs
  int files_cached = 0;         // of them, found in the cache at the start
  double bytes_per_second = 0;  // over the last few seconds
};

struct PullOptions {
  std::string revision = "main";  // a branch, tag or commit hash
  // The preferred weight variant: a diffusers component's "fp16" files
  // (diffusion_pytorch_model.fp16.safetensors) where it has them, else its plain ones.
  // "" or "none": the plain files.
  std::string variant = "fp16";
  // Globs (fnmatch; '*' also matches '/'): fetch exactly the files they match instead of the
  // model rules, e.g. one checkpoint of a repository that holds several.
  std::vector<std::string> include;
  // Called on the pulling thread. It may throw to cancel: the exception propagates from pull()
  // unchanged, and the partial download is kept for the next pull to resume.
  std::function<void(const PullProgress&)> on_progress;
};

// Downloads what a model needs from the repository `repo_id` ("org/name") into the cache, only
// the files the cache lacks: for a diffusers folder model_index.json and each component's
// config, tokenizer and .safetensors weights (the variant preferred); for a LoRA or single-file
// repository its .safetensors. Resumes interrupted downloads, verifies SHA-256 of large (LFS)
// files, locks each file against concurrent pulls, checks free space first. Returns the
// snapshot folder.
STREAMDIFF_API std::string pull(const std::string& repo_id, const PullOptions& options = {});

// What Model::load (and ModelOptions::taesd, LoraSpec::path) make of a model argument: an
// existing file or folder is returned as it is; a repository id "org/name" resolves to its
// snapshot folder in the cache at `revision`, or, for a repository whose snapshot holds exactly
// one .safetensors at its top and no model_index.json / config.json (a LoRA, a single-file
// checkpoint), to that file. Anything else is returned as it is (the loader then names it).
// Throws Error(Status::Io) for a repository id that is not in the cache, saying which
// `streamdiff pull` command fetches it.
STREAMDIFF_API std::string resolve_model_path(const std::string& path_or_repo_id,
                                              const std::string& revision = "main");

// resolve_model_path, but a repository id missing from the cache is pulled first (with `options`;
// its revision is the one resolved).
STREAMDIFF_API std::string resolve_or_pull(const std::string& path_or_repo_id,
                                           const PullOptions& options = {});

// The cache folder in use ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub).
STREAMDIFF_API std::string hub_cache_dir();

// A size in bytes as the pull messages write it: "612 bytes", "4.2 kB", "3.2 MB", "1.73 GB".
STREAMDIFF_API std::string format_bytes(int64_t bytes);

}  // namespace streamdiff
