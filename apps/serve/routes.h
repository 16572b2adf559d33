// The HTTP routes of `streamdiff serve` as plain functions of a request (no sockets), so that
// they can be tested on their own: the demo's /api/settings and /api/queue, POST /api/predict,
// our /api/health, /api/stats, /metrics, the OBS view /view/{uuid} and the embedded page.
// The streaming routes (/api/ws/{uuid}, /api/stream/{uuid}) live in ws_session / mjpeg.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "params.h"
#include "server.h"
#include "sessions.h"
#include "txt2img.h"

namespace streamdiff::serve {

class WsSession;

// The WebSocket sessions by client id, for timeouts and shutdown.
class WsRegistry {
 public:
  void add(const std::string& uuid, const std::weak_ptr<WsSession>& s);
  void remove(const std::string& uuid);
  std::shared_ptr<WsSession> find(const std::string& uuid) const;
  std::vector<std::shared_ptr<WsSession>> all() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::weak_ptr<WsSession>> sessions_;
};

// What the routes read and count; one per server.
struct ServerContext {
  ServerContext(Model model, ServerOptions options);

  ServerOptions opt;
  ModelInfo model_info;
  ParamLimits limits;
  SessionManager sessions;
  Txt2Img txt2img;
  WsRegistry ws;
  const Clock::time_point started = Clock::now();
  std::atomic<int64_t> http_requests{0}, ws_connections{0}, rejected{0};
};

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Splits "/path?a=1&b=%20x" into the path and the decoded query parameters.
void split_target(const std::string& target, std::string* path,
                  std::map<std::string, std::string>* query);
std::string percent_decode(const std::string& s);

// A client id as the demo makes it (crypto.randomUUID): 8-4-4-4-12 hex digits.
bool is_uuid(const std::string& s);
// The uuid after `prefix` in `path` ("/api/ws/<uuid>"), or "" when the path is not that.
std::string uuid_after(const std::string& path, const std::string& prefix);

// The token check: ?token=, "Authorization: Bearer", or the streamdiff_token cookie.
bool authorized(const Request& req, const std::string& token);
// The WebSocket Origin check: no Origin (not a browser), the page's own origin (the Host), or
// one of the allowed origins.
bool origin_allowed(const Request& req, const std::vector<std::string>& allowed);

Response json_response(int status, const nlohmann::json& body);
Response error_response(int status, const std::string& message);

// Every route but the streaming ones.
Response route(const Request& req, ServerContext& ctx);

}  // namespace streamdiff::serve
