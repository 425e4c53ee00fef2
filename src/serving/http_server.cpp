#include "serving/http_server.h"

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <deque>
#include <optional>
#include <sstream>

#include "util/error.h"

namespace cortex::serving {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

std::string status_line_reason(int status) {
  return std::string(http::obsolete_reason(static_cast<http::status>(status)));
}

// One client connection: reads requests one after another; while a request is being answered it watches
// the socket, so that a client that disconnects is noticed at once. All members are used on the server
// thread only, except closed_ (read from any thread).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpServerOptions& options, const HttpHandler& handler)
      : stream_(std::move(socket)), options_(options), handler_(handler) {}

  void start() { read_request(); }
  bool closed() const { return closed_.load(); }

  // Queues bytes of the current response; `last` marks its end.
  void send(std::string bytes, bool last) {
    if (closed_.load() || response_done_) return;
    out_.push_back(std::move(bytes));
    if (last) response_done_ = true;
    if (!writing_) write_next();
  }
  void set_keep_alive(bool k) { keep_alive_ = keep_alive_ && k; }

 private:
  void read_request() {
    parser_.emplace();
    parser_->body_limit(options_.max_body_bytes);
    stream_.expires_after(options_.read_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_request(ec); });
  }

  void on_request(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      keep_alive_ = false;
      response_done_ = false;
      std::string body = "{\"error\":{\"message\":\"request body exceeds the limit of " +
                         std::to_string(options_.max_body_bytes) +
                         " bytes\",\"type\":\"invalid_request_error\",\"param\":null}}";
      send_whole(413, "application/json", body);
      return;
    }
    if (ec) {  // end of stream, timeout, malformed request line: nothing to answer
      if (ec != http::error::end_of_stream && ec != beast::error::timeout)
        spdlog::debug("http read: {}", ec.message());
      close();
      return;
    }
    stream_.expires_never();
    auto& req = parser_->get();
    HttpRequest request;
    request.method = std::string(req.method_string());
    request.target = std::string(req.target());
    request.body = std::move(req.body());
    for (const auto& field : req) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      request.headers[name] = std::string(field.value());
    }
    keep_alive_ = req.keep_alive();
    response_done_ = false;
    watch();
    handler_(std::move(request), make_channel());
  }

  std::shared_ptr<ResponseChannel> make_channel();

  void send_whole(int status, const std::string& content_type, const std::string& body,
                  const std::map<std::string, std::string>& headers = {}) {
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    res.set(http::field::server, "cortex");
    res.set(http::field::content_type, content_type);
    for (const auto& [k, v] : headers) res.set(k, v);
    res.keep_alive(keep_alive_);
    res.body() = body;
    res.prepare_payload();
    std::ostringstream os;
    os << res;
    send(os.str(), true);
  }

  void write_next() {
    if (out_.empty()) {
      writing_ = false;
      if (response_done_) finish_response();
      return;
    }
    writing_ = true;
    net::async_write(stream_, net::buffer(out_.front()),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->out_.pop_front();
                       if (ec) {
                         self->close();
                         return;
                       }
                       self->write_next();
                     });
  }

  // Reads while a response is in progress: end of stream or an error means the client went away; bytes
  // (a pipelined request) are kept for the next read.
  void watch() {
    watching_ = true;
    stream_.socket().async_read_some(
        net::buffer(watch_buf_), [self = shared_from_this()](beast::error_code ec, size_t n) {
          self->watching_ = false;
          if (n > 0) {
            net::buffer_copy(self->buffer_.prepare(n), net::buffer(self->watch_buf_.data(), n));
            self->buffer_.commit(n);
          }
          if (self->read_after_watch_) {
            self->read_after_watch_ = false;
            self->read_request();
          } else if (ec) {
            if (ec != net::error::operation_aborted) self->close();
          } else if (!self->closed_.load()) {
            self->watch();
          }
        });
  }

  void finish_response() {
    if (!keep_alive_) {
      close();
      return;
    }
    if (watching_) {
      read_after_watch_ = true;
      beast::error_code ignored;
      stream_.socket().cancel(ignored);
    } else {
      read_request();
    }
  }

  void close() {
    if (closed_.exchange(true)) return;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const HttpServerOptions& options_;
  const HttpHandler& handler_;
  std::deque<std::string> out_;
  std::array<char, 4096> watch_buf_{};
  bool writing_ = false;
  bool response_done_ = false;
  bool keep_alive_ = true;
  bool watching_ = false;
  bool read_after_watch_ = false;
  std::atomic<bool> closed_{false};

  friend class Channel;
};

// Posts every call onto the server thread, where the session lives.
class Channel : public ResponseChannel {
 public:
  Channel(std::shared_ptr<Session> session, net::any_io_executor executor)
      : session_(std::move(session)), executor_(std::move(executor)) {}

  void respond(int status, const std::string& content_type, std::string body,
               std::map<std::string, std::string> headers) override {
    if (answered_.exchange(true)) return;
    net::post(executor_,
              [s = session_, status, content_type, body = std::move(body), headers = std::move(headers)] {
                s->send_whole(status, content_type, body, headers);
              });
  }
  void start_stream(int status, const std::string& content_type) override {
    if (answered_.exchange(true)) return;
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " + status_line_reason(status) +
                       "\r\nServer: cortex\r\nContent-Type: " + content_type +
                       "\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n";
    net::post(executor_, [s = session_, head = std::move(head)] {
      std::string h =
          head + (s->keep_alive_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
      s->send(std::move(h), false);
    });
  }
  void write(std::string data) override {
    if (data.empty()) return;
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    net::post(executor_, [s = session_, chunk = size + std::move(data) + "\r\n"]() mutable {
      s->send(std::move(chunk), false);
    });
  }
  void end() override {
    net::post(executor_, [s = session_] { s->send("0\r\n\r\n", true); });
  }
  bool closed() const override { return session_->closed(); }

 private:
  std::shared_ptr<Session> session_;
  net::any_io_executor executor_;
  std::atomic<bool> answered_{false};
};

std::shared_ptr<ResponseChannel> Session::make_channel() {
  return std::make_shared<Channel>(shared_from_this(), stream_.get_executor());
}

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  HttpHandler handler;
  net::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  std::thread thread;

  void accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == net::error::operation_aborted) return;
        spdlog::warn("accept: {}", ec.message());
      } else {
        std::make_shared<Session>(std::move(socket), options, handler)->start();
      }
      accept();
    });
  }
};

std::unique_ptr<HttpServer> HttpServer::start(const HttpServerOptions& options, HttpHandler handler) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->handler = std::move(handler);
  beast::error_code ec;
  auto address = net::ip::make_address(options.host, ec);
  if (ec) throw invalid_argument("invalid listen address '" + options.host + "'");
  tcp::endpoint endpoint{address, static_cast<unsigned short>(options.port)};
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    throw Error(ErrorCode::kInvalidArgument, "cannot listen on " + options.host + ":" +
                                                 std::to_string(options.port) + ": " + ec.message());
  impl->accept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->ioc.run(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  net::post(impl_->ioc, [impl = impl_.get()] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
  });
  impl_->ioc.stop();
  impl_->thread.join();
}

int HttpServer::port() const {
  return impl_->acceptor.local_endpoint().port();
}

}  // namespace cortex::serving
