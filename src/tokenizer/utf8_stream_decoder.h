// Turns a stream of raw bytes (GPT-2 tokens are byte sequences, and one character may be split across
// several tokens) into valid UTF-8 text, piece by piece, for streaming responses.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cortex::tokenizer {

// True when `s` is well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF, no
// truncated sequence).
bool is_valid_utf8(std::string_view s);

// Incremental UTF-8 decoder/validator. Follows the WHATWG "UTF-8 decode" algorithm (what TextDecoder
// does): each maximal invalid subsequence becomes one U+FFFD (EF BF BD); a well-formed but incomplete
// sequence at the end of a push is held back (at most 3 bytes) until the next push completes it.
// The concatenation of all push() results and finish() is the same as decoding all bytes at once, and
// every returned string is valid UTF-8.
//
// Thread-safety: none; one decoder per stream.
class Utf8StreamDecoder {
 public:
  // Feeds `bytes`; returns the text that is now complete.
  std::string push(std::string_view bytes);
  // Ends the stream: returns U+FFFD if an incomplete sequence was held back (else ""), and resets the
  // decoder so that it can start a new stream.
  std::string finish();
  // Number of bytes held back from the last push (0..3).
  size_t pending_bytes() const { return seen_; }

 private:
  void reset();

  uint8_t held_[4] = {};  // the bytes of the sequence being assembled
  uint8_t seen_ = 0;      // bytes of it seen so far (0: between characters)
  uint8_t needed_ = 0;    // total length of the sequence being assembled
  uint8_t lower_ = 0x80;  // allowed range of the next continuation byte
  uint8_t upper_ = 0xBF;
};

}  // namespace cortex::tokenizer
