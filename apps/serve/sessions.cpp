#include "sessions.h"

#include <algorithm>

namespace streamdiff::serve {

namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

template <typename T>
void take_newer(std::optional<T>& into, std::optional<T>&& newer) {
  if (newer) into = std::move(newer);
}

}  // namespace

Session::Session(std::string id, const Model& model, const StreamConfig& defaults, int jpeg_quality)
    : id_(std::move(id)),
      jpeg_quality_(jpeg_quality),
      stream_(model, defaults),
      current_(defaults) {}

Session::~Session() = default;

void Session::merge(FrameParams& into, FrameParams&& n) {
  take_newer(into.prompt, std::move(n.prompt));
  take_newer(into.negative_prompt, std::move(n.negative_prompt));
  take_newer(into.width, std::move(n.width));
  take_newer(into.height, std::move(n.height));
  take_newer(into.guidance_scale, std::move(n.guidance_scale));
  take_newer(into.delta, std::move(n.delta));
  take_newer(into.similarity_threshold, std::move(n.similarity_threshold));
  take_newer(into.seed, std::move(n.seed));
  take_newer(into.t_index_list, std::move(n.t_index_list));
  take_newer(into.similarity_filter, std::move(n.similarity_filter));
  take_newer(into.prompt_blend, std::move(n.prompt_blend));
  take_newer(into.blend, std::move(n.blend));
}

bool Session::offer(Image frame, FrameParams params, Clock::time_point received) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return false;
    ++frames_in_;
    last_input_ = received;
    if (pending_) {  // the newest frame wins; the older one's parameters still apply
      ++dropped_;
      merge(pending_->params, std::move(params));
      pending_->frame = std::move(frame);
      pending_->received = received;
    } else {
      pending_ = Pending{std::move(frame), std::move(params), received};
    }
  }
  return true;
}

bool Session::has_frame() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_.has_value() && !closed_;
}

void Session::run_frame() {
  Pending in;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!pending_ || closed_) return;
    in = std::move(*pending_);
    pending_.reset();
  }
  const auto t0 = Clock::now();
  try {
    apply_params(in.params, stream_, current_);
    const StreamConfig c = stream_.config();
    if (output_.width != c.width || output_.height != c.height) {
      output_.width = c.width, output_.height = c.height;
      output_.rgb.assign(size_t(c.width) * size_t(c.height) * 3, 0);
    }
    const FrameInfo info = stream_.img2img(in.frame.view(), output_.mutable_view());
    auto jpeg = std::make_shared<const std::vector<uint8_t>>(encode_jpeg(output_, jpeg_quality_));
    const auto done = Clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    jpeg_ = std::move(jpeg);
    ++seq_;
    if (info.skipped) ++skipped_;
    compute_ms_ = ms_between(t0, done);
    if (latencies_.size() < kLatencies) {
      latencies_.push_back(ms_between(in.received, done));
    } else {
      latencies_[latency_next_] = ms_between(in.received, done);
      latency_next_ = (latency_next_ + 1) % kLatencies;
    }
    recent_outputs_.push_back(done);
    const auto horizon = done - std::chrono::seconds(5);
    recent_outputs_.erase(std::remove_if(recent_outputs_.begin(), recent_outputs_.end(),
                                         [&](Clock::time_point t) { return t < horizon; }),
                          recent_outputs_.end());
  } catch (const std::exception& e) {
    if (on_error) on_error(e.what());
    return;
  }
  cv_.notify_all();
  if (on_frame_done) on_frame_done();  // the client captures its next frame now: a fresh one
}

std::pair<Jpeg, uint64_t> Session::latest() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {jpeg_, seq_};
}

std::pair<Jpeg, uint64_t> Session::wait_newer(uint64_t seq, std::chrono::milliseconds t) const {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, t, [&] { return closed_ || seq_ > seq; });
  return {jpeg_, seq_};
}

void Session::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    pending_.reset();
  }
  cv_.notify_all();
}

bool Session::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

Clock::time_point Session::last_input() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_input_;
}

SessionStats Session::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  SessionStats s;
  s.id = id_;
  s.frames_in = frames_in_;
  s.frames_out = int64_t(seq_);
  s.dropped = dropped_;
  s.skipped = skipped_;
  const auto now = Clock::now();
  s.age_s = std::chrono::duration<double>(now - started_).count();
  if (recent_outputs_.size() >= 2) {
    const double span =
        std::chrono::duration<double>(recent_outputs_.back() - recent_outputs_.front()).count();
    if (span > 0) s.fps = double(recent_outputs_.size() - 1) / span;
  }
  if (!latencies_.empty()) {
    std::vector<double> v = latencies_;
    std::sort(v.begin(), v.end());
    double sum = 0;
    for (double x : v) sum += x;
    s.latency_ms = sum / double(v.size());
    s.latency_p50_ms = v[(v.size() - 1) / 2];
    s.latency_p99_ms = v[std::min(v.size() - 1, size_t(double(v.size()) * 0.99))];
  }
  s.compute_ms = compute_ms_;
  s.width = current_.width;
  s.height = current_.height;
  s.prompt = current_.prompt;
  s.waiting = pending_.has_value();
  return s;
}

// ---- the manager and the engine thread -------------------------------------------------------

SessionManager::SessionManager(Model model, StreamConfig defaults, int max_clients,
                               int jpeg_quality)
    : model_(std::move(model)),
      defaults_(std::move(defaults)),
      max_clients_(max_clients),
      jpeg_quality_(jpeg_quality) {
  engine_ = std::thread([this] { engine_loop(); });
}

SessionManager::~SessionManager() {
  shutdown();
}

void SessionManager::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    for (auto& [id, s] : sessions_) s->close();
  }
  wake_.notify_all();
  if (engine_.joinable()) engine_.join();
  // The callbacks hold the network's executors (and open requests their WebSocket sessions):
  // drop them now, while the io_context that owns those executors still exists. Destroying
  // them after it was a use-after-free that AddressSanitizer found in the server tests.
  std::lock_guard<std::mutex> lock(mu_);
  opens_.clear();
  for (auto& [id, s] : sessions_) {
    s->on_frame_done = nullptr;
    s->on_error = nullptr;
  }
}

void SessionManager::open_async(const std::string& id, OpenCallback done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    opens_.emplace_back(id, std::move(done));
    woken_ = true;
  }
  wake_.notify_one();
}

std::shared_ptr<Session> SessionManager::open(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (sessions_.count(id)) throw Error(Status::InvalidArgument, "session " + id + " is in use");
    if (max_clients_ > 0 && int(sessions_.size()) >= max_clients_) return nullptr;
  }
  // Preparing a stream runs the model (prompt, planning): outside the lock.
  auto s = std::make_shared<Session>(id, model_, defaults_, jpeg_quality_);
  std::lock_guard<std::mutex> lock(mu_);
  if (sessions_.count(id)) throw Error(Status::InvalidArgument, "session " + id + " is in use");
  if (max_clients_ > 0 && int(sessions_.size()) >= max_clients_) return nullptr;
  sessions_[id] = s;
  return s;
}

void SessionManager::close(const std::string& id) {
  std::shared_ptr<Session> s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    s = it->second;
    sessions_.erase(it);
  }
  s->close();
}

std::shared_ptr<Session> SessionManager::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Session>> SessionManager::all() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Session>> v;
  for (const auto& [id, s] : sessions_) v.push_back(s);
  return v;
}

size_t SessionManager::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.size();
}

std::vector<std::shared_ptr<Session>> SessionManager::idle_since(std::chrono::seconds idle) const {
  const auto limit = Clock::now() - idle;
  std::vector<std::shared_ptr<Session>> v;
  for (auto& s : all())
    if (s->last_input() < limit) v.push_back(s);
  return v;
}

void SessionManager::notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  wake_.notify_one();
}

void SessionManager::engine_loop() {
  for (;;) {
    std::shared_ptr<Session> next;
    std::vector<std::pair<std::string, OpenCallback>> opens;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop_ || woken_; });
      if (stop_) return;
      woken_ = false;
      opens.swap(opens_);
    }
    for (auto& [id, done] : opens) {  // new clients first: they wait for their first message
      std::shared_ptr<Session> s;
      std::string error;
      try {
        s = open(id);
        if (!s) error = "Server is full";
      } catch (const std::exception& e) {
        error = e.what();
      }
      done(s, error);
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Round robin: the first session with a frame after the one served last.
      auto it = sessions_.upper_bound(last_served_);
      for (size_t k = 0; k < sessions_.size() && !next; ++k, ++it) {
        if (it == sessions_.end()) it = sessions_.begin();
        if (it->second->has_frame()) next = it->second;
      }
      if (next) {
        last_served_ = next->id();
        woken_ = true;  // look again after this frame: others may be waiting
      }
    }
    if (next) next->run_frame();
  }
}

}  // namespace streamdiff::serve
