#include "storage/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <array>
#include <ctime>

namespace cortex::storage {

namespace {

std::string hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  return out;
}

std::string hmac_sha256(const std::string& key, const std::string& data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len);
  return std::string(reinterpret_cast<const char*>(out.data()), len);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::map<std::string, std::string> headers_to_sign(const SigV4Request& r, const AwsCredentials& c,
                                                   const std::string& amz_date) {
  std::map<std::string, std::string> h;
  for (const auto& [k, v] : r.headers) h[lower(k)] = trim(v);
  h["host"] = r.host;
  h["x-amz-date"] = amz_date;
  h["x-amz-content-sha256"] = r.payload_sha256;
  if (!c.session_token.empty()) h["x-amz-security-token"] = c.session_token;
  return h;
}

std::string canonical_request_with(const SigV4Request& r, const std::map<std::string, std::string>& headers) {
  std::string names, lines;
  for (const auto& [k, v] : headers) {
    lines += k + ":" + v + "\n";
    names += (names.empty() ? "" : ";") + k;
  }
  return r.method + "\n" + r.path + "\n" + canonical_query(r.query) + "\n" + lines + "\n" + names + "\n" +
         r.payload_sha256;
}

std::string signed_names(const std::map<std::string, std::string>& headers) {
  std::string names;
  for (const auto& [k, v] : headers) names += (names.empty() ? "" : ";") + k;
  return names;
}

}  // namespace

std::string uri_encode(const std::string& s, bool encode_slash) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && !encode_slash)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

std::string canonical_query(const std::map<std::string, std::string>& query) {
  std::map<std::string, std::string> encoded;
  for (const auto& [k, v] : query) encoded[uri_encode(k, true)] = uri_encode(v, true);
  std::string out;
  for (const auto& [k, v] : encoded) out += (out.empty() ? "" : "&") + k + "=" + v;
  return out;
}

std::string sha256_hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return hex(digest, sizeof digest);
}

std::string amz_date_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string canonical_request(const SigV4Request& r) {
  return canonical_request_with(r, headers_to_sign(r, {}, r.amz_date));
}

std::map<std::string, std::string> sign_v4(const SigV4Request& r, const AwsCredentials& credentials) {
  const std::string amz_date = r.amz_date.empty() ? amz_date_now() : r.amz_date;
  auto headers = headers_to_sign(r, credentials, amz_date);
  if (credentials.anonymous()) return headers;
  const std::string date = amz_date.substr(0, 8);
  const std::string scope = date + "/" + r.region + "/" + r.service + "/aws4_request";
  const std::string string_to_sign =
      "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n" + sha256_hex(canonical_request_with(r, headers));
  std::string key = hmac_sha256("AWS4" + credentials.secret_access_key, date);
  key = hmac_sha256(key, r.region);
  key = hmac_sha256(key, r.service);
  key = hmac_sha256(key, "aws4_request");
  const std::string signature = hmac_sha256(key, string_to_sign);
  headers["authorization"] = "AWS4-HMAC-SHA256 Credential=" + credentials.access_key_id + "/" + scope +
                             ", SignedHeaders=" + signed_names(headers) + ", Signature=" +
                             hex(reinterpret_cast<const unsigned char*>(signature.data()), signature.size());
  return headers;
}

}  // namespace cortex::storage
