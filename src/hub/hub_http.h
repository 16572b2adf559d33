// A small HTTP(S) client over libcurl for the Hugging Face Hub: GET into memory, HEAD with the
// response headers kept, and downloads that resume with Range. TLS certificates are verified,
// only http and https are spoken, a stalled connection times out, and the token goes only into
// the Authorization header of requests to the endpoint's own origin (never into a message, a
// URL or a request to another host, e.g. the storage an LFS file redirects to).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "core/error.h"

typedef void CURL;

namespace sd::hub {

// A request that got no HTTP response: name resolution, connection, TLS, a timeout, or a
// transfer cut short. Pull retries downloads on it.
class NetworkError : public Error {
 public:
  using Error::Error;
};

struct HttpResponse {
  long status = 0;
  // The headers of the response the request ended with, names in lower case.
  std::map<std::string, std::string> headers;
  std::string body;  // get(); an error response's body (at most 64 KiB) for download()
  std::string url;   // the URL that gave this response (after the redirects followed)
  std::string header(const std::string& lower_name) const;  // "" when absent
};

struct HttpSettings {
  std::string endpoint = "https://huggingface.co";  // no trailing slash
  std::string token;                                // "" for none
  long timeout_s = 10;           // metadata requests: connection and stall timeout
  long download_timeout_s = 10;  // downloads: connection timeout; a transfer that receives
                                 // nothing for this long is cut (and resumed by the caller)
};

// The settings the environment gives, as huggingface_hub reads them: HF_ENDPOINT; HF_TOKEN, else
// the token file `huggingface-cli login` writes ($HF_TOKEN_PATH, default $HF_HOME/token);
// HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT (seconds).
HttpSettings http_settings_from_env();

class HttpClient {
 public:
  explicit HttpClient(HttpSettings settings);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  const HttpSettings& settings() const { return settings_; }

  // GET into memory, following redirects; a body over max_body bytes is an error.
  HttpResponse get(const std::string& url, size_t max_body = size_t(64) << 20);
  // HEAD. Follows relative redirects only (a renamed repository), so that the response an LFS
  // file answers with (302 to its storage, with X-Linked-Etag / X-Linked-Size) is the one kept.
  HttpResponse head(const std::string& url);

  // GET from byte `offset` on (a Range request when offset > 0), following redirects. The body
  // of a 200 or 206 response goes to `on_data`; when the server ignored the Range (200 to a
  // request with offset > 0) `on_restart` is called first and the bytes start at 0. `on_tick`
  // is called while the transfer runs, also when no data comes (about once a second at least).
  // An exception thrown by a callback aborts the transfer and propagates from here. Failures
  // without a response (or a transfer cut short) throw NetworkError; an HTTP error status is
  // returned with its body.
  HttpResponse download(const std::string& url, int64_t offset,
                        const std::function<void(const char* data, size_t size)>& on_data,
                        const std::function<void()>& on_restart,
                        const std::function<void()>& on_tick);

  struct Request;  // one request's state (internal: libcurl's callbacks reach it)

 private:
  void prepare(Request& r, const std::string& url, bool follow, long timeout_s);
  void perform(Request& r, const char* what);

  HttpSettings settings_;
  std::string endpoint_origin_;
  CURL* curl_ = nullptr;
};

// `ref` (an absolute URL, or a relative reference as in a Location header) resolved against the
// absolute URL `base`.
std::string resolve_url(const std::string& base, const std::string& ref);
// "scheme://host:port" of an absolute URL (the default port filled in).
std::string url_origin(const std::string& url);
// Percent-encodes everything but unreserved characters (and '/' when keep_slash).
std::string url_escape(const std::string& s, bool keep_slash);

}  // namespace sd::hub
