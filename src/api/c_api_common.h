// What every C API function (c_api.cpp, c_api_hub.cpp) does around its work: catch every
// exception, keep its message for sd_last_error() in a thread-local string, and return a status.
#pragma once

#include <exception>
#include <new>
#include <string>
#include <utility>

#include "streamdiff/streamdiff.h"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff::capi {

// The calling thread's last error message (sd_last_error).
inline thread_local std::string t_error;

template <typename F>
sd_status c_call(F&& fn) {
  try {
    std::forward<F>(fn)();
    return SD_OK;
  } catch (const Error& e) {
    t_error = e.what();
    return sd_status(int(e.status()));
  } catch (const std::bad_alloc&) {
    t_error = "out of memory";
    return SD_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    t_error = e.what();
    return SD_ERR_INTERNAL;
  } catch (...) {
    t_error = "unknown exception";
    return SD_ERR_INTERNAL;
  }
}

inline std::string str(const char* s) {
  return s ? std::string(s) : std::string();
}

}  // namespace streamdiff::capi
