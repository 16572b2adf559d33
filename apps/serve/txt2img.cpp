#include "txt2img.h"

namespace streamdiff::serve {

Txt2Img::Txt2Img(Model model, StreamConfig config, bool turbo, int jpeg_quality)
    : model_(std::move(model)),
      config_(std::move(config)),
      turbo_(turbo),
      jpeg_quality_(jpeg_quality) {
  config_.frame_buffer_size = 1;
}

std::vector<uint8_t> Txt2Img::generate(const FrameParams& params) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stream_) stream_ = std::make_unique<Stream>(model_, config_);
  apply_params(params, *stream_, config_);
  const StreamConfig c = stream_->config();
  out_.width = c.width, out_.height = c.height;
  out_.rgb.resize(size_t(c.width) * size_t(c.height) * 3);
  stream_->txt2img(out_.mutable_view(), turbo_);
  return encode_jpeg(out_, jpeg_quality_);
}

}  // namespace streamdiff::serve
