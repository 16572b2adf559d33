// `streamdiff taesd`: encodes an image with TAESD and decodes it again (a round trip), or
// decodes saved latents. Prints what ran and how long each half took.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <map>
#include <string>

#include "commands.h"
#include "paths.h"
#include "streamdiff/media.hpp"
#include "streamdiff/tools.hpp"

namespace streamdiff::cli {

namespace {

struct TaesdArgs {
  std::string model;
  std::string input;
  std::string output;
  std::string latents_in;
  std::string latents_out;
  int width = 512;
  int height = 512;
  int repeat = 1;
  ModelOptions backend;
};

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Runs fn `repeat` times and returns its last result. The first run prepares kernels and sizes
// the memory (Autoencoder plans per shape), so later runs show the steady state. Prints
// "<what>: ..." with the times.
template <typename F>
auto timed(int repeat, const char* what, F fn) -> decltype(fn()) {
  decltype(fn()) out;
  double first_ms = 0, best_ms = std::numeric_limits<double>::infinity();
  for (int i = 0; i < repeat; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    out = fn();
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i == 0) first_ms = ms;
    if (i > 0) best_ms = std::min(best_ms, ms);
  }
  if (repeat == 1)
    std::printf("%s: %.1f ms (first run, includes kernel preparation)", what, first_ms);
  else
    std::printf("%s: %.1f ms best of %d runs (first run %.1f ms)", what, best_ms, repeat - 1,
                first_ms);
  return out;
}

TensorF32 read_latents(const std::string& path, int channels) {
  std::map<std::string, TensorF32> file = load_tensors(path);
  auto it = file.find("latents");
  if (it == file.end()) {
    check(file.size() == 1, "'", path, "' has no tensor named 'latents' and more than one tensor");
    it = file.begin();
  }
  TensorF32 t = it->second;
  if (t.shape.size() == 3) t.shape.insert(t.shape.begin(), 1);
  check(t.shape.size() == 4 && t.shape[3] == channels, "'", path, "': tensor '", it->first,
        "' has shape ", shape_str(t.shape), "; expected NHWC latents [N, h, w, ", channels, "]");
  return t;
}

void run_taesd(const TaesdArgs& a) {
  check(!a.input.empty() || !a.latents_in.empty(), "give --input (an image to encode) or ",
        "--latents-in (latents to decode)");
  check(a.input.empty() || a.latents_in.empty(), "--input and --latents-in exclude each other");
  check(!a.output.empty() || !a.latents_out.empty(), "nothing to write: give --output ",
        "(decoded image) and/or --latents-out (encoded latents)");
  check(a.latents_in.empty() || !a.output.empty(), "--latents-in needs --output");
  check(a.repeat >= 1, "--repeat ", a.repeat, " must be at least 1");
  const std::string path = resolve_model_arg(a.model, "--model", a.backend.pull);
  if (!a.input.empty()) check_readable(a.input, "--input", "an image");
  if (!a.latents_in.empty()) check_readable(a.latents_in, "--latents-in", "a latents file");
  if (!a.output.empty()) check_output_arg(a.output, "--output", a.input);
  if (!a.latents_out.empty()) check_output_arg(a.latents_out, "--latents-out");
  for (const auto& [flag, v] : {std::pair{"--width", a.width}, std::pair{"--height", a.height}})
    check(v > 0 && v <= 4096, flag, " ", v, " must be in [1, 4096]");

  Autoencoder model = Autoencoder::load_taesd(path, a.backend);
  std::printf("backend: %s\nmodel: %s\n", model.backend().c_str(), model.description().c_str());

  TensorF32 latents;
  if (!a.input.empty()) {
    const int ds = model.downscale();
    for (const auto& [flag, v] : {std::pair{"--width", a.width}, std::pair{"--height", a.height}})
      check(v % ds == 0, flag, " ", v, " must be a multiple of ", ds, " (TAESD's downscale)");
    Image img = read_image(a.input);
    Image fitted = resize_cover(img, a.width, a.height);
    std::printf("input: %s, %dx%d -> %dx%d (scaled to cover, centre-cropped)\n", a.input.c_str(),
                img.width, img.height, a.width, a.height);
    latents = timed(a.repeat, "encode", [&] { return model.encode(fitted); });
    std::printf(" -> latents %s\n", shape_str(latents.shape).c_str());
    if (!a.latents_out.empty()) {
      create_parent_folder(a.latents_out, "--latents-out");
      save_tensors(a.latents_out, {{"latents", latents}}, {{"layout", "NHWC"}, {"model", "taesd"}});
      std::printf("wrote %s\n", a.latents_out.c_str());
    }
  } else {
    latents = read_latents(a.latents_in, model.latent_channels());
    std::printf("latents: %s %s\n", a.latents_in.c_str(), shape_str(latents.shape).c_str());
  }

  if (a.output.empty()) return;
  check(latents.shape[0] == 1, "decoding writes one image; the latents hold ", latents.shape[0]);
  const Image out = timed(a.repeat, "decode", [&] { return model.decode(latents); });
  std::printf(" -> image %dx%d\n", out.width, out.height);
  create_parent_folder(a.output, "--output");
  write_image(a.output, out);
  std::printf("wrote %s\n", a.output.c_str());
}

}  // namespace

void register_taesd(CLI::App& app) {
  auto args = std::make_shared<TaesdArgs>();
  CLI::App* cmd = app.add_subcommand(
      "taesd",
      "TAESD round trip: encode an image to latents and decode them back (or decode saved "
      "latents). The input image is scaled to cover --width x --height and centre-cropped.");
  cmd->add_option("--model", args->model,
                  "TAESD: diffusers folder (config.json + diffusion_pytorch_model.safetensors), "
                  "folder or file of the original taesd_encoder/decoder.safetensors, or one "
                  "diffusers-layout .safetensors file")
      ->required();
  cmd->add_option("--input", args->input, "Image to encode (PNG or JPEG)");
  cmd->add_option("--output", args->output, "Decoded image to write (.png, .jpg)");
  cmd->add_option("--latents-in", args->latents_in,
                  "Decode these latents instead of encoding an image (safetensors, tensor "
                  "'latents' [1, h, w, 4] NHWC)");
  cmd->add_option("--latents-out", args->latents_out,
                  "Write the encoded latents (safetensors, tensor 'latents', NHWC f32)");
  cmd->add_option(
         "--width", args->width,
         "Image width for encoding (multiple of 8; with --latents-in the latents set the size)")
      ->capture_default_str();
  cmd->add_option("--height", args->height, "Image height for encoding (multiple of 8)")
      ->capture_default_str();
  cmd->add_option("--repeat", args->repeat,
                  "Run encode and decode this many times; prints the first run (which prepares "
                  "kernels and sizes the memory arena) and the fastest later one")
      ->capture_default_str();
  add_backend_options(*cmd, args->backend);
  cmd->callback([args] { run_taesd(*args); });
}

}  // namespace streamdiff::cli
