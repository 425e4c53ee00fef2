#include "control/quantity.h"

#include <array>
#include <limits>
#include <optional>

#include "util/error.h"

namespace cortex::control {

namespace {

__extension__ typedef unsigned __int128 u128;
constexpr u128 kInt64Max = static_cast<u128>(std::numeric_limits<int64_t>::max());
constexpr size_t kMaxSignificantDigits = 18;  // fits in uint64_t; times 2^60 still fits in u128

// An exact decimal: significant * 10^exp10 * 2^exp2.
struct Exact {
  bool negative = false;
  uint64_t significant = 0;
  int exp10 = 0;
  int exp2 = 0;
};

enum class Fit { kOk, kNotWhole, kTooLarge };

// Reads "digits", "digits.", "digits.digits" or ".digits" at s[pos...]; advances pos. Returns nullopt
// when no digit is there or there are more significant digits than fit.
std::optional<Exact> read_decimal(std::string_view s, size_t& pos, bool& too_many_digits) {
  std::string digits;
  int fraction = 0;
  bool any = false;
  bool point = false;
  for (; pos < s.size(); ++pos) {
    const char c = s[pos];
    if (c >= '0' && c <= '9') {
      digits += c;
      any = true;
      if (point) ++fraction;
    } else if (c == '.' && !point) {
      point = true;
    } else {
      break;
    }
  }
  if (!any) return std::nullopt;
  Exact e;
  e.exp10 = -fraction;
  size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) return e;  // zero
  digits.erase(0, first);
  while (digits.back() == '0') {
    digits.pop_back();
    ++e.exp10;
  }
  if (digits.size() > kMaxSignificantDigits) {
    too_many_digits = true;
    return std::nullopt;
  }
  e.significant = std::stoull(digits);
  return e;
}

// significant * 10^(exp10 + extra10) * 2^exp2 * factor as a whole number.
Fit to_whole(const Exact& e, int extra10, uint64_t factor, int64_t& out) {
  out = 0;
  if (e.significant == 0) return Fit::kOk;
  u128 n = e.significant;
  for (int i = 0; i < e.exp2; ++i) n <<= 1;  // exp2 <= 60: at most ~2^120
  int exp10 = e.exp10 + extra10;
  if (factor != 1) {
    if (n > ~u128{0} / factor) return Fit::kTooLarge;
    n *= factor;
  }
  if (exp10 >= 0) {
    if (n > kInt64Max) return Fit::kTooLarge;
    for (int i = 0; i < exp10; ++i) {
      n *= 10;
      if (n > kInt64Max) return Fit::kTooLarge;
    }
  } else {
    if (-exp10 > 37) return Fit::kNotWhole;  // n < 10^37 and not zero
    u128 d = 1;
    for (int i = 0; i < -exp10; ++i) d *= 10;
    if (n % d != 0) return Fit::kNotWhole;
    n /= d;
    if (n > kInt64Max) return Fit::kTooLarge;
  }
  out = static_cast<int64_t>(n);
  return Fit::kOk;
}

struct Suffix {
  std::string_view name;
  int exp10;
  int exp2;
};
constexpr std::array<Suffix, 15> kSuffixes{{
    {"Ki", 0, 10},
    {"Mi", 0, 20},
    {"Gi", 0, 30},
    {"Ti", 0, 40},
    {"Pi", 0, 50},
    {"Ei", 0, 60},
    {"n", -9, 0},
    {"u", -6, 0},
    {"m", -3, 0},
    {"k", 3, 0},
    {"M", 6, 0},
    {"G", 9, 0},
    {"T", 12, 0},
    {"P", 15, 0},
    {"E", 18, 0},
}};

enum class QuantityStatus { kOk, kMalformed, kTooManyDigits };

// Kubernetes' quantity grammar: [+-] number [suffix | e<int> | E<int>]. Fills `suffix` with what
// followed the number (for error hints).
QuantityStatus read_quantity(std::string_view text, Exact& out, std::string_view& suffix) {
  size_t pos = 0;
  bool negative = false;
  if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) negative = text[pos++] == '-';
  bool too_many = false;
  auto number = read_decimal(text, pos, too_many);
  if (too_many) return QuantityStatus::kTooManyDigits;
  if (!number) return QuantityStatus::kMalformed;
  out = *number;
  out.negative = negative;
  suffix = text.substr(pos);
  if (suffix.empty()) return QuantityStatus::kOk;
  for (const auto& s : kSuffixes) {
    if (suffix == s.name) {
      out.exp10 += s.exp10;
      out.exp2 = s.exp2;
      return QuantityStatus::kOk;
    }
  }
  if (suffix[0] == 'e' || suffix[0] == 'E') {  // decimal exponent ("1e9", "5E-3")
    std::string_view exponent = suffix.substr(1);
    bool minus = false;
    if (!exponent.empty() && (exponent[0] == '+' || exponent[0] == '-')) {
      minus = exponent[0] == '-';
      exponent.remove_prefix(1);
    }
    if (exponent.empty() || exponent.size() > 3) return QuantityStatus::kMalformed;
    int value = 0;
    for (char c : exponent) {
      if (c < '0' || c > '9') return QuantityStatus::kMalformed;
      value = value * 10 + (c - '0');
    }
    out.exp10 += minus ? -value : value;
    return QuantityStatus::kOk;
  }
  return QuantityStatus::kMalformed;
}

std::string quoted(std::string_view text) {
  std::string
      out;  // (appended, not "'" + std::string(...): GCC 12 warns falsely about the latter, -Wrestrict)
  out.reserve(text.size() + 2);
  out += '\'';
  out += text;
  out += '\'';
  return out;
}

}  // namespace

int64_t parse_cpu_quantity(std::string_view text) {
  const std::string allowed = "write cores (2, 0.5) or millicores (500m)";
  Exact q;
  std::string_view suffix;
  switch (read_quantity(text, q, suffix)) {
    case QuantityStatus::kOk:
      break;
    case QuantityStatus::kTooManyDigits:
      throw invalid_argument("CPU quantity " + quoted(text) + " has too many digits; " + allowed);
    case QuantityStatus::kMalformed:
      throw invalid_argument("invalid CPU quantity " + quoted(text) + ": " + allowed);
  }
  if (q.negative && q.significant != 0)
    throw invalid_argument("CPU quantity " + quoted(text) + " must not be negative");
  int64_t millis = 0;
  switch (to_whole(q, 3, 1, millis)) {
    case Fit::kOk:
      return millis;
    case Fit::kNotWhole:
      throw invalid_argument("CPU quantity " + quoted(text) +
                             " is finer than 1m (one millicore), the smallest unit; " + allowed);
    case Fit::kTooLarge:
      break;
  }
  throw invalid_argument("CPU quantity " + quoted(text) + " is too large");
}

int64_t parse_memory_quantity(std::string_view text) {
  const std::string allowed =
      "write bytes (1000, 1e9) with an optional suffix Ki Mi Gi Ti Pi Ei (powers of 1024) or k M G T P E "
      "(powers of 1000), e.g. 512Mi or 2Gi";
  Exact q;
  std::string_view suffix;
  switch (read_quantity(text, q, suffix)) {
    case QuantityStatus::kOk:
      break;
    case QuantityStatus::kTooManyDigits:
      throw invalid_argument("memory quantity " + quoted(text) + " has too many digits; " + allowed);
    case QuantityStatus::kMalformed: {
      std::string hint;
      // "2GB", "512MB", "1KiB", "4K": say what was probably meant.
      std::string_view unit = suffix;
      if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.remove_suffix(1);
      if (unit == "K" || unit == "KB") unit = "k";
      for (const auto& s : kSuffixes) {
        if (s.name == unit && s.exp10 >= 0 && !unit.empty()) {
          const std::string number(text.substr(0, text.size() - suffix.size()));
          std::string binary(s.name);
          if (s.exp2 == 0) binary = s.name == "k" ? "Ki" : binary + "i";
          const std::string decimal = s.exp2 == 0 ? number + std::string(s.name) + " or " : "";
          hint = " (for " + quoted(text) + " write " + decimal + number + binary + ")";
        }
      }
      throw invalid_argument("invalid memory quantity " + quoted(text) + hint + ": " + allowed);
    }
  }
  if (suffix == "m" || suffix == "u" || suffix == "n") {
    const std::string number(text.substr(0, text.size() - 1));
    throw invalid_argument("memory quantity " + quoted(text) + " is in thousandths of a byte or smaller ('" +
                           std::string(suffix) + "' is a sub-unit); for megabytes write " + number +
                           "M, for mebibytes " + number + "Mi");
  }
  if (q.negative && q.significant != 0)
    throw invalid_argument("memory quantity " + quoted(text) + " must not be negative");
  int64_t bytes = 0;
  switch (to_whole(q, 0, 1, bytes)) {
    case Fit::kOk:
      return bytes;
    case Fit::kNotWhole:
      throw invalid_argument("memory quantity " + quoted(text) + " is not a whole number of bytes");
    case Fit::kTooLarge:
      break;
  }
  throw invalid_argument("memory quantity " + quoted(text) + " is too large");
}

std::chrono::milliseconds parse_duration(std::string_view text) {
  const std::string allowed = "write a number with a unit h, m, s or ms, e.g. 60s, 5m, 500ms, 1m30s";
  const std::string bad = "invalid duration " + quoted(text) + ": " + allowed;
  size_t pos = 0;
  bool negative = false;
  if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) negative = text[pos++] == '-';
  if (text.substr(pos) == "0") return std::chrono::milliseconds(0);
  if (pos == text.size()) throw invalid_argument(bad);
  int64_t total = 0;
  while (pos < text.size()) {
    bool too_many = false;
    auto number = read_decimal(text, pos, too_many);
    if (too_many) throw invalid_argument("duration " + quoted(text) + " has too many digits");
    if (!number) throw invalid_argument(bad);
    uint64_t unit_ms = 0;
    if (text.substr(pos, 2) == "ms") {
      unit_ms = 1;
      pos += 2;
    } else if (pos < text.size() && text[pos] == 's') {
      unit_ms = 1000;
      ++pos;
    } else if (pos < text.size() && text[pos] == 'm') {
      unit_ms = 60'000;
      ++pos;
    } else if (pos < text.size() && text[pos] == 'h') {
      unit_ms = 3'600'000;
      ++pos;
    } else if (pos == text.size()) {
      throw invalid_argument("duration " + quoted(text) + " has no unit; " + allowed);
    } else {
      throw invalid_argument(bad);
    }
    int64_t term = 0;
    switch (to_whole(*number, 0, unit_ms, term)) {
      case Fit::kOk:
        break;
      case Fit::kNotWhole:
        throw invalid_argument("duration " + quoted(text) + " is finer than 1ms, the smallest unit");
      case Fit::kTooLarge:
        throw invalid_argument("duration " + quoted(text) + " is too long");
    }
    if (term > std::numeric_limits<int64_t>::max() - total)
      throw invalid_argument("duration " + quoted(text) + " is too long");
    total += term;
  }
  if (negative && total != 0) throw invalid_argument("duration " + quoted(text) + " must not be negative");
  return std::chrono::milliseconds(total);
}

std::string format_cpu_quantity(int64_t millicores) {
  if (millicores % 1000 == 0) return std::to_string(millicores / 1000);
  return std::to_string(millicores) + "m";
}

std::string format_memory_quantity(int64_t bytes) {
  if (bytes == 0) return "0";
  static constexpr std::array<std::string_view, 6> kBinary{"Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
  static constexpr std::array<std::string_view, 6> kDecimal{"k", "M", "G", "T", "P", "E"};
  for (int i = 5; i >= 0; --i) {
    const int64_t unit = int64_t{1} << (10 * (i + 1));
    if (bytes % unit == 0) return std::to_string(bytes / unit) + std::string(kBinary[i]);
  }
  for (int i = 5; i >= 0; --i) {
    int64_t unit = 1;
    for (int k = 0; k <= i; ++k) unit *= 1000;
    if (bytes % unit == 0) return std::to_string(bytes / unit) + std::string(kDecimal[i]);
  }
  return std::to_string(bytes);
}

std::string format_duration(std::chrono::milliseconds duration) {
  int64_t ms = duration.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  const int64_t h = ms / 3'600'000, m = ms / 60'000 % 60, s = ms / 1000 % 60, rest = ms % 1000;
  if (h) out += std::to_string(h) + "h";
  if (m) out += std::to_string(m) + "m";
  if (s) out += std::to_string(s) + "s";
  if (rest) out += std::to_string(rest) + "ms";
  return out;
}

}  // namespace cortex::control
