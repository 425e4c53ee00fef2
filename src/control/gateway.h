// The gateway: one HTTP front door (127.0.0.1:8888 by default) for every API the operator runs.
//   POST /<deployment>/<api>   → a ready replica's /predict (the seed's format)
//   POST /v1/completions       → the replica of the API named by "model" (OpenAI-compatible)
//   GET  /v1/models, /healthz, /metrics (Prometheus)
// A request goes to the ready replica with the fewest outstanding requests. A replica that cannot be
// connected to, or answers 503 (its queue is full), is replaced by another one. A replica that fails
// after it had the request (it died, or timed out) is not: the client gets 502 (504), since the same
// request could take every replica down in turn. Streams (server-sent events) pass through as they come; a
// client that goes away closes the upstream connection, which cancels its generation.
//
// Threading: HTTP I/O runs on the server's thread; each proxied request runs on a thread of its own
// (requests mostly wait on a replica), started and counted by the gateway.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "control/routing_table.h"

namespace cortex::control {

struct GatewayOptions {
  std::string host = "127.0.0.1";
  int port = 8888;
  size_t max_body_bytes = 8u << 20;
  std::chrono::seconds request_timeout{300};
  int max_in_flight = 4096;  // proxied requests at once (each holds a thread); more get 503
};

class Gateway {
 public:
  // Listens and serves; throws Error naming the address when it cannot listen.
  static std::unique_ptr<Gateway> start(const GatewayOptions& options, std::shared_ptr<RoutingTable> routes);
  ~Gateway();  // aborts proxied requests, waits for their threads, closes the listener
  int port() const;

  struct Impl;

 private:
  explicit Gateway(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace cortex::control
