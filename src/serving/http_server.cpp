#include "serving/http_server.h"

#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdio>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "util/error.h"

namespace cortex::serving {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
// Sessions and the acceptor use the generic stream protocol, so one code path serves TCP and unix sockets.
using stream_protocol = net::generic::stream_protocol;

namespace {

std::string status_line_reason(int status) {
  return std::string(http::obsolete_reason(static_cast<http::status>(status)));
}

// One client connection: reads requests one after another; while a request is being answered it watches
// the socket, so that a client that disconnects is noticed at once. All members are used on the server
// thread only, except closed_ (read from any thread).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(stream_protocol::socket socket, const HttpServerOptions& options, const HttpHandler& handler)
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

  // An error answered before the request reaches the handler; the connection then closes (lingering).
  void refuse(int status, const std::string& message) {
    keep_alive_ = false;
    linger_ = true;
    response_done_ = false;
    const nlohmann::json body = {
        {"error",
         {{"message", message}, {"type", "invalid_request_error"}, {"param", nullptr}, {"code", nullptr}}}};
    send_whole(status, "application/json", body.dump() + "\n");
  }

  void on_request(beast::error_code ec) {
    if (ec == http::error::body_limit) {  // as soon as Content-Length says so, or the chunks pass it
      refuse(413, "request body exceeds the limit of " + std::to_string(options_.max_body_bytes) + " bytes");
      return;
    }
    if (ec == http::error::header_limit) {
      refuse(431, "request headers exceed the limit of 8192 bytes");
      return;
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_method).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      refuse(400, "malformed HTTP request (" + ec.message() + ")");
      return;
    }
    if (ec) {  // end of stream, timeout (the socket is closed), a client gone mid-request: nothing to answer
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
      if (linger_)
        linger();
      else
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

  // After refusing a request whose body may still be coming: stop sending, read and drop what arrives for
  // up to 2 s, then close. Closing with unread bytes would send a TCP reset, which can destroy the answer
  // before the client has read it.
  void linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(stream_protocol::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::seconds(2));
    drain();
  }
  void drain() {
    stream_.async_read_some(net::buffer(watch_buf_),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec)
                                self->close();
                              else
                                self->drain();
                            });
  }

  void close() {
    if (closed_.exchange(true)) return;
    beast::error_code ignored;
    stream_.socket().shutdown(stream_protocol::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::basic_stream<stream_protocol> stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const HttpServerOptions& options_;
  const HttpHandler& handler_;
  std::deque<std::string> out_;
  std::array<char, 4096> watch_buf_{};
  bool writing_ = false;
  bool response_done_ = false;
  bool keep_alive_ = true;
  bool linger_ = false;  // close by linger() (a refused request)
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
  net::basic_socket_acceptor<stream_protocol> acceptor{ioc};
  int port = 0;
  std::thread thread;

  void accept() {
    acceptor.async_accept(
        net::make_strand(ioc), [this](beast::error_code ec, stream_protocol::socket socket) {
          if (ec) {
            if (ec == net::error::operation_aborted) return;
            spdlog::warn("accept: {}", ec.message());
          } else {
            if (options.unix_socket_path.empty()) {
              // Small writes (one streamed token) go out at once, not after Nagle's wait.
              int one = 1;
              ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            }
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
  stream_protocol::endpoint endpoint;
  std::string where;
  if (!options.unix_socket_path.empty()) {
    where = options.unix_socket_path;
    ::unlink(where.c_str());  // a socket left by a process that died
    endpoint = net::local::stream_protocol::endpoint(where);
  } else {
    auto address = net::ip::make_address(options.host, ec);
    if (ec) throw invalid_argument("invalid listen address '" + options.host + "'");
    where = options.host + ":" + std::to_string(options.port);
    endpoint = tcp::endpoint{address, static_cast<unsigned short>(options.port)};
  }
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec && options.unix_socket_path.empty())
    impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec && !options.unix_socket_path.empty() && ::chmod(where.c_str(), 0600) != 0)
    ec = beast::error_code(errno, beast::system_category());
  if (!ec) impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) throw Error(ErrorCode::kInvalidArgument, "cannot listen on " + where + ": " + ec.message());
  if (options.unix_socket_path.empty()) {
    // The generic endpoint holds a sockaddr_in or sockaddr_in6; the port sits at the same offset in both.
    auto local = impl->acceptor.local_endpoint();
    impl->port = ntohs(reinterpret_cast<const sockaddr_in*>(local.data())->sin_port);
  }
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
  return impl_->port;
}

}  // namespace cortex::serving
