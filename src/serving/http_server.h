// An asynchronous HTTP/1.1 server on Boost.Beast. Network I/O runs on the server's own thread; a request
// is handed to the handler with a ResponseChannel that any thread may use to answer it, all at once or
// as a stream (chunked transfer: server-sent events). The channel reports a client that went away, so
// that work done for it can stop.
//
// Limits: a request body over max_body_bytes gets 413; a client that does not send a whole request
// within read_timeout is disconnected (slow clients cannot hold a connection forever).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

namespace cortex::serving {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, as sent
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

// How a handler answers one request. Thread-safe; every call is carried out on the network thread.
class ResponseChannel {
 public:
  virtual ~ResponseChannel() = default;
  // A complete response.
  virtual void respond(int status, const std::string& content_type, std::string body,
                       std::map<std::string, std::string> headers = {}) = 0;
  // A streamed response: start once, write any number of times, then end.
  virtual void start_stream(int status, const std::string& content_type) = 0;
  virtual void write(std::string data) = 0;
  virtual void end() = 0;
  // True once the client has disconnected (or the response failed to send).
  virtual bool closed() const = 0;
};

using HttpHandler = std::function<void(HttpRequest request, std::shared_ptr<ResponseChannel> channel)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port (see HttpServer::port())
  // When set, listen on this unix socket instead of host:port (a stale socket file is replaced; the
  // socket is made 0600, so only its owner can connect).
  std::string unix_socket_path;
  size_t max_body_bytes = 8u << 20;
  std::chrono::seconds read_timeout{30};
};

class HttpServer {
 public:
  // Binds and starts serving on its own thread; throws Error naming the address when binding fails.
  static std::unique_ptr<HttpServer> start(const HttpServerOptions& options, HttpHandler handler);
  ~HttpServer();     // stops accepting, closes connections, joins the thread
  int port() const;  // the TCP port listened on; 0 for a unix socket

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cortex::serving
