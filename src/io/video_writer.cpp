// VideoWriter: RGB Images -> the encoder's pixel format -> encoder -> muxer -> "<path>.partial"
// -> <path> (or stdout). See video.h for the encoder choice and the temporary-file contract.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <system_error>
#include <vector>

#include "core/error.h"
#include "io/video.h"
#include "io/video_ffmpeg.h"

namespace sd {

using namespace ffmpeg;

namespace {

std::string lower_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return ext;
}

bool have_encoder(const char* name) {
  return avcodec_find_encoder_by_name(name) != nullptr;
}

// Encoder options for a quality close to visually lossless at a modest size.
void configure_encoder(AVCodecContext& enc, const std::string& name, AVDictionary** opts) {
  if (name == "libx264") {
    av_dict_set(opts, "crf", "18", 0);
    av_dict_set(opts, "preset", "medium", 0);
  } else if (name == "libvpx-vp9") {
    enc.bit_rate = 0;  // constant quality
    av_dict_set(opts, "crf", "30", 0);
    av_dict_set(opts, "deadline", "good", 0);
    av_dict_set(opts, "cpu-used", "4", 0);
    av_dict_set(opts, "row-mt", "1", 0);
  } else if (name == "libvpx") {
    // VP8 constrained quality: CRF 10 under a generous cap of 1 bit per pixel.
    enc.bit_rate = int64_t(double(enc.width) * enc.height * av_q2d(enc.framerate));
    av_dict_set(opts, "crf", "10", 0);
    av_dict_set(opts, "deadline", "good", 0);
    av_dict_set(opts, "cpu-used", "4", 0);
  } else if (name != "rawvideo" && name != "wrapped_avframe") {  // mpeg4, mjpeg: quantiser 3
    enc.flags |= AV_CODEC_FLAG_QSCALE;
    enc.global_quality = FF_QP2LAMBDA * 3;
  }
}

// The stream formats (for stdout, or any path with VideoOutputOptions::format).
struct StreamFormat {
  const char* name;     // as the user gives it
  const char* muxer;    // FFmpeg's
  const char* encoder;  // FFmpeg's
  AVPixelFormat pixels;
};
constexpr StreamFormat kStreamFormats[] = {
    {"y4m", "yuv4mpegpipe", "wrapped_avframe", AV_PIX_FMT_YUV420P},  // FFmpeg 5's y4m muxer
    {"rawvideo", "rawvideo", "rawvideo", AV_PIX_FMT_RGB24},
    {"mjpeg", "mjpeg", "mjpeg", AV_PIX_FMT_YUVJ420P},
};

const StreamFormat* stream_format(const std::string& path, const std::string& format) {
  std::string name = format;
  if (name.empty() && lower_extension(path) == ".y4m") name = "y4m";
  if (name == "yuv4mpegpipe") name = "y4m";
  if (name.empty()) return nullptr;
  for (const StreamFormat& f : kStreamFormats)
    if (name == f.name) return &f;
  fail("video '", path, "': cannot write the format '", format,
       "' (use y4m, rawvideo or mjpeg, or a file extension: .mp4, .mkv, .mov, .avi, .webm)");
}

}  // namespace

std::string video_encoder_for(const std::string& path, const std::string& format) {
  if (const StreamFormat* f = stream_format(path, format)) return f->encoder;
  SD_CHECK(path != "-", "video '-' (stdout): give a format: y4m, rawvideo or mjpeg");
  const std::string ext = lower_extension(path);
  if (ext == ".mp4" || ext == ".m4v" || ext == ".mkv" || ext == ".mov")
    return have_encoder("libx264") ? "libx264" : "mpeg4";
  if (ext == ".avi") return "mpeg4";
  if (ext == ".webm") {
    if (have_encoder("libvpx-vp9")) return "libvpx-vp9";
    if (have_encoder("libvpx")) return "libvpx";
    fail("video '", path, "': this FFmpeg build has neither a VP9 nor a VP8 encoder for .webm");
  }
  fail("video '", path, "': cannot write the extension '", ext,
       "' (use .mp4, .mkv, .mov, .avi or .webm)");
}

struct VideoWriter::Impl {
  std::string path, partial, codec, muxer;
  bool to_stdout = false;
  int width = 0, height = 0;
  OutputContext format;
  CodecContext encoder;
  AVStream* stream = nullptr;  // owned by format
  FramePtr frame;
  PacketPtr packet;
  SwsPtr sws;
  std::vector<uint8_t> staging;  // the RGB frame, padded for swscale
  int64_t last_time = -1, frames = 0;
  bool finished = false;

  // The file being written, for messages.
  std::string target() const { return to_stdout ? std::string("stdout") : "'" + partial + "'"; }

  // Fails for a write error `err`: VideoPipeClosed when the reader of stdout went away.
  [[noreturn]] void fail_writing(const char* what, int err) const {
    if (to_stdout && err == AVERROR(EPIPE))
      throw VideoPipeClosed(detail::concat("video '", path, "': the reader of stdout closed it"));
    fail("video '", path, "': ", what, " ", target(), " failed: ", error_text(err));
  }

  // Moves every packet the encoder has ready into the muxer.
  void drain() {
    for (;;) {
      const int r = avcodec_receive_packet(encoder.get(), packet.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      if (r < 0) fail("video '", path, "': encoding failed: ", error_text(r));
      av_packet_rescale_ts(packet.get(), encoder->time_base, stream->time_base);
      packet->stream_index = stream->index;
      const int w = av_interleaved_write_frame(format.get(), packet.get());
      if (w < 0) fail_writing("writing", w);
    }
  }

  void remove_partial() {
    format.reset();  // closes the file first
    if (to_stdout) return;
    std::error_code ec;
    std::filesystem::remove(partial, ec);
  }
};

VideoWriter::VideoWriter(const std::string& path, int width, int height, Rational fps,
                         const VideoOutputOptions& options)
    : impl_(std::make_unique<Impl>()), uncaught_at_start_(std::uncaught_exceptions()) {
  Impl& m = *impl_;
  m.path = path;
  m.to_stdout = path == "-";
  m.partial = m.to_stdout ? "pipe:1" : path + ".partial";
  m.width = width;
  m.height = height;
  SD_CHECK(width > 0 && height > 0, "video '", path, "': bad frame size ", width, "x", height);
  SD_CHECK(fps.valid(), "video '", path, "': bad frame rate ", fps.num, "/", fps.den);
  const StreamFormat* stream_fmt = stream_format(path, options.format);
  const AVPixelFormat pixels = stream_fmt ? stream_fmt->pixels : AV_PIX_FMT_YUV420P;
  SD_CHECK(pixels == AV_PIX_FMT_RGB24 || (width % 2 == 0 && height % 2 == 0), "video '", path,
           "': the frame size ", width, "x", height,
           " is odd; yuv420p video needs even width and height");
  m.codec = video_encoder_for(path, options.format);
  const AVCodec* codec = avcodec_find_encoder_by_name(m.codec.c_str());
  SD_CHECK(codec, "video '", path, "': this FFmpeg build has no ", m.codec, " encoder");

  AVFormatContext* raw = nullptr;
  int r = avformat_alloc_output_context2(&raw, nullptr, stream_fmt ? stream_fmt->muxer : nullptr,
                                         m.to_stdout ? nullptr : path.c_str());
  if (r < 0 || !raw) fail("video '", path, "': no muxer for this name: ", error_text(r));
  m.format.reset(raw);
  m.muxer = raw->oformat->name;
  // The muxer writes (and, for +faststart, re-reads) ctx->url: the partial name.
  av_freep(&raw->url);
  raw->url = av_strdup(m.partial.c_str());
  m.stream = avformat_new_stream(raw, nullptr);
  m.encoder.reset(avcodec_alloc_context3(codec));
  m.frame.reset(av_frame_alloc());
  m.packet.reset(av_packet_alloc());
  SD_CHECK(raw->url && m.stream && m.encoder && m.frame && m.packet, "video '", path,
           "': out of memory");

  const bool rgb = pixels == AV_PIX_FMT_RGB24;
  AVCodecContext& enc = *m.encoder;
  enc.width = width;
  enc.height = height;
  enc.pix_fmt = pixels;
  enc.time_base = AVRational{fps.den, fps.num};
  enc.framerate = AVRational{fps.num, fps.den};
  enc.sample_aspect_ratio = AVRational{1, 1};
  if (!rgb) {
    enc.colorspace = AVCOL_SPC_SMPTE170M;  // BT.601, as converted below
    enc.color_primaries = AVCOL_PRI_SMPTE170M;
    enc.color_trc = AVCOL_TRC_SMPTE170M;
    enc.color_range = pixels == AV_PIX_FMT_YUVJ420P ? AVCOL_RANGE_JPEG : AVCOL_RANGE_MPEG;
    enc.chroma_sample_location =
        pixels == AV_PIX_FMT_YUVJ420P ? AVCHROMA_LOC_CENTER : AVCHROMA_LOC_LEFT;
  }
  if (raw->oformat->flags & AVFMT_GLOBALHEADER) enc.flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  AVDictionary* opts = nullptr;
  configure_encoder(enc, m.codec, &opts);
  r = avcodec_open2(&enc, codec, &opts);
  av_dict_free(&opts);
  if (r < 0) fail("video '", path, "': cannot open the ", m.codec, " encoder: ", error_text(r));
  r = avcodec_parameters_from_context(m.stream->codecpar, &enc);
  if (r < 0) fail("video '", path, "': ", error_text(r));
  m.stream->time_base = enc.time_base;
  m.stream->avg_frame_rate = enc.framerate;

  r = avio_open(&raw->pb, m.partial.c_str(), AVIO_FLAG_WRITE);
  if (r < 0) fail("video '", path, "': cannot create ", m.target(), ": ", error_text(r));
  AVDictionary* mux_opts = nullptr;
  const std::string ext = lower_extension(path);
  if (!stream_fmt && (ext == ".mp4" || ext == ".m4v" || ext == ".mov"))
    av_dict_set(&mux_opts, "movflags", "+faststart", 0);
  r = avformat_write_header(raw, &mux_opts);
  av_dict_free(&mux_opts);
  if (r < 0) {
    m.remove_partial();
    if (m.to_stdout && r == AVERROR(EPIPE)) m.fail_writing("writing the header to", r);
    fail("video '", path, "': cannot write the header: ", error_text(r));
  }

  m.frame->format = pixels;
  m.frame->width = width;
  m.frame->height = height;
  m.frame->colorspace = enc.colorspace;
  m.frame->color_range = enc.color_range;
  m.frame->chroma_location = enc.chroma_sample_location;
  r = av_frame_get_buffer(m.frame.get(), 0);
  if (r < 0) {
    m.remove_partial();
    fail("video '", path, "': ", error_text(r));
  }
  // yuv420p: chroma at the H.264 / MPEG-2 "left" position (x 0, y 0.5 luma rows), tagged so;
  // JPEG's yuvj420p: centred, full range.
  const bool jpeg = pixels == AV_PIX_FMT_YUVJ420P;
  m.sws.reset(make_converter(width, height, AV_PIX_FMT_RGB24, pixels,
                             SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, -1, -1,
                             rgb ? -1 : (jpeg ? 128 : 0), rgb ? -1 : 128));
  if (!m.sws) {
    m.remove_partial();
    fail("video '", path, "': no RGB to ", av_get_pix_fmt_name(pixels), " converter");
  }
  if (!rgb)
    sws_setColorspaceDetails(m.sws.get(), sws_getCoefficients(SWS_CS_DEFAULT), 1,
                             sws_getCoefficients(SWS_CS_ITU601), jpeg ? 1 : 0, 0, 1 << 16, 1 << 16);
}

VideoWriter::~VideoWriter() {
  if (!impl_ || impl_->finished) return;
  if (std::uncaught_exceptions() > uncaught_at_start_) {
    discard();
    return;
  }
  try {
    close();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
}

void VideoWriter::write(const Image& rgb) {
  write(rgb, impl_->last_time + 1);
}

void VideoWriter::write(const Image& rgb, int64_t frame_time) {
  Impl& m = *impl_;
  SD_CHECK(!m.finished, "video '", m.path, "': write after close");
  SD_CHECK(rgb.width == m.width && rgb.height == m.height &&
               rgb.rgb.size() == size_t(m.width) * size_t(m.height) * 3,
           "video '", m.path, "': frame ", m.frames, " is ", rgb.width, "x", rgb.height,
           ", the video is ", m.width, "x", m.height);
  SD_CHECK(frame_time > m.last_time, "video '", m.path, "': frame time ", frame_time,
           " does not follow ", m.last_time);
  int r = av_frame_make_writable(m.frame.get());  // the encoder may still hold the last one
  if (r < 0) fail("video '", m.path, "': ", error_text(r));
  // swscale's SIMD input readers load up to 16 bytes past the last pixel: convert from a copy
  // with AV_INPUT_BUFFER_PADDING_SIZE spare bytes, not from the caller's exactly-sized buffer.
  m.staging.resize(rgb.rgb.size() + AV_INPUT_BUFFER_PADDING_SIZE);
  std::copy(rgb.rgb.begin(), rgb.rgb.end(), m.staging.begin());
  const uint8_t* src[4] = {m.staging.data(), nullptr, nullptr, nullptr};
  const int src_stride[4] = {m.width * 3, 0, 0, 0};
  sws_scale(m.sws.get(), src, src_stride, 0, m.height, m.frame->data, m.frame->linesize);
  m.frame->pts = frame_time;
  r = avcodec_send_frame(m.encoder.get(), m.frame.get());
  if (r < 0) fail("video '", m.path, "': encoding frame ", m.frames, " failed: ", error_text(r));
  m.drain();
  if (m.to_stdout) avio_flush(m.format->pb);  // a live reader gets each frame now
  if (m.to_stdout && m.format->pb->error < 0) m.fail_writing("writing", m.format->pb->error);
  m.last_time = frame_time;
  ++m.frames;
}

void VideoWriter::close() {
  Impl& m = *impl_;
  if (m.finished) return;
  m.finished = true;
  try {
    const int r = avcodec_send_frame(m.encoder.get(), nullptr);  // flush the delayed frames
    if (r < 0) fail("video '", m.path, "': flushing the encoder failed: ", error_text(r));
    m.drain();
    const int t = av_write_trailer(m.format.get());
    if (t < 0) m.fail_writing("writing the trailer to", t);
    if (m.to_stdout) avio_flush(m.format->pb);
    const int c = avio_closep(&m.format->pb);
    if (c < 0) m.fail_writing("closing", c);
    m.format.reset();
    if (m.to_stdout) return;
    std::error_code ec;
    std::filesystem::rename(m.partial, m.path, ec);
    if (ec) fail("video '", m.path, "': renaming '", m.partial, "' failed: ", ec.message());
  } catch (...) {
    m.remove_partial();
    throw;
  }
}

void VideoWriter::discard() {
  Impl& m = *impl_;
  if (m.finished) return;
  m.finished = true;
  m.remove_partial();
}

const std::string& VideoWriter::path() const {
  return impl_->path;
}
const std::string& VideoWriter::codec_name() const {
  return impl_->codec;
}
const std::string& VideoWriter::format_name() const {
  return impl_->muxer;
}
int64_t VideoWriter::frames_written() const {
  return impl_->frames;
}

}  // namespace sd
