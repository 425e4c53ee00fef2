// HTTP transfers for model downloads on libcurl: small requests answered in memory (listings, HEAD)
// and streamed downloads with progress, resumption (Range) and cancellation. Redirects are followed
// (credentials are not sent to another host). A connection that delivers nothing for `stall_timeout`
// is given up.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace cortex::storage {

struct HttpRequest {
  std::string method = "GET";  // GET or HEAD
  std::string url;
  std::map<std::string, std::string> headers;
  std::chrono::seconds connect_timeout{10};
  std::chrono::seconds stall_timeout{30};
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // of the final response, lower-case names
  std::string body;                            // the whole body (fetch), or an error response's body
  std::string header(const std::string& name) const;
};

// The Range header value for bytes [begin, end) ("bytes=100-" when end is 0); "" for the whole body.
std::string range_header(uint64_t begin, uint64_t end);

// Performs a request and returns the whole response. Throws Error(kInternal) naming the
// URL when no response comes back (connection refused, DNS, TLS, timeout).
HttpResponse http_fetch(const HttpRequest& request, const std::atomic<bool>* cancel = nullptr);

// Streams a 2xx response's body to `sink` (given the status, so that a 200 answering a ranged request can
// be told from a 206); any other status comes back with its body in memory (sink not called). `on_bytes(n)`
// reports the body bytes received so far (at most ~10 times a second). Throws Error(kInternal) naming the URL
// when the transfer breaks off (the caller keeps what sink got), Error(kInternal) "cancelled" when *cancel
// turns true.
HttpResponse http_download(const HttpRequest& request,
                           const std::function<void(long, const char*, size_t)>& sink,
                           const std::function<void(uint64_t)>& on_bytes, const std::atomic<bool>* cancel);

}  // namespace cortex::storage
