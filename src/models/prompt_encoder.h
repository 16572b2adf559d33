// Prompt -> text embedding, with a cache: StreamDiffusion conditions every frame on the same
// prompt, so a prompt that was encoded before costs a hash lookup. The cache is keyed by
// (prompt text, clip_skip) and belongs to one model; it holds the most recently used entries
// up to a capacity.
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "models/clip_text.h"
#include "text/clip_tokenizer.h"

namespace sd {

class PromptEncoder {
 public:
  static constexpr size_t kDefaultCacheCapacity = 64;

  PromptEncoder(std::shared_ptr<const text::ClipTokenizer> tokenizer,
                std::shared_ptr<ClipTextModel> model,
                size_t cache_capacity = kDefaultCacheCapacity);

  // Loads the text encoder (ClipTextModel::load) and its tokenizer: the tokenizer/ folder of a
  // diffusers model (given the model folder or its text_encoder/ folder); otherwise (single
  // files) the built-in CLIP vocabulary, padded with '!' for OpenCLIP (SD 2.x) models and with
  // <|endoftext|> for OpenAI CLIP (SD 1.x) ones.
  static std::unique_ptr<PromptEncoder> load(const std::string& path, Backend& backend);

  // The embedding of `prompt` (UTF-8; "" is the unconditional prompt): host f32
  // [max_position_embeddings (77), hidden_size]. A cached result is returned as the same tensor
  // (shared memory): treat it as read-only.
  Tensor encode(std::string_view prompt, int clip_skip = 0);

  const ClipTextModel& model() const { return *model_; }
  // The text encoder for changing its weights (LoRA fusing); clears the cache, whose entries a
  // change makes stale. Not while another thread encodes.
  ClipTextModel& model_for_update();
  const text::ClipTokenizer& tokenizer() const { return *tokenizer_; }
  size_t forward_count() const;  // encoder runs so far (cache misses)
  size_t cache_size() const;
  void clear_cache();

 private:
  struct Entry {
    std::string key;
    Tensor embedding;
  };
  std::shared_ptr<const text::ClipTokenizer> tokenizer_;
  std::shared_ptr<ClipTextModel> model_;
  size_t capacity_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  size_t forwards_ = 0;
};

}  // namespace sd
