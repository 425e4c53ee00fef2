#include "tokenizer/pretokenizer.h"

#include <unicode/uchar.h>

#include <array>
#include <cstdint>

namespace cortex::tokenizer {

namespace {

// The four classes the pattern distinguishes. kOther is [^\s\p{L}\p{N}] (punctuation, symbols, marks,
// controls, unassigned code points, invalid bytes).
enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

constexpr std::array<CharClass, 128> make_ascii_table() {
  std::array<CharClass, 128> t{};
  for (int c = 0; c < 128; ++c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      t[c] = CharClass::kLetter;
    } else if (c >= '0' && c <= '9') {
      t[c] = CharClass::kNumber;
    } else if ((c >= 0x09 && c <= 0x0D) || c == ' ') {
      t[c] = CharClass::kSpace;
    } else {
      t[c] = CharClass::kOther;
    }
  }
  return t;
}
constexpr std::array<CharClass, 128> kAsciiClass = make_ascii_table();

// JavaScript's \s beyond ASCII: Zs, U+2028, U+2029 and U+FEFF.
bool is_js_space(uint32_t cp) {
  switch (cp) {
    case 0x00A0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
    case 0xFEFF:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

CharClass classify_non_ascii(uint32_t cp) {
  if (is_js_space(cp)) return CharClass::kSpace;
  const uint32_t mask = U_GET_GC_MASK(static_cast<UChar32>(cp));
  if (mask & U_GC_L_MASK) return CharClass::kLetter;
  if (mask & U_GC_N_MASK) return CharClass::kNumber;
  return CharClass::kOther;
}

bool is_cont(uint8_t b) {
  return (b & 0xC0) == 0x80;
}

struct CodePoint {
  CharClass cls;
  uint32_t len;  // bytes, 1..4
};

// Decodes the code point that starts at s[i] (i < s.size()) and classifies it. Invalid sequences yield
// a single byte of class kOther.
CodePoint decode_at(std::string_view s, size_t i) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + i;
  const size_t left = s.size() - i;
  const uint8_t b0 = p[0];
  if (b0 < 0x80) return {kAsciiClass[b0], 1};
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (left >= 2 && is_cont(p[1])) return {classify_non_ascii(((b0 & 0x1Fu) << 6) | (p[1] & 0x3Fu)), 2};
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (left >= 3 && is_cont(p[1]) && is_cont(p[2])) {
      const bool ok = (b0 == 0xE0) ? p[1] >= 0xA0 : (b0 == 0xED) ? p[1] <= 0x9F : true;
      if (ok) {
        return {classify_non_ascii(((b0 & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu)), 3};
      }
    }
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (left >= 4 && is_cont(p[1]) && is_cont(p[2]) && is_cont(p[3])) {
      const bool ok = (b0 == 0xF0) ? p[1] >= 0x90 : (b0 == 0xF4) ? p[1] <= 0x8F : true;
      if (ok) {
        return {classify_non_ascii(((b0 & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) |
                                   (p[3] & 0x3Fu)),
                4};
      }
    }
  }
  return {CharClass::kOther, 1};
}

// Length of the contraction ('s 't 're 've 'm 'll 'd) at s[i] == '\'', or 0.
size_t contraction_length(std::string_view s, size_t i) {
  if (i + 1 >= s.size()) return 0;
  const char c1 = s[i + 1];
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (i + 2 >= s.size()) return 0;
  const char c2 = s[i + 2];
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

}  // namespace

bool Pretokenizer::next(std::string_view* piece) {
  const std::string_view s = text_;
  const size_t n = s.size();
  const size_t start = pos_;
  if (start >= n) return false;

  // 's|'t|'re|'ve|'m|'ll|'d
  if (s[start] == '\'') {
    if (size_t len = contraction_length(s, start); len != 0) {
      pos_ = start + len;
      *piece = s.substr(start, len);
      return true;
    }
  }

  CodePoint first = decode_at(s, start);
  size_t p = start;
  // ' ?X+' where X is \p{L}, \p{N} or [^\s\p{L}\p{N}]: a single U+0020 may lead a run of any non-space
  // class; the class of the run is that of the code point after it.
  if (s[start] == ' ' && start + 1 < n) {
    CodePoint second = decode_at(s, start + 1);
    if (second.cls != CharClass::kSpace) {
      p = start + 1;
      first = second;
    }
  }

  if (first.cls != CharClass::kSpace) {
    const CharClass cls = first.cls;
    p += first.len;
    while (p < n) {
      const auto b = static_cast<uint8_t>(s[p]);
      if (b < 0x80) {
        if (kAsciiClass[b] != cls) break;
        ++p;
        continue;
      }
      const CodePoint cp = decode_at(s, p);
      if (cp.cls != cls) break;
      p += cp.len;
    }
    pos_ = p;
    *piece = s.substr(start, p - start);
    return true;
  }

  // \s+(?!\S)|\s+ : a whitespace run at the end of the text is taken whole; a run followed by
  // non-space gives up its last code point (which then leads the next piece), unless it has only one.
  size_t last_start = start;
  size_t count = 0;
  while (p < n) {
    const CodePoint cp = decode_at(s, p);
    if (cp.cls != CharClass::kSpace) break;
    last_start = p;
    p += cp.len;
    ++count;
  }
  if (p < n && count >= 2) p = last_start;
  pos_ = p;
  *piece = s.substr(start, p - start);
  return true;
}

std::vector<std::string_view> pretokenize(std::string_view text) {
  std::vector<std::string_view> pieces;
  Pretokenizer it(text);
  std::string_view piece;
  while (it.next(&piece)) pieces.push_back(piece);
  return pieces;
}

}  // namespace cortex::tokenizer
