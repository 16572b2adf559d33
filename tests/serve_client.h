// Small blocking clients for the server tests (Boost.Beast): a WebSocket client that speaks the
// demo's protocol, an MJPEG reader for /api/stream/{uuid}, and plain HTTP requests.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace streamdiff::test {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct HttpResult {
  int status = 0;
  std::string body;
  std::string content_type;
};

inline HttpResult http_request(
    int port, http::verb verb, const std::string& target, const std::string& body = "",
    const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), uint16_t(port)));
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.prepare_payload();
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  http::read(stream, buffer, parser);
  auto res = parser.release();
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  return {int(res.result_int()), res.body(), std::string(res[http::field::content_type])};
}

inline HttpResult http_get(int port, const std::string& target,
                           const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  return http_request(port, http::verb::get, target, "", headers);
}

class WsClient {
 public:
  // Connects to /api/ws/<uuid><query>; `origin` is sent as the Origin header when not empty.
  WsClient(int port, const std::string& uuid, const std::string& query = "",
           const std::string& origin = "")
      : ws_(ioc_) {
    auto& sock = beast::get_lowest_layer(ws_);
    sock.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), uint16_t(port)));
    sock.socket().set_option(tcp::no_delay(true));
    ws_.set_option(websocket::stream_base::decorator([origin](websocket::request_type& req) {
      if (!origin.empty()) req.set(http::field::origin, origin);
    }));
    ws_.read_message_max(64 << 20);
    ws_.handshake("127.0.0.1:" + std::to_string(port), "/api/ws/" + uuid + query);
  }

  // The next text message as JSON; nullopt when the server closed the connection.
  std::optional<nlohmann::json> read() {
    beast::flat_buffer buffer;
    beast::error_code ec;
    ws_.read(buffer, ec);
    if (ec) return std::nullopt;
    return nlohmann::json::parse(beast::buffers_to_string(buffer.data()));
  }
  // Reads until a message with this status (true) or the end (false).
  bool read_until(const std::string& status, nlohmann::json* last = nullptr) {
    while (auto m = read()) {
      if (last) *last = *m;
      if (m->value("status", "") == status) return true;
    }
    return false;
  }
  void text(const std::string& s) {
    ws_.text(true);
    ws_.write(net::buffer(s));
  }
  void binary(const std::vector<uint8_t>& b) {
    ws_.binary(true);
    ws_.write(net::buffer(b));
  }
  // One frame as the protocol wants it: next_frame, params, the JPEG.
  void frame(const nlohmann::json& params, const std::vector<uint8_t>& jpeg) {
    text(R"({"status":"next_frame"})");
    text(params.dump());
    binary(jpeg);
  }
  void close() {
    beast::error_code ec;
    ws_.close(websocket::close_code::normal, ec);
  }
  websocket::stream<beast::tcp_stream>& stream() { return ws_; }

 private:
  net::io_context ioc_;
  websocket::stream<beast::tcp_stream> ws_;
};

// Reads the parts of /api/stream/<uuid>.
class MjpegReader {
 public:
  MjpegReader(int port, const std::string& target) : socket_(ioc_) {
    socket_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), uint16_t(port)));
    const std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    net::write(socket_, net::buffer(req));
    net::read_until(socket_, buf_, "\r\n\r\n");
    std::istream in(&buf_);
    std::string line;
    std::getline(in, line);
    status_line = line;
    while (std::getline(in, line) && line != "\r") headers += line + "\n";
  }
  // The next JPEG; empty at the end of the stream.
  std::vector<uint8_t> next() {
    beast::error_code ec;
    net::read_until(socket_, buf_, "\r\n\r\n", ec);
    if (ec) return {};
    std::istream in(&buf_);
    std::string line;
    size_t length = 0;
    while (std::getline(in, line) && line != "\r")
      if (line.rfind("Content-Length: ", 0) == 0) length = std::stoul(line.substr(16));
    if (buf_.size() < length + 2)
      net::read(socket_, buf_, net::transfer_exactly(length + 2 - buf_.size()), ec);
    if (ec) return {};
    std::vector<uint8_t> jpeg(length);
    in.read(reinterpret_cast<char*>(jpeg.data()), std::streamsize(length));
    in.ignore(2);  // \r\n
    return jpeg;
  }
  std::string status_line, headers;

 private:
  net::io_context ioc_;
  tcp::socket socket_;
  net::streambuf buf_;
};

}  // namespace streamdiff::test
