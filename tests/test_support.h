// Helpers shared by the test suites.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/reference_kernels.h"
#include "core/error.h"

namespace sd::test {

// A CPU backend computing in `dtype` ("f32", "bf16", "auto").
inline std::unique_ptr<Backend> cpu_backend(const std::string& dtype) {
  BackendOptions o;
  o.device = "cpu";
  o.dtype = dtype;
  return make_backend(o);
}

// ‖ours − ref‖ / ‖ref‖ (throws when the shapes differ).
using ref::rel_error;

// The message of the sd::Error that f() throws, or a marker when it throws none.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no sd::Error thrown)";
}

// `s` as one single-quoted shell word.
inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct RunResult {
  int code = -1;       // exit status (-1: did not exit normally / could not start)
  std::string output;  // stdout and stderr
};

// Runs `command` with bash (so pipelines may use pipefail), stdout and stderr together.
inline RunResult run_shell(const std::string& command) {
  const std::string cmd = "bash -c " + quote(command) + " 2>&1";
  RunResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// The built `streamdiff` tool, shell-quoted.
inline std::string cli() {
  return quote(SD_CLI_PATH);
}

// Runs the built `streamdiff` tool with `args` (already shell-quoted where needed).
inline RunResult run_cli(const std::string& args) {
  return run_shell(cli() + " " + args);
}

// The built `streamdiff` tool started with `args` (not through a shell, so it can be signalled),
// stdout and stderr into the file `log`, stdin from /dev/null; returns its pid.
inline pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = ::fork();
  SD_CHECK(pid >= 0, "fork failed");
  if (pid == 0) {
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int in = ::open("/dev/null", O_RDONLY);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    ::dup2(in, STDIN_FILENO);
    std::vector<char*> argv{const_cast<char*>(SD_CLI_PATH)};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(SD_CLI_PATH, argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for a child; its exit status, or -1 when it did not exit normally.
inline int wait_exit(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace sd::test
