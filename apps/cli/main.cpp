// streamdiff: the command-line tool.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "core/error.h"
#include "streamdiff/version.h"

namespace sd::cli {

void add_backend_options(CLI::App& cmd, BackendOptions& opts) {
  cmd.add_option("--device", opts.device, "Compute device: cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd.add_option("--dtype", opts.dtype,
                 "Compute dtype: auto (bf16 where the hardware is fast at it), f32 or bf16")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}))
      ->capture_default_str();
  cmd.add_option("--threads", opts.threads, "CPU threads (0 = all cores)")->capture_default_str();
}

}  // namespace sd::cli

int main(int argc, char** argv) {
  CLI::App app{"streamdiff: real-time Stable Diffusion (StreamDiffusion) in native C++"};
  app.set_version_flag("--version", std::string("streamdiff ") + streamdiff::version());
  app.require_subcommand(1);
  sd::cli::register_taesd(app);
  sd::cli::register_tokenize(app);
  sd::cli::register_encode_prompt(app);
  sd::cli::register_info(app);
  sd::cli::register_stream(app);
  sd::cli::register_bench(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
