// `streamdiff taesd`: encodes an image with TAESD and decodes it again (a round trip), or
// decodes saved latents. Prints what ran and how long each half took.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <map>
#include <string>

#include "commands.h"
#include "core/error.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "models/taesd.h"

namespace sd::cli {

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
  BackendOptions backend;
};

// A persistent (non-arena) device copy of a host tensor: the arena can be re-planned while it
// lives.
Tensor to_device(Backend& b, const Tensor& host) {
  Tensor d = b.empty(host.shape(), b.compute_dtype());
  b.copy_from_host(host, d);
  b.synchronize();
  return d;
}

// Runs fn `repeat` times and returns a host f32 copy of its last result. The first run prepares
// kernels and sizes the arena; before the second the arena is reserved at that size, so later
// runs show the steady state (as in a stream). Prints "<what>: ..." with the times.
template <typename F>
Tensor timed(Backend& b, int repeat, const char* what, F fn) {
  Tensor host;
  double first_ms = 0, best_ms = std::numeric_limits<double>::infinity();
  for (int i = 0; i < repeat; ++i) {
    if (i == 1) b.arena().reserve(b.arena().peak());  // no arena tensor is alive here
    auto t0 = std::chrono::steady_clock::now();
    Tensor out = fn();
    b.synchronize();
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i == 0) first_ms = ms;
    if (i > 0) best_ms = std::min(best_ms, ms);
    if (i + 1 == repeat) host = b.download(out, DType::F32);
  }
  if (repeat == 1)
    std::printf("%s: %.1f ms (first run, includes kernel preparation)", what, first_ms);
  else
    std::printf("%s: %.1f ms best of %d runs (first run %.1f ms)", what, best_ms, repeat - 1,
                first_ms);
  return host;
}

Tensor read_latents(const std::string& path, int channels) {
  auto file = SafetensorsFile::open(path);
  std::string name = "latents";
  if (!file->contains(name)) {
    SD_CHECK(file->entries().size() == 1, "'", path,
             "' has no tensor named 'latents' and more than one tensor");
    name = file->entries()[0].name;
  }
  Tensor t = file->load(name, DType::F32);
  if (t.rank() == 3) t = t.reshape(Shape{1, t.dim(0), t.dim(1), t.dim(2)});
  SD_CHECK(t.rank() == 4 && t.dim(3) == channels, "'", path, "': tensor '", name, "' has shape ",
           t.shape().str(), "; expected NHWC latents [N, h, w, ", channels, "]");
  return t;
}

void run_taesd(const TaesdArgs& a) {
  SD_CHECK(!a.input.empty() || !a.latents_in.empty(), "give --input (an image to encode) or ",
           "--latents-in (latents to decode)");
  SD_CHECK(a.input.empty() || a.latents_in.empty(), "--input and --latents-in exclude each other");
  SD_CHECK(!a.output.empty() || !a.latents_out.empty(), "nothing to write: give --output ",
           "(decoded image) and/or --latents-out (encoded latents)");
  SD_CHECK(a.latents_in.empty() || !a.output.empty(), "--latents-in needs --output");
  SD_CHECK(a.repeat >= 1, "--repeat must be at least 1, got ", a.repeat);

  auto backend = make_backend(a.backend);
  auto model = Taesd::load(a.model, *backend);
  std::printf("backend: %s\nmodel: %s\n", backend->description().c_str(), model->source().c_str());

  Tensor latents;  // host, f32
  if (!a.input.empty()) {
    const int ds = model->config().encoder_downscale();
    SD_CHECK(a.width > 0 && a.height > 0 && a.width % ds == 0 && a.height % ds == 0,
             "--width and --height must be positive and a multiple of ", ds, ", got ", a.width, "x",
             a.height);
    Image img = read_image(a.input);
    Image fitted = resize_cover(img, a.width, a.height);
    std::printf("input: %s, %dx%d -> %dx%d (scaled to cover, centre-cropped)\n", a.input.c_str(),
                img.width, img.height, a.width, a.height);
    Tensor x = to_device(*backend, image_to_tensor(fitted));
    latents = timed(*backend, a.repeat, "encode", [&] { return model->encode(x); });
    std::printf(" -> latents %s\n", latents.shape().str().c_str());
    if (!a.latents_out.empty()) {
      write_safetensors(a.latents_out, {{"latents", latents}},
                        {{"layout", "NHWC"}, {"model", "taesd"}});
      std::printf("wrote %s\n", a.latents_out.c_str());
    }
  } else {
    latents = read_latents(a.latents_in, model->config().latent_channels);
    std::printf("latents: %s %s\n", a.latents_in.c_str(), latents.shape().str().c_str());
  }

  if (a.output.empty()) return;
  SD_CHECK(latents.dim(0) == 1, "decoding writes one image; the latents hold ", latents.dim(0));
  Tensor z = to_device(*backend, latents);
  Tensor host = timed(*backend, a.repeat, "decode", [&] { return model->decode(z); });
  std::printf(" -> image %lldx%lld\n", (long long)host.dim(2), (long long)host.dim(1));
  write_image(a.output, tensor_to_image(host));
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

}  // namespace sd::cli
