#include "ws_protocol.h"

#include <nlohmann/json.hpp>
#include <utility>

namespace streamdiff::serve {

using json = nlohmann::json;

WsProtocol::Step WsProtocol::fail(std::string message) {
  expect_ = Expect::Failed;
  Step s;
  s.kind = Step::Kind::Fail;
  s.error = std::move(message);
  return s;
}

WsProtocol::Step WsProtocol::on_text(const std::string& text) {
  if (expect_ == Expect::Failed) return fail("a message after an error");
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail("not JSON: " + text.substr(0, 40));
  if (expect_ == Expect::NextFrame) {
    if (j.is_object() && j.contains("status") && j["status"] == "next_frame") {
      expect_ = Expect::Params;
      return {};
    }
    return fail("expected {\"status\":\"next_frame\"}, got " +
                j.dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 60));
  }
  if (expect_ == Expect::Params) {
    try {
      params_ = parse_params(j, limits_);
    } catch (const ParamError& e) {
      return fail(e.what());
    }
    expect_ = Expect::Image;
    return {};
  }
  return fail("expected the frame's JPEG (a binary message), got text");
}

WsProtocol::Step WsProtocol::on_binary(const std::string& bytes) {
  if (expect_ == Expect::Failed) return fail("a message after an error");
  if (expect_ != Expect::Image)
    return fail(expect_ == Expect::Params ? "a binary message before the params"
                                          : "a binary message before {\"status\":\"next_frame\"}");
  expect_ = Expect::NextFrame;
  Step s;
  if (bytes.empty()) {  // the demo's client sends nothing when its camera has no frame yet
    s.kind = Step::Kind::SendFrame;
    params_ = FrameParams{};
    return s;
  }
  try {
    s.frame = decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "frame",
                           max_image_side_);
  } catch (const Error& e) {
    return fail(e.what());
  }
  s.kind = Step::Kind::Frame;
  s.params = std::exchange(params_, FrameParams{});
  return s;
}

}  // namespace streamdiff::serve
