#include "hub/hub_http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <mutex>

#include "hub/hub_env.h"

namespace sd::hub {

namespace {

constexpr size_t kErrorBodyLimit = 64 << 10;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

long seconds_from_env(const char* name, long fallback) {
  const std::string v = env(name);
  if (v.empty()) return fallback;
  char* end = nullptr;
  const double s = std::strtod(v.c_str(), &end);
  SD_CHECK(end && *end == '\0' && s > 0, name, "='", v, "' is not a positive number of seconds");
  return std::max(1L, long(s + 0.5));
}

// The token `huggingface-cli login` saved, or "".
std::string saved_token() {
  std::string path = env("HF_TOKEN_PATH");
  if (path.empty()) path = hf_home() + "/token";
  std::ifstream in(path);
  std::string token;
  if (in) std::getline(in, token);
  return trim(token);
}

}  // namespace

std::string HttpResponse::header(const std::string& lower_name) const {
  const auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

HttpSettings http_settings_from_env() {
  HttpSettings s;
  s.endpoint = hub_endpoint();
  s.token = trim(env("HF_TOKEN"));
  if (s.token.empty()) s.token = saved_token();
  s.timeout_s = seconds_from_env("HF_HUB_ETAG_TIMEOUT", 10);
  s.download_timeout_s = seconds_from_env("HF_HUB_DOWNLOAD_TIMEOUT", 10);
  return s;
}

// One request's state, reachable from libcurl's callbacks.
struct HttpClient::Request {
  HttpResponse response;
  char error[CURL_ERROR_SIZE] = {};
  curl_slist* headers = nullptr;
  size_t max_body = 0;
  // Downloads.
  bool download = false;
  int64_t offset = 0;
  bool checked_status = false;
  bool deliver = false;  // a 200/206 body: to on_data; otherwise kept in response.body
  const std::function<void(const char*, size_t)>* on_data = nullptr;
  const std::function<void()>* on_restart = nullptr;
  const std::function<void()>* on_tick = nullptr;
  std::exception_ptr callback_error;  // thrown by a callback: rethrown after the transfer
  bool body_too_large = false;
  CURL* curl = nullptr;

  ~Request() { curl_slist_free_all(headers); }
};

namespace {

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<HttpClient::Request*>(user);
  const std::string line(data, size * n);
  if (line.starts_with("HTTP/")) {
    r->response.headers.clear();  // a new response (after a redirect or a 100 Continue)
  } else if (const size_t colon = line.find(':'); colon != std::string::npos) {
    r->response.headers[lower(trim(line.substr(0, colon)))] = trim(line.substr(colon + 1));
  }
  return size * n;
}

// The start of a "bytes START-END/TOTAL" Content-Range, or -1.
int64_t content_range_start(const std::string& v) {
  if (!v.starts_with("bytes ")) return -1;
  char* end = nullptr;
  const long long start = std::strtoll(v.c_str() + 6, &end, 10);
  return end && *end == '-' ? int64_t(start) : -1;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<HttpClient::Request*>(user);
  const size_t bytes = size * n;
  if (!r->download) {
    if (r->response.body.size() + bytes > r->max_body) {
      r->body_too_large = true;
      return 0;
    }
    r->response.body.append(data, bytes);
    return bytes;
  }
  try {
    if (!r->checked_status) {
      r->checked_status = true;
      long status = 0;
      curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
      r->deliver = status == 200 || status == 206;
      if (status == 200 && r->offset > 0) {
        (*r->on_restart)();  // the server ignored the Range: the bytes start at 0
      } else if (status == 206) {
        const std::string range = r->response.header("content-range");
        SD_CHECK(content_range_start(range) == r->offset, "asked for bytes from ", r->offset,
                 " of ", r->response.url, ", got Content-Range '", range, "'");
      }
    }
    if (r->deliver) {
      (*r->on_data)(data, bytes);
    } else if (r->response.body.size() < kErrorBodyLimit) {
      r->response.body.append(data, std::min(bytes, kErrorBodyLimit - r->response.body.size()));
    }
  } catch (...) {
    r->callback_error = std::current_exception();
    return 0;  // fewer bytes than given: libcurl aborts the transfer
  }
  return bytes;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* r = static_cast<HttpClient::Request*>(user);
  if (!r->on_tick || !*r->on_tick) return 0;
  try {
    (*r->on_tick)();
  } catch (...) {
    r->callback_error = std::current_exception();
    return 1;  // aborts the transfer
  }
  return 0;
}

}  // namespace

HttpClient::HttpClient(HttpSettings settings) : settings_(std::move(settings)) {
  global_init();
  endpoint_origin_ = url_origin(settings_.endpoint);
  curl_ = curl_easy_init();
  SD_CHECK(curl_ != nullptr, "libcurl: curl_easy_init failed");
}

HttpClient::~HttpClient() {
  curl_easy_cleanup(curl_);
}

void HttpClient::prepare(Request& r, const std::string& url, bool follow, long timeout_s) {
  curl_easy_reset(curl_);  // keeps the connection cache: one TLS session for all requests
  r.curl = curl_;
  r.response.url = url;
  curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl_, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl_, CURLOPT_USERAGENT, "streamdiff/" SD_VERSION);
  curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, r.error);
  curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT, timeout_s);
  curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_LIMIT, 1L);  // below 1 byte/s for timeout_s: cut
  curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_TIME, timeout_s);
  curl_easy_setopt(curl_, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
  curl_easy_setopt(curl_, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &r);
  curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &r);
  // libcurl sends a custom Authorization header only to the host of the URL it was given, not
  // to the hosts it is redirected to; and it is added here only for the endpoint's own origin.
  if (!settings_.token.empty() && url_origin(url) == endpoint_origin_)
    r.headers = curl_slist_append(r.headers, ("Authorization: Bearer " + settings_.token).c_str());
  r.headers = curl_slist_append(r.headers, "Accept-Encoding: identity");  // true sizes
  curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, r.headers);
}

void HttpClient::perform(Request& r, const char* what) {
  const CURLcode rc = curl_easy_perform(curl_);
  if (r.callback_error) std::rethrow_exception(r.callback_error);
  curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &r.response.status);
  char* effective = nullptr;
  if (curl_easy_getinfo(curl_, CURLINFO_EFFECTIVE_URL, &effective) == CURLE_OK && effective)
    r.response.url = effective;
  SD_CHECK(!r.body_too_large, what, " ", r.response.url, ": the response is larger than ",
           r.max_body, " bytes");
  if (rc != CURLE_OK) {
    const std::string detail = r.error[0] ? std::string(r.error) : curl_easy_strerror(rc);
    throw NetworkError(detail::concat(what, " ", r.response.url, " failed: ", trim(detail)));
  }
}

HttpResponse HttpClient::get(const std::string& url, size_t max_body) {
  Request r;
  r.max_body = max_body;
  prepare(r, url, true, settings_.timeout_s);
  perform(r, "GET");
  return std::move(r.response);
}

HttpResponse HttpClient::head(const std::string& url) {
  std::string current = url;
  for (int redirects = 0;; ++redirects) {
    Request r;
    prepare(r, current, false, settings_.timeout_s);
    curl_easy_setopt(curl_, CURLOPT_NOBODY, 1L);
    perform(r, "HEAD");
    const long s = r.response.status;
    const std::string location = r.response.header("location");
    const bool relative = !location.empty() && location.find("://") == std::string::npos;
    if (!(s == 301 || s == 302 || s == 307 || s == 308) || !relative || redirects == 10)
      return std::move(r.response);
    current = resolve_url(current, location);
  }
}

HttpResponse HttpClient::download(const std::string& url, int64_t offset,
                                  const std::function<void(const char*, size_t)>& on_data,
                                  const std::function<void()>& on_restart,
                                  const std::function<void()>& on_tick) {
  Request r;
  r.download = true;
  r.offset = offset;
  r.on_data = &on_data;
  r.on_restart = &on_restart;
  r.on_tick = &on_tick;
  prepare(r, url, true, settings_.download_timeout_s);
  const std::string range = std::to_string(offset) + "-";  // "bytes=N-"
  if (offset > 0) curl_easy_setopt(curl_, CURLOPT_RANGE, range.c_str());
  curl_easy_setopt(curl_, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl_, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl_, CURLOPT_XFERINFODATA, &r);
  perform(r, "download of");
  return std::move(r.response);
}

std::string resolve_url(const std::string& base, const std::string& ref) {
  CURLU* u = curl_url();
  SD_CHECK(u != nullptr, "libcurl: curl_url failed");
  char* out = nullptr;
  const bool ok = curl_url_set(u, CURLUPART_URL, base.c_str(), 0) == CURLUE_OK &&
                  curl_url_set(u, CURLUPART_URL, ref.c_str(), 0) == CURLUE_OK &&
                  curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK;
  std::string result = ok && out ? std::string(out) : std::string();
  curl_free(out);
  curl_url_cleanup(u);
  SD_CHECK(ok, "cannot resolve the URL '", ref, "' against '", base, "'");
  return result;
}

std::string url_origin(const std::string& url) {
  CURLU* u = curl_url();
  SD_CHECK(u != nullptr, "libcurl: curl_url failed");
  char *scheme = nullptr, *host = nullptr, *port = nullptr;
  const bool ok = curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
                  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
                  curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
                  curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK;
  std::string origin = ok ? lower(scheme) + "://" + lower(host) + ":" + port : std::string();
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  SD_CHECK(ok, "'", url, "' is not an absolute http(s) URL");
  return origin;
}

std::string url_escape(const std::string& s, bool keep_slash) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (keep_slash && c == '/')) {
      out += char(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace sd::hub
