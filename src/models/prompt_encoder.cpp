#include "models/prompt_encoder.h"

#include <filesystem>

namespace sd {

namespace fs = std::filesystem;

PromptEncoder::PromptEncoder(std::shared_ptr<const text::ClipTokenizer> tokenizer,
                             std::shared_ptr<ClipTextModel> model, size_t cache_capacity)
    : tokenizer_(std::move(tokenizer)), model_(std::move(model)), capacity_(cache_capacity) {
  SD_CHECK(tokenizer_ && model_, "PromptEncoder needs a tokenizer and a text encoder");
  SD_CHECK(capacity_ >= 1, "PromptEncoder: the cache capacity must be at least 1");
}

std::unique_ptr<PromptEncoder> PromptEncoder::load(const std::string& path, Backend& backend) {
  std::shared_ptr<ClipTextModel> model = ClipTextModel::load(path, backend);
  fs::path p = fs::absolute(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "folder/" -> "folder"
  fs::path tokenizer_dir;
  if (fs::is_directory(p)) {
    if (fs::exists(p / "tokenizer" / "vocab.json"))
      tokenizer_dir = p / "tokenizer";  // a diffusers model folder
    else if (fs::exists(p / "config.json") &&
             fs::exists(p.parent_path() / "tokenizer" / "vocab.json"))
      tokenizer_dir = p.parent_path() / "tokenizer";  // its text_encoder/ folder
  }
  auto tokenizer = std::make_shared<const text::ClipTokenizer>(
      tokenizer_dir.empty()
          ? text::ClipTokenizer::builtin(model->openclip_names() ? text::ClipPad::kExclamation
                                                                 : text::ClipPad::kEndOfText)
          : text::ClipTokenizer::from_folder(tokenizer_dir));
  SD_CHECK(tokenizer->vocab_size() <= size_t(model->config().vocab_size), "'", path,
           "': the tokenizer has ", tokenizer->vocab_size(), " tokens, the text encoder ",
           model->config().vocab_size);
  return std::make_unique<PromptEncoder>(std::move(tokenizer), std::move(model));
}

Tensor PromptEncoder::encode(std::string_view prompt, int clip_skip) {
  std::string key = std::to_string(clip_skip);
  key += '\n';
  key += prompt;
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = index_.find(key); it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->embedding;
  }
  const ClipTextConfig& c = model_->config();
  const std::vector<int> ids = tokenizer_->tokenize_for_model(prompt, c.max_position_embeddings);
  Tensor y =
      model_->forward_to_host(ids, 1, clip_skip).reshape({int64_t(ids.size()), c.hidden_size});
  ++forwards_;
  lru_.push_front({key, y});
  index_[key] = lru_.begin();
  if (lru_.size() > capacity_) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
  return y;
}

size_t PromptEncoder::forward_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return forwards_;
}

size_t PromptEncoder::cache_size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}

void PromptEncoder::clear_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  lru_.clear();
  index_.clear();
}

ClipTextModel& PromptEncoder::model_for_update() {
  clear_cache();
  return *model_;
}

}  // namespace sd
