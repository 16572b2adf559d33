// The frame loop of img2img / vid2vid (see img2img_run.h).
#include "img2img_run.h"

#include <chrono>
#include <cstdio>
#include <deque>
#include <exception>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "commands.h"
#include "interrupt.h"

namespace streamdiff::cli {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// What the reader thread shares with the writing thread.
struct ReaderState {
  struct Submitted {
    int64_t index;  // the frame's position in the input
    std::string name;
  };
  std::mutex mu;
  // By tag (the submission count), from tag first_tag on: an entry leaves once its output was
  // written (outputs come in tag order), so a camera can run for days.
  std::deque<Submitted> submitted;
  int64_t first_tag = 0;
  // --preview: the inputs that may still be shown, by tag, as the model sees them (resized).
  // Entries leave when an output shows a later input, or when DropOldest discards them.
  std::deque<std::pair<int64_t, Image>> shown_inputs;
  std::atomic<int64_t> unreadable{0};
  std::atomic<bool> done{false}, quit{false};
  std::exception_ptr error;
};

void read_frames(Stream& stream, FrameSource& source, const FrameLoopOptions& o, ReaderState& r) {
  try {
    const Rational fps = source.fps();
    const bool pace = o.live && !source.is_stream();  // streams and cameras come at their pace
    const auto start = Clock::now();
    for (int64_t index = 0; !stop_requested() && !r.quit; ++index) {
      InputFrame f;
      f.index = index;
      if (!source.next(f)) break;
      if (!f.unreadable.empty()) {  // reported and skipped; the run goes on
        std::fprintf(stderr, "skipped %s\n", f.unreadable.c_str());
        ++r.unreadable;
        continue;
      }
      if (pace)  // offer frame k at k / fps seconds, as a camera would deliver it
        std::this_thread::sleep_until(
            start + std::chrono::microseconds(index * 1000000LL * fps.den / fps.num));
      int64_t tag;
      {
        std::lock_guard<std::mutex> lock(r.mu);
        tag = r.first_tag + int64_t(r.submitted.size());
        r.submitted.push_back({index, f.name});
        if (o.preview) {
          r.shown_inputs.emplace_back(tag, resize_cover(f.image, o.width, o.height));
          if (r.shown_inputs.size() > 64) r.shown_inputs.pop_front();  // a bound, in any case
        }
      }
      const int64_t dropped_before = o.preview ? stream.stats().dropped : 0;
      if (!stream.submit(f.image.view(), tag)) break;  // the worker stopped
      if (o.preview && stream.stats().dropped > dropped_before) {
        // DropOldest displaced the input queued before this one (a queue of one frame): it will
        // never be shown, so its copy goes.
        std::lock_guard<std::mutex> lock(r.mu);
        std::erase_if(r.shown_inputs, [&](const auto& e) { return e.first == tag - 1; });
      }
    }
  } catch (...) {
    r.error = std::current_exception();
  }
  r.done = true;
  try {
    stream.end_input();
  } catch (...) {  // the stream's state is reported by the writing thread
  }
}

// Calls stop() on the stream, keeping the first error it reports in `error`.
void stop_stream(Stream& stream, std::exception_ptr& error) {
  try {
    stream.stop();
  } catch (...) {
    if (!error) error = std::current_exception();
  }
}

}  // namespace

void run_frames(Stream& stream, FrameSource& source, FrameSink& sink, const FrameLoopOptions& o,
                RunReport& report, bool& reader_left_behind) {
  reader_left_behind = false;
  report.live = o.live;
  AsyncOptions async;
  async.policy = o.live ? QueuePolicy::DropOldest : QueuePolicy::Block;
  async.queue_capacity = o.live ? 1 : 2;  // live: the denoiser gets the freshest frame
  stream.start(async);

  ReaderState r;
  std::thread reader([&] { read_frames(stream, source, o, r); });

  uint64_t seed = o.seed;
  std::mt19937_64 random_seeds(std::random_device{}());
  if (o.preview)
    o.preview->on_new_seed = [&] {
      seed = random_seeds();
      stream.set_seed(seed);
      say("seed %llu\n", static_cast<unsigned long long>(seed));
    };

  ProgressLine progress(source.estimated_count());
  Image out, shown_input;
  out.width = o.width;
  out.height = o.height;
  out.rgb.resize(size_t(o.width) * size_t(o.height) * 3);
  const auto run_start = Clock::now();
  std::exception_ptr write_error, worker_error;
  bool stopping = false;
  FrameInfo info;
  for (;;) {
    if (stop_requested() && !stopping) {  // drop what is queued, finish the frame in progress
      stopping = true;
      report.ended = "interrupted";
      stop_stream(stream, worker_error);
    }
    bool got = false;
    try {
      got = stream.poll(out.mutable_view(), &info, o.preview ? 15 : 100);
      // A worker that finished after the wait above gave up may still have queued its last
      // output.
      if (!got && !stream.running()) got = stream.poll(out.mutable_view(), &info, 0);
    } catch (...) {
      write_error = std::current_exception();
      stop_stream(stream, worker_error);
      break;
    }
    if (!got) {
      if (!stream.running()) break;  // every output was delivered
      if (o.preview) o.preview->pump();
      continue;
    }
    ReaderState::Submitted in;
    bool have_input = false;
    {
      std::lock_guard<std::mutex> lock(r.mu);
      in = r.submitted[size_t(info.tag - r.first_tag)];
      while (r.first_tag <= info.tag) {  // this input and those dropped before it are done
        r.submitted.pop_front();
        ++r.first_tag;
      }
      for (auto& [tag, image] : r.shown_inputs)
        if (tag == info.shown_tag) {
          shown_input = image;
          have_input = true;
        }
      std::erase_if(r.shown_inputs, [&](const auto& e) { return e.first < info.shown_tag; });
    }
    try {
      sink.write(in.index, in.name, out);
    } catch (const Error& e) {
      if (e.status() == Status::Closed)  // the reader of stdout went away: the end, not an error
        report.ended = "stdout closed";
      else
        write_error = std::current_exception();
      stop_stream(stream, worker_error);
      break;
    } catch (...) {
      write_error = std::current_exception();
      stop_stream(stream, worker_error);
      break;
    }
    ++report.written;
    report.written_s.push_back(seconds_since(run_start));
    report.frame_compute_ms.push_back(info.compute_ms);
    report.compute.add(info.compute_ms);
    const StreamStats stats = stream.stats();
    progress.frame(in.index, report.written, info.tag + 1 - report.written, stats);
    if (o.preview && have_input)
      o.preview->show(shown_input, out, {stats.fps, info.latency_ms, info.compute_ms, seed});
  }
  progress.finish();
  stop_stream(stream, worker_error);  // releases a reader waiting in submit()
  r.quit = true;

  // The reader ends at once unless it is blocked reading a stream that sends nothing.
  const auto wait_until = Clock::now() + std::chrono::seconds(2);
  while (!r.done && Clock::now() < wait_until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (r.done) {
    reader.join();
  } else {
    reader.detach();
    reader_left_behind = true;
    warn("the input delivers nothing and cannot be closed while it is being read: leaving it\n");
  }
  report.unreadable = r.unreadable;
  if (!reader_left_behind) report.input_damage = source.damage();
  report.stats = stream.stats();
  report.wall_s = report.written_s.empty() ? 0 : report.written_s.back();
  for (const std::exception_ptr& e : {write_error, worker_error, r.error}) {
    if (!e) continue;
    if (!reader_left_behind) std::rethrow_exception(e);
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {  // the process must end without unwinding (see .h)
      std::fprintf(stderr, "error: %s\n", ex.what());
    }
    std::fflush(nullptr);
    std::_Exit(kExitError);
  }
}

}  // namespace streamdiff::cli
