// Path checks of the command line (see paths.h).
#include "paths.h"

#include "pull_progress.h"

#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <system_error>

#include "commands.h"

namespace streamdiff::cli {

namespace fs = std::filesystem;

namespace {

bool path_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// The closest existing folder at or above `p` ("." for a relative path with no existing part).
fs::path existing_ancestor(fs::path p) {
  p = p.lexically_normal();
  while (!p.empty() && !path_exists(p)) p = p.parent_path();
  return p.empty() ? fs::path(".") : p;
}

// `path`'s folder: it exists and is a writable folder, or it can be created under a writable one.
void check_folder_writable(const fs::path& folder, const char* flag, const std::string& value) {
  const fs::path at = existing_ancestor(folder.empty() ? fs::path(".") : folder);
  std::error_code ec;
  check(fs::is_directory(at, ec), flag, " '", value, "': '", at.string(),
        "' is not a folder, so nothing can be written under it");
  check(::access(at.c_str(), W_OK | X_OK) == 0, flag, " '", value, "': the folder '", at.string(),
        "' is not writable");
}

bool same_path(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::equivalent(a, b, ec)) return true;
  return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec) && !ec;
}

}  // namespace

std::string resolve_model_arg(const std::string& model, const char* flag, bool pull) {
  check(!model.empty(), flag,
        " is empty: give a diffusers model folder, a single-file .safetensors checkpoint or a "
        "Hugging Face repository id");
  std::string path;
  try {
    path = local_model(model, pull);  // a repository id resolved (or pulled); else as given
  } catch (const Error& e) {
    throw Error(e.status(), std::string(flag) + ": " + e.what());
  }
  check(path_exists(path), flag, " '", model,
        "' does not exist (a diffusers model folder, a single-file .safetensors checkpoint, or "
        "a Hugging Face repository id such as stabilityai/sd-turbo)");
  return path;
}

void check_readable(const std::string& path, const char* flag, const char* what) {
  check(!path.empty(), flag, " is empty: give ", what);
  check(path_exists(path), flag, " '", path, "' does not exist (", what, ")");
  check(::access(path.c_str(), R_OK) == 0, flag, " '", path, "' cannot be read (permissions)");
}

LoraSpec check_lora_arg(const std::string& spec, bool pull) {
  LoraSpec lora = parse_lora_spec(spec);
  if (!path_exists(lora.path)) {
    try {
      lora.path = local_model(lora.path, pull);  // a repository id: its .safetensors file
    } catch (const Error& e) {
      throw Error(e.status(), "--lora '" + spec + "': " + e.what());
    }
  }
  const size_t colon = spec.rfind(':');
  if (!path_exists(lora.path) && colon != std::string::npos && lora.path == spec) {
    const std::string tail = spec.substr(colon + 1);
    check(false, "--lora '", spec, "': '", tail,
          "' is not a scale (PATH:SCALE, e.g. style.safetensors:0.8), and no file '", spec,
          "' exists");
  }
  check(path_exists(lora.path), "--lora '", spec, "': the file '", lora.path, "' does not exist");
  std::error_code ec;
  check(fs::is_regular_file(lora.path, ec), "--lora '", spec, "': '", lora.path, "' is not a file");
  check(fs::path(lora.path).extension() == ".safetensors", "--lora '", spec, "': '", lora.path,
        "' is not a .safetensors file (pickled .bin/.pt/.ckpt LoRAs are not loaded: convert "
        "them)");
  check(::access(lora.path.c_str(), R_OK) == 0, "--lora '", spec, "': '", lora.path,
        "' cannot be read (permissions)");
  return lora;
}

bool is_camera_path(const std::string& path) {
  std::error_code ec;
  return path.rfind("/dev/video", 0) == 0 ||
         fs::status(path, ec).type() == fs::file_type::character;
}

void check_input_arg(const std::string& input, const char* flag) {
  check(!input.empty(), flag, " is empty");
  if (input == "-") {
    check(::isatty(STDIN_FILENO) == 0, flag,
          " '-' reads a video stream from stdin, which is a terminal here: pipe one in, e.g. "
          "ffmpeg -i clip.mp4 -f yuv4mpegpipe - | streamdiff ...");
    return;
  }
  if (is_camera_path(input))
    check(path_exists(input), flag, " '", input,
          "' does not exist: no camera there (`ls /dev/video*` lists the cameras)");
  check(path_exists(input), flag, " '", input,
        "' does not exist (an image, a folder of images, a video, a FIFO, a camera or - for "
        "stdin)");
  check(::access(input.c_str(), R_OK) == 0, flag, " '", input, "' cannot be read (permissions)");
}

void check_output_arg(const std::string& output, const char* flag, const std::string& input,
                      bool stdout_allowed) {
  check(!output.empty(), flag, " is empty");
  if (output == "-") {
    check(stdout_allowed, flag, " '-': this command cannot write to stdout");
    check(::isatty(STDOUT_FILENO) == 0, flag,
          " '-' writes video to stdout, which is a terminal here: pipe it into a program, e.g. "
          "| ffplay -");
    return;
  }
  check(input.empty() || input == "-" || !same_path(input, output), flag, " '", output,
        "' is the input itself: writing it would overwrite the originals; choose another "
        "output");
  std::error_code ec;
  const fs::path out(output);
  if (fs::is_directory(out, ec)) {
    check_folder_writable(out, flag, output);
    return;
  }
  check_folder_writable(out.parent_path(), flag, output);
  check(!path_exists(out) || ::access(output.c_str(), W_OK) == 0, flag, " '", output,
        "' exists and cannot be overwritten (permissions)");
}

void create_folder(const std::string& folder, const char* flag) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  check(!ec, flag, " '", folder, "': cannot create the folder: ", ec.message());
  check(fs::is_directory(folder, ec), flag, " '", folder, "' is not a folder");
}

void create_parent_folder(const std::string& file, const char* flag) {
  const fs::path parent = fs::path(file).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  check(!ec, flag, " '", file, "': cannot create the folder '", parent.string(),
        "': ", ec.message());
}

}  // namespace streamdiff::cli
