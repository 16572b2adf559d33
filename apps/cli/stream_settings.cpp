// Options, presets and the checks made before loading (see stream_settings.h).
#include "stream_settings.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>

#include "commands.h"
#include "paths.h"

namespace streamdiff::cli {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxSize = 4096;  // the library's limit per side

struct Preset {
  const char* name;
  std::vector<int> img2img_t_index;
  std::vector<int> txt2img_t_index;
  const char* cfg;
  float guidance;
  bool txt2img_turbo;
};

// See stream_settings.h for where these values come from.
const Preset kPresets[] = {
    {"sd15-lcm", {32, 45}, {32, 45}, "self", 1.2f, false},
    {"sd-turbo", {35, 45}, {0}, "none", 1.2f, true},
};

const Preset& preset_named(const std::string& name) {
  for (const Preset& p : kPresets)
    if (name == p.name) return p;
  check(false, "--preset '", name, "' is not a preset (auto, sd-turbo, sd15-lcm)");
  return kPresets[0];
}

std::string list_str(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// --seed as an unsigned 64-bit number; negatives and overflow are refused (CLI11's integer
// conversion would wrap -1 around to 2^64 - 1).
uint64_t parse_seed(const std::string& text) {
  uint64_t seed = 0;
  const char* first = text.data();
  const char* last = first + text.size();
  const auto [end, ec] = std::from_chars(first, last, seed);
  check(!text.empty() && ec == std::errc() && end == last, "--seed '", text,
        "' is not a seed: give a whole number in [0, 18446744073709551615]",
        !text.empty() && text[0] == '-' ? " (negative seeds are not allowed)" : "",
        ec == std::errc::result_out_of_range ? " (too large)" : "");
  return seed;
}

// The nearest multiples of m around v, for the message.
std::string multiples_near(int v, int m) {
  const int lo = std::max(m, v / m * m), hi = lo + m;
  return std::to_string(lo) + " or " + std::to_string(hi);
}

// Checks that need nothing but the arguments.
void check_settings(const StreamArgs& a, StreamMode mode) {
  for (const auto& [flag, v] : {std::pair{"--width", a.width}, std::pair{"--height", a.height}})
    check(v > 0 && v <= kMaxSize, flag, " ", v, " must be in [1, ", kMaxSize, "]");
  check(a.steps >= 1 && a.steps <= 50, "--steps ", a.steps, " must be in [1, 50]");
  check(!a.t_index.empty(), "--t-index needs at least one index");
  for (size_t i = 0; i < a.t_index.size(); ++i) {
    const int t = a.t_index[i];
    check(t >= 0 && t < a.steps, "--t-index ", t, " must be in [0, --steps ", a.steps, ")");
    check(i == 0 || t > a.t_index[i - 1], "--t-index ", list_str(a.t_index),
          " must be strictly ascending (each step once, from noisiest to cleanest): ",
          a.t_index[i - 1], " then ", t);
  }
  check(std::isfinite(a.guidance) && a.guidance >= 0, "--guidance ", a.guidance,
        " must be a finite number >= 0");
  check(std::isfinite(a.delta), "--delta ", a.delta, " must be a finite number");
  check(a.ssf_threshold > 0 && a.ssf_threshold <= 1, "--ssf-threshold ", a.ssf_threshold,
        " must be in (0, 1]");
  check(a.ssf_max_skip >= 0, "--ssf-max-skip ", a.ssf_max_skip, " must be >= 0");
  check(a.clip_skip >= 0, "--clip-skip ", a.clip_skip, " must be >= 0");
  check(a.backend.threads >= 0, "--threads ", a.backend.threads, " must be >= 0 (0 = all cores)");
  check(a.frames >= 1, "--frames ", a.frames, " must be at least 1");
  if (mode == StreamMode::Txt2img && a.turbo)
    check(a.t_index.size() == 1 && (a.cfg == "none" || a.guidance <= 1.f), "--turbo (one-step ",
          "sd-turbo txt2img) needs one --t-index (got ", list_str(a.t_index),
          ") and no guidance (--cfg none, got --cfg ", a.cfg, " with --guidance ", a.guidance, ")");
  parse_seed(a.seed);
}

// The dtype a load will choose, and why, for the settings line.
std::string dtype_note(const ModelOptions& o) {
  if (o.dtype != "auto") return o.dtype + " (--dtype)";
  if (o.device != "cpu") return "auto (the device decides; see the loaded line)";
  return cpu_has_native_bf16() ? "bf16 (auto: this CPU has AVX512-BF16)"
                               : "f32 (auto: this CPU has no AVX512-BF16)";
}

// --model, --taesd and --lora, and the settings against the model's configs.
ModelSummary check_model(const StreamArgs& a, StreamPlan& plan) {
  const bool pull = a.backend.pull;
  const std::string path = resolve_model_arg(a.model, "--model", pull);
  const std::string taesd = a.taesd.empty() ? "" : resolve_model_arg(a.taesd, "--taesd", pull);
  plan.model_options = a.backend;
  plan.model_options.taesd = taesd;
  plan.model_options.lora_allow_unmatched = a.lora_allow_unmatched;
  for (const std::string& spec : a.loras)
    plan.model_options.loras.push_back(check_lora_arg(spec, pull));
  ModelSummary m;
  try {
    m = inspect_model(path, taesd);
  } catch (const Error& e) {
    throw Error(e.status(), "--model '" + a.model + "': " + e.what());
  }
  check(m.has_vae || !a.taesd.empty(), "--model '", a.model,
        "' has no VAE (no vae/ folder): give a TAESD with --taesd");
  check(m.has_text_encoder, "--model '", a.model,
        "' has no text encoder (text_encoder/ folder or cond_stage_model.* tensors)");
  const int mult = m.size_multiple;
  for (const auto& [flag, v] : {std::pair{"--width", a.width}, std::pair{"--height", a.height}})
    check(v % mult == 0, flag, " ", v, " must be a multiple of ", mult,
          " for this model (the VAE's downscale times the UNet's; e.g. ", multiples_near(v, mult),
          ")");
  check(m.text_layers == 0 || a.clip_skip < m.text_layers, "--clip-skip ", a.clip_skip,
        " must be below the text encoder's ", m.text_layers, " layers");
  return m;
}

}  // namespace

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
                 "TAESD folder or file (or repository id, e.g. madebyollin/taesd) to use instead "
                 "of the model's vae/");
  cmd.add_option("--prompt", a.prompt, "Prompt")->required();
  cmd.add_option("--negative", a.negative, "Negative prompt (used by --cfg full / initialize)");
  cmd.add_option("--preset", a.preset,
                 "Defaults of --t-index, --cfg, --guidance (and --turbo) for a kind of model: "
                 "sd-turbo, sd15-lcm, or auto (sd-turbo when the model's name contains 'turbo')")
      ->check(CLI::IsMember({"auto", "sd-turbo", "sd15-lcm"}))
      ->capture_default_str();
  cmd.add_option("--t-index", a.t_index,
                 "Denoising steps used, ascending, e.g. 32,45 (default: the preset's)")
      ->delimiter(',');
  cmd.add_option("--steps", a.steps, "Scheduler steps (num_inference_steps, at most 50)")
      ->capture_default_str();
  cmd.add_option("--cfg", a.cfg, "Guidance: none, full, self or initialize (default: the preset's)")
      ->check(CLI::IsMember({"none", "full", "self", "initialize"}));
  cmd.add_option("--guidance", a.guidance, "Guidance scale, >= 0 (default: the preset's)");
  cmd.add_option("--delta", a.delta, "RCFG delta")->capture_default_str();
  cmd.add_option("--seed", a.seed, "Noise seed, 0 .. 2^64-1")->capture_default_str();
  cmd.add_option("--width", a.width, "Width (a multiple of the model's size multiple: 64 for SD)")
      ->capture_default_str();
  cmd.add_option("--height", a.height, "Height (a multiple of 64 for SD)")->capture_default_str();
  cmd.add_option("--clip-skip", a.clip_skip,
                 "Text-encoder layers skipped at the end (1 = penultimate layer, as diffusers)")
      ->capture_default_str();
  add_backend_options(cmd, a.backend);
}

void add_img2img_options(CLI::App& cmd, const std::shared_ptr<StreamArgs>& a) {
  add_stream_options(cmd, *a);
  cmd.add_option("--ssf-threshold", a->ssf_threshold,
                 "Turn the similarity filter on with this threshold (e.g. 0.98)")
      ->each([a](const std::string&) { a->ssf = true; });
  cmd.add_option("--ssf-max-skip", a->ssf_max_skip,
                 "Similarity filter: most consecutive frames skipped")
      ->capture_default_str();
  cmd.add_option("--stats-json", a->stats_json,
                 "Write the run's numbers (frames, fps, latency, compute time, load/prepare ms, "
                 "per-frame output times) to this JSON file");
  cmd.add_flag("--live", a->live,
               "Play the input as a live source at its frame rate; frames the denoiser cannot "
               "keep up with are dropped (oldest first) and counted (default for a camera)");
  cmd.add_option("--fps", a->fps,
                 "Frame rate of image inputs (for a video output and --live) and of streams that "
                 "state none (raw video, MJPEG); a video file keeps its own")
      ->each([a](const std::string&) { a->fps_given = true; })
      ->capture_default_str();
  cmd.add_option("--input-format", a->input_format,
                 "FFmpeg input format of a stream or camera: mjpeg, yuv4mpegpipe, rawvideo, "
                 "v4l2, ... (default: probed)");
  cmd.add_option("--input-size", a->input_size, "Frame size WxH of raw video or a camera mode");
  cmd.add_option("--input-pixel-format", a->input_pixel_format,
                 "Pixel format of raw video (e.g. rgb24, yuv420p) or of a camera (mjpeg, "
                 "yuyv422)");
  cmd.add_option("--output-format", a->output_format,
                 "Format of --output - (stdout): y4m, rawvideo (rgb24) or mjpeg")
      ->check(CLI::IsMember({"y4m", "rawvideo", "mjpeg"}))
      ->capture_default_str();
  cmd.add_flag("--preview", a->preview,
               "Show input and output side by side in a window (keys: n new seed, q quit); "
               "lines typed on stdin change the prompt");
}

void note_given_flags(const CLI::App& cmd, StreamArgs& a) {
  for (const char* flag : {"--t-index", "--cfg", "--guidance", "--turbo", "--fps"}) {
    const CLI::Option* o = cmd.get_option_no_throw(flag);
    if (o && o->count() > 0) a.given.insert(flag);
  }
}

StreamPlan plan_stream(StreamArgs& a, StreamMode mode) {
  StreamPlan plan;
  // The preset first: its values are what the checks below see, unless a flag was given.
  ModelSummary summary;
  const bool txt = mode == StreamMode::Txt2img;
  std::string why;
  if (a.preset == "auto") {
    // The model is inspected twice (here for the name, below with the checks): milliseconds.
    const std::string path = resolve_model_arg(a.model, "--model", a.backend.pull);
    try {
      summary = inspect_model(
          path, a.taesd.empty() ? "" : resolve_model_arg(a.taesd, "--taesd", a.backend.pull));
    } catch (const Error&) {  // reported with its flag by check_model() below
      summary.suggested_preset = "sd15-lcm";
    }
    plan.preset = summary.suggested_preset;
    why = " (auto: the model's name '" + summary.name + "' " +
          (plan.preset == "sd-turbo" ? "contains" : "does not contain") + " 'turbo')";
  } else {
    plan.preset = a.preset;
  }
  const Preset& p = preset_named(plan.preset);
  if (!a.given.count("--t-index")) a.t_index = txt ? p.txt2img_t_index : p.img2img_t_index;
  if (!a.given.count("--cfg")) a.cfg = p.cfg;
  if (!a.given.count("--guidance")) a.guidance = p.guidance;
  // The preset's one-step turbo applies only while its one-index, no-guidance settings hold.
  plan.turbo = a.turbo || (txt && p.txt2img_turbo && a.t_index.size() == 1 && a.cfg == "none");
  a.turbo = a.turbo && txt;

  check_settings(a, mode);
  plan.model = check_model(a, plan);

  StreamConfig& s = plan.config;
  s.width = a.width;
  s.height = a.height;
  s.t_index_list = a.t_index;
  s.num_inference_steps = a.steps;
  s.cfg_type = parse_cfg_type(a.cfg);
  s.guidance_scale = a.guidance;
  s.delta = a.delta;
  s.seed = parse_seed(a.seed);
  s.prompt = a.prompt;
  s.negative_prompt = a.negative;
  s.similarity_filter = a.ssf;
  s.similarity_threshold = a.ssf_threshold;
  s.similarity_max_skip = a.ssf_max_skip;
  s.clip_skip = a.clip_skip;

  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const int threads = a.backend.threads > 0 ? a.backend.threads : int(cores);
  const bool guided = a.cfg == "full" || a.cfg == "initialize";
  say("settings: preset %s%s, t_index %s of %d steps, cfg %s, guidance %g%s, seed %llu, %dx%d%s, "
      "dtype %s, threads %d\n",
      plan.preset.c_str(), why.c_str(), list_str(a.t_index).c_str(), a.steps, a.cfg.c_str(),
      double(a.guidance), a.cfg == "none" ? " (unused with cfg none)" : "",
      static_cast<unsigned long long>(s.seed), a.width, a.height,
      txt && plan.turbo ? ", one-step turbo" : "", dtype_note(a.backend).c_str(), threads);
  if (!a.negative.empty() && !guided)
    warn("--negative has no effect with --cfg %s (only full and initialize use it)\n",
         a.cfg.c_str());
  if (unsigned(threads) > cores)
    warn(
        "--threads %d is more than this machine's %u hardware threads: oversubscribed threads "
        "wait on each other and run far slower (64 threads on 2 cores ran 10x slower)\n",
        threads, cores);
  return plan;
}

Model load_model(const StreamPlan& plan) {
  const auto t0 = Clock::now();
  ModelOptions o = plan.model_options;
  o.on_progress = [t0](const std::string& line) {
    say("  [%5.1f s] %s\n", std::chrono::duration<double>(Clock::now() - t0).count(), line.c_str());
  };
  say("loading %s (%s)\n", plan.model.path.c_str(), plan.model.kind.c_str());
  Model m = Model::load(plan.model.path, o);
  const ModelInfo info = m.info();
  say("loaded in %.1f s: %s VAE, backend %s\n",
      std::chrono::duration<double>(Clock::now() - t0).count(),
      info.vae == "taesd" ? "TAESD" : "AutoencoderKL", info.backend.c_str());
  return m;
}

}  // namespace streamdiff::cli
