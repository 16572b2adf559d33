// `streamdiff img2img`, `vid2vid` and `txt2img`: the StreamDiffusion pipeline on images/video,
// written on the public API.
//
// img2img takes one image, a folder of images (PNG / JPEG, in file-name order) or a video file
// and writes one output per input: an image, a folder (a folder in -> the same file names; a
// video in -> frame_000000.png, ...) or a video file at the input's frame rate (stream_io.h).
// vid2vid is img2img with positional IN OUT. Frames go through the stream's asynchronous mode:
// a reader thread decodes and submits them, the stream's worker runs the model, and this thread
// polls the outputs and writes them; so reading, denoising and writing overlap. Files use the
// Block policy (every frame, in order). With --live the input is played as a live source: frame
// k is submitted at k / fps seconds after the start, and the DropOldest policy (a queue of one
// frame) discards the oldest waiting frame whenever the denoiser is slower. The stream warms up
// on the first frame, so every input frame gets an output; with Stream Batch, output k still
// shows input k - (n - 1) (the pipeline's lag).
// txt2img writes --frames images (out.png, or out_000.png, out_001.png, ... for several).
//
// --model is a diffusers folder (unet/, text_encoder/, tokenizer/, and vae/ unless --taesd
// names a TAESD folder, then vae/ is not read) or a single-file LDM checkpoint (.safetensors;
// the built-in CLIP vocabulary); it, --taesd and --lora may be Hugging Face repository ids in
// the cache (with --pull, those missing are downloaded first). --lora PATH[:SCALE] fuses LoRA files
// (e.g. LCM-LoRA) into the UNet and text encoder after loading, in the order given.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "pull_progress.h"
#include "stream_io.h"
#include "streamdiff/media.hpp"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

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
  ModelOptions backend;  // --device, --dtype, --threads
};

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Settings checks that need no model, so mistakes fail before the (slow) loading.
StreamConfig config_from(const StreamArgs& a) {
  check(a.width > 0 && a.height > 0 && a.width % 8 == 0 && a.height % 8 == 0,
        "--width / --height must be positive multiples of 8, got ", a.width, "x", a.height);
  check(a.steps >= 1, "--steps must be at least 1, got ", a.steps);
  check(!a.t_index.empty(), "--t-index needs at least one index");
  for (int t : a.t_index)
    check(t >= 0 && t < a.steps, "--t-index ", t, " must be in [0, --steps ", a.steps, ")");
  check(a.ssf_threshold > 0 && a.ssf_threshold <= 1, "--ssf-threshold must be in (0, 1], got ",
        a.ssf_threshold);
  StreamConfig s;
  s.width = a.width;
  s.height = a.height;
  s.t_index_list = a.t_index;
  s.num_inference_steps = a.steps;
  s.cfg_type = parse_cfg_type(a.cfg);
  s.guidance_scale = a.guidance;
  s.delta = a.delta;
  s.seed = a.seed;
  s.prompt = a.prompt;
  s.negative_prompt = a.negative;
  s.similarity_filter = a.ssf;
  s.similarity_threshold = a.ssf_threshold;
  s.similarity_max_skip = a.ssf_max_skip;
  return s;
}

// --model, --taesd and the --lora paths as local paths (repository ids resolved in the Hugging
// Face cache, pulled first with --pull), and the model path checked: before the input and
// output are opened.
void resolve_model_paths(StreamArgs& a) {
  a.model = local_model(a.model, a.backend.pull);
  if (!a.taesd.empty()) a.taesd = local_model(a.taesd, a.backend.pull);
  for (std::string& spec : a.loras) {
    const LoraSpec lora = parse_lora_spec(spec);
    const std::string path = local_model(lora.path, a.backend.pull);
    if (path != lora.path) spec = path + spec.substr(lora.path.size());  // keeps ":SCALE"
  }
  std::error_code ec;
  check(fs::exists(a.model, ec), "--model '", a.model,
        "' does not exist (a diffusers model folder or a single-file .safetensors checkpoint)");
}

Model load_model(const StreamArgs& a) {
  const auto t0 = Clock::now();
  ModelOptions o = a.backend;
  o.taesd = a.taesd;
  for (const std::string& spec : a.loras) o.loras.push_back(parse_lora_spec(spec));
  o.lora_allow_unmatched = a.lora_allow_unmatched;
  o.on_progress = [](const std::string& line) {
    if (line.rfind("fused LoRA", 0) == 0) std::printf("%s\n", line.c_str());
  };
  Model m = Model::load(a.model, o);
  std::printf("loaded %s (%s VAE) in %.0f ms\n", a.model.c_str(),
              a.taesd.empty() ? "AutoencoderKL" : "TAESD", ms_since(t0));
  return m;
}

void print_summary(const StreamStats& s, int64_t written, double fps) {
  std::printf(
      "frames %lld, skipped %lld, dropped %lld, %.2f fps; latency mean %.1f ms, p50 %.1f ms, "
      "p99 %.1f ms\n",
      static_cast<long long>(written), static_cast<long long>(s.skipped),
      static_cast<long long>(s.dropped), fps, s.latency_mean_ms, s.latency_p50_ms,
      s.latency_p99_ms);
}

// The run's numbers as JSON, for scripts (benchmarks, integrations).
void write_stats_json(const std::string& path, const StreamStats& s, int64_t written, double wall_s,
                      double load_ms, double prepare_ms, const std::vector<double>& written_s) {
  nlohmann::json j;
  j["frames_read"] = s.frames_in;
  j["frames_written"] = written;
  j["frames_skipped"] = s.skipped;
  j["frames_dropped"] = s.dropped;
  j["wall_s"] = wall_s;
  j["fps"] = wall_s > 0 ? double(written) / wall_s : 0;
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
  check(out.good(), "--stats-json: cannot write '", path, "'");
}

void run_img2img(StreamArgs a) {
  const StreamConfig config = config_from(a);
  resolve_model_paths(a);
  const Rational image_fps = parse_frame_rate(a.fps);
  std::unique_ptr<FrameSource> source = open_source(a.input, image_fps);
  check(!(a.fps_given && source->is_video()), "--fps is for image inputs; the video '", a.input,
        "' keeps its own frame rate (", source->fps().num, "/", source->fps().den, ")");
  std::unique_ptr<FrameSink> sink = open_sink(a.output, *source, a.width, a.height, a.live);
  std::printf("input %s\n", source->describe().c_str());

  auto t0 = Clock::now();
  Model model = load_model(a);
  const double load_ms = ms_since(t0);
  t0 = Clock::now();
  Stream stream(model, config);
  const double prepare_ms = ms_since(t0);
  std::printf("prepared %dx%d, t_index_list of %zu, cfg %s in %.0f ms\n", a.width, a.height,
              a.t_index.size(), a.cfg.c_str(), prepare_ms);
  std::fflush(stdout);

  AsyncOptions async;
  async.policy = a.live ? QueuePolicy::DropOldest : QueuePolicy::Block;
  async.queue_capacity = a.live ? 1 : 2;  // live: the denoiser gets the freshest frame
  stream.start(async);

  // The reader: decode, pace (--live), submit. Input names are kept for naming the outputs.
  std::mutex names_mu;
  std::vector<std::string> names;
  std::exception_ptr read_error;
  const Rational fps = source->fps();
  std::thread reader([&] {
    try {
      const auto start = Clock::now();
      for (int64_t index = 0;; ++index) {
        InputFrame f;
        f.index = index;
        if (!source->next(f)) break;
        {
          std::lock_guard<std::mutex> lock(names_mu);
          names.push_back(f.name);
        }
        if (a.live)  // offer frame k at k / fps seconds, as a camera would deliver it
          std::this_thread::sleep_until(
              start + std::chrono::microseconds(index * 1000000LL * fps.den / fps.num));
        if (!stream.submit(f.image.view(), index)) break;  // the worker stopped (an error)
      }
    } catch (...) {
      read_error = std::current_exception();
    }
    stream.end_input();
  });

  ProgressLine progress(source->estimated_count());
  std::vector<double> written_s;  // when each output was written, from the run's start
  written_s.reserve(size_t(std::max<int64_t>(source->estimated_count(), 0)) + 16);
  Image out;
  out.width = a.width;
  out.height = a.height;
  out.rgb.resize(size_t(a.width) * size_t(a.height) * 3);
  int64_t written = 0;
  const auto run_start = Clock::now();
  std::exception_ptr write_error, worker_error;
  try {
    FrameInfo info;
    while (stream.poll(out.mutable_view(), &info)) {
      std::string name;
      {
        std::lock_guard<std::mutex> lock(names_mu);
        name = names[size_t(info.tag)];
      }
      sink->write(info.tag, name, out);
      ++written;
      written_s.push_back(ms_since(run_start) / 1000.0);
      progress.frame(info.tag, written, stream.stats());
    }
  } catch (...) {
    write_error = std::current_exception();
  }
  try {
    stream.stop();  // releases a reader waiting in submit; rethrows the worker's error
  } catch (...) {
    worker_error = std::current_exception();
  }
  reader.join();
  for (const std::exception_ptr& e : {write_error, worker_error, read_error})
    if (e) std::rethrow_exception(e);
  progress.finish();
  sink->close();
  const StreamStats stats = stream.stats();
  const double wall_s = written_s.empty() ? 0 : written_s.back();
  print_summary(stats, written, wall_s > 0 ? double(written) / wall_s : 0);
  if (!a.stats_json.empty())
    write_stats_json(a.stats_json, stats, written, wall_s, load_ms, prepare_ms, written_s);
  std::printf("wrote %s\n", sink->describe().c_str());
}

void run_txt2img(StreamArgs a) {
  const StreamConfig config = config_from(a);
  check(a.frames >= 1, "--frames must be at least 1, got ", a.frames);
  resolve_model_paths(a);
  check(is_image_path(a.output), "--output '", a.output, "' must end in .png, .jpg or .jpeg");
  Model model = load_model(a);
  Stream stream(model, config);
  const fs::path out(a.output);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  Image img;
  img.width = a.width;
  img.height = a.height;
  img.rgb.resize(size_t(a.width) * size_t(a.height) * 3);
  for (int k = 0; k < a.frames; ++k) {
    const FrameInfo info = stream.txt2img(img.mutable_view(), a.turbo);
    fs::path path = out;
    if (a.frames > 1) {
      char suffix[32];
      std::snprintf(suffix, sizeof suffix, "_%03d", k);
      path = out.parent_path() / (out.stem().string() + suffix + out.extension().string());
    }
    write_image(path.string(), img);
    std::fprintf(stderr, "\rframe %d/%d  %.1f ms", k + 1, a.frames, info.latency_ms);
    std::fflush(stderr);
  }
  std::fprintf(stderr, "\n");
  const StreamStats s = stream.stats();
  std::printf("frames %d; latency mean %.1f ms, p50 %.1f ms, p99 %.1f ms\n", a.frames,
              s.latency_mean_ms, s.latency_p50_ms, s.latency_p99_ms);
}

// Options shared by both subcommands.
void add_stream_options(CLI::App& cmd, StreamArgs& a) {
  cmd.add_option("--model", a.model,
                 "Diffusers model folder (unet/, text_encoder/, tokenizer/, vae/) or a "
                 "single-file .safetensors checkpoint (SD 1.x / 2.x), or the Hugging Face "
                 "repository id of one (e.g. stabilityai/sd-turbo; see `streamdiff pull`)")
      ->required();
  cmd.add_option("--lora", a.loras,
                 "LoRA file to fuse, PATH or PATH:SCALE (repeatable; e.g. LCM-LoRA for SD 1.5)");
  cmd.add_flag("--lora-allow-unmatched", a.lora_allow_unmatched,
               "Fuse a LoRA even when some of its layers match no weight (they are listed)");
  cmd.add_option("--taesd", a.taesd,
                 "TAESD folder (or repository id, e.g. madebyollin/taesd) to use instead of the "
                 "model's vae/");
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
    check(is_video_path(vid->input) && !fs::is_directory(vid->input), "vid2vid: '", vid->input,
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

}  // namespace streamdiff::cli
