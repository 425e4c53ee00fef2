// AWS Signature Version 4 for S3 requests: the canonical request, the string to sign, the derived
// signing key and the Authorization header, as AWS documents them.
#pragma once

#include <map>
#include <string>

#include "storage/aws_credentials.h"

namespace cortex::storage {

// SHA-256 of the empty payload, the x-amz-content-sha256 of a GET.
inline constexpr const char* kEmptyPayloadSha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct SigV4Request {
  std::string method = "GET";
  std::string host;                            // as sent in the Host header (host[:port])
  std::string path = "/";                      // already URI-encoded, '/' kept
  std::map<std::string, std::string> query;    // decoded names and values
  std::map<std::string, std::string> headers;  // further headers to sign, lower-case names (e.g. range)
  std::string payload_sha256 = kEmptyPayloadSha256;
  std::string amz_date;  // YYYYMMDDTHHMMSSZ; empty: now
  std::string region = "us-east-1";
  std::string service = "s3";
};

// Percent-encodes as SigV4 wants: unreserved characters kept, everything else %XX (upper case);
// '/' kept unless encode_slash.
std::string uri_encode(const std::string& s, bool encode_slash);
std::string canonical_query(const std::map<std::string, std::string>& query);
std::string canonical_request(const SigV4Request& r);
std::string sha256_hex(const std::string& data);
// The current time as YYYYMMDDTHHMMSSZ.
std::string amz_date_now();

// The headers to send with the request (host, x-amz-date, x-amz-content-sha256, x-amz-security-token
// when there is a session token, the signed extras, and authorization). Anonymous credentials get no
// authorization header.
std::map<std::string, std::string> sign_v4(const SigV4Request& r, const AwsCredentials& credentials);

}  // namespace cortex::storage
