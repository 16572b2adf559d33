// Which files of a Hub repository a model needs: the repository's file list as the Hub's API
// gives it, and the choice made from it (no network here).
//
// - A diffusers folder (model_index.json at the top): model_index.json, and for each component
//   it lists (unet/, vae/, text_encoder/, tokenizer/, scheduler/, ...) the configuration and
//   tokenizer files at the component's top (*.json, *.txt, *.model) and its .safetensors weights
//   (sharded ones with their index): the `variant` files (diffusion_pytorch_model.fp16.safetensors)
//   where the component has them, else the plain ones; never .bin/.ckpt/.onnx/.msgpack/.pt
//   pickles or exports, other variants (.fp32, .ema), or files at the repository's top (README,
//   images, a single-file copy of the model). Components streamdiff does not use
//   (safety_checker, feature_extractor, image_encoder) are left out.
// - A component repository (config.json at the top, e.g. madebyollin/taesd): the same rule for
//   its top folder.
// - Otherwise (a LoRA or a single-file checkpoint): the one .safetensors at the top; when there
//   are several, `include` must name the one wanted.
// - `include` globs (fnmatch, '*' also matches '/') replace the rules: exactly the files they
//   match.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sd::hub {

struct RemoteFile {
  std::string path;    // in the repository, '/'-separated
  int64_t size = -1;   // bytes (-1: not listed)
  std::string sha256;  // LFS files: the content's SHA-256 (also their ETag); "" otherwise
};

struct RepoListing {
  std::string commit;  // the revision's commit hash
  std::vector<RemoteFile> files;
};

// Parses GET {endpoint}/api/models/{repo_id}/revision/{revision}?blobs=true. Every path is
// checked (check_repo_path): a listing with one that could escape the cache is refused whole.
RepoListing parse_repo_listing(const std::string& json, const std::string& repo_id);

// The files to fetch (see above); model_index is the parsed model_index.json of a diffusers
// repository, null otherwise. Fails naming the repository when nothing usable is found.
std::vector<RemoteFile> choose_files(const RepoListing& listing, const nlohmann::json* model_index,
                                     const std::string& variant,
                                     const std::vector<std::string>& include,
                                     const std::string& repo_id);

// The variant in a weight file's name: "fp16" for diffusion_pytorch_model.fp16.safetensors,
// model.fp16-00001-of-00002.safetensors or model.safetensors.index.fp16.json; "" for plain ones.
std::string weight_variant(const std::string& file_name);

}  // namespace sd::hub
