// `streamdiff serve`: the live server and browser UI (apps/serve/). Loads the model, listens on
// --host:--port (127.0.0.1:7860 by default) and serves until SIGINT / SIGTERM.
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "paths.h"
#include "serve/server.h"

namespace streamdiff::cli {

namespace {

struct ServeArgs {
  std::string model, taesd;
  std::vector<std::string> loras;
  serve::ServerOptions server;
  ModelOptions backend;
  std::vector<int> t_index;
  std::string cfg;
  float guidance = -1, delta = 1.f;
  int width = 512, height = 512;
  std::string prompt = "an oil painting, masterpiece, best quality";
  std::string negative = "blurry, low resolution, low quality";
  uint64_t seed = 2;
};

// The demo's settings for sd-turbo (SD 2.x family: img2img t_index [35, 45], cfg none; txt2img
// one step from pure noise) and StreamDiffusion's for SD 1.x + LCM-LoRA (t_index [32, 45], cfg
// self, guidance 1.2; txt2img four LCM steps); flags override them.
void set_stream_defaults(ServeArgs& a, const ModelInfo& info) {
  const bool turbo = info.family == "sd2";
  StreamConfig& i = a.server.img2img;
  i.width = a.width, i.height = a.height;
  i.prompt = a.prompt, i.negative_prompt = a.negative, i.seed = a.seed, i.delta = a.delta;
  i.t_index_list = !a.t_index.empty() ? a.t_index
                   : turbo            ? std::vector<int>{35, 45}
                                      : std::vector<int>{32, 45};
  i.cfg_type = parse_cfg_type(!a.cfg.empty() ? a.cfg : turbo ? "none" : "self");
  i.guidance_scale = a.guidance >= 0 ? a.guidance : 1.2f;
  StreamConfig& t = a.server.txt2img;
  t = i;
  t.t_index_list = turbo ? std::vector<int>{0} : std::vector<int>{0, 16, 32, 45};
  t.cfg_type = turbo ? CfgType::None : i.cfg_type;
  a.server.txt2img_turbo = turbo;
}

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

void run_serve(ServeArgs& a) {
  check(a.server.max_clients >= 1 && a.server.max_clients <= 64,
        "--max-clients must be in [1, 64], got ", a.server.max_clients);
  check(a.server.idle_timeout_s >= 0, "--timeout must be >= 0 seconds, got ",
        a.server.idle_timeout_s);
  // Resolved (and with --pull downloaded, interruptible) before the signals are blocked.
  ModelOptions o = a.backend;
  const std::string path = resolve_model_arg(a.model, "--model", a.backend.pull);
  if (!a.taesd.empty()) o.taesd = resolve_model_arg(a.taesd, "--taesd", a.backend.pull);
  for (const std::string& spec : a.loras) o.loras.push_back(check_lora_arg(spec, a.backend.pull));

  // The threads started from here on (model, network, engine) leave SIGINT / SIGTERM to the
  // sigwait() below, which stops the server cleanly.
  const sigset_t signals = stop_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  o.on_progress = [](const std::string& line) { std::printf("%s\n", line.c_str()); };
  Model model = Model::load(path, o);
  const ModelInfo info = model.info();
  set_stream_defaults(a, info);
  std::printf("loaded %s (%s, %s) in %.0f ms\n", a.model.c_str(), info.family.c_str(),
              info.backend.c_str(), info.load_ms);

  serve::Server server(model, a.server);
  const std::string host = a.server.host == "0.0.0.0" ? "127.0.0.1" : a.server.host;
  const std::string token = a.server.token.empty() ? "" : "/?token=" + a.server.token;
  std::printf("streamdiff serve: open http://%s:%d%s\n", host.c_str(), server.port(),
              token.c_str());
  if (!serve::is_loopback_host(a.server.host))
    std::fprintf(stderr,
                 "warning: listening on %s: every machine that can reach it can use the server%s"
                 "; browsers allow the camera only on http://localhost or over HTTPS\n",
                 a.server.host.c_str(),
                 a.server.token.empty() ? " (add --token SECRET to require a token)" : "");
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  std::printf("stopping (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  server.stop();
}

}  // namespace

void register_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "Live server and browser UI: webcam or screen img2img, txt2img as you type");
  cmd->add_option("--model", a->model,
                  "Diffusers model folder or single-file .safetensors checkpoint, or the Hugging "
                  "Face repository id of one (see `streamdiff pull`)")
      ->required();
  cmd->add_option("--taesd", a->taesd,
                  "TAESD folder (or repository id) to use instead of the model's vae/");
  cmd->add_option("--lora", a->loras, "LoRA file to fuse, PATH or PATH:SCALE (repeatable)");
  cmd->add_option("--host", a->server.host,
                  "Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every network)")
      ->capture_default_str();
  cmd->add_option("--port", a->server.port, "Port (0: any free port)")->capture_default_str();
  cmd->add_option("--max-clients", a->server.max_clients,
                  "Most clients at once; more get \"Server is full\"")
      ->capture_default_str();
  cmd->add_option("--token", a->server.token,
                  "Require this token on every route (?token=..., or Authorization: Bearer)");
  cmd->add_option("--timeout", a->server.idle_timeout_s,
                  "Seconds without a frame before a client's session ends (0: never)")
      ->capture_default_str();
  cmd->add_option("--allow-origin", a->server.allowed_origins,
                  "Another web origin allowed to open WebSockets (e.g. https://example.com)");
  cmd->add_option("--prompt", a->prompt, "The sessions' first prompt")->capture_default_str();
  cmd->add_option("--negative", a->negative, "The sessions' first negative prompt");
  cmd->add_option("--t-index", a->t_index,
                  "Denoising steps (default: 35,45 for SD 2.x / sd-turbo, 32,45 for SD 1.x)")
      ->delimiter(',');
  cmd->add_option("--cfg", a->cfg, "Guidance: none, full, self or initialize")
      ->check(CLI::IsMember({"none", "full", "self", "initialize"}));
  cmd->add_option("--guidance", a->guidance, "Guidance scale (default 1.2)");
  cmd->add_option("--delta", a->delta, "RCFG delta")->capture_default_str();
  cmd->add_option("--seed", a->seed, "The sessions' first seed")->capture_default_str();
  cmd->add_option("--width", a->width, "The sessions' first width")->capture_default_str();
  cmd->add_option("--height", a->height, "The sessions' first height")->capture_default_str();
  cmd->add_option("--jpeg-quality", a->server.jpeg_quality, "Quality of the output JPEGs")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  add_backend_options(*cmd, a->backend);
  cmd->callback([a] { run_serve(*a); });
}

}  // namespace streamdiff::cli
