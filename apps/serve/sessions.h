// Sessions of `streamdiff serve` and the engine thread that runs their frames.
//
// Every client (a WebSocket with a uuid) has a Session: its own Stream on the one shared Model
// (its latent buffer, noise, prompt, filter and settings), a slot for its newest input frame and
// its newest output JPEG. Frames of different clients never mix: each Stream only ever sees its
// own client's frames.
//
// Live input: the server asks a client for its next frame ("send_frame") when the output of its
// current one is out, so the client captures a fresh frame then and the latency of one client
// stays about one frame time (plus the frame's trip) however slow the machine is: no frame waits
// behind an older one of its own. Should a client send unasked anyway, its session holds at most
// one waiting frame: a newer one replaces it (counted as dropped, its parameters merged into the
// newer one's), so there is never a backlog.
//
// Scheduling is round robin over the sessions with a waiting frame: one engine thread runs one
// frame at a time (the model serializes its streams anyway; on a CPU one frame already uses all
// cores). Several clients' frames are not batched into one UNet call: on the CPU a batch of rows
// costs its rows (`streamdiff_bench unet-batch`: 1697 ms for 1 row, 1599 ms per row for 2), and
// clients differ in size, steps and settings; see docs/architecture.md.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "params.h"
#include "streamdiff/media.hpp"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff::serve {

using Clock = std::chrono::steady_clock;
using Jpeg = std::shared_ptr<const std::vector<uint8_t>>;

struct SessionStats {
  std::string id;
  int64_t frames_in = 0, frames_out = 0, dropped = 0, skipped = 0;
  double fps = 0;                                                 // outputs per second, last ~5 s
  double latency_ms = 0, latency_p50_ms = 0, latency_p99_ms = 0;  // receive -> output
  double compute_ms = 0;                                          // the last frame's engine time
  int width = 0, height = 0;
  std::string prompt;    // the prompt the last frame used
  bool waiting = false;  // a frame is queued for the engine
  double age_s = 0;      // since the session started
};

class Session {
 public:
  Session(std::string id, const Model& model, const StreamConfig& defaults, int jpeg_quality);
  ~Session();

  const std::string& id() const { return id_; }

  // A decoded input frame with its parameters (network threads). Returns false once closed.
  bool offer(Image frame, FrameParams params, Clock::time_point received);
  // The newest output (null before the first) and its number (0 before the first).
  std::pair<Jpeg, uint64_t> latest() const;
  // Waits until an output newer than `seq` exists or the session closes (or `timeout` passes);
  // the newest output and its number, null/0 when none.
  std::pair<Jpeg, uint64_t> wait_newer(uint64_t seq, std::chrono::milliseconds timeout) const;
  // Called (from the engine thread) when a frame's output is out: the client may send the next
  // one. Set before the first offer.
  std::function<void()> on_frame_done;
  // Called (from the engine thread) when a frame failed: the message for the client.
  std::function<void(const std::string&)> on_error;

  void close();  // wakes waiters; offers are refused
  bool closed() const;
  Clock::time_point last_input() const;
  SessionStats stats() const;

  // Engine side: takes the waiting frame, if any, and runs it.
  bool has_frame() const;
  void run_frame();

 private:
  struct Pending {
    Image frame;
    FrameParams params;
    Clock::time_point received;
  };
  static void merge(FrameParams& into, FrameParams&& newer);

  const std::string id_;
  const int jpeg_quality_;
  Stream stream_;
  StreamConfig current_;
  Image output_;  // the stream's output, then encoded
  const Clock::time_point started_ = Clock::now();

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::optional<Pending> pending_;
  Jpeg jpeg_;
  uint64_t seq_ = 0;
  bool closed_ = false;
  Clock::time_point last_input_ = started_;
  int64_t frames_in_ = 0, dropped_ = 0, skipped_ = 0;
  std::vector<Clock::time_point> recent_outputs_;  // for fps (bounded)
  std::vector<double> latencies_;                  // ring of the last kLatencies
  size_t latency_next_ = 0;
  double compute_ms_ = 0;
  static constexpr size_t kLatencies = 256;
};

// The sessions and the engine thread.
class SessionManager {
 public:
  SessionManager(Model model, StreamConfig defaults, int max_clients, int jpeg_quality);
  ~SessionManager();  // shutdown()
  // Stops and joins the engine thread, then drops the sessions' network callbacks and pending
  // opens (they hold executors of the io_context, which must outlive them). Idempotent.
  void shutdown();

  // A new session for `id`; null when the server is full. Throws Error for an id in use.
  std::shared_ptr<Session> open(const std::string& id);
  // The same on the engine thread, between frames (opening prepares a stream: model work);
  // `done` gets the session (null: full, or `error`) on the engine thread.
  using OpenCallback = std::function<void(std::shared_ptr<Session>, const std::string& error)>;
  void open_async(const std::string& id, OpenCallback done);
  void close(const std::string& id);
  std::shared_ptr<Session> find(const std::string& id) const;
  std::vector<std::shared_ptr<Session>> all() const;
  size_t count() const;
  int max_clients() const { return max_clients_; }
  const StreamConfig& defaults() const { return defaults_; }
  const Model& model() const { return model_; }

  // Wakes the engine (a session got a frame).
  void notify();
  // Sessions whose last input is older than `idle`, for the caller to time out.
  std::vector<std::shared_ptr<Session>> idle_since(std::chrono::seconds idle) const;

 private:
  void engine_loop();

  Model model_;
  StreamConfig defaults_;
  const int max_clients_;
  const int jpeg_quality_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  std::string last_served_;  // round robin: the next session after this one goes first
  std::vector<std::pair<std::string, OpenCallback>> opens_;  // for the engine thread
  bool stop_ = false;
  bool woken_ = false;
  std::thread engine_;
};

}  // namespace streamdiff::serve
