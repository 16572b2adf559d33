// Replays the fuzzers' seed corpora (tests/fuzz/corpus/<name>/) and the inputs that once made a
// target fail (tests/fuzz/regressions/<name>/) through every target of tests/fuzz/fuzz_targets.h:
// each input must be parsed or rejected with the error the target expects, never anything else.
// The fuzzers themselves are built and run by tests/fuzz/run.sh.
#include <gtest/gtest.h>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_targets.h"

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> inputs_of(const std::string& target) {
  std::vector<fs::path> files;
  for (const char* kind : {"corpus", "regressions"}) {
    const fs::path dir = fs::path(SD_SOURCE_DIR) / "tests" / "fuzz" / kind / target;
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file()) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

TEST(FuzzRegressions, EveryTargetHasSeeds) {
  for (const sd::fuzz::Target* t = sd::fuzz::kTargets; t->name; ++t)
    EXPECT_FALSE(inputs_of(t->name).empty()) << "no seeds in tests/fuzz/corpus/" << t->name;
}

TEST(FuzzRegressions, CorporaAndRegressionsPass) {
  int replayed = 0;
  for (const sd::fuzz::Target* t = sd::fuzz::kTargets; t->name; ++t) {
    for (const fs::path& file : inputs_of(t->name)) {
      SCOPED_TRACE(file.string());
      const std::vector<uint8_t> bytes = read_bytes(file);
      try {
        EXPECT_EQ(t->function(bytes.data(), bytes.size()), 0);
      } catch (const std::exception& e) {
        ADD_FAILURE() << t->name << " let an exception through: " << e.what();
      } catch (...) {
        ADD_FAILURE() << t->name << " let a non-standard exception through";
      }
      ++replayed;
    }
  }
  EXPECT_GT(replayed, 0);
}

}  // namespace
