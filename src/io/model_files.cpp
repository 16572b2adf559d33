#include "io/model_files.h"

#include "core/error.h"

namespace sd {

namespace fs = std::filesystem;

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

std::string find_component_weights(const fs::path& dir, const std::string& stem,
                                   const std::string& what) {
  for (const std::string& name : {stem + ".safetensors", stem + ".fp16.safetensors"})
    if (is_file(dir / name)) return (dir / name).string();
  for (const std::string& name :
       {stem + ".safetensors.index.json", stem + ".fp16.safetensors.index.json"})
    if (is_file(dir / name)) return (dir / name).string();
  for (const std::string& name :
       {stem + ".bin", stem + ".fp16.bin", std::string("pytorch_model.bin"), stem + ".ckpt"})
    SD_CHECK(!is_file(dir / name), what, " '", dir.string(), "' holds PyTorch pickle weights (",
             name,
             "), which are not loaded; convert them to .safetensors (e.g. diffusers' "
             "save_pretrained(safe_serialization=True))");
  fail(what, " '", dir.string(), "' has neither ", stem, ".safetensors nor ", stem,
       ".fp16.safetensors (nor a .safetensors.index.json of sharded weights)");
}

fs::path component_dir(const fs::path& dir, const char* sub) {
  if (!is_file(dir / "config.json") && is_file(dir / sub / "config.json")) return dir / sub;
  return dir;
}

}  // namespace sd
