// Prompts from stdin for --preview (see prompt_input.h).
#include "prompt_input.h"

#include <poll.h>
#include <unistd.h>

#include <string>

#include "commands.h"

namespace streamdiff::cli {

PromptInput::PromptInput(Stream& stream) : stream_(stream) {
  thread_ = std::thread([this] { run(); });
}

PromptInput::~PromptInput() {
  stop_ = true;
  thread_.join();
}

void PromptInput::run() {
  std::string pending;
  char buf[512];
  while (!stop_) {
    pollfd p{STDIN_FILENO, POLLIN, 0};
    const int ready = ::poll(&p, 1, 100);
    if (ready <= 0) continue;  // a timeout (or EINTR): look at stop_ again
    const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n <= 0) return;  // end of input (or an error): no more prompts
    pending.append(buf, size_t(n));
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      try {
        stream_.set_prompt(line);
        say("prompt: %s\n", line.c_str());
      } catch (const Error& e) {
        warn("prompt '%s' not taken: %s\n", line.c_str(), e.what());
      }
    }
  }
}

}  // namespace streamdiff::cli
