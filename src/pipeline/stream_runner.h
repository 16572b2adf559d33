// StreamRunner: runs a stream's stages on separate threads connected by FrameQueues:
//
//   read -> [in] -> preprocess -> [pre] -> denoise -> [out] -> write
//
// read fills in the next frame (name / path / encoded or decoded image) and returns false at
// the end of the input; preprocess turns it into what the denoiser takes (decode, resize_cover,
// image_to_tensor); denoise runs the model (Stream::img2img_tensor); write converts and stores
// the result. Stages run on their own threads so reading and encoding overlap the denoiser.
//
// The input policy applies to the queues in front of the denoiser ([in], [pre]): Block for
// files (every frame, in order), DropOldest for live sources (the denoiser always gets the
// freshest frame; dropped frames are counted). [out] always blocks: a denoised frame is never
// dropped.
//
// An exception in any stage stops the pipeline: every queue is cancelled (blocked stages are
// released), all threads are joined, and run() rethrows the first exception.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "pipeline/frame_queue.h"

namespace sd {

struct StreamStages {
  std::function<bool(Frame&)> read;        // false: no more input
  std::function<void(Frame&)> preprocess;  // optional
  std::function<void(Frame&)> denoise;
  std::function<void(Frame&)> write;  // optional
};

struct StreamRunStats {
  int64_t frames_read = 0;     // frames that entered the pipeline
  int64_t frames_written = 0;  // frames that came out of write
  int64_t frames_skipped = 0;  // written frames whose denoise was skipped (Frame::skipped)
  int64_t frames_dropped = 0;  // discarded by DropOldest
  double wall_s = 0;           // from start to the last write
  double fps = 0;              // frames_written / wall_s
  // Per-frame latency (entering the pipeline -> written), milliseconds.
  double latency_mean_ms = 0, latency_p50_ms = 0, latency_p99_ms = 0, latency_max_ms = 0;
};

struct StreamRunOptions {
  QueuePolicy input_policy = QueuePolicy::Block;
  size_t queue_capacity = 2;
  // Called on the writer thread after each frame is written, with the stats so far (latency
  // fields are filled at the end only; fps is the rate so far).
  std::function<void(const Frame&, const StreamRunStats&)> on_frame;
};

// Runs the stages until read returns false and every frame is written; rethrows the first
// exception a stage threw.
StreamRunStats run_stream(const StreamStages& stages, const StreamRunOptions& options = {});

// Nearest-rank percentile (p in [0, 100]) of unsorted values; 0 for none.
double percentile(std::vector<double> values, double p);

}  // namespace sd
