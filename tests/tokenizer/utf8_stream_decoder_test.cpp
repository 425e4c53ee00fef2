#include "tokenizer/utf8_stream_decoder.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace cortex::tokenizer {
namespace {

const std::string kFFFD = "\xEF\xBF\xBD";

// Decodes `bytes` pushed in pieces of the given sizes (the rest in one last push), then finish().
std::string decode_in_pieces(const std::string& bytes, const std::vector<size_t>& sizes) {
  Utf8StreamDecoder d;
  std::string out;
  size_t pos = 0;
  for (size_t s : sizes) {
    out += d.push(std::string_view(bytes).substr(pos, s));
    pos += s;
  }
  out += d.push(std::string_view(bytes).substr(pos));
  out += d.finish();
  return out;
}

TEST(Utf8StreamDecoderTest, AsciiPassesThrough) {
  Utf8StreamDecoder d;
  EXPECT_EQ(d.push("hello "), "hello ");
  EXPECT_EQ(d.push("world"), "world");
  EXPECT_EQ(d.finish(), "");
}

TEST(Utf8StreamDecoderTest, TwoByteCharacterSplitAcrossPushes) {
  Utf8StreamDecoder d;
  EXPECT_EQ(d.push("caf\xC3"), "caf");
  EXPECT_EQ(d.pending_bytes(), 1u);
  EXPECT_EQ(d.push("\xA9!"), "\xC3\xA9!");
  EXPECT_EQ(d.pending_bytes(), 0u);
  EXPECT_EQ(d.finish(), "");
}

TEST(Utf8StreamDecoderTest, ThreeByteCharacterSplitAcrossPushes) {
  Utf8StreamDecoder d;
  EXPECT_EQ(d.push("\xE6"), "");
  EXPECT_EQ(d.push("\x97"), "");
  EXPECT_EQ(d.push("\xA5\xE6\x9C"), "\xE6\x97\xA5");  // 日, then half of 本
  EXPECT_EQ(d.push("\xAC"), "\xE6\x9C\xAC");
  EXPECT_EQ(d.finish(), "");
}

TEST(Utf8StreamDecoderTest, EmojiSplitInFourPushes) {
  const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600
  Utf8StreamDecoder d;
  EXPECT_EQ(d.push(emoji.substr(0, 1)), "");
  EXPECT_EQ(d.push(emoji.substr(1, 1)), "");
  EXPECT_EQ(d.push(emoji.substr(2, 1)), "");
  EXPECT_EQ(d.pending_bytes(), 3u);
  EXPECT_EQ(d.push(emoji.substr(3, 1)), emoji);
  EXPECT_EQ(d.finish(), "");
}

TEST(Utf8StreamDecoderTest, InvalidBytesBecomeReplacementCharacters) {
  Utf8StreamDecoder d;
  EXPECT_EQ(d.push("a\xFF"
                   "b"),
            "a" + kFFFD + "b");
  EXPECT_EQ(d.push("\x80\x80"), kFFFD + kFFFD);  // stray continuation bytes
  EXPECT_EQ(d.push("\xF8\xFE"), kFFFD + kFFFD);
  // A lead byte followed by a non-continuation: one U+FFFD, and the next byte is read on its own.
  EXPECT_EQ(d.push("\xC3(x"), kFFFD + "(x");
  // A truncated 3-byte sequence is one maximal subpart: one U+FFFD.
  EXPECT_EQ(d.push("\xE6\x97z"), kFFFD + "z");
  EXPECT_EQ(d.finish(), "");
}

TEST(Utf8StreamDecoderTest, InvalidByteCompletesHeldSequenceAcrossPushes) {
  Utf8StreamDecoder d;
  EXPECT_EQ(d.push("\xE6\x97"), "");
  EXPECT_EQ(d.push("A"), kFFFD + "A");
  EXPECT_EQ(d.push("\xF0\x9F"), "");
  EXPECT_EQ(d.push("\xC3\xA9"), kFFFD + "\xC3\xA9");
}

TEST(Utf8StreamDecoderTest, OverlongAndSurrogateEncodingsAreRejected) {
  // Overlong encodings of '/' (C0 AF, E0 80 AF, F0 80 80 AF): every byte is its own error, because no
  // valid sequence starts with C0, and E0 / F0 may not be followed by 80.
  EXPECT_EQ(decode_in_pieces("\xC0\xAF", {}), kFFFD + kFFFD);
  EXPECT_EQ(decode_in_pieces("\xE0\x80\xAF", {}), kFFFD + kFFFD + kFFFD);
  EXPECT_EQ(decode_in_pieces("\xF0\x80\x80\xAF", {}), kFFFD + kFFFD + kFFFD + kFFFD);
  // UTF-16 surrogates encoded in UTF-8 (ED A0 80 = U+D800).
  EXPECT_EQ(decode_in_pieces("\xED\xA0\x80", {1, 1}), kFFFD + kFFFD + kFFFD);
  // Above U+10FFFF (F4 90 80 80) and 5-byte leads.
  EXPECT_EQ(decode_in_pieces("\xF4\x90\x80\x80", {}), kFFFD + kFFFD + kFFFD + kFFFD);
  // The largest valid values of each length pass.
  EXPECT_EQ(decode_in_pieces("\xF4\x8F\xBF\xBF", {2}), "\xF4\x8F\xBF\xBF");
  EXPECT_EQ(decode_in_pieces("\xED\x9F\xBF", {1}), "\xED\x9F\xBF");
  EXPECT_EQ(decode_in_pieces("\xEF\xBF\xBF", {}), "\xEF\xBF\xBF");
}

TEST(Utf8StreamDecoderTest, FinishFlushesIncompleteTail) {
  Utf8StreamDecoder d;
  EXPECT_EQ(d.push("ok\xF0\x9F\x98"), "ok");
  EXPECT_EQ(d.finish(), kFFFD);
  EXPECT_EQ(d.pending_bytes(), 0u);
  // The decoder is reusable after finish().
  EXPECT_EQ(d.push("\xC3\xA9"), "\xC3\xA9");
  EXPECT_EQ(d.finish(), "");
}

TEST(Utf8StreamDecoderTest, IsValidUtf8) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(is_valid_utf8("\xC3\xA9\xE6\x97\xA5\xF0\x9F\x98\x80"));
  EXPECT_TRUE(is_valid_utf8("\xF4\x8F\xBF\xBF"));
  EXPECT_FALSE(is_valid_utf8("\xC3"));
  EXPECT_FALSE(is_valid_utf8("\x80"));
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));
  EXPECT_FALSE(is_valid_utf8("\xC1\xBF"));
  EXPECT_FALSE(is_valid_utf8("\xE0\x9F\xBF"));
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));
  EXPECT_FALSE(is_valid_utf8("\xF0\x8F\xBF\xBF"));
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));
  EXPECT_FALSE(is_valid_utf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(is_valid_utf8("\xE6\x97"));
  EXPECT_FALSE(is_valid_utf8("\xE6\x97z"));
}

// Any split of any byte string gives the same output as one push, and the output is valid UTF-8.
TEST(Utf8StreamDecoderTest, SplitsDoNotChangeTheOutput) {
  std::mt19937 rng(99);
  const std::vector<std::string> atoms = {
      "a",    "\xC3\xA9", "\xE6\x97\xA5", "\xF0\x9F\x98\x80", "\xED\x9F\xBF", "\x80",
      "\xC0", "\xE0\x80", "\xED\xA0",     "\xF4\x90",         "\xF0\x9F",     "\xFF"};
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes;
    const int n = static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) bytes += atoms[rng() % atoms.size()];
    const std::string whole = decode_in_pieces(bytes, {});
    ASSERT_TRUE(is_valid_utf8(whole));
    if (is_valid_utf8(bytes)) {
      ASSERT_EQ(whole, bytes);
    }
    std::vector<size_t> sizes;
    size_t left = bytes.size();
    while (left > 0) {
      const size_t s = std::min<size_t>(left, rng() % 4);
      sizes.push_back(s);
      left -= s;
    }
    ASSERT_EQ(decode_in_pieces(bytes, sizes), whole);
  }
}

}  // namespace
}  // namespace cortex::tokenizer
