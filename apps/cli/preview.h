// `--preview`: a window (SDL2) showing the model's input and its output side by side, with the
// frame rate, latency, compute time and seed drawn under them (and in the title), updated with
// every output. Keys: n draws a new random seed, q / Escape (or closing the window) stops the run
// as Ctrl-C does. SDL2 is optional at build time: without it, --preview says so.
//
// Screenshots: with STREAMDIFF_PREVIEW_SCREENSHOT=FILE.png in the environment, the last window
// content shown is saved there when the preview closes (read back from SDL's renderer, so it is
// exactly what was drawn; the tests and docs/preview.png use it under Xvfb).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "streamdiff/media.hpp"

namespace streamdiff::cli {

struct PreviewFigures {
  double fps = 0, latency_ms = 0, compute_ms = 0;
  uint64_t seed = 0;
};

class Preview {
 public:
  // Connects to the display now (so a missing display fails before the model is loaded); the
  // window opens with the first frame. Throws naming --preview.
  explicit Preview(const std::string& title);
  ~Preview();
  Preview(const Preview&) = delete;
  Preview& operator=(const Preview&) = delete;

  // Shows `input` (as the model saw it) and `output` (same size) side by side.
  void show(const Image& input, const Image& output, const PreviewFigures& figures);
  // Handles the window's events (call often, also between frames).
  void pump();
  // Saves the screenshot if one was asked for; idempotent.
  void close();

  std::function<void()> on_new_seed;  // key n

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace streamdiff::cli
