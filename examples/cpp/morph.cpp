// Morphs between two styles on a live-like stream with streamdiff's C++ API: a producer thread
// submits frames (asynchronous mode, DropOldest as for a camera), this thread polls the outputs
// and moves the prompt blend and the seed blend a little at every frame.
//
//   morph MODEL TAESD INPUT.png OUT_PREFIX [FRAMES]
//
// Writes OUT_PREFIX_000.png, ... Built by tests/install_test.sh against the installed library.
#include <streamdiff/media.hpp>
#include <streamdiff/streamdiff.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL TAESD INPUT OUT_PREFIX [FRAMES]\n", argv[0]);
    return 2;
  }
  const int frames = argc > 5 ? std::atoi(argv[5]) : 6;
  try {
    streamdiff::ModelOptions options;
    options.taesd = argv[2];
    const streamdiff::Model model = streamdiff::Model::load(argv[1], options);
    const streamdiff::Image input = streamdiff::read_image(argv[3]);

    streamdiff::StreamConfig config;
    config.width = input.width;
    config.height = input.height;
    config.prompt = "a watercolor painting";
    streamdiff::Stream stream(model, config);

    streamdiff::AsyncOptions async;
    async.policy = streamdiff::QueuePolicy::Block;  // DropOldest for a real camera
    stream.start(async);
    std::thread camera([&] {
      for (int k = 0; k < frames; ++k)
        if (!stream.submit(input.view(), k)) break;  // false: the stream stopped
      stream.end_input();
    });
    // On any error below, stop() releases the camera thread before it is joined.
    struct JoinOnExit {
      streamdiff::Stream& stream;
      std::thread& thread;
      ~JoinOnExit() {
        if (thread.joinable()) {
          try {
            stream.stop();
          } catch (...) {
          }
          thread.join();
        }
      }
    } join_on_exit{stream, camera};

    streamdiff::Image out = input;
    streamdiff::FrameInfo info;
    while (stream.poll(out.mutable_view(), &info)) {
      // Settings may change from any thread at any time; they apply at the next frame.
      const float t = std::min(1.f, float(info.index + 1) / float(std::max(1, frames - 1)));
      stream.set_prompt_blend({{"a watercolor painting", 1.f - t}, {"an oil painting", t}},
                              streamdiff::Blend::Slerp);
      stream.set_seed_blend({{2, 1.f - t}, {3, t}});
      char path[512];
      std::snprintf(path, sizeof path, "%s_%03lld.png", argv[4],
                    static_cast<long long>(info.index));
      streamdiff::write_image(path, out);
      std::printf("frame %lld (input %lld): %.1f ms -> %s\n", static_cast<long long>(info.index),
                  static_cast<long long>(info.shown_tag), info.latency_ms, path);
    }
    camera.join();
    stream.stop();  // reports an error of the worker, if any
    const streamdiff::StreamStats stats = stream.stats();
    std::printf("%lld frames, %.2f fps, p50 %.1f ms\n", static_cast<long long>(stats.frames_out),
                stats.fps, stats.latency_p50_ms);
  } catch (const streamdiff::Error& e) {
    std::fprintf(stderr, "error (%s): %s\n", streamdiff::status_name(e.status()), e.what());
    return 1;
  }
  return 0;
}
