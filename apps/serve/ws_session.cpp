#include "ws_session.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

namespace streamdiff::serve {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using json = nlohmann::json;

// ---- the registry ------------------------------------------------------------------------------

void WsRegistry::add(const std::string& uuid, const std::weak_ptr<WsSession>& s) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_[uuid] = s;
}

void WsRegistry::remove(const std::string& uuid) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_.erase(uuid);
}

std::shared_ptr<WsSession> WsRegistry::find(const std::string& uuid) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(uuid);
  return it == sessions_.end() ? nullptr : it->second.lock();
}

std::vector<std::shared_ptr<WsSession>> WsRegistry::all() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<WsSession>> v;
  for (const auto& [id, w] : sessions_)
    if (auto s = w.lock()) v.push_back(s);
  return v;
}

// ---- the session
// ---------------------------------------------------------------------------------

WsSession::WsSession(net::ip::tcp::socket&& socket, ServerContext& ctx, std::string uuid)
    : ws_(std::move(socket)),
      ctx_(ctx),
      uuid_(std::move(uuid)),
      protocol_(ctx.limits, ctx.opt.max_image_side) {}

WsSession::~WsSession() = default;

void WsSession::run(beast::http::request<beast::http::string_body> req) {
  ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
    res.set(beast::http::field::server, std::string("streamdiff/") + version());
  }));
  ws_.read_message_max(ctx_.opt.max_message);  // refused from the frame header, before reading
  ws_.async_accept(req, beast::bind_front_handler(&WsSession::on_accept, shared_from_this()));
}

void WsSession::on_accept(beast::error_code ec) {
  if (ec) return;
  ++ctx_.ws_connections;
  // Preparing a stream runs the model (prompt encoding, planning): on the engine thread.
  auto self = shared_from_this();
  ctx_.sessions.open_async(uuid_, [self](std::shared_ptr<Session> s, const std::string& error) {
    net::post(self->ws_.get_executor(), [self, s, error] { self->opened(s, error); });
  });
}

void WsSession::opened(std::shared_ptr<Session> session, const std::string& error) {
  if (!error.empty()) {
    ++ctx_.rejected;
    return fail(error);
  }
  session_ = std::move(session);
  ctx_.ws.add(uuid_, weak_from_this());
  std::weak_ptr<WsSession> weak = weak_from_this();
  auto executor = ws_.get_executor();
  session_->on_frame_done = [weak, executor] {
    net::post(executor, [weak] {
      if (auto self = weak.lock(); self && !self->closing_) self->send({{"status", "send_frame"}});
    });
  };
  session_->on_error = [weak, executor](const std::string& message) {
    net::post(executor, [weak, message] {
      if (auto self = weak.lock()) self->fail(message);
    });
  };
  send({{"status", "connected"}, {"message", "Connected"}});
  send({{"status", "wait"}});
  send({{"status", "send_frame"}});
  expect_ = Expect::Active;
  do_read();
}

void WsSession::do_read() {
  ws_.async_read(buffer_, beast::bind_front_handler(&WsSession::on_read, shared_from_this()));
}

void WsSession::on_read(beast::error_code ec, size_t bytes) {
  if (ec) {
    // A message above the limit: Beast has already closed with code 1009 (message too big),
    // refusing it from its header; or the client closed, or the connection broke.
    if (ec == websocket::error::message_too_big) ++ctx_.rejected;
    return finish();
  }
  std::string message = beast::buffers_to_string(buffer_.data());
  buffer_.consume(bytes);
  if (ws_.got_text())
    handle_text(message);
  else
    handle_binary(message);
  if (!closing_) do_read();
}

void WsSession::handle_text(const std::string& text) {
  if (expect_ != Expect::Active) return;  // closing: what comes after is not read
  act(protocol_.on_text(text));
}

void WsSession::handle_binary(const std::string& bytes) {
  if (expect_ != Expect::Active) return;  // closing: what comes after is not read
  act(protocol_.on_binary(bytes));
}

void WsSession::act(WsProtocol::Step step) {
  using Kind = WsProtocol::Step::Kind;
  switch (step.kind) {
    case Kind::Wait:
      return;
    case Kind::SendFrame:
      return send({{"status", "send_frame"}});
    case Kind::Fail:
      ++ctx_.rejected;
      return fail(step.error);
    case Kind::Frame:
      if (!session_->offer(std::move(step.frame), std::move(step.params), Clock::now()))
        return finish();
      ctx_.sessions.notify();
      return;
  }
}

void WsSession::send(json message) {
  // Replacing what is not UTF-8: an error message may quote a client's bytes.
  outbox_.push_back(message.dump(-1, ' ', false, json::error_handler_t::replace));
  if (outbox_.size() == 1) do_write();
}

void WsSession::do_write() {
  ws_.text(true);
  ws_.async_write(net::buffer(outbox_.front()),
                  beast::bind_front_handler(&WsSession::on_write, shared_from_this()));
}

void WsSession::on_write(beast::error_code ec, size_t) {
  outbox_.pop_front();
  if (ec) return finish();
  if (!outbox_.empty()) return do_write();
  if (closing_) {
    ws_.async_close(websocket::close_code::normal,
                    [self = shared_from_this()](beast::error_code) { self->finish(); });
  }
}

void WsSession::fail(const std::string& message) {
  if (closing_) return;
  send({{"status", "error"}, {"message", message}});
  closing_ = true;
  expect_ = Expect::Closing;
}

void WsSession::time_out() {
  auto self = shared_from_this();
  net::dispatch(ws_.get_executor(), [self] {
    if (self->closing_) return;
    self->send({{"status", "timeout"}, {"message", "Your session has ended"}});
    self->closing_ = true;
    self->expect_ = Expect::Closing;
  });
}

void WsSession::finish() {
  if (finished_) return;
  finished_ = true;
  closing_ = true;
  if (session_) {  // the engine's callbacks hold this session weakly: nothing to undo there
    ctx_.sessions.close(uuid_);
    ctx_.ws.remove(uuid_);
  }
}

}  // namespace streamdiff::serve
