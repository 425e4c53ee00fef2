// The few S3 calls a model download needs: list the objects under a prefix (ListObjectsV2, every page),
// read one object's size and ETag (HEAD), and build a signed GET (optionally from an offset).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "storage/aws_credentials.h"
#include "storage/http_transfer.h"

namespace cortex::storage {

struct S3Object {
  std::string key;
  uint64_t size = 0;
  std::string etag;  // without quotes
};

class S3Client {
 public:
  explicit S3Client(S3Settings settings) : settings_(std::move(settings)) {}
  const S3Settings& settings() const { return settings_; }

  // Every object whose key starts with `prefix`. Throws Error naming the bucket for S3 errors
  // (kNotFound for NoSuchBucket, kInvalidArgument for AccessDenied and signature errors).
  std::vector<S3Object> list(const std::string& bucket, const std::string& prefix,
                             const std::atomic<bool>* cancel = nullptr) const;
  // The object, or nullopt when there is none.
  std::optional<S3Object> head(const std::string& bucket, const std::string& key,
                               const std::atomic<bool>* cancel = nullptr) const;
  // A signed GET of the object's bytes [begin, end) (Range); end 0: to the end of the object.
  HttpRequest get(const std::string& bucket, const std::string& key, uint64_t begin = 0,
                  uint64_t end = 0) const;
  // The message for an S3 error response: its <Code> and <Message>, with a hint for access errors.
  std::string describe_error(const HttpResponse& r, const std::string& what) const;

 private:
  HttpRequest request(const std::string& method, const std::string& bucket, const std::string& key,
                      const std::map<std::string, std::string>& query,
                      const std::map<std::string, std::string>& signed_headers) const;
  S3Settings settings_;
};

}  // namespace cortex::storage
