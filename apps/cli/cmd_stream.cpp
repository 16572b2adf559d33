// `streamdiff img2img`, `vid2vid` and `txt2img`: the StreamDiffusion pipeline on images/video.
//
// img2img takes one image, a folder of images (PNG / JPEG, in file-name order) or a video file
// and writes one output per input: an image, a folder (a folder in -> the same file names; a
// video in -> frame_000000.png, ...) or a video file at the input's frame rate (stream_io.h).
// vid2vid is img2img with positional IN OUT. Frames go through the threaded runner
// (read/decode -> resize_cover -> Stream -> encode + write) with the Block policy, so every
// frame is processed in order. With --live the input is played as a live source: frame k is
// offered at k / fps seconds after the start, and the runner's DropOldest policy (queues of one
// frame) discards the oldest waiting frame whenever the denoiser is slower.
// Before the first frame the stream is warmed up with that frame (len(t_index_list) - 1 calls
// in batched mode, as the original's examples do); with Stream Batch, output k still shows
// input k - (n - 1) (the pipeline's lag).
// txt2img writes --frames images (out.png, or out_000.png, out_001.png, ... for several).
//
// --model is a diffusers folder (unet/, text_encoder/, tokenizer/, and vae/ unless --taesd
// names a TAESD folder, then vae/ is not read) or a single-file LDM checkpoint (.safetensors;
// the built-in CLIP vocabulary). --lora PATH[:SCALE] fuses LoRA files (e.g. LCM-LoRA) into the
// UNet and text encoder after loading, in the order given.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "io/image.h"
#include "models/autoencoder_kl.h"
#include "models/ldm_checkpoint.h"
#include "models/lora.h"
#include "models/prompt_encoder.h"
#include "models/taesd.h"
#include "models/unet.h"
#include "pipeline/autoencoder_kl_codec.h"
#include "pipeline/stream.h"
#include "pipeline/stream_runner.h"
#include "stream_io.h"

namespace sd::cli {

namespace {

namespace fs = std::filesystem;

struct StreamArgs {
  std::string model, taesd, input, output, prompt, negative;
  std::vector<std::string> loras;  // PATH or PATH:SCALE
  std::string stats_json;          // img2img / vid2vid: write the run's numbers here
  bool lora_allow_unmatched = false;
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
  bool turbo = false;      // txt2img: the original's one-step txt2img_sd_turbo
  bool live = false;       // img2img / vid2vid: play the input in real time, drop the oldest
  std::string fps = "30";  // frame rate of image inputs ("30", "30000/1001")
  bool fps_given = false;
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

bool is_single_file(const StreamArgs& a) {
  return fs::is_regular_file(a.model);
}

void check_model_folder(const StreamArgs& a) {
  if (is_single_file(a)) {
    SD_CHECK(fs::path(a.model).extension() == ".safetensors", "--model '", a.model,
             "' is not a .safetensors checkpoint or a diffusers model folder (pickle .ckpt files "
             "are not loaded: convert them to .safetensors)");
    return;
  }
  SD_CHECK(fs::is_directory(a.model), "--model '", a.model,
           "' is not a folder (a diffusers model folder with unet/, text_encoder/, tokenizer/) "
           "or a single-file .safetensors checkpoint");
  SD_CHECK(!a.taesd.empty() || fs::is_directory(fs::path(a.model) / "vae"), "'", a.model,
           "' has no vae/ folder: give a TAESD folder with --taesd");
}

// "path" or "path:scale" (the last ':' followed by a number).
std::pair<std::string, float> parse_lora(const std::string& spec) {
  const size_t colon = spec.rfind(':');
  if (colon != std::string::npos && colon + 1 < spec.size()) {
    const std::string tail = spec.substr(colon + 1);
    char* end = nullptr;
    const float scale = std::strtof(tail.c_str(), &end);
    if (end && *end == '\0') {
      SD_CHECK(std::isfinite(scale), "--lora '", spec, "': scale is not a finite number");
      return {spec.substr(0, colon), scale};
    }
  }
  return {spec, 1.f};
}

void fuse_loras(const StreamArgs& a, LoadedModels& m) {
  for (const std::string& spec : a.loras) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto [path, scale] = parse_lora(spec);
    const LoraFile lora = LoraFile::load(path);
    const LoraFuseReport r = fuse_lora(lora, scale, m.unet.get(), &m.text->model_for_update(),
                                       a.lora_allow_unmatched, path);
    std::printf("fused LoRA %s (scale %g): %d UNet and %d text-encoder weights in %.0f ms\n",
                path.c_str(), double(scale), r.unet_layers, r.text_layers, ms_since(t0));
    if (!r.unmatched.empty())
      std::printf("  %zu LoRA layers matched no weight and were left out (first: %s)\n",
                  r.unmatched.size(), r.unmatched.front().c_str());
  }
}

LoadedModels load_models(const StreamArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  LoadedModels m;
  m.backend = make_backend(a.backend);
  std::unique_ptr<LdmCheckpoint> ckpt;
  if (is_single_file(a)) {
    ckpt = LdmCheckpoint::open(a.model);
    m.unet = ckpt->load_unet(*m.backend);
  } else {
    m.unet = UNet::load(a.model, *m.backend);
  }
  m.text = PromptEncoder::load(a.model, *m.backend);
  if (!a.taesd.empty()) {
    m.taesd = Taesd::load(a.taesd, *m.backend);
    m.codec = std::make_unique<TaesdCodec>(*m.taesd);
  } else {
    m.vae = ckpt ? ckpt->load_vae(*m.backend) : AutoencoderKL::load(a.model, *m.backend);
    m.codec = std::make_unique<AutoencoderKLCodec>(*m.vae);
  }
  std::printf("loaded %s (%s VAE) in %.0f ms\n", a.model.c_str(),
              a.taesd.empty() ? "AutoencoderKL" : "TAESD", ms_since(t0));
  fuse_loras(a, m);
  return m;
}

// "30", "12.5" or "30000/1001" as a fraction.
Rational parse_fps(const std::string& text) {
  Rational r;
  try {
    size_t used = 0, used_den = 0;
    const size_t slash = text.find('/');
    if (slash != std::string::npos) {
      const int num = std::stoi(text.substr(0, slash), &used);
      const int den = std::stoi(text.substr(slash + 1), &used_den);
      if (used == slash && used_den == text.size() - slash - 1) r = {num, den};
    } else {
      const double v = std::stod(text, &used);
      if (used == text.size() && v > 0 && v < 1e6) {
        r = {int(std::lround(v * 1000)), 1000};
        for (int d : {1, 2, 4, 5, 10, 100})  // the simplest exact form: 12.5 -> 25/2
          if (std::abs(v * d - std::round(v * d)) < 1e-9) {
            r = {int(std::lround(v * d)), d};
            break;
          }
      }
    }
  } catch (const std::logic_error&) {  // std::stoi / std::stod: not a number, out of range
  }
  SD_CHECK(r.valid(), "--fps '", text, "' is not a frame rate (e.g. 30, 12.5 or 30000/1001)");
  return r;
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

// The run's numbers as JSON, for scripts (benchmarks, integrations).
void write_stats_json(const std::string& path, const StreamRunStats& s, double load_ms,
                      double prepare_ms, const std::vector<double>& written_s) {
  nlohmann::json j;
  j["frames_read"] = s.frames_read;
  j["frames_written"] = s.frames_written;
  j["frames_skipped"] = s.frames_skipped;
  j["frames_dropped"] = s.frames_dropped;
  j["wall_s"] = s.wall_s;
  j["fps"] = s.fps;
  j["latency_ms"] = {{"mean", s.latency_mean_ms},
                     {"p50", s.latency_p50_ms},
                     {"p99", s.latency_p99_ms},
                     {"max", s.latency_max_ms}};
  j["load_ms"] = load_ms;
  j["prepare_ms"] = prepare_ms;
  j["written_s"] = written_s;
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  out.close();
  SD_CHECK(out.good(), "--stats-json: cannot write '", path, "'");
}

void run_img2img(const StreamArgs& a) {
  const StreamSettings settings = settings_from(a);
  check_model_folder(a);
  const Rational image_fps = parse_fps(a.fps);
  std::unique_ptr<FrameSource> source = open_source(a.input, image_fps);
  SD_CHECK(!(a.fps_given && source->is_video()), "--fps is for image inputs; the video '", a.input,
           "' keeps its own frame rate (", source->fps().num, "/", source->fps().den, ")");
  std::unique_ptr<FrameSink> sink = open_sink(a.output, *source, a.width, a.height, a.live);
  std::printf("input %s\n", source->describe().c_str());

  auto t0 = std::chrono::steady_clock::now();
  LoadedModels m = load_models(a);
  const double load_ms = ms_since(t0);
  Stream stream(*m.backend, *m.unet, *m.codec, m.text.get(), settings);
  t0 = std::chrono::steady_clock::now();
  stream.prepare(a.prompt, a.negative);
  const double prepare_ms = ms_since(t0);
  std::printf("prepared %dx%d, t_index_list of %zu, cfg %s in %.0f ms\n", a.width, a.height,
              a.t_index.size(), a.cfg.c_str(), prepare_ms);
  std::fflush(stdout);

  const int warmup = settings.use_denoising_batch ? int(a.t_index.size()) - 1 : 0;
  const Rational fps = source->fps();
  std::chrono::steady_clock::time_point live_start;
  StreamStages stages;
  stages.read = [&](Frame& f) {
    if (!source->next(f)) return false;
    if (a.live) {  // offer frame k at k / fps seconds, as a camera would deliver it
      if (f.index == 0) live_start = std::chrono::steady_clock::now();
      std::this_thread::sleep_until(
          live_start + std::chrono::microseconds(f.index * 1000000LL * fps.den / fps.num));
    }
    return true;
  };
  stages.preprocess = [&](Frame& f) {
    f.tensor = image_to_tensor(resize_cover(take_input_image(f), a.width, a.height));
  };
  stages.denoise = [&](Frame& f) {
    if (f.index == 0)
      for (int i = 0; i < warmup; ++i) stream.img2img_tensor(f.tensor);
    const int64_t skipped_before = stream.skipped_frames();
    f.tensor = stream.img2img_tensor(f.tensor);
    f.skipped = stream.skipped_frames() > skipped_before;
  };
  stages.write = [&](Frame& f) { sink->write(f, output_image(f.tensor, 0)); };
  StreamRunOptions options;
  options.input_policy = a.live ? QueuePolicy::DropOldest : QueuePolicy::Block;
  if (a.live) options.queue_capacity = 1;  // the denoiser gets the freshest frame
  ProgressLine progress(source->estimated_count());
  std::vector<double> written_s;  // when each output was written, from the run's start
  written_s.reserve(size_t(std::max<int64_t>(source->estimated_count(), 0)) + 16);
  const auto run_start = std::chrono::steady_clock::now();
  options.on_frame = [&](const Frame& f, const StreamRunStats& s) {
    progress.frame(f, s);
    written_s.push_back(ms_since(run_start) / 1000.0);
  };
  const StreamRunStats stats = run_stream(stages, options);
  progress.finish();
  sink->close();
  print_summary(stats);
  if (!a.stats_json.empty()) write_stats_json(a.stats_json, stats, load_ms, prepare_ms, written_s);
  std::printf("wrote %s\n", sink->describe().c_str());
}

void run_txt2img(const StreamArgs& a) {
  const StreamSettings settings = settings_from(a);
  check_model_folder(a);
  SD_CHECK(a.frames >= 1, "--frames must be at least 1, got ", a.frames);
  SD_CHECK(is_image_path(a.output), "--output '", a.output, "' must end in .png, .jpg or .jpeg");
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
    std::fprintf(stderr, "\rframe %d/%d  %.1f ms", k + 1, a.frames, ms.back());
    std::fflush(stderr);
  }
  std::fprintf(stderr, "\n");
  double mean = 0;
  for (double v : ms) mean += v / double(ms.size());
  std::printf("frames %d; latency mean %.1f ms, p50 %.1f ms, p99 %.1f ms\n", a.frames, mean,
              percentile(ms, 50), percentile(ms, 99));
}

// Options shared by both subcommands.
void add_stream_options(CLI::App& cmd, StreamArgs& a) {
  cmd.add_option("--model", a.model,
                 "Diffusers model folder (unet/, text_encoder/, tokenizer/, vae/) or a "
                 "single-file .safetensors checkpoint (SD 1.x / 2.x)")
      ->required();
  cmd.add_option("--lora", a.loras,
                 "LoRA file to fuse, PATH or PATH:SCALE (repeatable; e.g. LCM-LoRA for SD 1.5)");
  cmd.add_flag("--lora-allow-unmatched", a.lora_allow_unmatched,
               "Fuse a LoRA even when some of its layers match no weight (they are listed)");
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

// Options of img2img and vid2vid besides the input and output.
void add_img2img_options(CLI::App& cmd, const std::shared_ptr<StreamArgs>& a) {
  add_stream_options(cmd, *a);
  cmd.add_option("--ssf-threshold", a->ssf_threshold,
                 "Turn the similarity filter on with this threshold (e.g. 0.98)")
      ->each([a](const std::string&) { a->ssf = true; });
  cmd.add_option("--ssf-max-skip", a->ssf_max_skip,
                 "Similarity filter: most consecutive frames skipped")
      ->capture_default_str();
  cmd.add_option("--stats-json", a->stats_json,
                 "Write the run's numbers (frames, fps, latency, load/prepare ms, per-frame "
                 "output times) to this JSON file");
  cmd.add_flag("--live", a->live,
               "Play the input as a live source at its frame rate; frames the denoiser cannot "
               "keep up with are dropped (oldest first) and counted");
  cmd.add_option("--fps", a->fps,
                 "Frame rate of image inputs, for a video output and --live (a video input "
                 "keeps its own)")
      ->each([a](const std::string&) { a->fps_given = true; })
      ->capture_default_str();
}

}  // namespace

void register_stream(CLI::App& app) {
  auto img = std::make_shared<StreamArgs>();
  CLI::App* i2i = app.add_subcommand(
      "img2img", "StreamDiffusion img2img on an image, a folder of images or a video");
  add_img2img_options(*i2i, img);
  i2i->add_option("--input", img->input, "Input image, folder of images, or video file")
      ->required();
  i2i->add_option("--output", img->output,
                  "Output image (image input), folder, or video file (.mp4 .mkv .mov .avi .webm)")
      ->required();
  i2i->callback([img] { run_img2img(*img); });

  auto vid = std::make_shared<StreamArgs>();
  CLI::App* v2v = app.add_subcommand(
      "vid2vid", "StreamDiffusion img2img on a video: IN OUT, the output at the input's fps");
  add_img2img_options(*v2v, vid);
  v2v->add_option("input", vid->input, "Input video file")->required();
  v2v->add_option("output", vid->output, "Output video file, or folder of PNG frames")->required();
  v2v->callback([vid] {
    SD_CHECK(is_video_path(vid->input) && !fs::is_directory(vid->input), "vid2vid: '", vid->input,
             "' is not a video file (.mp4 .mkv .mov .avi .webm .gif ...); use img2img");
    run_img2img(*vid);
  });

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
