#include "storage/model_uri.h"

#include <algorithm>
#include <cctype>

#include "util/error.h"

namespace cortex::storage {

namespace {
std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}
std::string trim_slashes(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  while (!s.empty() && s.front() == '/') s.erase(s.begin());
  return s;
}
}  // namespace

std::string percent_decode(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

ModelUri parse_model_uri(const std::string& text) {
  ModelUri u;
  u.text = text;
  const size_t sep = text.find("://");
  if (sep == std::string::npos || sep == 0) {
    if (text.empty()) throw invalid_argument("model: empty (a path, file://, s3://, https:// or hf:// URI)");
    u.path = text;
    return u;
  }
  const std::string scheme = lower(text.substr(0, sep));
  const std::string rest = text.substr(sep + 3);
  if (scheme == "file") {
    std::string path = rest.rfind("localhost/", 0) == 0 ? rest.substr(9) : rest;
    if (path.empty() || path[0] != '/')
      throw invalid_argument("model: a file:// URI needs an absolute path (file:///path/to/model), got '" +
                             text + "'");
    u.path = percent_decode(path);
    return u;
  }
  if (scheme == "s3") {
    if (rest.empty() || rest[0] == '/')
      throw invalid_argument("model: '" + text + "' names no bucket (s3://bucket/path/to/model)");
    const std::string body = trim_slashes(rest);
    const size_t slash = body.find('/');
    u.scheme = UriScheme::kS3;
    u.bucket = body.substr(0, slash);
    u.key = slash == std::string::npos ? "" : trim_slashes(body.substr(slash + 1));
    if (u.bucket.empty())
      throw invalid_argument("model: '" + text + "' names no bucket (s3://bucket/path/to/model)");
    return u;
  }
  if (scheme == "http" || scheme == "https") {
    if (rest.empty() || rest[0] == '/')
      throw invalid_argument("model: '" + text + "' names no host (" + scheme + "://host/path/to/model)");
    u.scheme = UriScheme::kHttp;
    u.url = scheme + "://" + rest;
    while (u.url.size() > scheme.size() + 3 && u.url.back() == '/') u.url.pop_back();
    return u;
  }
  if (scheme == "hf") {
    std::string body = rest.empty() || rest[0] == '/' ? "" : trim_slashes(rest);
    u.scheme = UriScheme::kHf;
    u.revision = "main";
    if (auto at = body.find('@'); at != std::string::npos) {
      u.revision = body.substr(at + 1);
      body = body.substr(0, at);
    }
    const size_t slash = body.find('/');
    // owner/name, or a hub's legacy top-level name such as "gpt2".
    const bool bad_name =
        body.empty() || (slash != std::string::npos && (slash == 0 || slash == body.size() - 1 ||
                                                        body.find('/', slash + 1) != std::string::npos));
    if (u.revision.empty() || bad_name)
      throw invalid_argument("model: '" + text + "' is not hf://owner/name or hf://owner/name@revision");
    u.repo = body;
    return u;
  }
  throw invalid_argument("model: unsupported URI scheme '" + scheme +
                         "://' (a path, file://, s3://, http://, https:// or hf://)");
}

std::string ModelUri::canonical() const {
  switch (scheme) {
    case UriScheme::kS3:
      return "s3://" + bucket + (key.empty() ? "" : "/" + key);
    case UriScheme::kHttp:
      return url;
    case UriScheme::kHf:
      return "hf://" + repo + "@" + revision;
    case UriScheme::kLocal:
      break;
  }
  return path;
}

bool is_remote_model(const std::string& text) {
  const size_t sep = text.find("://");
  if (sep == std::string::npos || sep == 0) return false;
  const std::string scheme = lower(text.substr(0, sep));
  return scheme == "s3" || scheme == "http" || scheme == "https" || scheme == "hf";
}

}  // namespace cortex::storage
