// streamdiff: the command-line tool.
#include <csignal>
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "commands.h"
#include "streamdiff/media.hpp"
#include "streamdiff/version.h"

namespace streamdiff::cli {

namespace {

std::FILE* g_messages = nullptr;  // stdout unless send_messages_to_stderr()

void vprint(std::FILE* f, const char* prefix, const char* fmt, va_list args) {
  std::fputs(prefix, f);
  std::vfprintf(f, fmt, args);
  std::fflush(f);
}

// CLI11's message for a command line that does not parse, as "error: ..." like every other
// error, with a hint where a positional value was missing (a value starting with '-' is taken
// for an option unless it comes after "--").
std::string parse_failure(const CLI::App*, const CLI::Error& e) {
  std::string msg = std::string("error: ") + e.what() + "\n";
  const std::string what = e.what();
  const bool positional_missing = e.get_name() == "RequiredError" &&
                                  (what.rfind("text ", 0) == 0 || what.rfind("path ", 0) == 0 ||
                                   what.rfind("input ", 0) == 0 || what.rfind("output ", 0) == 0);
  if (positional_missing || e.get_name() == "ExtrasError")
    msg +=
        "(a value that starts with '-' is read as an option: put it after '--', e.g. streamdiff "
        "tokenize -- '-a cat')\n";
  return msg + "Run with --help for more information.\n";
}

}  // namespace

void send_messages_to_stderr() {
  g_messages = stderr;
}

std::FILE* message_stream() {
  return g_messages ? g_messages : stdout;
}

void say(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vprint(message_stream(), "", fmt, args);
  va_end(args);
}

void warn(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vprint(stderr, "warning: ", fmt, args);
  va_end(args);
}

void add_backend_options(CLI::App& cmd, ModelOptions& opts) {
  cmd.add_option("--device", opts.device, "Compute device: cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd.add_option("--dtype", opts.dtype,
                 "Compute dtype: auto (bf16 where the CPU has AVX512-BF16, else f32), f32 or bf16")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}))
      ->capture_default_str();
  cmd.add_option("--threads", opts.threads,
                 "CPU threads (0 = all cores; more than the cores runs much slower)")
      ->capture_default_str();
  cmd.add_flag("--pull", opts.pull,
               "Download models given as Hugging Face repository ids (org/name) that are not in "
               "the cache yet (as `streamdiff pull` does)");
}

}  // namespace streamdiff::cli

int main(int argc, char** argv) {
  // A reader that closes our stdout (`streamdiff ... | head`) must not kill a run: writes then
  // fail with EPIPE, which the video output reports and the run ends on.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"streamdiff: real-time Stable Diffusion (StreamDiffusion) in native C++"};
  app.set_version_flag("--version", std::string("streamdiff ") + streamdiff::version());
  app.require_subcommand(1);
  app.failure_message(streamdiff::cli::parse_failure);
  streamdiff::cli::register_taesd(app);
  streamdiff::cli::register_tokenize(app);
  streamdiff::cli::register_encode_prompt(app);
  streamdiff::cli::register_info(app);
  streamdiff::cli::register_stream(app);
  streamdiff::cli::register_bench(app);
  streamdiff::cli::register_serve(app);
  streamdiff::cli::register_pull(app);
  // FFmpeg prints warnings, errors and (libx264) statistics of its own; every failure also
  // becomes an error message here that names the file and FFmpeg's reason, so it prints nothing.
  streamdiff::set_video_log_quiet();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const streamdiff::cli::ExitStatus& s) {
    return s.code;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return streamdiff::cli::kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return streamdiff::cli::kExitError;
  }
  return 0;
}
