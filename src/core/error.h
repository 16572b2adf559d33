// Error handling: every failure is a streamdiff::Error (an exception) whose message names the
// file, tensor or value at fault. SD_CHECK is for conditions that depend on input (files,
// shapes, settings); it is always on, also in Release builds.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace sd {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// An allocation the machine cannot satisfy; its message says how much was asked and how much
// there is. The public API reports it as Status::OutOfMemory.
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// Throws sd::Error with the streamed arguments as message.
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(detail::concat(args...));
}

}  // namespace sd

#define SD_CHECK(cond, ...)               \
  do {                                    \
    if (!(cond)) ::sd::fail(__VA_ARGS__); \
  } while (0)
