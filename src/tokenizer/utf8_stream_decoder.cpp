#include "tokenizer/utf8_stream_decoder.h"

namespace cortex::tokenizer {

namespace {
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
}  // namespace

bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t b = p[i];
    if (b < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (n - i < len) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

void Utf8StreamDecoder::reset() {
  seen_ = 0;
  needed_ = 0;
  lower_ = 0x80;
  upper_ = 0xBF;
}

std::string Utf8StreamDecoder::push(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() + 3 * seen_);
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t b = p[i];
    if (needed_ == 0) {
      if (b < 0x80) {
        // Copy a whole ASCII run at once.
        size_t j = i + 1;
        while (j < n && p[j] < 0x80) ++j;
        out.append(bytes.data() + i, j - i);
        i = j;
        continue;
      }
      if (b >= 0xC2 && b <= 0xDF) {
        needed_ = 2;
      } else if (b >= 0xE0 && b <= 0xEF) {
        needed_ = 3;
        if (b == 0xE0) lower_ = 0xA0;
        if (b == 0xED) upper_ = 0x9F;
      } else if (b >= 0xF0 && b <= 0xF4) {
        needed_ = 4;
        if (b == 0xF0) lower_ = 0x90;
        if (b == 0xF4) upper_ = 0x8F;
      } else {
        out.append(kReplacement);
        ++i;
        continue;
      }
      held_[0] = b;
      seen_ = 1;
      ++i;
      continue;
    }
    if (b < lower_ || b > upper_) {
      // The held bytes are a maximal invalid subsequence; `b` is looked at again as a new start.
      reset();
      out.append(kReplacement);
      continue;
    }
    lower_ = 0x80;
    upper_ = 0xBF;
    held_[seen_++] = b;
    ++i;
    if (seen_ == needed_) {
      out.append(reinterpret_cast<const char*>(held_), seen_);
      reset();
    }
  }
  return out;
}

std::string Utf8StreamDecoder::finish() {
  std::string out;
  if (seen_ != 0) out.assign(kReplacement);
  reset();
  return out;
}

}  // namespace cortex::tokenizer
