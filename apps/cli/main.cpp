// streamdiff: the command-line tool.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "streamdiff/media.hpp"
#include "streamdiff/version.h"

namespace streamdiff::cli {

void add_backend_options(CLI::App& cmd, ModelOptions& opts) {
  cmd.add_option("--device", opts.device, "Compute device: cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd.add_option("--dtype", opts.dtype,
                 "Compute dtype: auto (bf16 where the hardware is fast at it), f32 or bf16")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}))
      ->capture_default_str();
  cmd.add_option("--threads", opts.threads, "CPU threads (0 = all cores)")->capture_default_str();
  cmd.add_flag("--pull", opts.pull,
               "Download models given as Hugging Face repository ids (org/name) that are not in "
               "the cache yet (as `streamdiff pull` does)");
}

}  // namespace streamdiff::cli

int main(int argc, char** argv) {
  CLI::App app{"streamdiff: real-time Stable Diffusion (StreamDiffusion) in native C++"};
  app.set_version_flag("--version", std::string("streamdiff ") + streamdiff::version());
  app.require_subcommand(1);
  streamdiff::cli::register_taesd(app);
  streamdiff::cli::register_tokenize(app);
  streamdiff::cli::register_encode_prompt(app);
  streamdiff::cli::register_info(app);
  streamdiff::cli::register_stream(app);
  streamdiff::cli::register_bench(app);
  streamdiff::cli::register_pull(app);
  // FFmpeg prints warnings (and libx264 its statistics) by default; every failure also becomes
  // an error message here, so only FFmpeg's errors are worth showing.
  streamdiff::set_video_log_errors_only();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const streamdiff::cli::ExitCode& e) {
    return e.code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
