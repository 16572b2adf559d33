// `streamdiff img2img`, `vid2vid` and `txt2img`: the StreamDiffusion pipeline on images, video,
// streams and cameras, written on the public API.
//
// img2img takes one image, a folder of images, a video file, a stream (- for stdin, a FIFO) or a
// camera (/dev/video*), and writes one output per input: an image, a folder, a video file at
// the input's frame rate, or a stream on stdout (stream_io.h). vid2vid is img2img with
// positional IN OUT. Every check that can be made before loading is made first
// (stream_settings.h), the frames then go through the stream's asynchronous mode
// (img2img_run.h). The stream warms up on the first frame, so every input frame gets an output;
// with Stream Batch, output k shows input k - (n - 1) (the pipeline's lag).
// txt2img writes --frames images (out.png, or out_000.png, out_001.png, ... for several).
//
// Ctrl-C / SIGTERM (interrupt.h) end a run cleanly: the frames done are written, a video is
// finished as a playable file, the summary and --stats-json are written, and the exit code is
// 128 + the signal.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "commands.h"
#include "img2img_run.h"
#include "interrupt.h"
#include "paths.h"
#include "preview.h"
#include "prompt_input.h"
#include "run_report.h"
#include "stream_io.h"
#include "stream_settings.h"
#include "streamdiff/media.hpp"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

Rational fps_arg(const std::string& fps) {
  try {
    return parse_frame_rate(fps);
  } catch (const Error& e) {
    throw Error(e.status(), std::string("--fps: ") + e.what());
  }
}

// Loads the model and prepares the stream (which keeps the model alive), with a line for each;
// an interrupt while loading ends the run (nothing was written yet).
Stream prepare(const StreamPlan& plan, RunReport& report) {
  auto t0 = Clock::now();
  const Model model = load_model(plan);
  report.load_ms = ms_since(t0);
  if (stop_requested()) {
    say("interrupted while loading the model; nothing was written\n");
    throw ExitStatus{interrupted_exit_code()};
  }
  say("preparing %dx%d (prompt, noise, memory plan) ...\n", plan.config.width, plan.config.height);
  t0 = Clock::now();
  Stream stream(model, plan.config);
  report.prepare_ms = ms_since(t0);
  say("prepared in %.1f s\n", report.prepare_ms / 1000.0);
  return stream;
}

// Finishes the output, prints the summary and the --stats-json file, and returns the exit code.
int finish(const StreamArgs& a, FrameSink& sink, RunReport& report) {
  try {
    sink.close();
  } catch (const Error& e) {
    if (e.status() != Status::Closed) throw;
    report.ended = "stdout closed";
  }
  print_summary(report);
  if (!a.stats_json.empty()) write_stats_json(a.stats_json, report);
  if (report.ended == "interrupted")
    say("interrupted after %lld frames; wrote %s\n", static_cast<long long>(report.written),
        sink.describe().c_str());
  else if (report.ended == "stdout closed")
    say("stdout was closed by its reader after %lld frames; stopped\n",
        static_cast<long long>(report.written));
  else
    say("wrote %s\n", sink.describe().c_str());
  if (report.unreadable > 0)
    warn("%lld input images could not be read and were skipped (listed above)\n",
         static_cast<long long>(report.unreadable));
  if (!report.input_damage.empty())
    warn("the input was damaged: %s; the %lld frames read were processed\n",
         report.input_damage.c_str(), static_cast<long long>(report.written));
  if (report.ended == "interrupted") return interrupted_exit_code();
  return report.unreadable > 0 || !report.input_damage.empty() ? kExitSkippedInputs : 0;
}

void run_img2img(StreamArgs& a) {
  if (a.output == "-") send_messages_to_stderr();  // stdout carries the video
  resolve_model_arg(a.model, "--model", a.backend.pull);
  check_input_arg(a.input);
  check_output_arg(a.output, "--output", a.input, true);
  if (!a.stats_json.empty()) check_output_arg(a.stats_json, "--stats-json", a.input);
  const StreamPlan plan = plan_stream(a, StreamMode::Img2img);
  SourceOptions so;
  so.image_fps = fps_arg(a.fps);
  so.fps_given = a.fps_given;
  so.video = {a.input_format, a.input_size, a.input_pixel_format, ""};
  std::unique_ptr<FrameSource> source = open_source(a.input, so);
  check(!(a.fps_given && source->is_video() && !source->is_stream()),
        "--fps is for image inputs and streams; the video '", a.input,
        "' keeps its own frame rate (", source->fps().num, "/", source->fps().den, ")");
  const bool live = a.live || source->is_camera();
  std::unique_ptr<FrameSink> sink =
      open_sink(a.output, *source, a.width, a.height, live, a.output_format);
  say("input %s%s\n", source->describe().c_str(), live && !a.live ? " (a camera: --live)" : "");
  std::unique_ptr<Preview> preview;
  if (a.preview) preview = std::make_unique<Preview>("streamdiff " + a.input);
  install_interrupt_handlers();

  RunReport report;
  Stream stream = prepare(plan, report);
  // --preview: lines on stdin are prompts, unless stdin is the video.
  std::unique_ptr<PromptInput> prompts;
  if (a.preview && a.input != "-") prompts = std::make_unique<PromptInput>(stream);
  bool left_behind = false;
  run_frames(stream, *source, *sink, {live, a.width, a.height, preview.get(), plan.config.seed},
             report, left_behind);
  prompts.reset();
  if (preview) preview->close();
  const int code = finish(a, *sink, report);
  if (left_behind) {  // see run_frames(): end without destroying what the reader uses
    std::fflush(nullptr);
    std::_Exit(code);
  }
  if (code != 0) throw ExitStatus{code};
}

void run_txt2img(StreamArgs& a) {
  resolve_model_arg(a.model, "--model", a.backend.pull);
  check_output_arg(a.output, "--output");
  check(is_image_path(a.output), "--output '", a.output, "' must end in .png, .jpg or .jpeg");
  const StreamPlan plan = plan_stream(a, StreamMode::Txt2img);
  create_parent_folder(a.output, "--output");
  install_interrupt_handlers();
  RunReport report;
  Stream stream = prepare(plan, report);
  const fs::path out(a.output);
  Image img;
  img.width = a.width;
  img.height = a.height;
  img.rgb.resize(size_t(a.width) * size_t(a.height) * 3);
  int done = 0;
  for (; done < a.frames && !stop_requested(); ++done) {
    const FrameInfo info = stream.txt2img(img.mutable_view(), plan.turbo);
    fs::path path = out;
    if (a.frames > 1) {
      char suffix[32];
      std::snprintf(suffix, sizeof suffix, "_%03d", done);
      path = out.parent_path() / (out.stem().string() + suffix + out.extension().string());
    }
    write_image(path.string(), img);
    std::fprintf(stderr, "\rframe %d/%d  %.1f ms", done + 1, a.frames, info.latency_ms);
    std::fflush(stderr);
  }
  std::fprintf(stderr, "\n");
  const StreamStats s = stream.stats();
  say("frames %d; latency mean %.1f ms, p50 %.1f ms, p99 %.1f ms\n", done, s.latency_mean_ms,
      s.latency_p50_ms, s.latency_p99_ms);
  if (stop_requested()) {
    say("interrupted after %d of %d images\n", done, a.frames);
    throw ExitStatus{interrupted_exit_code()};
  }
}

}  // namespace

void register_stream(CLI::App& app) {
  auto img = std::make_shared<StreamArgs>();
  CLI::App* i2i = app.add_subcommand(
      "img2img",
      "StreamDiffusion img2img on an image, a folder of images, a video, a stream or a camera");
  add_img2img_options(*i2i, img);
  i2i->add_option("--input", img->input,
                  "Input image, folder of images, video file, - (stdin stream), FIFO or camera "
                  "(/dev/video*)")
      ->required();
  i2i->add_option("--output", img->output,
                  "Output image (image input), folder, video file (.mp4 .mkv .mov .avi .webm "
                  ".y4m) or - (stdout, see --output-format)")
      ->required();
  i2i->callback([img, i2i] {
    note_given_flags(*i2i, *img);
    run_img2img(*img);
  });

  auto vid = std::make_shared<StreamArgs>();
  CLI::App* v2v = app.add_subcommand(
      "vid2vid", "StreamDiffusion img2img on a video: IN OUT, the output at the input's fps");
  add_img2img_options(*v2v, vid);
  v2v->add_option("input", vid->input, "Input video file, - (stdin stream), FIFO or camera")
      ->required();
  v2v->add_option("output", vid->output, "Output video file, folder of PNG frames, or - (stdout)")
      ->required();
  v2v->callback([vid, v2v] {
    note_given_flags(*v2v, *vid);
    std::error_code ec;
    const bool stream =
        vid->input == "-" || fs::is_fifo(vid->input, ec) || is_camera_path(vid->input);
    check(stream || (is_video_path(vid->input) && !fs::is_directory(vid->input, ec)), "vid2vid: '",
          vid->input,
          "' is not a video file (.mp4 .mkv .mov .avi .webm .gif ...), a stream or a camera; "
          "use img2img for images");
    run_img2img(*vid);
  });

  auto txt = std::make_shared<StreamArgs>();
  CLI::App* t2i = app.add_subcommand("txt2img", "StreamDiffusion txt2img");
  add_stream_options(*t2i, *txt);
  t2i->add_option("--output", txt->output, "Output image (.png / .jpg)")->required();
  t2i->add_option("--frames", txt->frames, "Images to generate (_000, _001, ... when several)")
      ->capture_default_str();
  t2i->add_flag("--turbo", txt->turbo,
                "One-step sd-turbo txt2img (x0 = (x - b*eps) / a at the single --t-index, no "
                "LCM boundary condition), as the original's txt2img_sd_turbo; needs one "
                "--t-index and --cfg none (preset sd-turbo: on)");
  t2i->callback([txt, t2i] {
    note_given_flags(*t2i, *txt);
    run_txt2img(*txt);
  });
}

}  // namespace streamdiff::cli
