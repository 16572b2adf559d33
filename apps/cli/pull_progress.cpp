#include "pull_progress.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <stdexcept>

#include "commands.h"

namespace streamdiff::cli {

namespace {

using Clock = std::chrono::steady_clock;
using Stage = PullProgress::Stage;

volatile std::sig_atomic_t g_interrupted = 0;

void on_sigint(int) {
  g_interrupted = 1;
}

// While it lives, Ctrl-C (SIGINT) sets a flag that the progress display turns into a clean stop;
// a second Ctrl-C ends the process as usual. The previous action is restored afterwards.
class InterruptGuard {
 public:
  InterruptGuard() {
    g_interrupted = 0;
    struct sigaction sa = {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    // No SA_RESTART: a wait for another process's download (flock) returns to be cancelled.
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, &old_);
  }
  ~InterruptGuard() { sigaction(SIGINT, &old_, nullptr); }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  struct sigaction old_ = {};
};

// Thrown by the display to stop a pull after Ctrl-C.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

// A size as a person reads it (format_bytes), or that it is not known.
std::string size_text(int64_t bytes) {
  return bytes < 0 ? "size unknown" : format_bytes(bytes);
}

std::string duration(double s) {
  char buf[32];
  const long t = long(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

int percent(int64_t done, int64_t total) {
  return total > 0 ? int(100 * done / total) : 100;
}

// The last `width` characters of `s`, marked with "..." when cut.
std::string tail(const std::string& s, size_t width) {
  return s.size() <= width ? s : "..." + s.substr(s.size() - (width - 3));
}

// Shows a pull's progress on stderr (see pull_progress.h).
class Display {
 public:
  explicit Display(bool terminal) : terminal_(terminal) {}

  void show(const PullProgress& p) {
    if (g_interrupted) throw Interrupted();
    const bool partial = !p.file.empty() && (p.file_size < 0 || p.file_bytes < p.file_size);
    kept_ = (p.stage == Stage::Progress || p.stage == Stage::Waiting) && partial ? p.file_bytes : 0;
    switch (p.stage) {
      case Stage::Start:
        end_line();
        std::fprintf(stderr, "pulling %s (%s, commit %.12s) into %s\n", p.repo_id.c_str(),
                     p.revision.c_str(), p.commit.c_str(), p.snapshot.c_str());
        std::fprintf(stderr, "%d files: %d to download (%s), %d already in the cache\n",
                     p.files_total, p.files_total - p.files_done,
                     size_text(p.total_bytes - p.bytes).c_str(), p.files_cached);
        break;
      case Stage::Waiting:
        if (p.file != waiting_) {
          end_line();
          std::fprintf(stderr, "waiting: another process is downloading %s\n", p.file.c_str());
          waiting_ = p.file;
        }
        break;
      case Stage::Progress:
        if (!p.file.empty()) progress(p);
        break;
      case Stage::FileDone:
        end_line();
        std::fprintf(stderr, "%s%s (%s)\n", terminal_ ? "  " : "done: ", p.file.c_str(),
                     size_text(p.file_bytes).c_str());
        break;
      case Stage::Done:
        end_line();
        std::fprintf(
            stderr, "%s: %d files ready (%s downloaded, %d from the cache) in %s\n",
            p.repo_id.c_str(), p.files_total, size_text(p.received).c_str(), p.files_cached,
            duration(std::chrono::duration<double>(Clock::now() - start_).count()).c_str());
        break;
    }
    std::fflush(stderr);
  }

  // Bytes of the file in progress on disk (kept for resuming when the pull stops now).
  int64_t kept() const { return kept_; }

  void end_line() {
    if (open_line_) std::fputc('\n', stderr);
    open_line_ = false;
  }

 private:
  void progress(const PullProgress& p) {
    if (p.file != file_) {  // a new file
      file_ = p.file;
      decile_ = percent(p.file_bytes, p.file_size) / 10;
      waiting_.clear();
      if (!terminal_ && p.resumed_from > 0)
        std::fprintf(stderr, "%s (%s): resuming after %s\n", p.file.c_str(),
                     size_text(p.file_size).c_str(), size_text(p.resumed_from).c_str());
    }
    const int file_pct = percent(p.file_bytes, p.file_size);
    const double rate = p.bytes_per_second;
    const std::string eta =
        rate > 0 ? duration(double(p.total_bytes - p.bytes) / rate) : std::string("?");
    if (terminal_) {
      std::fprintf(
          stderr, "\r[%d/%d] %-36s %3d%% %s | total %3d%% of %s | %5.1f MB/s | ETA %s\x1b[K",
          p.files_done + 1, std::max(p.files_total, p.files_done + 1), tail(p.file, 36).c_str(),
          file_pct, size_text(p.file_bytes).c_str(), percent(p.bytes, p.total_bytes),
          size_text(p.total_bytes).c_str(), rate / 1e6, eta.c_str());
      open_line_ = true;
    } else if (file_pct / 10 > decile_ && file_pct < 100) {  // a line every 10%
      decile_ = file_pct / 10;
      std::fprintf(stderr, "%s: %d%% (%s of %s, %.1f MB/s; total %d%%, ETA %s)\n", p.file.c_str(),
                   file_pct, size_text(p.file_bytes).c_str(), size_text(p.file_size).c_str(),
                   rate / 1e6, percent(p.bytes, p.total_bytes), eta.c_str());
    }
  }

  bool terminal_;
  bool open_line_ = false;
  std::string file_, waiting_;
  int decile_ = -1;
  int64_t kept_ = 0;
  Clock::time_point start_ = Clock::now();
};

}  // namespace

std::string pull_with_progress(const std::string& repo_id, PullOptions options) {
  const InterruptGuard guard;
  Display display(::isatty(STDERR_FILENO) == 1);
  options.on_progress = [&display](const PullProgress& p) { display.show(p); };
  try {
    return pull(repo_id, options);
  } catch (const Interrupted&) {
    display.end_line();
    std::fprintf(stderr, "interrupted: %.1f MB kept, run the same command to resume\n",
                 double(display.kept()) / 1e6);
    throw ExitStatus{130};
  } catch (...) {
    display.end_line();
    throw;
  }
}

std::string local_model(const std::string& arg, bool pull) {
  if (!pull) return resolve_model_path(arg);
  try {
    return resolve_model_path(arg);
  } catch (const Error& e) {
    if (e.status() != Status::Io) throw;  // not in the cache: pulled below
  }
  pull_with_progress(arg, PullOptions());
  return resolve_model_path(arg);
}

}  // namespace streamdiff::cli
