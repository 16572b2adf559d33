// The per-frame message sequence of the demo's WebSocket protocol, apart from the socket, so
// that it can be tested and fuzzed on its own. After {"status":"send_frame"} the client sends
//   text {"status":"next_frame"}, text {params}, binary JPEG (or an empty binary: no frame yet).
// Each message moves the state on or gives an error naming what was wrong; a decoded frame is
// handed back with its params. WsSession (ws_session.h) owns one per connection.
#pragma once

#include <string>

#include "params.h"
#include "streamdiff/media.hpp"

namespace streamdiff::serve {

class WsProtocol {
 public:
  struct Step {
    enum class Kind {
      Wait,       // nothing to do until the next message
      SendFrame,  // the client had no frame: ask for the next one
      Frame,      // a frame and its params are ready for the engine
      Fail,       // a protocol error: `error` says what; the connection ends
    };
    Kind kind = Kind::Wait;
    std::string error;
    Image frame;
    FrameParams params;
  };

  WsProtocol(const ParamLimits& limits, int max_image_side)
      : limits_(limits), max_image_side_(max_image_side) {}

  Step on_text(const std::string& text);
  Step on_binary(const std::string& bytes);

 private:
  enum class Expect { NextFrame, Params, Image, Failed };

  Step fail(std::string message);

  const ParamLimits limits_;
  const int max_image_side_;
  Expect expect_ = Expect::NextFrame;
  FrameParams params_;  // of the frame being received
};

}  // namespace streamdiff::serve
