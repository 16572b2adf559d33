// With --preview, each line read from stdin (typed into the terminal, or piped) becomes the
// stream's prompt at the next frame, without a restart. A thread waits on stdin with poll(2), so
// it can be stopped and joined at any time.
#pragma once

#include <atomic>
#include <thread>

#include "streamdiff/streamdiff.hpp"

namespace streamdiff::cli {

class PromptInput {
 public:
  explicit PromptInput(Stream& stream);
  ~PromptInput();  // stops and joins the thread
  PromptInput(const PromptInput&) = delete;
  PromptInput& operator=(const PromptInput&) = delete;

 private:
  void run();
  Stream& stream_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace streamdiff::cli
