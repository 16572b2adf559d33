// CLIP tokenizer vs transformers' slow CLIPTokenizer (tests/fixtures/tokenizer/corpus.jsonl,
// written by tools/make_tokenizer_fixtures.py), plus truncation, padding, loading errors and
// invalid UTF-8.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "text/clip_tokenizer.h"
#include "text/unicode_text.h"

namespace {

namespace fs = std::filesystem;
using sd::text::ClipPad;
using sd::text::ClipTokenizer;

const fs::path kFixtures = fs::path(SD_FIXTURE_DIR) / "tokenizer";

struct CorpusEntry {
  std::string text;  // raw bytes (may be invalid UTF-8)
  std::string label;
  nlohmann::json ref;
};

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

const std::vector<CorpusEntry>& corpus() {
  static const std::vector<CorpusEntry> entries = [] {
    std::vector<CorpusEntry> out;
    std::ifstream in(kFixtures / "corpus.jsonl");
    EXPECT_TRUE(in) << "missing " << (kFixtures / "corpus.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      CorpusEntry e;
      e.ref = nlohmann::json::parse(line);
      if (e.ref.contains("text")) {
        e.text = e.ref["text"].get<std::string>();
        e.label = e.ref["text"].dump();
      } else {
        e.text = from_hex(e.ref["bytes_hex"].get<std::string>());
        e.label = "bytes " + e.ref["bytes_hex"].get<std::string>();
      }
      out.push_back(std::move(e));
    }
    return out;
  }();
  return entries;
}

// Every corpus prompt: the 77 ids diffusers feeds the text encoder and the untruncated ids.
void expect_corpus_matches(const ClipTokenizer& tok, const std::string& key) {
  ASSERT_GE(corpus().size(), 300u);
  int mismatches = 0;
  for (const auto& e : corpus()) {
    const auto want = e.ref[key].get<std::vector<int>>();
    const auto want_raw = e.ref[key + "_raw"].get<std::vector<int>>();
    const auto got = tok.tokenize_for_model(e.text);
    const auto got_raw = tok.encode(e.text);
    if (got != want || got_raw != want_raw) {
      if (++mismatches <= 5) {
        ADD_FAILURE() << key << ": " << e.label << "\n  want " << nlohmann::json(want_raw).dump()
                      << "\n  got  " << nlohmann::json(got_raw).dump();
      }
    }
  }
  EXPECT_EQ(mismatches, 0) << "of " << corpus().size() << " prompts";
}

TEST(ClipTokenizerCorpus, Sd15FolderMatchesReference) {
  expect_corpus_matches(ClipTokenizer::from_folder(kFixtures / "sd15"), "sd15");
}

TEST(ClipTokenizerCorpus, Sd21FolderMatchesReference) {
  expect_corpus_matches(ClipTokenizer::from_folder(kFixtures / "sd21"), "sd21");
}

TEST(ClipTokenizerCorpus, BuiltinVocabularyMatchesReference) {
  expect_corpus_matches(ClipTokenizer::builtin(ClipPad::kEndOfText), "sd15");
  expect_corpus_matches(ClipTokenizer::builtin(ClipPad::kExclamation), "sd21");
}

TEST(ClipTokenizer, BuiltinVocabularyIsClips) {
  const auto tok = ClipTokenizer::builtin();
  EXPECT_EQ(tok.vocab_size(), 49408u);
  EXPECT_EQ(tok.merges_count(), 48894u);
  EXPECT_EQ(tok.bos_id(), 49406);
  EXPECT_EQ(tok.eos_id(), 49407);
  EXPECT_EQ(tok.pad_id(), 49407);
  EXPECT_EQ(ClipTokenizer::builtin(ClipPad::kExclamation).pad_id(), 0);
  // Well-known ids of the CLIP vocabulary.
  EXPECT_EQ(tok.encode("a photo of a cat"), (std::vector<int>{320, 1125, 539, 320, 2368}));
}

TEST(ClipTokenizer, TruncationKeepsEosAndPaddingUsesPadToken) {
  const auto eos_pad = ClipTokenizer::builtin(ClipPad::kEndOfText);
  const auto bang_pad = ClipTokenizer::builtin(ClipPad::kExclamation);
  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += "cat ";
  const auto ids = eos_pad.tokenize_for_model(long_prompt);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids.front(), 49406);
  EXPECT_EQ(ids.back(), 49407);
  EXPECT_EQ(ids[75], 2368);  // "cat</w>": 75 of the 100 kept

  const auto short_eos = eos_pad.tokenize_for_model("a cat");
  const auto short_bang = bang_pad.tokenize_for_model("a cat");
  ASSERT_EQ(short_eos.size(), 77u);
  EXPECT_EQ(std::vector<int>(short_eos.begin(), short_eos.begin() + 4),
            (std::vector<int>{49406, 320, 2368, 49407}));
  for (size_t i = 4; i < 77; ++i) {
    EXPECT_EQ(short_eos[i], 49407);
    EXPECT_EQ(short_bang[i], 0);
  }
  EXPECT_EQ(eos_pad.tokenize_for_model("a cat", 3), (std::vector<int>{49406, 320, 49407}));
  EXPECT_EQ(eos_pad.tokenize_for_model("", 4), (std::vector<int>{49406, 49407, 49407, 49407}));
  EXPECT_THROW(eos_pad.tokenize_for_model("a", 1), sd::Error);
}

TEST(ClipTokenizer, ExclamationPadTokenSplitsLikeTheReference) {
  // With pad "!" the reference treats '!' as an added token: one id 0 per '!'. Ids from
  // the reference (transformers 4.46.3 slow CLIPTokenizer).
  EXPECT_EQ(ClipTokenizer::builtin(ClipPad::kEndOfText).encode("wow!!!"),
            (std::vector<int>{2781, 995}));
  EXPECT_EQ(ClipTokenizer::builtin(ClipPad::kExclamation).encode("wow!!!"),
            (std::vector<int>{2781, 0, 0, 0}));
}

TEST(ClipTokenizer, FindsTokenizerFolderInsideModelFolder) {
  const fs::path model = fs::temp_directory_path() / "sd_clip_tok_model";
  fs::remove_all(model);
  fs::create_directories(model / "tokenizer");
  for (const char* f :
       {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
    fs::copy_file(kFixtures / "sd21" / f, model / "tokenizer" / f);
  const auto tok = ClipTokenizer::from_folder(model);
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.encode("a photo of a cat"), (std::vector<int>{320, 1125, 539, 320, 2368}));
  fs::remove_all(model);
}

// A scratch tokenizer folder whose files the test writes.
class ClipTokenizerFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sd_clip_tok_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  void copy(const std::string& name) { fs::copy_file(kFixtures / "sd15" / name, dir_ / name); }
  std::string load_error() {
    try {
      ClipTokenizer::from_folder(dir_);
    } catch (const sd::Error& e) {
      return e.what();
    }
    return "(no error)";
  }
  fs::path dir_;
};

TEST_F(ClipTokenizerFiles, MissingFolderOrFilesAreNamed) {
  EXPECT_NE(std::string([&] {
              try {
                ClipTokenizer::from_folder(dir_ / "nope");
              } catch (const sd::Error& e) {
                return std::string(e.what());
              }
              return std::string();
            }())
                .find("is not a folder"),
            std::string::npos);
  EXPECT_NE(load_error().find("no vocab.json"), std::string::npos) << load_error();
  copy("vocab.json");
  EXPECT_NE(load_error().find("no merges.txt"), std::string::npos) << load_error();
}

TEST_F(ClipTokenizerFiles, MalformedVocabIsReported) {
  copy("merges.txt");
  write("vocab.json", "{\"a\": 1,");
  EXPECT_NE(load_error().find("is not valid JSON"), std::string::npos) << load_error();
  write("vocab.json", "[1, 2]");
  EXPECT_NE(load_error().find("non-empty JSON object"), std::string::npos) << load_error();
  write("vocab.json", "{\"a\": \"x\"}");
  EXPECT_NE(load_error().find("the id of token 'a'"), std::string::npos) << load_error();
  write("vocab.json", "{\"a\": 0}");
  EXPECT_NE(load_error().find("bos token '<|startoftext|>' is not in the vocabulary"),
            std::string::npos)
      << load_error();
}

TEST_F(ClipTokenizerFiles, MalformedMergesAreReported) {
  copy("vocab.json");
  write("merges.txt", "#version: 0.2\ni n\nt h e\n");
  EXPECT_NE(load_error().find("merges.txt' line 3: expected two space-separated symbols"),
            std::string::npos)
      << load_error();
  write("merges.txt", "#version: 0.2\n");
  EXPECT_NE(load_error().find("holds no merges"), std::string::npos) << load_error();
}

TEST_F(ClipTokenizerFiles, MalformedConfigIsReported) {
  copy("vocab.json");
  copy("merges.txt");
  write("tokenizer_config.json", "{\"pad_token\": 5}");
  EXPECT_NE(load_error().find("pad_token must be a string or an object"), std::string::npos)
      << load_error();
  write("tokenizer_config.json", "{\"pad_token\": \"<|nope|>\"}");
  EXPECT_NE(load_error().find("pad token '<|nope|>' is not in the vocabulary"), std::string::npos)
      << load_error();
  write("tokenizer_config.json", "{\"pad_token\": \"!\"}");
  EXPECT_EQ(ClipTokenizer::from_folder(dir_).pad_id(), 0);
}

TEST(ClipTokenizerUnicode, InvalidUtf8DecodesLikePythonReplace) {
  using sd::text::decode_utf8_replace;
  const std::u32string fffd(1, U'\uFFFD');
  // Expected values from bytes.fromhex(h).decode("utf-8", "replace") in CPython 3.11.
  EXPECT_EQ(decode_utf8_replace(from_hex("e282")), fffd);
  EXPECT_EQ(decode_utf8_replace(from_hex("edb080")), fffd + fffd + fffd);
  EXPECT_EQ(decode_utf8_replace(from_hex("f09f98")), fffd);
  EXPECT_EQ(decode_utf8_replace(from_hex("c0af")), fffd + fffd);
  EXPECT_EQ(decode_utf8_replace(from_hex("e0808061")), fffd + fffd + fffd + U"a");
  EXPECT_EQ(decode_utf8_replace(from_hex("f4908080")), fffd + fffd + fffd + fffd);
  EXPECT_EQ(decode_utf8_replace(from_hex("e2ffac21")), fffd + fffd + fffd + U"!");
  EXPECT_EQ(decode_utf8_replace(from_hex("6162c3")), U"ab" + fffd);
  EXPECT_EQ(decode_utf8_replace("\xF0\x9F\x98\x80"), U"\U0001F600");
}

TEST(ClipTokenizerUnicode, InvalidBytesVanishFromTheIds) {
  // The reference replaces them with U+FFFD and its cleanup removes U+FFFD.
  const auto tok = ClipTokenizer::builtin();
  EXPECT_EQ(tok.encode("ca\xFFt pho\xE2\x82to"), tok.encode("cat photo"));
  EXPECT_EQ(tok.encode("\xC0\xAF"), std::vector<int>{});
}

TEST(ClipTokenizerUnicode, NfcAndLowerFollowPython) {
  using sd::text::nfc;
  using sd::text::python_lower;
  EXPECT_EQ(nfc(U"e\u0301"), U"\u00e9");
  EXPECT_EQ(nfc(U"a\u0323\u0302"), U"\u1ead");       // reordered marks compose
  EXPECT_EQ(nfc(U"\u1100\u1161\u11a8"), U"\uac01");  // Hangul LVT
  EXPECT_EQ(nfc(U"\u212b"), U"\u00c5");              // singleton decomposition
  EXPECT_EQ(python_lower(U"\u03a3"), U"\u03c3");
  EXPECT_EQ(python_lower(U"\u039f\u0394\u039f\u03a3"), U"\u03bf\u03b4\u03bf\u03c2");
  EXPECT_EQ(python_lower(U"\u0130"), U"i\u0307");
}

std::string run_cli(const std::string& args) {
  const std::string cmd = std::string("\"") + SD_CLI_PATH + "\" tokenize " + args + " 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  std::string out;
  char buf[4096];
  size_t n;
  while (pipe && (n = fread(buf, 1, sizeof buf, pipe.get())) > 0) out.append(buf, n);
  return out;
}

TEST(ClipTokenizerCli, PrintsIds) {
  EXPECT_EQ(run_cli("--raw 'a photo of a cat'"), "320 1125 539 320 2368\n");
  EXPECT_EQ(run_cli("--pad bang --max-len 8 'wow!!!'"), "49406 2781 0 0 0 49407 0 0\n");
  const std::string sd21 = (kFixtures / "sd21").string();
  EXPECT_EQ(run_cli("--model '" + sd21 + "' --max-len 4 'a cat'"), "49406 320 2368 49407\n");
  EXPECT_NE(run_cli("--model /nonexistent/folder x").find("error: CLIP tokenizer:"),
            std::string::npos);
}

}  // namespace
