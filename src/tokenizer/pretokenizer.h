// GPT-2's pre-tokenizer: splits text into the pieces ("words") that byte-level BPE then merges
// independently. It implements, by hand and without a regex engine, OpenAI's pattern
//
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// with the semantics of the JavaScript reference (gpt-3-encoder, a /u regex): matching is over Unicode
// code points, \p{L} and \p{N} are the general categories L* and N* (ICU), and \s is JavaScript's
// whitespace: U+0009..U+000D, U+0020, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F,
// U+3000 and U+FEFF.
//
// Input is UTF-8. Bytes that do not form a valid UTF-8 sequence (stray continuation bytes, overlong
// forms, surrogates, truncated sequences, values above U+10FFFF) are each treated as one code point of
// category "other" (like punctuation), so every input splits into pieces that concatenate back to it.
//
// Cost: one pass over the text; ASCII is classified by a table, other code points by ICU's u_charType.
// Thread-safety: stateless functions; a Pretokenizer object is a cursor owned by one thread.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace cortex::tokenizer {

// A cursor over the pieces of one text. The text must outlive the cursor and the pieces it returns.
//
//   Pretokenizer it(text);
//   std::string_view piece;
//   while (it.next(&piece)) use(piece);
class Pretokenizer {
 public:
  explicit Pretokenizer(std::string_view text) : text_(text) {}

  // Stores the next piece (never empty) in *piece and returns true, or returns false at the end.
  bool next(std::string_view* piece);

 private:
  std::string_view text_;
  size_t pos_ = 0;
};

// All pieces of `text`, in order; they are views into `text` and concatenate back to it.
std::vector<std::string_view> pretokenize(std::string_view text);

}  // namespace cortex::tokenizer
