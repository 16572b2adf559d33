// What every public entry point of the API does around its work: turn the engine's exceptions
// into streamdiff::Error with a status, and leave the calling thread's OpenMP thread count as it
// found it (the CPU backend sets its own per kernel call).
#pragma once

#include <omp.h>

#include <exception>
#include <new>
#include <string>
#include <utility>

#include "core/error.h"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff::detail {

// Restores the calling thread's OpenMP thread count (nthreads-var) when it goes out of scope.
class OmpThreadsGuard {
 public:
  OmpThreadsGuard() : saved_(omp_get_max_threads()) {}
  ~OmpThreadsGuard() {
    if (omp_get_max_threads() != saved_) omp_set_num_threads(saved_);
  }
  OmpThreadsGuard(const OmpThreadsGuard&) = delete;
  OmpThreadsGuard& operator=(const OmpThreadsGuard&) = delete;

 private:
  int saved_;
};

// Runs fn(); an engine error (sd::Error) becomes Error(status, message), sd::OutOfMemory and
// std::bad_alloc OutOfMemory, any other exception Internal; a streamdiff::Error passes unchanged.
template <typename F>
auto guarded(Status status, F&& fn) -> decltype(fn()) {
  OmpThreadsGuard threads;
  try {
    return std::forward<F>(fn)();
  } catch (const Error&) {
    throw;
  } catch (const sd::OutOfMemory& e) {
    throw Error(Status::OutOfMemory, e.what());
  } catch (const sd::Error& e) {
    throw Error(status, e.what());
  } catch (const std::bad_alloc&) {
    throw Error(Status::OutOfMemory, "out of memory");
  } catch (const std::exception& e) {
    throw Error(Status::Internal, e.what());
  }
}

// Throws Error(InvalidArgument, message) unless cond.
template <typename... Args>
void require(bool cond, const Args&... args) {
  if (!cond) throw Error(Status::InvalidArgument, sd::detail::concat(args...));
}

}  // namespace streamdiff::detail
