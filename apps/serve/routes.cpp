#include "routes.h"

#include <cctype>
#include <cstdio>
#include <sstream>

#include "web_assets.h"

namespace streamdiff::serve {

namespace {

using json = nlohmann::json;

const char* kPageContent =
    "<h1 class=\"text-3xl font-bold\">streamdiff</h1>"
    "<h3 class=\"text-xl font-bold\">Real-time img2img</h3>"
    "<p class=\"text-sm\">StreamDiffusion in native C++: your camera or a shared window, "
    "stylised live.</p>";

std::string base64(const std::vector<uint8_t>& in) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint32_t(in[i]) << 16) | (uint32_t(in[i + 1]) << 8) | in[i + 2];
    for (int s = 18; s >= 0; s -= 6) out += k[(v >> s) & 63];
  }
  if (i < in.size()) {
    const uint32_t v = (uint32_t(in[i]) << 16) | (i + 1 < in.size() ? uint32_t(in[i + 1]) << 8 : 0);
    out += k[(v >> 18) & 63];
    out += k[(v >> 12) & 63];
    out += i + 1 < in.size() ? k[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

bool equal_time_constant(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char d = 0;
  for (size_t i = 0; i < a.size(); ++i) d |= static_cast<unsigned char>(a[i] ^ b[i]);
  return d == 0;
}

std::string header(const Request& r, const char* name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? std::string() : it->second;
}

json info_schema() {
  return {{"title", "Info"},
          {"type", "object"},
          {"properties",
           {{"name", {{"title", "Name"}, {"type", "string"}, {"default", "streamdiff img2img"}}},
            {"input_mode", {{"title", "Input Mode"}, {"type", "string"}, {"default", "image"}}},
            {"page_content",
             {{"title", "Page Content"}, {"type", "string"}, {"default", kPageContent}}}}}};
}

json session_json(const SessionStats& s) {
  return {{"id", s.id},
          {"frames_in", s.frames_in},
          {"frames_out", s.frames_out},
          {"dropped", s.dropped},
          {"skipped", s.skipped},
          {"fps", s.fps},
          {"latency_ms",
           {{"mean", s.latency_ms}, {"p50", s.latency_p50_ms}, {"p99", s.latency_p99_ms}}},
          {"compute_ms", s.compute_ms},
          {"queue", s.waiting ? 1 : 0},
          {"width", s.width},
          {"height", s.height},
          {"prompt", s.prompt},
          {"age_s", s.age_s}};
}

Response settings(ServerContext& ctx) {
  json j;
  j["info"] = info_schema();
  j["input_params"] = input_params_schema(ctx.opt.img2img, ctx.limits);
  j["max_queue_size"] = ctx.opt.max_clients;
  j["page_content"] = kPageContent;
  j["streamdiff"] = {{"version", version()},
                     {"family", ctx.model_info.family},
                     {"size_multiple", ctx.limits.size_multiple},
                     {"max_size", ctx.limits.max_size},
                     {"steps", ctx.limits.steps},
                     {"txt2img", true}};
  return json_response(200, j);
}

Response health(ServerContext& ctx) {
  const double up = std::chrono::duration<double>(Clock::now() - ctx.started).count();
  return json_response(200, {{"status", "ok"},
                             {"version", version()},
                             {"model", ctx.model_info.path},
                             {"backend", ctx.model_info.backend},
                             {"sessions", ctx.sessions.count()},
                             {"max_clients", ctx.opt.max_clients},
                             {"uptime_s", up}});
}

Response stats(ServerContext& ctx) {
  json list = json::array();
  for (const auto& s : ctx.sessions.all()) list.push_back(session_json(s->stats()));
  return json_response(200, {{"sessions", list}, {"queue_size", ctx.sessions.count()}});
}

// Prometheus' text exposition format.
Response metrics(ServerContext& ctx) {
  std::ostringstream m;
  auto family = [&](const char* name, const char* type, const char* help) {
    m << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  const auto all = ctx.sessions.all();
  family("streamdiff_sessions", "gauge", "Connected clients.");
  m << "streamdiff_sessions " << all.size() << '\n';
  family("streamdiff_max_clients", "gauge", "Most clients served at once.");
  m << "streamdiff_max_clients " << ctx.opt.max_clients << '\n';
  family("streamdiff_uptime_seconds", "gauge", "Seconds since the server started.");
  m << "streamdiff_uptime_seconds "
    << std::chrono::duration<double>(Clock::now() - ctx.started).count() << '\n';
  family("streamdiff_http_requests_total", "counter", "HTTP requests served.");
  m << "streamdiff_http_requests_total " << ctx.http_requests.load() << '\n';
  family("streamdiff_websocket_connections_total", "counter", "WebSocket connections accepted.");
  m << "streamdiff_websocket_connections_total " << ctx.ws_connections.load() << '\n';
  family("streamdiff_rejected_total", "counter",
         "Requests and messages refused (bad input, authorization, full server).");
  m << "streamdiff_rejected_total " << ctx.rejected.load() << '\n';
  std::vector<SessionStats> st;
  for (const auto& s : all) st.push_back(s->stats());
  auto per_session = [&](const char* name, const char* type, const char* help, auto value) {
    family(name, type, help);
    for (const SessionStats& s : st)
      m << name << "{session=\"" << s.id << "\"} " << value(s) << '\n';
  };
  per_session("streamdiff_session_frames_in_total", "counter", "Input frames received.",
              [](const SessionStats& s) { return s.frames_in; });
  per_session("streamdiff_session_frames_out_total", "counter", "Output frames made.",
              [](const SessionStats& s) { return s.frames_out; });
  per_session("streamdiff_session_frames_dropped_total", "counter",
              "Input frames replaced by a newer one before the engine took them.",
              [](const SessionStats& s) { return s.dropped; });
  per_session("streamdiff_session_fps", "gauge", "Outputs per second over the last 5 s.",
              [](const SessionStats& s) { return s.fps; });
  per_session("streamdiff_session_latency_ms", "gauge",
              "Mean time from receiving a frame to its output, last 256 frames.",
              [](const SessionStats& s) { return s.latency_ms; });
  per_session("streamdiff_session_compute_ms", "gauge", "Engine time of the last frame.",
              [](const SessionStats& s) { return s.compute_ms; });
  Response r;
  r.content_type = "text/plain; version=0.0.4";
  r.body = m.str();
  return r;
}

Response predict(const Request& req, ServerContext& ctx) {
  if (req.method != "POST") return error_response(405, "POST a JSON object: {\"prompt\": ...}");
  json body;
  try {
    body = json::parse(req.body);
  } catch (const json::exception&) {
    return error_response(400, "/api/predict: the body is not JSON");
  }
  try {
    const FrameParams p = parse_params(body, ctx.limits);
    return json_response(200, {{"base64_image", base64(ctx.txt2img.generate(p))}});
  } catch (const ParamError& e) {
    return error_response(422, e.what());
  } catch (const Error& e) {
    return error_response(e.status() == Status::InvalidArgument ? 422 : 500, e.what());
  }
}

Response view(const std::string& uuid, const Request& req) {
  // The output alone, filling the window: an OBS Browser Source.
  auto it = req.query.find("token");
  const std::string token = it == req.query.end() ? "" : "?token=" + it->second;
  Response r;
  r.content_type = "text/html; charset=utf-8";
  r.body = "<!doctype html><html><head><meta charset=\"utf-8\"><title>streamdiff " + uuid +
           "</title><style>html,body{margin:0;height:100%;background:#000;overflow:hidden}"
           "img{width:100%;height:100%;object-fit:contain}</style></head><body>"
           "<img src=\"/api/stream/" +
           uuid + token + "\" alt=\"\"></body></html>";
  return r;
}

}  // namespace

ServerContext::ServerContext(Model model, ServerOptions options)
    : opt(std::move(options)),
      model_info(model.info()),
      sessions(model, opt.img2img, opt.max_clients, opt.jpeg_quality),
      txt2img(model, opt.txt2img, opt.txt2img_turbo, opt.jpeg_quality) {
  limits.size_multiple = model_info.size_multiple;
  limits.max_size =
      std::max(limits.size_multiple, 1024 / limits.size_multiple * limits.size_multiple);
  limits.steps = opt.img2img.num_inference_steps;
}

std::string percent_decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(uint8_t(s[i + 1])) &&
               std::isxdigit(uint8_t(s[i + 2]))) {
      out += char(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

void split_target(const std::string& target, std::string* path,
                  std::map<std::string, std::string>* query) {
  const size_t q = target.find('?');
  *path = target.substr(0, q);
  if (q == std::string::npos) return;
  std::istringstream in(target.substr(q + 1));
  std::string kv;
  while (std::getline(in, kv, '&')) {
    const size_t eq = kv.find('=');
    (*query)[percent_decode(kv.substr(0, eq))] =
        eq == std::string::npos ? "" : percent_decode(kv.substr(eq + 1));
  }
}

bool is_uuid(const std::string& s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(uint8_t(s[i]))) return false;
  }
  return true;
}

std::string uuid_after(const std::string& path, const std::string& prefix) {
  if (path.compare(0, prefix.size(), prefix) != 0) return "";
  const std::string rest = path.substr(prefix.size());
  return is_uuid(rest) ? rest : "";
}

bool authorized(const Request& req, const std::string& token) {
  if (token.empty()) return true;
  auto q = req.query.find("token");
  if (q != req.query.end() && equal_time_constant(q->second, token)) return true;
  const std::string auth = header(req, "authorization");
  if (auth.rfind("Bearer ", 0) == 0 && equal_time_constant(auth.substr(7), token)) return true;
  const std::string cookies = header(req, "cookie");
  std::istringstream in(cookies);
  std::string c;
  while (std::getline(in, c, ';')) {
    while (!c.empty() && c[0] == ' ') c.erase(0, 1);
    if (c.rfind("streamdiff_token=", 0) == 0 &&
        equal_time_constant(percent_decode(c.substr(17)), token))
      return true;
  }
  return false;
}

bool origin_allowed(const Request& req, const std::vector<std::string>& allowed) {
  const std::string origin = header(req, "origin");
  if (origin.empty()) return true;  // not a browser: no cross-site request to refuse
  const std::string host = header(req, "host");
  if (origin == "http://" + host || origin == "https://" + host) return true;
  for (const std::string& a : allowed)
    if (origin == a) return true;
  return false;
}

Response json_response(int status, const json& body) {
  Response r;
  r.status = status;
  // A message may quote the client's bytes (a path, a value): what is not UTF-8 is replaced
  // rather than thrown about.
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

Response error_response(int status, const std::string& message) {
  return json_response(status, {{"detail", message}});
}

Response route(const Request& req, ServerContext& ctx) {
  const std::string& p = req.path;
  const bool get = req.method == "GET" || req.method == "HEAD";
  if (p == "/api/predict") return predict(req, ctx);
  if (!get) return error_response(405, req.method + " " + p + ": method not allowed");
  if (p == "/api/settings") return settings(ctx);
  if (p == "/api/queue") return json_response(200, {{"queue_size", ctx.sessions.count()}});
  if (p == "/api/health") return health(ctx);
  if (p == "/api/stats") return stats(ctx);
  if (p == "/metrics") return metrics(ctx);
  if (p.rfind("/view/", 0) == 0) {
    const std::string uuid = uuid_after(p, "/view/");
    if (uuid.empty()) return error_response(404, "not a session id: " + p.substr(6));
    return view(uuid, req);
  }
  if (const WebAsset* a = find_web_asset(p == "/" ? "/index.html" : p)) {
    Response r;
    r.content_type = a->content_type;
    r.body.assign(reinterpret_cast<const char*>(a->data), a->size);
    r.headers.push_back({"Cache-Control", "no-cache"});
    return r;
  }
  return error_response(404, "Not Found: " + p);
}

}  // namespace streamdiff::serve
