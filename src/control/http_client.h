// Small blocking HTTP client on libcurl, for the control plane: the CLI talking to the operator over its
// unix socket, and the operator probing replicas (/readyz, /signature). Thread-safe: each call uses its
// own handle. The gateway's streaming proxy has its own code (gateway.cpp).
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace cortex::control {

struct HttpResponse {
  int status = 0;  // 0 when no response came back (see error)
  std::string body;
  std::string content_type;
  std::string error;  // why no response came back: connection refused, timeout, ...
  bool ok() const { return status >= 200 && status < 300; }
};

struct HttpCall {
  std::string method = "GET";
  std::string url;          // http://host:port/path (with a unix socket, the host is ignored)
  std::string unix_socket;  // when set, connect to this socket instead of the URL's host
  std::string body;
  std::map<std::string, std::string> headers;
  std::chrono::milliseconds timeout{10'000};
  std::chrono::milliseconds connect_timeout{2'000};
};

// Performs the call; never throws for network errors (they come back in HttpResponse::error).
HttpResponse http_call(const HttpCall& call);

}  // namespace cortex::control
