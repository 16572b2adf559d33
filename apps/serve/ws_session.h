// WS /api/ws/{uuid}: one client's WebSocket, speaking the original demo's protocol
// (docs/protocol.md):
//   server  {"status":"connected","message":"Connected"}, {"status":"wait"},
//   {"status":"send_frame"} client  per send_frame: text {"status":"next_frame"}, text {params},
//   binary JPEG server  {"status":"send_frame"} again when that frame's output is out;
//           on a full server {"status":"error","message":"Server is full"} and a close;
//           when idle {"status":"timeout",...} and a close.
// Any other sequence (a binary before the params, bad JSON, a bad parameter, a JPEG that does not
// decode or is too large) gets {"status":"error","message":...} naming it, and a close; the other
// clients are not affected. Messages above the size limit are refused by the WebSocket layer
// before they are read into memory.
#pragma once

#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "routes.h"
#include "ws_protocol.h"

namespace streamdiff::serve {

class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(boost::asio::ip::tcp::socket&& socket, ServerContext& ctx, std::string uuid);
  ~WsSession();

  // Accepts the upgrade `req` and starts the protocol.
  void run(boost::beast::http::request<boost::beast::http::string_body> req);
  // Sends {"status":"timeout",...} and closes (any thread).
  void time_out();

 private:
  enum class Expect { Opening, Active, Closing };

  void on_accept(boost::beast::error_code ec);
  void opened(std::shared_ptr<Session> session, const std::string& error);
  void do_read();
  void on_read(boost::beast::error_code ec, size_t bytes);
  void handle_text(const std::string& text);
  void handle_binary(const std::string& bytes);
  void act(WsProtocol::Step step);
  void send(nlohmann::json message);
  void do_write();
  void on_write(boost::beast::error_code ec, size_t);
  void fail(const std::string& message);  // an error message, then a close
  void finish();                          // the session ends (once)

  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  ServerContext& ctx_;
  const std::string uuid_;
  boost::beast::flat_buffer buffer_;
  std::deque<std::string> outbox_;
  Expect expect_ = Expect::Opening;
  bool closing_ = false, finished_ = false;
  WsProtocol protocol_;  // the message sequence of each frame
  std::shared_ptr<Session> session_;
};

}  // namespace streamdiff::serve
