// Hand-worked cases for GPT-2's pre-tokenizer pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (JavaScript /u semantics). The whole-pipeline comparison with the reference is bpe_tokenizer_test.
#include "tokenizer/pretokenizer.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace cortex::tokenizer {
namespace {

std::vector<std::string> split(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view p : pretokenize(text)) out.emplace_back(p);
  return out;
}

using V = std::vector<std::string>;

TEST(PretokenizerTest, WordsTakeOneLeadingSpace) {
  EXPECT_EQ(split("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(split("Hello, world!"), (V{"Hello", ",", " world", "!"}));
  EXPECT_EQ(split(" a b"), (V{" a", " b"}));
}

TEST(PretokenizerTest, EmptyAndWhitespaceOnly) {
  EXPECT_EQ(split(""), V{});
  EXPECT_EQ(split(" "), V{" "});
  EXPECT_EQ(split("   "), V{"   "});
  EXPECT_EQ(split("\n"), V{"\n"});
  EXPECT_EQ(split(" \n\t "), V{" \n\t "});
}

TEST(PretokenizerTest, SpaceRunsLeaveTheirLastSpaceToTheNextWord) {
  EXPECT_EQ(split("  hi"), (V{" ", " hi"}));
  EXPECT_EQ(split("a    b"), (V{"a", "   ", " b"}));
  EXPECT_EQ(split("a\n\n b"), (V{"a", "\n\n", " b"}));
  EXPECT_EQ(split("a\n\nb"), (V{"a", "\n", "\n", "b"}));
  EXPECT_EQ(split("a\nb"), (V{"a", "\n", "b"}));
  EXPECT_EQ(split("a \tb"), (V{"a", " ", "\t", "b"}));
  EXPECT_EQ(split("a\t b"), (V{"a", "\t", " b"}));
  EXPECT_EQ(split("x  !"), (V{"x", " ", " !"}));
  EXPECT_EQ(split("x  7"), (V{"x", " ", " 7"}));
}

TEST(PretokenizerTest, TrailingWhitespaceIsOnePiece) {
  EXPECT_EQ(split("hello   "), (V{"hello", "   "}));
  EXPECT_EQ(split("hello \n"), (V{"hello", " \n"}));
  EXPECT_EQ(split("end.\n\n\n"), (V{"end", ".", "\n\n\n"}));
}

TEST(PretokenizerTest, Contractions) {
  EXPECT_EQ(split("I'm"), (V{"I", "'m"}));
  EXPECT_EQ(split("don't"), (V{"don", "'t"}));
  EXPECT_EQ(split("you'll we've they're he'd it's"),
            (V{"you", "'ll", " we", "'ve", " they", "'re", " he", "'d", " it", "'s"}));
  // Upper case is not a contraction: the apostrophe is punctuation.
  EXPECT_EQ(split("DON'T"), (V{"DON", "'", "T"}));
  EXPECT_EQ(split("IT'S"), (V{"IT", "'", "S"}));
  // Contractions are only tried where a piece starts.
  EXPECT_EQ(split("'''s"), (V{"'''", "s"}));
  EXPECT_EQ(split("?'s"), (V{"?'", "s"}));
  EXPECT_EQ(split(" 's"), (V{" '", "s"}));
  EXPECT_EQ(split("'s's"), (V{"'s", "'s"}));
  EXPECT_EQ(split("'x"), (V{"'", "x"}));
  EXPECT_EQ(split("'"), (V{"'"}));
  EXPECT_EQ(split("'l"), (V{"'", "l"}));
  EXPECT_EQ(split("'lll"), (V{"'ll", "l"}));
  // A typographic apostrophe is punctuation.
  EXPECT_EQ(split("it\u2019s"), (V{"it", "\u2019", "s"}));
}

TEST(PretokenizerTest, NumbersAndPunctuation) {
  EXPECT_EQ(split("123abc"), (V{"123", "abc"}));
  EXPECT_EQ(split("abc123"), (V{"abc", "123"}));
  EXPECT_EQ(split(" 3.14159"), (V{" 3", ".", "14159"}));
  EXPECT_EQ(split("$100,000"), (V{"$", "100", ",", "000"}));
  EXPECT_EQ(split("!!! ??"), (V{"!!!", " ??"}));
  EXPECT_EQ(split("a->b"), (V{"a", "->", "b"}));
  EXPECT_EQ(split("x = {\"k\": [1, 2]};"), (V{"x", " =", " {\"", "k", "\":", " [", "1", ",", " 2", "]};"}));
}

TEST(PretokenizerTest, UnicodeCategories) {
  EXPECT_EQ(split("Привет мир"), (V{"Привет", " мир"}));
  EXPECT_EQ(split("日本語のテキスト"), (V{"日本語のテキスト"}));
  EXPECT_EQ(split("한국어 문장"), (V{"한국어", " 문장"}));
  // Combining marks (Mn) are not letters.
  EXPECT_EQ(split("e\u0301te"), (V{"e", "\u0301", "te"}));
  // Devanagari vowel signs are marks too.
  EXPECT_EQ(split("नमस्ते"), (V{"नमस", "्", "त", "े"}));
  // Arabic-Indic digits, superscripts, Roman numerals and vulgar fractions are \p{N}.
  EXPECT_EQ(split("x ٣٤٥"), (V{"x", " ٣٤٥"}));
  EXPECT_EQ(split("x²"), (V{"x", "²"}));
  EXPECT_EQ(split("Ⅻ½"), (V{"Ⅻ½"}));
  // Emoji are "other": a ZWJ sequence with a skin tone stays one run.
  EXPECT_EQ(split("hi 👩🏽‍💻!"), (V{"hi", " 👩🏽‍💻!"}));
  EXPECT_EQ(split("🇫🇷🇯🇵"), (V{"🇫🇷🇯🇵"}));
}

TEST(PretokenizerTest, JavaScriptWhitespace) {
  // NBSP and friends are \s, but only U+0020 may lead a word.
  EXPECT_EQ(split("a\u00A0b"), (V{"a", "\u00A0", "b"}));
  EXPECT_EQ(split("a \u00A0b"), (V{"a", " ", "\u00A0", "b"}));
  EXPECT_EQ(split("a\u00A0 b"), (V{"a", "\u00A0", " b"}));
  EXPECT_EQ(split("a\u3000\u3000b"), (V{"a", "\u3000", "\u3000", "b"}));
  EXPECT_EQ(split("a\u2009\u202F\u205F"), (V{"a", "\u2009\u202F\u205F"}));
  EXPECT_EQ(split("a\uFEFFb"), (V{"a", "\uFEFF", "b"}));
  EXPECT_EQ(split("a\u2028\u2029b"), (V{"a", "\u2028", "\u2029", "b"}));
  EXPECT_EQ(split("a\u1680b"), (V{"a", "\u1680", "b"}));
  // Not \s in JavaScript: NEL (U+0085, a control), ZWSP (U+200B, a format character), U+180E.
  EXPECT_EQ(split("a\u0085b"), (V{"a", "\u0085", "b"}));
  EXPECT_EQ(split("a \u200Bb"), (V{"a", " \u200B", "b"}));
  EXPECT_EQ(split("a\u180Eb"), (V{"a", "\u180E", "b"}));
  // Vertical tab and form feed are \s.
  EXPECT_EQ(split("a\v\fb"), (V{"a", "\v", "\f", "b"}));
}

TEST(PretokenizerTest, InvalidUtf8BytesAreOtherCharacters) {
  EXPECT_EQ(split("\xff"), (V{"\xff"}));
  EXPECT_EQ(split("a\xff\xfe b"), (V{"a", "\xff\xfe", " b"}));
  EXPECT_EQ(split(" \x80x"), (V{" \x80", "x"}));
  // Truncated, overlong and surrogate sequences: byte by byte, all "other".
  EXPECT_EQ(split("ab\xe6\x97"), (V{"ab", "\xe6\x97"}));
  EXPECT_EQ(split("a\xc0\xafz"), (V{"a", "\xc0\xaf", "z"}));
  EXPECT_EQ(split("a\xed\xa0\x80z"), (V{"a", "\xed\xa0\x80", "z"}));
  // A valid letter after a stray byte is still a letter.
  EXPECT_EQ(split("\x80\xc3\xa9t\xc3\xa9"), (V{"\x80", "\xc3\xa9t\xc3\xa9"}));
}

TEST(PretokenizerTest, PiecesCoverRandomBytesExactly) {
  std::mt19937 rng(1234);
  const std::vector<std::string> atoms = {"a",
                                          "Z",
                                          "7",
                                          " ",
                                          "  ",
                                          "\n",
                                          "\t",
                                          "'",
                                          "'s",
                                          "'ll",
                                          ".",
                                          "é",
                                          "\xe6\x97\xa5",
                                          "\xf0\x9f\x98\x80",
                                          "\xc2\xa0",
                                          "\xe3\x80\x80",
                                          "\xcc\x81",
                                          "\x80",
                                          "\xff",
                                          "\xe6",
                                          "\xf0\x9f"};
  for (int iter = 0; iter < 5000; ++iter) {
    std::string text;
    const int n = static_cast<int>(rng() % 20);
    for (int i = 0; i < n; ++i) {
      if (rng() % 4 == 0) {
        text.push_back(static_cast<char>(rng() & 0xFF));
      } else {
        text += atoms[rng() % atoms.size()];
      }
    }
    std::string joined;
    for (std::string_view p : pretokenize(text)) {
      ASSERT_FALSE(p.empty());
      joined += p;
    }
    ASSERT_EQ(joined, text);
  }
}

}  // namespace
}  // namespace cortex::tokenizer
