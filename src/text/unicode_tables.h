// Unicode tables for the CLIP tokenizer, generated from the reference Python by
// tools/gen_unicode_tables.py (see unicode_tables.cpp for the versions they were taken from).
#pragma once

#include <cstddef>
#include <cstdint>

namespace sd::text::tables {

struct CodepointRange {
  char32_t first, last;  // inclusive
};
struct LowerRun {
  char32_t first, last;
  int32_t delta;
  int32_t stride;
};
struct CombiningRun {
  char32_t first, last;
  uint8_t ccc;
};
struct Decomposition {
  char32_t cp, first, second;  // second == 0: a singleton decomposition
  uint8_t composes;
};

extern const CodepointRange kLetter[], kNumber[], kRegexSkip[], kPySpace[], kCleanDrop[],
    kCleanSpace[], kCased[], kCaseIgnorable[];
extern const size_t kLetterCount, kNumberCount, kRegexSkipCount, kPySpaceCount, kCleanDropCount,
    kCleanSpaceCount, kCasedCount, kCaseIgnorableCount;
extern const char32_t kFoldsToS[];
extern const size_t kFoldsToSCount;
extern const LowerRun kLowerRuns[];
extern const size_t kLowerRunsCount;
extern const CombiningRun kCombining[];
extern const size_t kCombiningCount;
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionsCount;

}  // namespace sd::text::tables
