// Finding the files of a diffusers / transformers model folder.
#pragma once

#include <filesystem>
#include <string>

namespace sd {

// True for an existing regular file (never throws).
bool is_file(const std::filesystem::path& p);

// The weights of a component folder: `<stem>.safetensors`, else the `<stem>.fp16.safetensors`
// variant, else sharded weights: the index `<stem>.safetensors.index.json`, else
// `<stem>.fp16.safetensors.index.json` (open the result with SafetensorsSet). Stem
// "diffusion_pytorch_model" for diffusers parts, "model" for transformers ones. PyTorch pickles
// (.bin) get an error saying so; `what` names the part in messages ("UNet folder").
std::string find_component_weights(const std::filesystem::path& dir, const std::string& stem,
                                   const std::string& what);

// `dir` when it holds config.json, else `dir/sub` when that does (a model root), else `dir`.
std::filesystem::path component_dir(const std::filesystem::path& dir, const char* sub);

}  // namespace sd
