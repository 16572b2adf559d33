// The Unicode text operations that the CLIP tokenizer's reference (transformers' slow
// CLIPTokenizer with its BasicTokenizer, on CPython) performs, reproduced code point for code
// point from tables generated out of that same Python (unicode_tables.cpp).
#pragma once

#include <string>
#include <string_view>

namespace sd::text {

// UTF-8 -> code points as Python's bytes.decode("utf-8", errors="replace") does it: each
// maximal invalid subpart (overlong forms, surrogates, > U+10FFFF, stray or missing
// continuation bytes) becomes one U+FFFD.
std::u32string decode_utf8_replace(std::string_view bytes);
void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(std::u32string_view cps);

// Character classes of the pre-tokenisation regex (regex module, IGNORECASE).
bool is_regex_letter(char32_t cp);   // [\p{L}]
bool is_regex_number(char32_t cp);   // [\p{N}]
bool is_regex_skipped(char32_t cp);  // matched by no alternative: \s and U+0345
// True when cp matches the pattern literal `ascii` (a lower-case ASCII character) under
// IGNORECASE: the character itself, its upper case, and U+017F for 's'.
bool regex_literal_matches(char ascii, char32_t cp);

bool is_python_space(char32_t cp);  // str.isspace()

// BasicTokenizer._clean_text: what happens to one code point.
enum class CleanAction { kKeep, kDrop, kSpace };
CleanAction clean_action(char32_t cp);
// BasicTokenizer._is_chinese_char (CJK ideograph blocks).
bool is_cjk_ideograph(char32_t cp);

// unicodedata.normalize("NFC", s).
std::u32string nfc(std::u32string_view s);
// str.lower(): full lower-case mapping, with CPython's Final_Sigma rule for U+03A3.
std::u32string python_lower(std::u32string_view s);

}  // namespace sd::text
