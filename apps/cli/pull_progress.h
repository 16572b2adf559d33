// Pulling models from the CLI: the progress display of a pull (on a terminal one line updated in
// place with the file's and the total's percentage, the rate and the time left; otherwise a line
// per file and every 10%), Ctrl-C during a pull (the partial file is kept and the tool exits with
// status 130 saying so), and model arguments given as repository ids.
#pragma once

#include <cstdint>
#include <string>

#include "streamdiff/hub.hpp"

namespace streamdiff::cli {

// A model argument (--model, --taesd, a --lora path) as a local path: an existing file or folder
// as it is, a repository id "org/name" resolved in the Hugging Face cache; with `pull`, a
// repository id not in the cache is pulled first, with the progress display. Without it, a
// missing repository id is an error naming the `streamdiff pull` command.
std::string local_model(const std::string& arg, bool pull);

// Pulls `repo_id` with the progress display; returns the snapshot folder. Ctrl-C: exits 130.
std::string pull_with_progress(const std::string& repo_id, PullOptions options);

}  // namespace streamdiff::cli
