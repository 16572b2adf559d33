// Version, errors and small enums of the public API.
#include <cmath>
#include <cstdlib>

#include "api/api_common.h"
#include "pipeline/stream.h"
#include "streamdiff/streamdiff.hpp"
#include "streamdiff/version.h"

namespace streamdiff {

const char* version() {
  return SD_VERSION;
}

Error::Error(Status status, const std::string& message)
    : std::runtime_error(message), status_(status) {}
Error::~Error() = default;

const char* status_name(Status s) {
  switch (s) {
    case Status::Ok:
      return "ok";
    case Status::InvalidArgument:
      return "invalid argument";
    case Status::InvalidHandle:
      return "invalid handle";
    case Status::Io:
      return "i/o error";
    case Status::Unsupported:
      return "unsupported";
    case Status::OutOfMemory:
      return "out of memory";
    case Status::NotReady:
      return "not ready";
    case Status::Closed:
      return "closed";
    case Status::Internal:
      return "internal error";
  }
  return "unknown status";
}

int bytes_per_pixel(PixelFormat f) {
  switch (f) {
    case PixelFormat::RGB8:
    case PixelFormat::BGR8:
      return 3;
    case PixelFormat::RGBA8:
    case PixelFormat::BGRA8:
      return 4;
  }
  return 0;
}

const char* cfg_type_name(CfgType t) {
  return sd::cfg_type_name(sd::CfgType(int(t)));
}

CfgType parse_cfg_type(const std::string& name) {
  return detail::guarded(Status::InvalidArgument,
                         [&] { return CfgType(int(sd::parse_cfg_type(name))); });
}

LoraSpec parse_lora_spec(const std::string& spec) {
  const size_t colon = spec.rfind(':');
  if (colon != std::string::npos && colon + 1 < spec.size()) {
    const std::string tail = spec.substr(colon + 1);
    char* end = nullptr;
    const float scale = std::strtof(tail.c_str(), &end);
    if (end && *end == '\0') {
      detail::require(std::isfinite(scale), "LoRA '", spec, "': scale is not a finite number");
      return {spec.substr(0, colon), scale};
    }
  }
  return {spec, 1.f};
}

}  // namespace streamdiff
