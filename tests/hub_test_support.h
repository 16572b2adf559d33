// Helpers of the hub tests: the fake Hub server (tests/fake_hub.py) as a child process,
// environment variables set for a scope, and hashes of files as the Hub names them.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "hub/hub_http.h"
#include "test_support.h"

namespace sd::test {

// python3 tests/fake_hub.py on 127.0.0.1, stopped (by its pid) when this is destroyed.
class FakeHub {
 public:
  FakeHub() {
    int fds[2];
    SD_CHECK(::pipe(fds) == 0, "pipe failed");
    const std::string script = std::string(SD_SOURCE_DIR) + "/tests/fake_hub.py";
    pid_ = ::fork();
    SD_CHECK(pid_ >= 0, "fork failed");
    if (pid_ == 0) {
      ::dup2(fds[1], STDOUT_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      ::execlp("python3", "python3", script.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    std::string line;
    pollfd p{fds[0], POLLIN, 0};
    char c;
    while (line.find('\n') == std::string::npos && ::poll(&p, 1, 20000) == 1 &&
           ::read(fds[0], &c, 1) == 1)
      line += c;
    ::close(fds[0]);
    port_ = std::atoi(line.c_str());
    SD_CHECK(port_ > 0, "tests/fake_hub.py did not start (it printed '", line, "')");
  }
  ~FakeHub() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  FakeHub(const FakeHub&) = delete;
  FakeHub& operator=(const FakeHub&) = delete;

  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // An endpoint whose requests the server counts under `session`, answering in `mode`
  // (normal, cut, badsha, slow: see fake_hub.py).
  std::string endpoint(const std::string& session, const std::string& mode = "normal") const {
    return base() + "/s/" + session + "/" + mode;
  }
  // What the session's requests were: api, head, resolve_get, storage_get counts, the Range
  // starts of storage requests ("ranges") and whether any carried an Authorization header.
  nlohmann::json stats(const std::string& session) const {
    hub::HttpSettings s;
    s.endpoint = base();
    hub::HttpClient http(s);
    return nlohmann::json::parse(http.get(base() + "/stats/" + session).body);
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

// Sets (or with nullopt unsets) environment variables until destroyed, then restores them.
class EnvScope {
 public:
  EnvScope() = default;
  ~EnvScope() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) apply(it->first, it->second);
  }
  EnvScope(const EnvScope&) = delete;
  EnvScope& operator=(const EnvScope&) = delete;

  void set(const std::string& name, const std::optional<std::string>& value) {
    const char* old = std::getenv(name.c_str());
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    apply(name, value);
  }

 private:
  static void apply(const std::string& name, const std::optional<std::string>& value) {
    if (value)
      ::setenv(name.c_str(), value->c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace sd::test
