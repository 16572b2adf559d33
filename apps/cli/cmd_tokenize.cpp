// `streamdiff tokenize`: prints the CLIP token ids of a prompt, as the text encoder gets them.
#include <cstdio>
#include <string>

#include "commands.h"
#include "pull_progress.h"
#include "streamdiff/tools.hpp"

namespace streamdiff::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string pad;
  std::string text;
  int max_len = 77;
  bool raw = false;
};

void run_tokenize(const TokenizeOptions& o) {
  Tokenizer tok = [&] {
    if (o.model.empty()) return Tokenizer::builtin(o.pad == "bang");
    check(o.pad.empty(),
          "tokenize: --pad applies to the built-in vocabulary only; a model's "
          "pad token comes from its tokenizer/ folder");
    return Tokenizer::from_folder(local_model(o.model, false));
  }();
  const std::vector<int> ids =
      o.raw ? tok.encode(o.text) : tok.tokenize_for_model(o.text, o.max_len);
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += std::to_string(ids[i]);
  }
  std::printf("%s\n", line.c_str());
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto opts = std::make_shared<TokenizeOptions>();
  auto* cmd = app.add_subcommand(
      "tokenize", "Print the CLIP token ids of a prompt (BOS, ids, EOS, padding to --max-len)");
  cmd->add_option("text", opts->text, "The prompt (UTF-8)")->required();
  cmd->add_option("--model", opts->model,
                  "A diffusers model folder (with tokenizer/) or a tokenizer folder; default: the "
                  "built-in CLIP vocabulary");
  cmd->add_option("--pad", opts->pad,
                  "Pad token of the built-in vocabulary: eos (<|endoftext|>, SD 1.x) or bang "
                  "('!', SD 2.x / sd-turbo)")
      ->check(CLI::IsMember({"eos", "bang"}));
  cmd->add_option("--max-len", opts->max_len, "Sequence length")->capture_default_str();
  cmd->add_flag("--raw", opts->raw, "Print the ids only: no BOS/EOS, no truncation, no padding");
  cmd->callback([opts] { run_tokenize(*opts); });
}

}  // namespace streamdiff::cli
