// `streamdiff img2img` and `streamdiff txt2img`: the StreamDiffusion pipeline on images.
//
// img2img takes one image or a folder of images (PNG / JPEG, in file-name order) and writes one
// output per input (a folder in -> the same file names in the output folder). Frames go through
// the threaded runner (read -> decode + resize_cover -> Stream -> encode + write) with the Block
// policy, so every frame is processed in order. Before the first frame the stream is warmed up
// with that frame (len(t_index_list) - 1 calls in batched mode, as the original's examples do);
// with Stream Batch, output k still shows input k - (n - 1) (the pipeline's lag).
// txt2img writes --frames images (out.png, or out_000.png, out_001.png, ... for several).
//
// The model folder is a diffusers layout: unet/, text_encoder/, tokenizer/, and vae/ unless
// --taesd names a TAESD folder (then vae/ is not read).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "io/image.h"
#include "models/autoencoder_kl.h"
#include "models/prompt_encoder.h"
#include "models/taesd.h"
#include "models/unet.h"
#include "pipeline/autoencoder_kl_codec.h"
#include "pipeline/stream.h"
#include "pipeline/stream_runner.h"

namespace sd::cli {

namespace {

namespace fs = std::filesystem;

struct StreamArgs {
  std::string model, taesd, input, output, prompt, negative;
  std::vector<int> t_index{32, 45};
  int steps = 50;
  std::string cfg = "self";
  float guidance = 1.2f;
  float delta = 1.f;
  uint64_t seed = 2;
  int width = 512, height = 512;
  float ssf_threshold = 0.98f;
  int ssf_max_skip = 10;
  bool ssf = false;
  int frames = 1;
  bool turbo = false;  // txt2img: the original's one-step txt2img_sd_turbo
  BackendOptions backend;
};

// The models a Stream needs; they must outlive it.
struct LoadedModels {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<UNet> unet;
  std::unique_ptr<PromptEncoder> text;
  std::unique_ptr<Taesd> taesd;
  std::unique_ptr<AutoencoderKL> vae;
  std::unique_ptr<LatentCodec> codec;
};

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Settings checks that need no model, so mistakes fail before the (slow) loading.
StreamSettings settings_from(const StreamArgs& a) {
  SD_CHECK(a.width > 0 && a.height > 0 && a.width % 8 == 0 && a.height % 8 == 0,
           "--width / --height must be positive multiples of 8, got ", a.width, "x", a.height);
  SD_CHECK(a.steps >= 1, "--steps must be at least 1, got ", a.steps);
  SD_CHECK(!a.t_index.empty(), "--t-index needs at least one index");
  for (int t : a.t_index)
    SD_CHECK(t >= 0 && t < a.steps, "--t-index ", t, " must be in [0, --steps ", a.steps, ")");
  SD_CHECK(a.ssf_threshold > 0 && a.ssf_threshold <= 1, "--ssf-threshold must be in (0, 1], got ",
           a.ssf_threshold);
  StreamSettings s;
  s.width = a.width;
  s.height = a.height;
  s.t_index_list = a.t_index;
  s.num_inference_steps = a.steps;
  s.cfg_type = parse_cfg_type(a.cfg);
  s.guidance_scale = a.guidance;
  s.delta = a.delta;
  s.seed = a.seed;
  s.similar_image_filter = a.ssf;
  s.similar_image_filter_threshold = a.ssf_threshold;
  s.similar_image_filter_max_skip_frame = a.ssf_max_skip;
  return s;
}

void check_model_folder(const StreamArgs& a) {
  SD_CHECK(fs::is_directory(a.model), "--model '", a.model,
           "' is not a folder (a diffusers model folder with unet/, text_encoder/, tokenizer/)");
  SD_CHECK(!a.taesd.empty() || fs::is_directory(fs::path(a.model) / "vae"), "'", a.model,
           "' has no vae/ folder: give a TAESD folder with --taesd");
}

LoadedModels load_models(const StreamArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  LoadedModels m;
  m.backend = make_backend(a.backend);
  m.unet = UNet::load(a.model, *m.backend);
  m.text = PromptEncoder::load(a.model, *m.backend);
  if (!a.taesd.empty()) {
    m.taesd = Taesd::load(a.taesd, *m.backend);
    m.codec = std::make_unique<TaesdCodec>(*m.taesd);
  } else {
    m.vae = AutoencoderKL::load(a.model, *m.backend);
    m.codec = std::make_unique<AutoencoderKLCodec>(*m.vae);
  }
  std::printf("loaded %s (%s VAE) in %.0f ms\n", a.model.c_str(),
              a.taesd.empty() ? "AutoencoderKL" : "TAESD", ms_since(t0));
  return m;
}

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

// Row `row` of a Stream output [f, H, W, 3] (host f32 in [0, 1]) as an 8-bit image.
Image output_image(const Tensor& out, int64_t row) {
  SD_CHECK(out.rank() == 4 && out.dim(3) == 3 && row < out.dim(0), "stream output has shape ",
           out.shape().str());
  Image img;
  img.height = int(out.dim(1));
  img.width = int(out.dim(2));
  const int64_t n = out.dim(1) * out.dim(2) * 3;
  img.rgb.resize(size_t(n));
  const float* src = out.data_as<float>() + row * n;
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::clamp(src[i], 0.f, 1.f);  // NaN -> 0 by the comparisons below
    img.rgb[size_t(i)] = v > 0 ? uint8_t(std::lround(v * 255.f)) : uint8_t(0);
  }
  return img;
}

void print_summary(const StreamRunStats& s) {
  std::printf(
      "frames %lld, skipped %lld, dropped %lld, %.2f fps; latency mean %.1f ms, p50 %.1f ms, "
      "p99 %.1f ms\n",
      static_cast<long long>(s.frames_written), static_cast<long long>(s.frames_skipped),
      static_cast<long long>(s.frames_dropped), s.fps, s.latency_mean_ms, s.latency_p50_ms,
      s.latency_p99_ms);
}

void run_img2img(const StreamArgs& a) {
  const StreamSettings settings = settings_from(a);
  check_model_folder(a);
  std::vector<fs::path> inputs;
  std::vector<fs::path> outputs;
  if (fs::is_directory(a.input)) {
    for (const auto& e : fs::directory_iterator(a.input))
      if (e.is_regular_file() && is_image_file(e.path())) inputs.push_back(e.path());
    std::sort(inputs.begin(), inputs.end());
    SD_CHECK(!inputs.empty(), "--input folder '", a.input, "' has no .png / .jpg images");
    SD_CHECK(!fs::exists(a.output) || fs::is_directory(a.output), "--output '", a.output,
             "' must be a folder when --input is a folder");
    fs::create_directories(a.output);
    for (const fs::path& p : inputs) outputs.push_back(fs::path(a.output) / p.filename());
  } else {
    SD_CHECK(fs::is_regular_file(a.input), "--input '", a.input,
             "' is neither a file nor a folder");
    SD_CHECK(is_image_file(a.output), "--output '", a.output, "' must end in .png, .jpg or .jpeg");
    inputs.push_back(a.input);
    outputs.push_back(a.output);
  }

  LoadedModels m = load_models(a);
  Stream stream(*m.backend, *m.unet, *m.codec, m.text.get(), settings);
  auto t0 = std::chrono::steady_clock::now();
  stream.prepare(a.prompt, a.negative);
  std::printf("prepared %dx%d, t_index_list of %zu, cfg %s in %.0f ms\n", a.width, a.height,
              a.t_index.size(), a.cfg.c_str(), ms_since(t0));

  const int warmup = settings.use_denoising_batch ? int(a.t_index.size()) - 1 : 0;
  StreamStages stages;
  stages.read = [&](Frame& f) {
    if (f.index >= int64_t(inputs.size())) return false;
    f.name = inputs[size_t(f.index)].filename().string();
    f.path = inputs[size_t(f.index)].string();
    return true;
  };
  stages.preprocess = [&](Frame& f) {
    f.tensor = image_to_tensor(resize_cover(read_image(f.path), a.width, a.height));
  };
  stages.denoise = [&](Frame& f) {
    if (f.index == 0)
      for (int i = 0; i < warmup; ++i) stream.img2img_tensor(f.tensor);
    const int64_t skipped_before = stream.skipped_frames();
    f.tensor = stream.img2img_tensor(f.tensor);
    f.skipped = stream.skipped_frames() > skipped_before;
  };
  stages.write = [&](Frame& f) {
    write_image(outputs[size_t(f.index)].string(), output_image(f.tensor, 0));
  };
  StreamRunOptions options;
  options.input_policy = QueuePolicy::Block;
  options.on_frame = [&](const Frame& f, const StreamRunStats& s) {
    std::printf("\rframe %lld/%zu  %.2f fps", static_cast<long long>(f.index + 1), inputs.size(),
                s.fps);
    std::fflush(stdout);
  };
  const StreamRunStats stats = run_stream(stages, options);
  std::printf("\n");
  print_summary(stats);
}

void run_txt2img(const StreamArgs& a) {
  const StreamSettings settings = settings_from(a);
  check_model_folder(a);
  SD_CHECK(a.frames >= 1, "--frames must be at least 1, got ", a.frames);
  SD_CHECK(is_image_file(a.output), "--output '", a.output, "' must end in .png, .jpg or .jpeg");
  LoadedModels m = load_models(a);
  Stream stream(*m.backend, *m.unet, *m.codec, m.text.get(), settings);
  stream.prepare(a.prompt, a.negative);
  const fs::path out(a.output);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  std::vector<double> ms;
  for (int k = 0; k < a.frames; ++k) {
    const auto t0 = std::chrono::steady_clock::now();
    const Tensor images = a.turbo ? stream.txt2img_sd_turbo() : stream.txt2img();
    ms.push_back(ms_since(t0));
    fs::path path = out;
    if (a.frames > 1) {
      char suffix[32];
      std::snprintf(suffix, sizeof suffix, "_%03d", k);
      path = out.parent_path() / (out.stem().string() + suffix + out.extension().string());
    }
    write_image(path.string(), output_image(images, 0));
    std::printf("\rframe %d/%d  %.1f ms", k + 1, a.frames, ms.back());
    std::fflush(stdout);
  }
  double mean = 0;
  for (double v : ms) mean += v / double(ms.size());
  std::printf("\nframes %d; latency mean %.1f ms, p50 %.1f ms, p99 %.1f ms\n", a.frames, mean,
              percentile(ms, 50), percentile(ms, 99));
}

// Options shared by both subcommands.
void add_stream_options(CLI::App& cmd, StreamArgs& a) {
  cmd.add_option("--model", a.model,
                 "Diffusers model folder (unet/, text_encoder/, tokenizer/, vae/)")
      ->required();
  cmd.add_option("--taesd", a.taesd, "TAESD folder to use instead of the model's vae/");
  cmd.add_option("--prompt", a.prompt, "Prompt")->required();
  cmd.add_option("--negative", a.negative, "Negative prompt (cfg full / initialize)");
  cmd.add_option("--t-index", a.t_index, "Denoising steps used, e.g. 32,45")
      ->delimiter(',')
      ->capture_default_str();
  cmd.add_option("--steps", a.steps, "Scheduler steps (num_inference_steps)")
      ->capture_default_str();
  cmd.add_option("--cfg", a.cfg, "Guidance: none, full, self or initialize")
      ->check(CLI::IsMember({"none", "full", "self", "initialize"}))
      ->capture_default_str();
  cmd.add_option("--guidance", a.guidance, "Guidance scale")->capture_default_str();
  cmd.add_option("--delta", a.delta, "RCFG delta")->capture_default_str();
  cmd.add_option("--seed", a.seed, "Noise seed")->capture_default_str();
  cmd.add_option("--width", a.width, "Width (multiple of 8)")->capture_default_str();
  cmd.add_option("--height", a.height, "Height (multiple of 8)")->capture_default_str();
  add_backend_options(cmd, a.backend);
}

}  // namespace

void register_stream(CLI::App& app) {
  auto img = std::make_shared<StreamArgs>();
  CLI::App* i2i = app.add_subcommand("img2img", "StreamDiffusion img2img on an image or a folder");
  add_stream_options(*i2i, *img);
  i2i->add_option("--input", img->input, "Input image or folder of images")->required();
  i2i->add_option("--output", img->output, "Output image, or folder for a folder input")
      ->required();
  i2i->add_option("--ssf-threshold", img->ssf_threshold,
                  "Turn the similarity filter on with this threshold (e.g. 0.98)")
      ->each([img](const std::string&) { img->ssf = true; });
  i2i->add_option("--ssf-max-skip", img->ssf_max_skip,
                  "Similarity filter: most consecutive frames skipped")
      ->capture_default_str();
  i2i->callback([img] { run_img2img(*img); });

  auto txt = std::make_shared<StreamArgs>();
  CLI::App* t2i = app.add_subcommand("txt2img", "StreamDiffusion txt2img");
  add_stream_options(*t2i, *txt);
  t2i->add_option("--output", txt->output, "Output image (.png / .jpg)")->required();
  t2i->add_option("--frames", txt->frames, "Images to generate (_000, _001, ... when several)")
      ->capture_default_str();
  t2i->add_flag("--turbo", txt->turbo,
                "One-step sd-turbo txt2img (x0 = (x - b*eps) / a at the single t-index, no "
                "LCM boundary condition), as the original's txt2img_sd_turbo");
  t2i->callback([txt] { run_txt2img(*txt); });
}

}  // namespace sd::cli
