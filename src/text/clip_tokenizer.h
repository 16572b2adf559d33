// The CLIP BPE tokenizer, identical in its ids to Hugging Face transformers' slow
// `CLIPTokenizer` (transformers 4.x, tokenization_clip.py) as diffusers' Stable Diffusion
// pipelines call it: tokenizer(prompt, padding="max_length", max_length=77, truncation=True).
//
// Reference path. Without the `ftfy` package (not a dependency of transformers or diffusers)
// CLIPTokenizer cleans text with BERT's BasicTokenizer(strip_accents=False,
// do_split_on_punc=False); that is the path reproduced here:
//   1. the text is split around the added tokens (bos, eos, unk, pad and any added_tokens_decoder
//      entry), leftmost-longest; an added token becomes its id directly. With SD 2.x's pad
//      token "!" this means every '!' in a prompt is its own token (id 0), as in the reference;
//   2. each remaining piece: drop NUL, U+FFFD and category C* characters (but \t \n \r), turn
//      \t \n \r and category Zs into spaces, put spaces around CJK ideographs, NFC-normalise,
//      split on str.isspace() characters, str.lower() each word (with Final_Sigma);
//   3. each word is pre-tokenised by CLIP's pattern
//      <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//      (regex module, IGNORECASE), each match is mapped byte by byte through GPT-2's
//      bytes_to_unicode and split by BPE with the "</w>" end-of-word suffix; a match that is
//      exactly a special token's text becomes that token's id.
// Invalid UTF-8 is decoded like Python's bytes.decode("utf-8", errors="replace"): each
// invalid subpart becomes U+FFFD, which step 2 then removes, so invalid bytes vanish without
// joining or splitting anything else. Unicode facts (categories, NFC, case) are those of the
// reference's Python 3.11 / Unicode 14 and regex module (see unicode_tables.cpp).
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sd::text {

// Padding token of the standard vocabulary: SD 1.x pads with <|endoftext|> (49407), SD 2.x and
// sd-turbo with "!" (id 0), which also makes '!' an added token (see above).
enum class ClipPad { kEndOfText, kExclamation };

class ClipTokenizer {
 public:
  static constexpr int kModelLength = 77;

  // Loads a diffusers `tokenizer/` folder (vocab.json, merges.txt and optionally
  // tokenizer_config.json / special_tokens_map.json), given either that folder or a model folder
  // that contains it. Throws sd::Error naming the file at fault.
  static ClipTokenizer from_folder(const std::filesystem::path& dir);
  // The standard CLIP vocabulary, built into the binary (OpenAI's bpe_simple_vocab_16e6).
  static ClipTokenizer builtin(ClipPad pad = ClipPad::kEndOfText);
  // From the text of a merges list (first line skipped, as both CLIP and transformers do) with
  // the vocabulary derived from it the way CLIP does; `source` names it in error messages.
  static ClipTokenizer from_merges_text(std::string_view merges, ClipPad pad,
                                        const std::string& source);

  // Token ids of a UTF-8 prompt, without BOS/EOS.
  std::vector<int> encode(std::string_view text) const;
  // What the text encoder consumes: BOS, the ids truncated to max_len - 2, EOS, then padding to
  // max_len with the pad token.
  std::vector<int> tokenize_for_model(std::string_view text, int max_len = kModelLength) const;

  int bos_id() const { return bos_id_; }
  int eos_id() const { return eos_id_; }
  int pad_id() const { return pad_id_; }
  int unk_id() const { return unk_id_; }
  size_t vocab_size() const { return vocab_.size(); }
  size_t merges_count() const { return ranks_.size(); }

  ClipTokenizer(ClipTokenizer&&) noexcept;
  ClipTokenizer& operator=(ClipTokenizer&&) noexcept;
  ~ClipTokenizer();

  struct AddedToken {
    std::u32string content;
    int id = 0;
    bool lstrip = false, rstrip = false;
  };

 private:
  ClipTokenizer();
  void encode_piece(std::u32string_view piece, std::vector<int>& ids) const;
  void encode_match(std::u32string_view match, std::vector<int>& ids) const;
  void bpe(const std::string& byte_encoded, std::vector<int>& ids) const;
  int lookup(const std::string& token) const;
  void set_special_tokens(const std::string& bos, const std::string& eos, const std::string& unk,
                          const std::string& pad, std::vector<AddedToken> extra,
                          const std::string& source);

  std::unordered_map<std::string, int> vocab_;
  std::unordered_map<std::string, int> ranks_;  // "first second" -> merge rank
  std::vector<AddedToken> added_;
  int bos_id_ = 0, eos_id_ = 0, pad_id_ = 0, unk_id_ = 0;

  // BPE results per byte-encoded word (bounded; cleared when full). Guarded for concurrent
  // encode() calls.
  mutable std::unordered_map<std::string, std::vector<int>> cache_;
  mutable std::unique_ptr<std::mutex> cache_mutex_;
};

}  // namespace sd::text
