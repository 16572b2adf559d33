#include "text/unicode_text.h"

#include <algorithm>
#include <unordered_map>

#include "text/unicode_tables.h"

namespace sd::text {
namespace {

using tables::CodepointRange;

bool in_ranges(const CodepointRange* ranges, size_t count, char32_t cp) {
  const CodepointRange* end = ranges + count;
  // First range whose last >= cp.
  const CodepointRange* it = std::lower_bound(
      ranges, end, cp, [](const CodepointRange& r, char32_t c) { return r.last < c; });
  return it != end && it->first <= cp;
}

// ---- Hangul syllables (algorithmic composition, Unicode ch. 3.12) ----
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

uint8_t combining_class(char32_t cp) {
  const auto* end = tables::kCombining + tables::kCombiningCount;
  const auto* it =
      std::lower_bound(tables::kCombining, end, cp,
                       [](const tables::CombiningRun& r, char32_t c) { return r.last < c; });
  return (it != end && it->first <= cp) ? it->ccc : 0;
}

const tables::Decomposition* find_decomposition(char32_t cp) {
  const auto* end = tables::kDecompositions + tables::kDecompositionsCount;
  const auto* it =
      std::lower_bound(tables::kDecompositions, end, cp,
                       [](const tables::Decomposition& d, char32_t c) { return d.cp < c; });
  return (it != end && it->cp == cp) ? it : nullptr;
}

void decompose(char32_t cp, std::u32string& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (const auto* d = find_decomposition(cp)) {
    decompose(d->first, out);
    if (d->second != 0) decompose(d->second, out);
    return;
  }
  out.push_back(cp);
}

const std::unordered_map<uint64_t, char32_t>& composition_pairs() {
  static const std::unordered_map<uint64_t, char32_t> pairs = [] {
    std::unordered_map<uint64_t, char32_t> m;
    for (size_t i = 0; i < tables::kDecompositionsCount; ++i) {
      const auto& d = tables::kDecompositions[i];
      if (d.composes) m.emplace((uint64_t(d.first) << 32) | d.second, d.cp);
    }
    return m;
  }();
  return pairs;
}

// The primary composite of (a, b), or 0.
char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto& pairs = composition_pairs();
  auto it = pairs.find((uint64_t(a) << 32) | b);
  return it == pairs.end() ? 0 : it->second;
}

char32_t lower_one(char32_t cp) {
  const auto* end = tables::kLowerRuns + tables::kLowerRunsCount;
  const auto* it =
      std::lower_bound(tables::kLowerRuns, end, cp,
                       [](const tables::LowerRun& r, char32_t c) { return r.last < c; });
  if (it == end || it->first > cp || (cp - it->first) % it->stride != 0) return cp;
  return char32_t(int64_t(cp) + it->delta);
}

bool is_cased(char32_t cp) {
  return in_ranges(tables::kCased, tables::kCasedCount, cp);
}
bool is_case_ignorable(char32_t cp) {
  return in_ranges(tables::kCaseIgnorable, tables::kCaseIgnorableCount, cp);
}

// CPython's handle_capital_sigma: final form when preceded by a cased letter and not followed
// by one, case-ignorable characters skipped on both sides.
bool is_final_sigma(std::u32string_view s, size_t i) {
  size_t j = i;
  while (j > 0 && is_case_ignorable(s[j - 1])) --j;
  if (j == 0 || !is_cased(s[j - 1])) return false;
  size_t k = i + 1;
  while (k < s.size() && is_case_ignorable(s[k])) ++k;
  return k == s.size() || !is_cased(s[k]);
}

}  // namespace

std::u32string decode_utf8_replace(std::string_view bytes) {
  std::u32string out;
  out.reserve(bytes.size());
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char b0 = s[i];
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    }
    int need;                            // continuation bytes
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
    char32_t cp;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      need = 1, cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      need = 2, cp = b0 & 0x0F;
      if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
      if (b0 == 0xED) hi = 0x9F;  // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      need = 3, cp = b0 & 0x07;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;  // <= U+10FFFF
    } else {
      out.push_back(0xFFFD);  // stray continuation byte, C0, C1, F5..FF
      ++i;
      continue;
    }
    size_t k = 1;
    bool ok = true;
    for (; k <= size_t(need); ++k) {
      const unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
      if (i + k >= n || s[i + k] < lo_k || s[i + k] > hi_k) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (ok) {
      out.push_back(cp);
      i += need + 1;
    } else {
      out.push_back(0xFFFD);  // the maximal subpart read so far; the failing byte starts anew
      i += k;
    }
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t c : cps) append_utf8(out, c);
  return out;
}

bool is_regex_letter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return in_ranges(tables::kLetter, tables::kLetterCount, cp);
}
bool is_regex_number(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return in_ranges(tables::kNumber, tables::kNumberCount, cp);
}
bool is_regex_skipped(char32_t cp) {
  return in_ranges(tables::kRegexSkip, tables::kRegexSkipCount, cp);
}
bool regex_literal_matches(char ascii, char32_t cp) {
  if (cp == char32_t(ascii)) return true;
  if (ascii >= 'a' && ascii <= 'z' && cp == char32_t(ascii - 'a' + 'A')) return true;
  if (ascii == 's')
    return std::find(tables::kFoldsToS, tables::kFoldsToS + tables::kFoldsToSCount, cp) !=
           tables::kFoldsToS + tables::kFoldsToSCount;
  return false;
}

bool is_python_space(char32_t cp) {
  return in_ranges(tables::kPySpace, tables::kPySpaceCount, cp);
}

CleanAction clean_action(char32_t cp) {
  if (in_ranges(tables::kCleanDrop, tables::kCleanDropCount, cp)) return CleanAction::kDrop;
  if (in_ranges(tables::kCleanSpace, tables::kCleanSpaceCount, cp)) return CleanAction::kSpace;
  return CleanAction::kKeep;
}

bool is_cjk_ideograph(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

std::u32string nfc(std::u32string_view s) {
  // Full canonical decomposition.
  std::u32string d;
  d.reserve(s.size());
  for (char32_t c : s) decompose(c, d);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j, [](char32_t a, char32_t b) {
      return combining_class(a) < combining_class(b);
    });
    i = j;
  }
  if (d.empty()) return d;
  // Canonical composition: a character joins the last starter unless blocked.
  size_t starter = 0;
  int last_class = combining_class(d[0]);
  if (last_class != 0) last_class = 256;  // a leading non-starter blocks everything after it
  size_t out = 1;
  for (size_t i = 1; i < d.size(); ++i) {
    const char32_t c = d[i];
    const int cls = combining_class(c);
    const char32_t composite = last_class == 256 ? 0 : compose(d[starter], c);
    if (composite != 0 && (last_class < cls || last_class == 0)) {
      d[starter] = composite;
      continue;
    }
    if (cls == 0) starter = out;
    last_class = cls;
    d[out++] = c;
  }
  d.resize(out);
  return d;
}

std::u32string python_lower(std::u32string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == 0x3A3) {
      out.push_back(is_final_sigma(s, i) ? 0x3C2 : 0x3C3);
    } else if (c == 0x130) {  // the one one-to-many mapping (asserted by the generator)
      out.push_back(0x69);
      out.push_back(0x307);
    } else {
      out.push_back(lower_one(c));
    }
  }
  return out;
}

}  // namespace sd::text
