// `streamdiff serve`: the live server. One process serves a web page and an API compatible with
// the original StreamDiffusion realtime-img2img demo (docs/protocol.md), written on the public
// API: one Model, one Stream per client (sessions.h), HTTP and WebSocket through Boost.Beast.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "streamdiff/streamdiff.hpp"

namespace streamdiff::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 7860;  // 0: any free port (see Server::port)
  int max_clients = 8;
  std::string token;             // when set, every route requires it
  int idle_timeout_s = 300;      // a client that sends no frame for this long is timed out
  int io_threads = 2;            // network threads (JPEG decoding runs on them)
  int jpeg_quality = 85;         // output frames
  size_t max_message = 4 << 20;  // a WebSocket message or HTTP body
  int max_image_side = 4096;     // an input JPEG's width or height
  std::vector<std::string> allowed_origins;  // besides the page's own origin
  StreamConfig img2img;                      // the sessions' defaults
  StreamConfig txt2img;                      // POST /api/predict
  bool txt2img_turbo = true;  // the one-step sd-turbo formula (one t_index, no guidance)
  std::string title = "streamdiff";
};

class Server {
 public:
  // Binds (throws Error naming the address when it cannot) and starts the threads.
  Server(Model model, ServerOptions options);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;  // the bound port
  void wait();       // until stop() (from another thread or a signal handler's helper)
  void stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);

}  // namespace streamdiff::serve
