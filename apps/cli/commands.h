// Subcommands of the `streamdiff` tool, written on the public API (include/streamdiff/) only.
// Each registers itself on the CLI11 app and runs its own callback; errors are
// streamdiff::Error exceptions that main() prints as "error: ..." with exit code 1. Model
// arguments may be Hugging Face repository ids (pull_progress.h: local_model).
//
// Exit codes (README "Exit codes"): 0 done; 1 an error; 2 done, but some inputs were skipped
// (unreadable images in a folder); 104-114 the command line did not parse (CLI11's codes:
// 104 a value of the wrong type, 105 a value not allowed, 106 a required option missing, 107 /
// 108 options that need / exclude each other, 109 unexpected arguments, 114 an option given
// more often than it takes); 128 + the signal's
// number when interrupted (130 for Ctrl-C, 143 for SIGTERM), after finishing the output.
#pragma once

#include <cstdarg>
#include <sstream>
#include <string>

#include <CLI/CLI.hpp>

#include "streamdiff/streamdiff.hpp"

namespace streamdiff::cli {

constexpr int kExitError = 1;
constexpr int kExitSkippedInputs = 2;

// Thrown by a subcommand that finished with a status other than 0 (it has printed why), e.g.
// 2 after skipping inputs or 130 after Ctrl-C stopped a download.
struct ExitStatus {
  int code;
};

// Adds --device, --dtype, --threads and --pull to a subcommand; they fill `opts`.
void add_backend_options(CLI::App& cmd, ModelOptions& opts);

// Throws Error(InvalidArgument) with the streamed arguments unless cond (the CLI's SD_CHECK).
template <typename... Args>
void check(bool cond, const Args&... args) {
  if (cond) return;
  std::ostringstream os;
  (os << ... << args);
  throw Error(Status::InvalidArgument, os.str());
}

// Messages for the user (settings, progress, summaries) go to stdout, or to stderr once stdout
// carries video (--output -). say() prints there and flushes; warn() prints "warning: ..." on
// stderr.
void send_messages_to_stderr();
std::FILE* message_stream();
__attribute__((format(printf, 1, 2))) void say(const char* fmt, ...);
__attribute__((format(printf, 1, 2))) void warn(const char* fmt, ...);

void register_taesd(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_encode_prompt(CLI::App& app);
void register_info(CLI::App& app);
void register_stream(CLI::App& app);  // img2img, vid2vid, txt2img
void register_bench(CLI::App& app);
void register_serve(CLI::App& app);
void register_pull(CLI::App& app);

}  // namespace streamdiff::cli
