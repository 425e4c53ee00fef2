// A real S3-protocol server on loopback for the tests: the npm package s3rver, with a front that checks
// every request's Signature V4 with botocore's signer (tests/storage/sigv4_proxy.py) and answers 403 to
// a wrong one. Clients use endpoint() with the access key/secret below; uploads go straight to s3rver
// with Debian's awscli.
#pragma once

#include <memory>
#include <string>

#include "support/background_process.h"

namespace cortex::testing {

class S3TestServer {
 public:
  static constexpr const char* kAccessKey = "AKIDCORTEXTEST";
  static constexpr const char* kSecretKey = "cortex-test-secret";

  // throttle: bytes per second the front relays (0: no limit).
  explicit S3TestServer(int throttle = 0);
  // The signature-checking endpoint (http://127.0.0.1:PORT).
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(front_port_); }
  // Creates the bucket and copies a local folder (or file) to s3://bucket/key with awscli; throws on failure.
  void upload(const std::string& local, const std::string& bucket, const std::string& key) const;
  // Stops the front (as a server that goes away mid-transfer) and starts it again on the same port.
  void stop_front();
  void start_front(int throttle = 0);

 private:
  std::string dir_;
  int s3_port_ = 0, front_port_ = 0;
  std::unique_ptr<BackgroundProcess> s3rver_, front_;
};

}  // namespace cortex::testing
