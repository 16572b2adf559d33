// Signal handling of the long-running subcommands (see interrupt.h).
#include "interrupt.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <mutex>

namespace streamdiff::cli {

namespace {

std::atomic<int> g_stop{-1};  // -1: running; 0: request_stop(); > 0: the signal

extern "C" void on_stop_signal(int signo) {
  int expected = -1;
  g_stop.compare_exchange_strong(expected, signo);
  // Only async-signal-safe calls here: write(2), and SA_RESETHAND restored the default action.
  static const char kLine[] =
      "\nstopping: finishing the frames in progress and the output (again to quit at once)\n";
  const ssize_t n = ::write(STDERR_FILENO, kLine, sizeof kLine - 1);
  (void)n;
}

}  // namespace

void install_interrupt_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND | SA_RESTART;  // the second signal gets the default action
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
  });
}

bool stop_requested() {
  return g_stop.load() >= 0;
}

int stop_signal() {
  return g_stop.load() > 0 ? g_stop.load() : 0;
}

void request_stop() {
  int expected = -1;
  g_stop.compare_exchange_strong(expected, 0);
}

int interrupted_exit_code() {
  return 128 + (stop_signal() > 0 ? stop_signal() : SIGINT);
}

}  // namespace streamdiff::cli
