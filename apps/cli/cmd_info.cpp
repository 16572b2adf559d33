// `streamdiff info PATH`: says what a model path is without loading any weights. The text comes
// from the library (streamdiff::describe_model_path, src/api/describe.cpp); this file is only the
// subcommand.
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "pull_progress.h"
#include "streamdiff/tools.hpp"

namespace streamdiff::cli {

void register_info(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "info",
      "Describe a model: a diffusers model folder, a component folder (unet/, vae/, ...) or a "
      "single .safetensors file (family, parts present, parameters, dtypes, metadata). Reads "
      "only headers and configs.");
  cmd->add_option("path", *path,
                  "Model folder or file, or the repository id of one in the Hugging Face cache")
      ->required();
  cmd->callback(
      [path] { std::fputs(describe_model_path(local_model(*path, false)).c_str(), stdout); });
}

}  // namespace streamdiff::cli
