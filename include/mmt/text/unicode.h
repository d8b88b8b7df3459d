/* The Unicode a tokenizer needs: UTF-8 decoding with validation, and the character classes and
 * transforms of BERT's basic tokenizer (whitespace, control, punctuation, CJK, lower-casing,
 * accent stripping). Classes and case mapping come from ICU, so they follow the same Unicode
 * database as Python's unicodedata up to version differences. */
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mmt::unicode {

/// True when `s` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF);
/// otherwise `bad_offset` (if given) receives the byte offset of the first bad sequence.
bool valid_utf8(std::string_view s, size_t* bad_offset = nullptr);

/// Code points of `s`; each ill-formed sequence becomes U+FFFD.
std::u32string decode_utf8(std::string_view s);
std::string encode_utf8(std::u32string_view s);

/// BERT's classes: whitespace = space, \t, \n, \r or category Zs; control = category Cc or Cf
/// except \t, \n, \r; punctuation = ASCII non-alphanumeric symbols or any category P*; CJK = the
/// CJK Unified Ideographs blocks (not Hangul, Hiragana or Katakana).
bool is_whitespace(char32_t c);
bool is_control(char32_t c);
bool is_punctuation(char32_t c);
bool is_cjk(char32_t c);

/// Full Unicode lower-casing (one code point may become several, as Python's str.lower()).
std::u32string to_lower(std::u32string_view s);
/// NFD, then drops non-spacing marks (category Mn): "héllo" -> "hello".
std::u32string strip_accents(std::u32string_view s);

}  // namespace mmt::unicode
