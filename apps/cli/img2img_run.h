// The frame loop of `streamdiff img2img` / `vid2vid`, on the stream's asynchronous mode: a reader
// thread decodes and submits frames (skipping and reporting unreadable images, pacing --live file
// inputs), the stream's worker runs the model, and this thread polls the outputs and writes them
// (and shows them in the preview), so reading, denoising and writing overlap.
//
// It ends when the input ends, when a stop is asked for (Ctrl-C, SIGTERM, the preview's q): the
// reader stops, queued inputs are dropped, the frame in progress finishes and every output made
// is written; or when the reader of stdout closes it. An error stops the stream and is rethrown.
#pragma once

#include <atomic>
#include <cstdint>

#include "preview.h"
#include "run_report.h"
#include "stream_io.h"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff::cli {

struct FrameLoopOptions {
  bool live = false;  // DropOldest; a file input is offered at its frame rate
  int width = 0, height = 0;
  Preview* preview = nullptr;
  uint64_t seed = 0;  // shown in the preview; its n key draws new ones
};

// Runs every frame of `source` through `stream` into `sink` and fills `report` (written,
// unreadable, stats, compute times, written_s, ended). The sink is left open for the caller.
//
// A reader blocked on a stream input that delivers nothing (a stalled pipe) cannot be joined:
// after a stop it is given 2 s, then left behind, and `reader_left_behind` is set: the caller
// must then finish its output and end the process (std::_Exit) without destroying `stream` or
// `source`.
void run_frames(Stream& stream, FrameSource& source, FrameSink& sink,
                const FrameLoopOptions& options, RunReport& report, bool& reader_left_behind);

}  // namespace streamdiff::cli
