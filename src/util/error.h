// Errors: one exception type with a category that the edges (CLI exit codes, HTTP status codes) map in
// one place. Messages are one line and name the thing at fault (a file, a field, a limit).
#pragma once

#include <stdexcept>
#include <string>

namespace cortex {

enum class ErrorCode {
  kInvalidArgument,  // the caller's input is wrong (bad flag, bad request field)
  kNotFound,         // a file, model or API that does not exist
  kCorruptData,      // a file exists but its contents are wrong (truncated, bad header, bad shape)
  kUnsupported,      // valid input that this build cannot handle yet
  kResourceExhausted,
  kInternal,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

inline Error invalid_argument(const std::string& m) {
  return Error(ErrorCode::kInvalidArgument, m);
}
inline Error not_found(const std::string& m) {
  return Error(ErrorCode::kNotFound, m);
}
inline Error corrupt_data(const std::string& m) {
  return Error(ErrorCode::kCorruptData, m);
}
inline Error unsupported(const std::string& m) {
  return Error(ErrorCode::kUnsupported, m);
}

}  // namespace cortex
