// POST /api/predict: txt2img on one shared stream of the server's model (requests take turns).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "params.h"
#include "streamdiff/media.hpp"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff::serve {

class Txt2Img {
 public:
  Txt2Img(Model model, StreamConfig config, bool turbo, int jpeg_quality);
  // A JPEG of the prompt (and the other params given) from fresh noise.
  std::vector<uint8_t> generate(const FrameParams& params);

 private:
  Model model_;
  StreamConfig config_;  // the settings the stream was last given
  const bool turbo_;
  const int jpeg_quality_;
  std::mutex mu_;
  std::unique_ptr<Stream> stream_;  // made at the first request
  Image out_;
};

}  // namespace streamdiff::serve
