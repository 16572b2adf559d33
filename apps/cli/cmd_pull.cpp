// `streamdiff pull REPO_ID`: downloads the files a model needs from the Hugging Face Hub into
// the cache huggingface_hub and diffusers share (streamdiff/hub.hpp), only those missing, with
// a progress display; prints the snapshot folder on stdout. Ctrl-C keeps what arrived: the same
// command resumes it.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "pull_progress.h"
#include "streamdiff/hub.hpp"

namespace streamdiff::cli {

namespace {

struct PullArgs {
  std::string repo_id;
  PullOptions options;
};

}  // namespace

void register_pull(CLI::App& app) {
  auto a = std::make_shared<PullArgs>();
  CLI::App* cmd = app.add_subcommand(
      "pull",
      "Download a model from the Hugging Face Hub into the Hugging Face cache ($HF_HUB_CACHE, "
      "else $HF_HOME/hub, else ~/.cache/huggingface/hub): a diffusers folder's configs, "
      "tokenizer and .safetensors weights (the fp16 variant where there is one), or a LoRA's / "
      "single-file checkpoint's .safetensors. Only missing files are fetched; interrupted "
      "downloads resume; large files are checked against their SHA-256. HF_ENDPOINT, HF_TOKEN "
      "(gated or private repositories) and HF_HUB_OFFLINE=1 are honoured. Prints the snapshot "
      "folder, which --model also finds by the repository id.");
  cmd->add_option("repo_id", a->repo_id, "Repository id, e.g. stabilityai/sd-turbo")->required();
  cmd->add_option("--revision", a->options.revision, "Branch, tag or commit")
      ->capture_default_str();
  cmd->add_option("--variant", a->options.variant,
                  "Weight variant preferred where a component has it (\"none\": plain weights)")
      ->capture_default_str();
  cmd->add_option("--include", a->options.include,
                  "Fetch exactly the files matching these globs instead (e.g. one checkpoint of "
                  "several: --include 'model-v2.safetensors')");
  cmd->callback([a] {
    const std::string snapshot = pull_with_progress(a->repo_id, a->options);
    std::printf("%s\n", snapshot.c_str());
  });
}

}  // namespace streamdiff::cli
