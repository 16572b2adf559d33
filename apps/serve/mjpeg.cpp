#include "mjpeg.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/write.hpp>
#include <string>

namespace streamdiff::serve {

namespace net = boost::asio;

namespace {

void stream(net::ip::tcp::socket socket, const std::shared_ptr<Session>& session,
            const std::string& extra_headers, const std::atomic<bool>& stopping) {
  timeval timeout{10, 0};  // a viewer that takes no data for 10 s is dropped
  setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  boost::system::error_code ec;
  const std::string head =
      "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n"
      "Cache-Control: no-cache\r\nConnection: close\r\n" +
      extra_headers + "\r\n";
  net::write(socket, net::buffer(head), ec);
  uint64_t seq = 0;
  while (!ec && !stopping) {
    auto [jpeg, n] = session->wait_newer(seq, std::chrono::milliseconds(500));
    if (session->closed()) break;
    if (!jpeg || n == seq) continue;
    seq = n;
    const std::string part =
        "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + std::to_string(jpeg->size()) +
        "\r\n\r\n";
    const std::vector<net::const_buffer> buffers{net::buffer(part), net::buffer(*jpeg),
                                                 net::buffer("\r\n", 2)};
    net::write(socket, buffers, ec);
  }
  socket.shutdown(net::ip::tcp::socket::shutdown_both, ec);
}

}  // namespace

MjpegViewers::~MjpegViewers() {
  stop_all();
}

void MjpegViewers::start(net::ip::tcp::socket&& socket, std::shared_ptr<Session> session,
                         const std::string& extra_headers) {
  reap();
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::lock_guard<std::mutex> lock(mu_);
  viewers_.push_back(
      Viewer{std::thread([this, s = std::move(socket), session, extra_headers, done]() mutable {
               stream(std::move(s), session, extra_headers, stopping_);
               *done = true;
             }),
             done});
}

void MjpegViewers::reap() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = viewers_.begin(); it != viewers_.end();) {
    if (*it->done) {
      it->thread.join();
      it = viewers_.erase(it);
    } else {
      ++it;
    }
  }
}

void MjpegViewers::stop_all() {
  stopping_ = true;
  std::vector<Viewer> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(viewers_);
  }
  for (Viewer& v : all) v.thread.join();
}

size_t MjpegViewers::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const Viewer& v : viewers_) n += !*v.done;
  return n;
}

}  // namespace streamdiff::serve
