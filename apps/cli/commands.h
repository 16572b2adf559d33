// Subcommands of the `streamdiff` tool. Each registers itself on the CLI11 app and runs its own
// callback; errors are sd::Error exceptions that main() prints as "error: ..." with exit code 1.
#pragma once

#include <CLI/CLI.hpp>

#include "backend/backend.h"

namespace sd::cli {

// Adds --device, --dtype and --threads to a subcommand.
void add_backend_options(CLI::App& cmd, BackendOptions& opts);

void register_taesd(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_encode_prompt(CLI::App& app);
void register_info(CLI::App& app);
void register_stream(CLI::App& app);  // img2img, vid2vid, txt2img
void register_bench(CLI::App& app);

}  // namespace sd::cli
