// Subcommands of the `streamdiff` tool, written on the public API (include/streamdiff/) only.
// Each registers itself on the CLI11 app and runs its own callback; errors are
// streamdiff::Error exceptions that main() prints as "error: ..." with exit code 1. Model
// arguments may be Hugging Face repository ids (pull_progress.h: local_model).
#pragma once

#include <sstream>
#include <string>

#include <CLI/CLI.hpp>

#include "streamdiff/streamdiff.hpp"

namespace streamdiff::cli {

// Adds --device, --dtype, --threads and --pull to a subcommand; they fill `opts`.
void add_backend_options(CLI::App& cmd, ModelOptions& opts);

// Thrown (after the message is printed) to end the tool with this exit status, e.g. 130 after
// Ctrl-C stopped a download.
struct ExitCode {
  int code;
};

// Throws Error(InvalidArgument) with the streamed arguments unless cond (the CLI's SD_CHECK).
template <typename... Args>
void check(bool cond, const Args&... args) {
  if (cond) return;
  std::ostringstream os;
  (os << ... << args);
  throw Error(Status::InvalidArgument, os.str());
}

void register_taesd(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_encode_prompt(CLI::App& app);
void register_info(CLI::App& app);
void register_stream(CLI::App& app);  // img2img, vid2vid, txt2img
void register_bench(CLI::App& app);
void register_pull(CLI::App& app);

}  // namespace streamdiff::cli
