// The listener and the HTTP connections of `streamdiff serve` (Boost.Beast over Asio): each
// connection reads requests with a header and body limit, answers them through route(), and
// hands a WebSocket upgrade to a WsSession and an MJPEG request to an MjpegViewers thread.
#include "server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "mjpeg.h"
#include "routes.h"
#include "ws_session.h"

namespace streamdiff::serve {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

constexpr size_t kMaxHeaderBytes = 16 << 10;

Request to_request(const http::request<http::string_body>& r) {
  Request q;
  q.method = std::string(r.method_string());
  split_target(std::string(r.target()), &q.path, &q.query);
  for (const auto& f : r) {
    std::string name(f.name_string());
    for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    q.headers[name] = std::string(f.value());
  }
  q.body = r.body();
  return q;
}

http::response<http::string_body> to_http(const Response& r, unsigned version, bool keep_alive,
                                          bool head) {
  http::response<http::string_body> res{http::status(r.status), version};
  res.set(http::field::server, std::string("streamdiff/") + streamdiff::version());
  res.set(http::field::content_type, r.content_type);
  res.set("X-Content-Type-Options", "nosniff");
  for (const auto& [k, v] : r.headers) res.set(k, v);
  res.keep_alive(keep_alive);
  res.body() = head ? std::string() : r.body;
  res.prepare_payload();
  if (head) res.content_length(r.body.size());
  return res;
}

class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  HttpConnection(tcp::socket&& socket, ServerContext& ctx, MjpegViewers& viewers)
      : stream_(std::move(socket)), ctx_(ctx), viewers_(viewers) {}

  void run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&HttpConnection::do_read, shared_from_this()));
  }

 private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(kMaxHeaderBytes);
    parser_->body_limit(ctx_.opt.max_message);
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&HttpConnection::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, size_t) {
    if (ec == http::error::end_of_stream) return close();
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      ++ctx_.rejected;
      return send(error_response(ec == http::error::body_limit ? 413 : 431,
                                 ec == http::error::body_limit ? "request body too large"
                                                               : "request header too large"),
                  11, false, false);
    }
    if (ec) return;  // a broken or timed-out connection: nothing to answer
    http::request<http::string_body> req = parser_->release();
    ++ctx_.http_requests;
    const Request q = to_request(req);
    if (!authorized(q, ctx_.opt.token)) {
      ++ctx_.rejected;
      return send(error_response(401,
                                 "a token is required (?token=... or Authorization: "
                                 "Bearer ...; see the server's startup message)"),
                  req.version(), false, false);
    }
    if (websocket::is_upgrade(req)) return upgrade(std::move(req), q);
    const std::string stream_id = uuid_after(q.path, "/api/stream/");
    if (!stream_id.empty() && req.method() == http::verb::get) {
      auto session = ctx_.sessions.find(stream_id);
      if (!session)
        return send(error_response(404, "no session " + stream_id), req.version(), req.keep_alive(),
                    false);
      stream_.expires_never();
      viewers_.start(stream_.release_socket(), session, "");
      return;
    }
    const bool head = req.method() == http::verb::head;
    Response r;
    try {
      r = route(q, ctx_);
    } catch (const std::exception& e) {  // a bug, but one request's: the server goes on
      r = error_response(500, std::string("internal error: ") + e.what());
    }
    send(std::move(r), req.version(), req.keep_alive(), head);
  }

  void upgrade(http::request<http::string_body> req, const Request& q) {
    const std::string uuid = uuid_after(q.path, "/api/ws/");
    if (uuid.empty()) {
      ++ctx_.rejected;
      return send(error_response(404, "WebSocket: expected /api/ws/<uuid>, got " + q.path),
                  req.version(), false, false);
    }
    if (!origin_allowed(q, ctx_.opt.allowed_origins)) {
      ++ctx_.rejected;
      return send(error_response(403, "WebSocket: origin " + q.headers.at("origin") +
                                          " is not allowed (start the server with "
                                          "--allow-origin to allow it)"),
                  req.version(), false, false);
    }
    stream_.expires_never();
    std::make_shared<WsSession>(stream_.release_socket(), ctx_, uuid)->run(std::move(req));
  }

  void send(const Response& r, unsigned version, bool keep_alive, bool head) {
    auto res =
        std::make_shared<http::response<http::string_body>>(to_http(r, version, keep_alive, head));
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec || res->need_eof()) return self->close();
                        self->do_read();
                      });
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  beast::tcp_stream stream_;
  ServerContext& ctx_;
  MjpegViewers& viewers_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(net::io_context& ioc, tcp::endpoint endpoint, ServerContext& ctx, MjpegViewers& viewers)
      : ioc_(ioc), acceptor_(net::make_strand(ioc)), ctx_(ctx), viewers_(viewers) {
    beast::error_code ec;
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec)
      throw Error(Status::Io, "serve: cannot listen on " + endpoint.address().to_string() + ":" +
                                  std::to_string(endpoint.port()) + ": " + ec.message());
  }
  int port() const { return acceptor_.local_endpoint().port(); }
  void run() { do_accept(); }
  void close() {
    net::dispatch(acceptor_.get_executor(), [self = shared_from_this()] {
      beast::error_code ec;
      self->acceptor_.close(ec);
    });
  }

 private:
  void do_accept() {
    acceptor_.async_accept(net::make_strand(ioc_),
                           beast::bind_front_handler(&Listener::on_accept, shared_from_this()));
  }
  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (!acceptor_.is_open()) return;
    if (!ec) {
      // Small messages (the protocol's JSON, each MJPEG part's header) go out at once: with
      // Nagle's algorithm they would wait for the peer's delayed ACK (~40 ms a frame).
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<HttpConnection>(std::move(socket), ctx_, viewers_)->run();
    }
    do_accept();
  }

  net::io_context& ioc_;
  tcp::acceptor acceptor_;
  ServerContext& ctx_;
  MjpegViewers& viewers_;
};

tcp::endpoint endpoint_of(const std::string& host, int port) {
  beast::error_code ec;
  const std::string h = host == "localhost" ? "127.0.0.1" : host;
  const net::ip::address address = net::ip::make_address(h, ec);
  if (ec)
    throw Error(Status::InvalidArgument,
                "serve: --host '" + host + "' is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)");
  if (port < 0 || port > 65535)
    throw Error(Status::InvalidArgument,
                "serve: --port " + std::to_string(port) + " is not in [0, 65535]");
  return {address, static_cast<unsigned short>(port)};
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  beast::error_code ec;
  const net::ip::address a = net::ip::make_address(host, ec);
  return !ec && a.is_loopback();
}

struct Server::Impl {
  Impl(Model model, ServerOptions options)
      : ctx(std::move(model), std::move(options)), ioc(ctx.opt.io_threads), timer(ioc) {}

  // Times out the sessions that sent no frame for idle_timeout_s, once a second.
  void watch_idle() {
    timer.expires_after(std::chrono::seconds(1));
    timer.async_wait([this](beast::error_code ec) {
      if (ec) return;
      if (ctx.opt.idle_timeout_s > 0)
        for (const auto& s : ctx.sessions.idle_since(std::chrono::seconds(ctx.opt.idle_timeout_s)))
          if (auto ws = ctx.ws.find(s->id())) ws->time_out();
      watch_idle();
    });
  }

  ServerContext ctx;
  net::io_context ioc;
  net::steady_timer timer;
  MjpegViewers viewers;
  std::shared_ptr<Listener> listener;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::condition_variable stopped_cv;
  bool stopped = false;
};

Server::Server(Model model, ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(model), std::move(options))) {
  Impl& s = *impl_;
  s.listener = std::make_shared<Listener>(s.ioc, endpoint_of(s.ctx.opt.host, s.ctx.opt.port), s.ctx,
                                          s.viewers);
  s.listener->run();
  s.watch_idle();
  for (int i = 0; i < std::max(1, s.ctx.opt.io_threads); ++i)
    s.threads.emplace_back([&s] { s.ioc.run(); });
}

Server::~Server() {
  stop();
}

int Server::port() const {
  return impl_->listener->port();
}

void Server::wait() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->stopped_cv.wait(lock, [&] { return impl_->stopped; });
}

void Server::stop() {
  Impl& s = *impl_;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.stopped) return;
    s.stopped = true;
  }
  s.listener->close();
  for (const auto& ws : s.ctx.ws.all()) ws->time_out();
  s.viewers.stop_all();
  s.ioc.stop();
  for (std::thread& t : s.threads) t.join();
  s.ctx.sessions.shutdown();  // before the io_context goes: the engine posts to it
  s.stopped_cv.notify_all();
}

}  // namespace streamdiff::serve
