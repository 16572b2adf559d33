// GET /api/stream/{uuid}: a session's outputs as an MJPEG stream (multipart/x-mixed-replace;
// boundary=frame, one image/jpeg part per output frame), as the original demo serves them; the
// page's <img>, /view/{uuid} and OBS read it. Each viewer gets a thread that waits for the
// session's next output and writes it with a blocking send (a send timeout ends a stalled
// viewer); a viewer that is slower than the engine simply gets the newest frame each time.
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "sessions.h"

namespace streamdiff::serve {

class MjpegViewers {
 public:
  ~MjpegViewers();  // stop_all()
  // Takes over `socket` (the request has been read) and streams `session` to it.
  void start(boost::asio::ip::tcp::socket&& socket, std::shared_ptr<Session> session,
             const std::string& extra_headers);
  void stop_all();  // ends every stream and joins the threads
  size_t count() const;

 private:
  void reap();  // joins finished threads
  struct Viewer {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  mutable std::mutex mu_;
  std::vector<Viewer> viewers_;
  std::atomic<bool> stopping_{false};
};

}  // namespace streamdiff::serve
