// The options of `streamdiff img2img`, `vid2vid` and `txt2img`, their presets, and every check
// that can be made before the model is loaded: the settings on their own, the paths, and the
// settings against the model's configs (streamdiff::inspect_model), so that a mistake fails in
// milliseconds instead of after seconds of loading.
//
// Presets (--preset): the defaults of --t-index, --cfg and --guidance (and --turbo for txt2img)
// for a kind of model; flags given explicitly override them.
//   sd15-lcm  t_index [32, 45] of 50 steps, cfg self, guidance 1.2: SD 1.5 with LCM-LoRA, the
//             original StreamDiffusion's defaults.
//   sd-turbo  img2img t_index [35, 45], cfg none (the original's demo/realtime-img2img/img2img.py
//             runs stabilityai/sd-turbo with t_index_list=[35, 45], cfg_type="none",
//             num_inference_steps=50); txt2img t_index [0], cfg none, one-step turbo (the
//             original's sd-turbo txt2img examples: t_index_list=[0], cfg_type="none",
//             txt2img_sd_turbo).
//   auto      (default) sd-turbo when the model's name contains "turbo", else sd15-lcm
//             (ModelSummary::suggested_preset: configs cannot tell sd-turbo from SD 2.1).
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "streamdiff/streamdiff.hpp"
#include "streamdiff/tools.hpp"

namespace streamdiff::cli {

enum class StreamMode { Img2img, Txt2img };

struct StreamArgs {
  std::string model, taesd, input, output, prompt, negative;
  std::vector<std::string> loras;  // PATH or PATH:SCALE
  std::string stats_json;          // img2img / vid2vid: write the run's numbers here
  bool lora_allow_unmatched = false;
  std::string preset = "auto";
  std::vector<int> t_index{32, 45};
  int steps = 50;
  std::string cfg = "self";
  float guidance = 1.2f;
  float delta = 1.f;
  std::string seed = "2";  // parsed as uint64 (CLI11 would wrap negatives around)
  int width = 512, height = 512;
  int clip_skip = 0;
  float ssf_threshold = 0.98f;
  int ssf_max_skip = 10;
  bool ssf = false;
  int frames = 1;
  bool turbo = false;      // txt2img: the original's one-step txt2img_sd_turbo
  bool live = false;       // img2img / vid2vid: play the input in real time, drop the oldest
  std::string fps = "30";  // frame rate of image inputs (and of streams that state none)
  bool fps_given = false;
  std::string input_format, input_size, input_pixel_format;  // streams and cameras
  std::string output_format = "y4m";                         // --output - (stdout)
  bool preview = false;
  ModelOptions backend;         // --device, --dtype, --threads
  std::set<std::string> given;  // the flags given on the command line ("--t-index", ...)
};

// Adds the options shared by the three subcommands, and those of img2img / vid2vid.
void add_stream_options(CLI::App& cmd, StreamArgs& a);
void add_img2img_options(CLI::App& cmd, const std::shared_ptr<StreamArgs>& a);
// Records which of `a`'s flags `cmd` was given (for the presets), from the subcommand's callback.
void note_given_flags(const CLI::App& cmd, StreamArgs& a);

// What the checks made of the arguments.
struct StreamPlan {
  StreamConfig config;
  ModelSummary model;
  ModelOptions model_options;  // with the TAESD and LoRAs
  std::string preset;          // the preset used
  bool turbo = false;          // txt2img: one-step turbo
};

// Every check that needs no input or output file: the settings, the model's configs, the
// LoRA and TAESD files. Prints the settings line (and warnings). Throws naming the flag.
StreamPlan plan_stream(StreamArgs& a, StreamMode mode);

// Loads the model with a progress line per step; prints the time taken.
Model load_model(const StreamPlan& plan);

}  // namespace streamdiff::cli
