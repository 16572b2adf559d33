// The README and `--help` agree (issue 15): every flag that a subcommand's --help lists is
// documented in README.md, and every flag that a README code line gives to a subcommand
// (`$S img2img ... --flag`, continued over lines ending in '\') exists in that subcommand's --help.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "test_support.h"

namespace sd {
namespace {

const char* kSubcommands[] = {"img2img", "vid2vid",  "txt2img",       "bench", "info",
                              "taesd",   "tokenize", "encode-prompt", "serve", "pull"};

// The long flags a --help text lists (lines starting with spaces and an option).
std::set<std::string> help_flags(const std::string& help) {
  std::set<std::string> flags;
  static const std::regex option(R"(^\s+(?:-\w,\s*)?(--[a-z0-9][a-z0-9-]*))");
  std::istringstream in(help);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, option)) flags.insert(m[1]);
  }
  flags.erase("--help");
  return flags;
}

std::string readme() {
  std::ifstream in(std::string(SD_SOURCE_DIR) + "/README.md");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The flags README code lines give each subcommand: lines of ```sh blocks that run
// `$S <subcommand>` or `streamdiff <subcommand>`, with their continuation lines.
std::map<std::string, std::set<std::string>> readme_flags(const std::string& text) {
  std::map<std::string, std::set<std::string>> out;
  static const std::regex command(R"((?:\$S|streamdiff)\s+([a-z][a-z0-9-]*)\b)");
  static const std::regex flag(R"((?:^|[\s\[(])(--[a-z0-9][a-z0-9-]*))");
  std::istringstream in(text);
  bool in_sh = false;
  std::string current;  // the subcommand of a line continued with '\'
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("```", 0) == 0) {
      in_sh = !in_sh && line.rfind("```sh", 0) == 0;
      current.clear();
      continue;
    }
    if (!in_sh) continue;
    const std::string code = line.substr(0, line.find(" #"));  // without a trailing comment
    // Segments: the text after each command, up to the next one, belongs to it.
    std::vector<std::pair<size_t, std::string>> starts{{0, current}};
    for (auto it = std::sregex_iterator(code.begin(), code.end(), command);
         it != std::sregex_iterator(); ++it)
      starts.emplace_back(size_t(it->position(0)), (*it)[1].str());
    for (size_t i = 0; i < starts.size(); ++i) {
      const size_t end = i + 1 < starts.size() ? starts[i + 1].first : code.size();
      const std::string segment = code.substr(starts[i].first, end - starts[i].first);
      if (starts[i].second.empty()) continue;
      for (auto it = std::sregex_iterator(segment.begin(), segment.end(), flag);
           it != std::sregex_iterator(); ++it)
        if ((*it)[1] != "--help") out[starts[i].second].insert((*it)[1]);
    }
    current = starts.back().second;
    if (code.empty() || code.back() != '\\') current.clear();
  }
  return out;
}

TEST(CliHelpReadme, EveryFlagIsDocumentedAndEveryDocumentedFlagExists) {
  const std::string text = readme();
  ASSERT_FALSE(text.empty());
  const auto documented = readme_flags(text);
  for (const char* sub : kSubcommands) {
    const test::RunResult r = test::run_cli(std::string(sub) + " --help");
    ASSERT_EQ(r.code, 0) << sub << "\n" << r.output;
    const std::set<std::string> flags = help_flags(r.output);
    if (std::string(sub) != "info") {  // info has a path and --help only
      EXPECT_FALSE(flags.empty()) << sub << "\n" << r.output;
    }
    for (const std::string& f : flags) {
      EXPECT_TRUE(std::regex_search(text, std::regex("(^|[^a-z0-9-])" + f + "([^a-z0-9-]|$)")))
          << sub << " " << f << " is in --help but not in README.md";
    }
    const auto it = documented.find(sub);
    if (it == documented.end()) continue;
    for (const std::string& f : it->second) {
      EXPECT_TRUE(flags.count(f)) << "README.md gives " << sub << " " << f
                                  << ", which its --help does not list";
    }
  }
  // The subcommands the README's code shows are real ones.
  for (const auto& [sub, flags] : documented) {
    bool known = false;
    for (const char* s : kSubcommands) known = known || sub == s;
    EXPECT_TRUE(known) << "README.md runs `streamdiff " << sub << "`, which does not exist";
  }
}

}  // namespace
}  // namespace sd
