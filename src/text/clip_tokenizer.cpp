#include "text/clip_tokenizer.h"

#include <array>
#include <climits>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "text/clip_builtin_vocab.h"
#include "text/unicode_text.h"

namespace sd::text {
namespace {

constexpr std::string_view kStartOfText = "<|startoftext|>";
constexpr std::string_view kEndOfText = "<|endoftext|>";
// Merges that CLIP and CLIPTokenizer read: lines [1, 49152 - 256 - 2] of the merges file.
constexpr size_t kMaxMerges = 49152 - 256 - 2;
constexpr size_t kCacheLimit = 1 << 16;

// GPT-2's bytes_to_unicode: byte -> the UTF-8 text of the character that stands for it.
// Printable Latin-1 bytes stand for themselves; the others map to U+0100 + n in byte order.
// Also returns the bytes in the order CLIP lists them at the head of its vocabulary.
struct ByteEncoder {
  std::array<std::string, 256> text;
  std::array<int, 256> vocab_order;
  ByteEncoder() {
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int k = 0, n = 0;
    for (int b = 0; b < 256; ++b)
      if (printable(b)) vocab_order[k++] = b, append_utf8(text[b], char32_t(b));
    for (int b = 0; b < 256; ++b)
      if (!printable(b)) vocab_order[k++] = b, append_utf8(text[b], char32_t(256 + n++));
  }
};
const ByteEncoder& byte_encoder() {
  static const ByteEncoder enc;
  return enc;
}

std::string read_file(const std::filesystem::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  SD_CHECK(in, "CLIP tokenizer: cannot open ", what, " '", path.string(), "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Parses merges text like transformers: strip, split on '\n', skip the first (version) line,
// keep at most kMaxMerges lines; each must hold exactly two symbols.
std::vector<std::pair<std::string, std::string>> parse_merges(std::string_view text,
                                                              const std::string& source) {
  size_t b = 0, e = text.size();
  while (b < e && is_ascii_space(text[b])) ++b;
  while (e > b && is_ascii_space(text[e - 1])) --e;
  text = text.substr(b, e - b);
  std::vector<std::pair<std::string, std::string>> merges;
  size_t pos = 0, line_no = 0;
  while (pos <= text.size() && merges.size() < kMaxMerges) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    ++line_no;
    pos = nl + 1;
    if (line_no == 1) continue;
    std::vector<std::string> fields;
    for (size_t i = 0; i < line.size();) {
      while (i < line.size() && is_ascii_space(line[i])) ++i;
      size_t j = i;
      while (j < line.size() && !is_ascii_space(line[j])) ++j;
      if (j > i) fields.emplace_back(line.substr(i, j - i));
      i = j;
    }
    SD_CHECK(fields.size() == 2, "CLIP tokenizer: ", source, " line ", line_no,
             ": expected two space-separated symbols, got ", fields.size(), " ('",
             std::string(line.substr(0, 60)), "')");
    merges.emplace_back(std::move(fields[0]), std::move(fields[1]));
  }
  SD_CHECK(!merges.empty(), "CLIP tokenizer: ", source, " holds no merges");
  return merges;
}

struct TokenSpec {
  std::string content;
  bool lstrip = false, rstrip = false;
};

// A special-token entry of tokenizer_config.json / special_tokens_map.json: a string or an
// AddedToken object {"content": ..., "lstrip": ..., "rstrip": ...}.
bool parse_token_spec(const nlohmann::json& j, TokenSpec& spec, const std::string& where) {
  if (j.is_null()) return false;
  if (j.is_string()) {
    spec = TokenSpec{j.get<std::string>()};
    return true;
  }
  SD_CHECK(j.is_object() && j.contains("content") && j["content"].is_string(),
           "CLIP tokenizer: ", where, " must be a string or an object with a string \"content\"");
  spec.content = j["content"].get<std::string>();
  const auto flag = [&](const char* key) {
    if (!j.contains(key) || j[key].is_null()) return false;
    SD_CHECK(j[key].is_boolean(), "CLIP tokenizer: ", where, ".", key,
             " must be true or false, got ",
             j[key].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return j[key].get<bool>();
  };
  spec.lstrip = flag("lstrip");
  spec.rstrip = flag("rstrip");
  return true;
}

nlohmann::json read_json(const std::filesystem::path& path) {
  const std::string text = read_file(path, "file");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("CLIP tokenizer: '", path.string(), "' is not valid JSON: ", e.what());
  }
}

bool starts_with_literal(std::u32string_view w, size_t p, std::string_view lit) {
  if (w.size() - p < lit.size()) return false;
  for (size_t k = 0; k < lit.size(); ++k)
    if (!regex_literal_matches(lit[k], w[p + k])) return false;
  return true;
}

std::u32string_view strip_python_space(std::u32string_view s, bool left, bool right) {
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && is_python_space(s[b])) ++b;
  if (right)
    while (e > b && is_python_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

}  // namespace

ClipTokenizer::ClipTokenizer() : cache_mutex_(std::make_unique<std::mutex>()) {}
ClipTokenizer::ClipTokenizer(ClipTokenizer&&) noexcept = default;
ClipTokenizer& ClipTokenizer::operator=(ClipTokenizer&&) noexcept = default;
ClipTokenizer::~ClipTokenizer() = default;

void ClipTokenizer::set_special_tokens(const std::string& bos, const std::string& eos,
                                       const std::string& unk, const std::string& pad,
                                       std::vector<AddedToken> extra, const std::string& source) {
  added_ = std::move(extra);
  auto id_of = [&](const std::string& token, const char* role) {
    for (const auto& a : added_)
      if (a.content == decode_utf8_replace(token)) return a.id;
    auto it = vocab_.find(token);
    SD_CHECK(it != vocab_.end(), "CLIP tokenizer: the ", role, " token '", token,
             "' is not in the vocabulary of ", source);
    return it->second;
  };
  bos_id_ = id_of(bos, "bos");
  eos_id_ = id_of(eos, "eos");
  unk_id_ = id_of(unk, "unk");
  pad_id_ = id_of(pad, "pad");
  // The special tokens are added tokens too (transformers adds them at construction).
  const std::pair<const std::string*, int> specials[] = {
      {&bos, bos_id_}, {&eos, eos_id_}, {&unk, unk_id_}, {&pad, pad_id_}};
  for (const auto& [text, id] : specials) {
    std::u32string content = decode_utf8_replace(*text);
    bool known = false;
    for (const auto& a : added_) known = known || a.content == content;
    if (!known && !content.empty()) added_.push_back({std::move(content), id});
  }
}

ClipTokenizer ClipTokenizer::from_merges_text(std::string_view merges_text, ClipPad pad,
                                              const std::string& source) {
  ClipTokenizer tok;
  const auto merges = parse_merges(merges_text, source);
  const ByteEncoder& enc = byte_encoder();
  int next = 0;
  for (int b : enc.vocab_order) tok.vocab_[enc.text[b]] = next++;
  for (int b : enc.vocab_order) tok.vocab_[enc.text[b] + "</w>"] = next++;
  int rank = 0;
  for (const auto& [a, b] : merges) {
    tok.vocab_.emplace(a + b, next++);
    tok.ranks_.insert_or_assign(a + " " + b, rank++);
  }
  tok.vocab_.emplace(std::string(kStartOfText), next++);
  tok.vocab_.emplace(std::string(kEndOfText), next++);
  const std::string eos(kEndOfText);
  tok.set_special_tokens(std::string(kStartOfText), eos, eos,
                         pad == ClipPad::kExclamation ? std::string("!") : eos, {}, source);
  return tok;
}

ClipTokenizer ClipTokenizer::builtin(ClipPad pad) {
  return from_merges_text(builtin_clip_merges(), pad, "the built-in CLIP vocabulary");
}

ClipTokenizer ClipTokenizer::from_folder(const std::filesystem::path& dir_in) {
  namespace fs = std::filesystem;
  SD_CHECK(fs::is_directory(dir_in), "CLIP tokenizer: '", dir_in.string(), "' is not a folder");
  fs::path dir = dir_in;
  if (!fs::exists(dir / "vocab.json") && fs::exists(dir / "tokenizer" / "vocab.json"))
    dir = dir / "tokenizer";
  const fs::path vocab_path = dir / "vocab.json", merges_path = dir / "merges.txt";
  SD_CHECK(fs::exists(vocab_path), "CLIP tokenizer: no vocab.json in '", dir_in.string(),
           "' (nor in its tokenizer/ folder)");
  SD_CHECK(fs::exists(merges_path), "CLIP tokenizer: no merges.txt next to '", vocab_path.string(),
           "'");

  ClipTokenizer tok;
  const nlohmann::json vocab = read_json(vocab_path);
  SD_CHECK(vocab.is_object() && !vocab.empty(), "CLIP tokenizer: '", vocab_path.string(),
           "' must be a non-empty JSON object of token -> id");
  for (const auto& [token, id] : vocab.items()) {
    SD_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < INT_MAX,
             "CLIP tokenizer: '", vocab_path.string(), "': the id of token '", token,
             "' is not a non-negative integer");
    tok.vocab_[token] = id.get<int>();
  }
  const std::string merges_text = read_file(merges_path, "merges file");
  int rank = 0;
  for (const auto& [a, b] : parse_merges(merges_text, "'" + merges_path.string() + "'"))
    tok.ranks_.insert_or_assign(a + " " + b, rank++);

  // Special tokens: tokenizer_config.json, overridden by special_tokens_map.json unless the
  // config lists added_tokens_decoder (transformers' loading order).
  TokenSpec specs[4] = {{std::string(kStartOfText)},
                        {std::string(kEndOfText)},
                        {std::string(kEndOfText)},
                        {std::string(kEndOfText)}};
  const char* keys[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
  std::vector<AddedToken> added;
  bool has_added_decoder = false;
  const fs::path config_path = dir / "tokenizer_config.json",
                 map_path = dir / "special_tokens_map.json";
  if (fs::exists(config_path)) {
    const nlohmann::json config = read_json(config_path);
    SD_CHECK(config.is_object(), "CLIP tokenizer: '", config_path.string(),
             "' must be a JSON object");
    for (int i = 0; i < 4; ++i)
      if (config.contains(keys[i]))
        parse_token_spec(config[keys[i]], specs[i], "'" + config_path.string() + "' " + keys[i]);
    if (config.contains("added_tokens_decoder")) {
      has_added_decoder = true;
      const auto& dec = config["added_tokens_decoder"];
      SD_CHECK(dec.is_object(), "CLIP tokenizer: '", config_path.string(),
               "' added_tokens_decoder must be an object");
      for (const auto& [id_text, entry] : dec.items()) {
        TokenSpec spec;
        const std::string where = "'" + config_path.string() + "' added_tokens_decoder." + id_text;
        parse_token_spec(entry, spec, where);
        int id = 0;
        try {
          id = std::stoi(id_text);
        } catch (const std::exception&) {
          fail("CLIP tokenizer: ", where, ": the key is not a token id");
        }
        added.push_back({decode_utf8_replace(spec.content), id, spec.lstrip, spec.rstrip});
      }
    }
  }
  if (!has_added_decoder && fs::exists(map_path)) {
    const nlohmann::json map = read_json(map_path);
    SD_CHECK(map.is_object(), "CLIP tokenizer: '", map_path.string(), "' must be a JSON object");
    for (int i = 0; i < 4; ++i)
      if (map.contains(keys[i]))
        parse_token_spec(map[keys[i]], specs[i], "'" + map_path.string() + "' " + keys[i]);
  }
  // Flags of a special token given as an object apply to its added-token entry.
  for (const auto& s : specs) {
    if (!s.lstrip && !s.rstrip) continue;
    const std::u32string content = decode_utf8_replace(s.content);
    bool found = false;
    for (auto& a : added)
      if (a.content == content) a.lstrip = s.lstrip, a.rstrip = s.rstrip, found = true;
    if (!found) {
      auto it = tok.vocab_.find(s.content);
      SD_CHECK(it != tok.vocab_.end(), "CLIP tokenizer: special token '", s.content,
               "' is not in '", vocab_path.string(), "'");
      added.push_back({content, it->second, s.lstrip, s.rstrip});
    }
  }
  tok.set_special_tokens(specs[0].content, specs[1].content, specs[2].content, specs[3].content,
                         std::move(added), "'" + vocab_path.string() + "'");
  return tok;
}

int ClipTokenizer::lookup(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? unk_id_ : it->second;
}

void ClipTokenizer::bpe(const std::string& word, std::vector<int>& ids) const {
  {
    std::lock_guard<std::mutex> lock(*cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  // Split the byte-encoded word into its characters (1 or 2 UTF-8 bytes each: all < U+0200).
  std::vector<std::string> symbols;
  for (size_t i = 0; i < word.size();) {
    const size_t len = (static_cast<unsigned char>(word[i]) < 0x80) ? 1 : 2;
    symbols.emplace_back(word.substr(i, len));
    i += len;
  }
  symbols.back() += "</w>";
  std::string key;
  while (symbols.size() > 1) {
    int best = INT_MAX;
    size_t best_i = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      key.assign(symbols[i]).append(" ").append(symbols[i + 1]);
      auto it = ranks_.find(key);
      if (it != ranks_.end() && it->second < best) best = it->second, best_i = i;
    }
    if (best == INT_MAX) break;
    const std::string first = symbols[best_i], second = symbols[best_i + 1];
    std::vector<std::string> merged;
    merged.reserve(symbols.size());
    for (size_t i = 0; i < symbols.size();) {
      if (i + 1 < symbols.size() && symbols[i] == first && symbols[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(std::move(symbols[i]));
        ++i;
      }
    }
    symbols = std::move(merged);
  }
  std::vector<int> result;
  result.reserve(symbols.size());
  for (const auto& s : symbols) result.push_back(lookup(s));
  ids.insert(ids.end(), result.begin(), result.end());
  std::lock_guard<std::mutex> lock(*cache_mutex_);
  if (cache_.size() >= kCacheLimit) cache_.clear();
  cache_.emplace(word, std::move(result));
}

void ClipTokenizer::encode_match(std::u32string_view match, std::vector<int>& ids) const {
  const std::string text = encode_utf8(match);
  if (text == kStartOfText || text == kEndOfText) {  // pre-seeded in the reference's BPE cache
    ids.push_back(lookup(text));
    return;
  }
  const ByteEncoder& enc = byte_encoder();
  std::string encoded;
  encoded.reserve(text.size() * 2);
  for (unsigned char b : text) encoded += enc.text[b];
  bpe(encoded, ids);
}

void ClipTokenizer::encode_piece(std::u32string_view piece, std::vector<int>& ids) const {
  // BasicTokenizer: clean, space out CJK ideographs, NFC.
  std::u32string cleaned;
  cleaned.reserve(piece.size());
  for (char32_t c : piece) {
    switch (clean_action(c)) {
      case CleanAction::kDrop:
        break;
      case CleanAction::kSpace:
        cleaned.push_back(U' ');
        break;
      case CleanAction::kKeep:
        if (is_cjk_ideograph(c)) {
          cleaned.push_back(U' ');
          cleaned.push_back(c);
          cleaned.push_back(U' ');
        } else {
          cleaned.push_back(c);
        }
        break;
    }
  }
  const std::u32string text = nfc(cleaned);
  static constexpr std::string_view kContractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  for (size_t i = 0; i < text.size();) {
    if (is_python_space(text[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && !is_python_space(text[j])) ++j;
    const std::u32string word = python_lower(std::u32string_view(text).substr(i, j - i));
    i = j;
    // CLIP's pre-tokenisation pattern, alternatives in order (leftmost-first).
    for (size_t p = 0; p < word.size();) {
      const char32_t c = word[p];
      size_t len = 0;
      if (c == U'<') {
        if (starts_with_literal(word, p, kStartOfText))
          len = kStartOfText.size();
        else if (starts_with_literal(word, p, kEndOfText))
          len = kEndOfText.size();
      } else if (c == U'\'') {
        for (std::string_view lit : kContractions)
          if (starts_with_literal(word, p, lit)) {
            len = lit.size();
            break;
          }
      }
      if (len == 0) {
        if (is_regex_letter(c)) {
          while (p + len < word.size() && is_regex_letter(word[p + len])) ++len;
        } else if (is_regex_number(c)) {
          len = 1;
        } else if (is_regex_skipped(c)) {
          ++p;
          continue;
        } else {
          auto other = [](char32_t x) {
            return !is_regex_letter(x) && !is_regex_number(x) && !is_regex_skipped(x);
          };
          while (p + len < word.size() && other(word[p + len])) ++len;
        }
      }
      encode_match(std::u32string_view(word).substr(p, len), ids);
      p += len;
    }
  }
}

std::vector<int> ClipTokenizer::encode(std::string_view utf8) const {
  const std::u32string text = decode_utf8_replace(utf8);
  // Split around added tokens, leftmost-longest, like transformers' Trie.split.
  struct Piece {
    std::u32string_view text;
    const AddedToken* added;
  };
  std::vector<Piece> pieces;
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    const AddedToken* best = nullptr;
    for (const auto& a : added_)
      if (text.compare(i, a.content.size(), a.content) == 0 &&
          (!best || a.content.size() > best->content.size()))
        best = &a;
    if (!best) {
      ++i;
      continue;
    }
    if (i > start) pieces.push_back({std::u32string_view(text).substr(start, i - start), nullptr});
    pieces.push_back({std::u32string_view(text).substr(i, best->content.size()), best});
    i += best->content.size();
    start = i;
  }
  if (start < text.size()) pieces.push_back({std::u32string_view(text).substr(start), nullptr});
  // lstrip / rstrip of added tokens eat the whitespace of their neighbours.
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (!pieces[i].added) continue;
    if (pieces[i].added->rstrip && i + 1 < pieces.size() && !pieces[i + 1].added)
      pieces[i + 1].text = strip_python_space(pieces[i + 1].text, true, false);
    if (pieces[i].added->lstrip && i > 0 && !pieces[i - 1].added)
      pieces[i - 1].text = strip_python_space(pieces[i - 1].text, false, true);
  }
  std::vector<int> ids;
  for (const auto& p : pieces) {
    if (p.added)
      ids.push_back(p.added->id);
    else if (!p.text.empty())
      encode_piece(p.text, ids);
  }
  return ids;
}

std::vector<int> ClipTokenizer::tokenize_for_model(std::string_view text, int max_len) const {
  SD_CHECK(max_len >= 2, "CLIP tokenizer: max_len must be at least 2 (BOS and EOS), got ", max_len);
  std::vector<int> ids = encode(text);
  if (ids.size() > size_t(max_len - 2)) ids.resize(max_len - 2);
  std::vector<int> out;
  out.reserve(max_len);
  out.push_back(bos_id_);
  out.insert(out.end(), ids.begin(), ids.end());
  out.push_back(eos_id_);
  out.resize(max_len, pad_id_);
  return out;
}

}  // namespace sd::text
