// `streamdiff encode-prompt`: tokenizes a prompt (and optionally a negative prompt), runs the
// text encoder and saves the embeddings as safetensors: "prompt_embeds" and
// "negative_prompt_embeds", f32 [1, 77, width] (diffusers' names and shapes).
#include <chrono>
#include <cstdio>
#include <map>
#include <string>

#include "commands.h"
#include "paths.h"
#include "streamdiff/tools.hpp"

namespace streamdiff::cli {

namespace {

struct EncodePromptArgs {
  std::string model;
  std::string text;
  std::string negative;
  bool has_negative = false;
  std::string out;
  int clip_skip = 0;
  ModelOptions backend;
};

void run_encode_prompt(const EncodePromptArgs& a) {
  const std::string model = resolve_model_arg(a.model, "--model", a.backend.pull);
  check_output_arg(a.out, "--out");
  check(a.clip_skip >= 0, "--clip-skip ", a.clip_skip, " must be >= 0");
  TextEncoder encoder = TextEncoder::load(model, a.backend);
  check(a.clip_skip <= encoder.num_layers(), "--clip-skip ", a.clip_skip, " must be in [0, ",
        encoder.num_layers(), "] for this text encoder");
  std::printf("backend: %s\ntext encoder: %s\n", encoder.backend().c_str(),
              encoder.description().c_str());

  std::map<std::string, TensorF32> out;
  auto encode = [&](const std::string& text, const char* name) {
    const auto t0 = std::chrono::steady_clock::now();
    TensorF32 e = encoder.encode(text, a.clip_skip);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %.1f ms -> [1, %lld, %lld]\n", name, ms, (long long)e.shape[0],
                (long long)e.shape[1]);
    e.shape.insert(e.shape.begin(), 1);
    out[name] = std::move(e);
  };
  encode(a.text, "prompt_embeds");
  if (a.has_negative) encode(a.negative, "negative_prompt_embeds");
  std::map<std::string, std::string> meta = {
      {"prompt", a.text}, {"clip_skip", std::to_string(a.clip_skip)}, {"model", a.model}};
  if (a.has_negative) meta["negative_prompt"] = a.negative;
  create_parent_folder(a.out, "--out");
  save_tensors(a.out, out, meta);
  std::printf("wrote %s\n", a.out.c_str());
}

}  // namespace

void register_encode_prompt(CLI::App& app) {
  auto args = std::make_shared<EncodePromptArgs>();
  CLI::App* cmd = app.add_subcommand(
      "encode-prompt",
      "Encode a prompt with a model's CLIP text encoder and save the embeddings (safetensors: "
      "prompt_embeds [1, 77, width] f32, and negative_prompt_embeds with --negative)");
  cmd->add_option("text", args->text, "The prompt (UTF-8; \"\" is the unconditional prompt)")
      ->required();
  cmd->add_option("--model", args->model,
                  "A diffusers model folder, its text_encoder/ folder, or a single-file SD 1.x / "
                  "2.x checkpoint (.safetensors)")
      ->required();
  cmd->add_option("--out", args->out, "Output .safetensors file")->required();
  cmd->add_option("--negative", args->negative, "Negative prompt, saved as negative_prompt_embeds");
  cmd->add_option("--clip-skip", args->clip_skip,
                  "Layers to skip at the end (diffusers' clip_skip: 1 = penultimate layer)")
      ->capture_default_str();
  add_backend_options(*cmd, args->backend);
  cmd->callback([args, cmd] {
    args->has_negative = cmd->count("--negative") > 0;
    run_encode_prompt(*args);
  });
}

}  // namespace streamdiff::cli
