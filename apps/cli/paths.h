// The checks of the paths a command line names, made before anything slow (loading a model),
// each failing with a message that names the flag and the value; and folder creation with the
// same kind of message (never a raw "filesystem error").
#pragma once

#include <string>

#include "streamdiff/streamdiff.hpp"

namespace streamdiff::cli {

// The path of a model argument (--model, --taesd): a local folder or file as it is, or a Hugging
// Face repository id "org/name" resolved in the cache (pulled first with `pull`: --pull); the
// one place where model names are resolved. Otherwise an error naming the flag: "does not
// exist", or the `streamdiff pull` command that fetches a repository id not in the cache.
std::string resolve_model_arg(const std::string& model, const char* flag = "--model",
                              bool pull = false);

// A file or folder that must exist and be readable (--taesd, --latents-in, ...).
void check_readable(const std::string& path, const char* flag, const char* what);

// --lora PATH[:SCALE]: the file (or a repository id's single .safetensors, resolved as above)
// exists and is a .safetensors file; a ":tail" that is not a number is named as such.
LoraSpec check_lora_arg(const std::string& spec, bool pull = false);

// True for "/dev/video*" or any character device: a camera.
bool is_camera_path(const std::string& path);

// --input: "-" (stdin, which must not be a terminal), or an existing file, folder, FIFO or
// camera.
void check_input_arg(const std::string& input, const char* flag = "--input");

// A file the run will write (--output, --stats-json, --out): "-" is stdout (not a terminal,
// and only where `stdout_allowed`); otherwise not a folder, and its folder exists and is
// writable, or can be created. `input`: refused as the same file or folder (it would be
// overwritten).
void check_output_arg(const std::string& output, const char* flag, const std::string& input = "",
                      bool stdout_allowed = false);

// Creates `folder` (and its parents), or the folder that will hold `file`.
void create_folder(const std::string& folder, const char* flag);
void create_parent_folder(const std::string& file, const char* flag);

}  // namespace streamdiff::cli
