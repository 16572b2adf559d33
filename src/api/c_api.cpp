// The C API (streamdiff.h) over the C++ API. Every function catches every exception and returns
// a status, with the message in a thread-local buffer (sd_last_error). Handles are checked
// against a registry of live ones, so a null, freed or wrong-kind handle is an error, not a
// crash (a freed handle whose address a later handle reuses is the one case it cannot tell).
#include "streamdiff/streamdiff.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "api/api_common.h"
#include "api/c_api_common.h"
#include "streamdiff/media.hpp"
#include "streamdiff/streamdiff.hpp"

using streamdiff::Error;
using streamdiff::Status;
using streamdiff::capi::c_call;
using streamdiff::capi::str;
using streamdiff::capi::t_error;
using streamdiff::detail::require;

struct sd_model {
  streamdiff::Model model;
};

struct sd_stream {
  streamdiff::Stream stream;
};

namespace {

enum class Kind { Model, Stream };

thread_local std::string t_prompt, t_negative;  // sd_stream_get_config's strings

std::mutex g_handles_mu;
std::unordered_map<const void*, Kind>& handles() {
  static auto* h = new std::unordered_map<const void*, Kind>();  // never destroyed: usable at exit
  return *h;
}

const char* kind_name(Kind k) {
  return k == Kind::Model ? "sd_model" : "sd_stream";
}

void check_handle(const void* h, Kind kind) {
  if (!h) throw Error(Status::InvalidHandle, std::string("null ") + kind_name(kind) + " handle");
  std::lock_guard<std::mutex> lock(g_handles_mu);
  auto it = handles().find(h);
  if (it == handles().end())
    throw Error(Status::InvalidHandle, std::string(kind_name(kind)) +
                                           " handle is not live (freed already, or never made by "
                                           "this library)");
  if (it->second != kind)
    throw Error(Status::InvalidHandle, std::string("an ") + kind_name(it->second) +
                                           " handle was given where an " + kind_name(kind) +
                                           " is expected");
}

void add_handle(const void* h, Kind kind) {
  std::lock_guard<std::mutex> lock(g_handles_mu);
  handles()[h] = kind;
}

// Removes a live handle of `kind`; throws like check_handle otherwise.
void remove_handle(const void* h, Kind kind) {
  check_handle(h, kind);
  std::lock_guard<std::mutex> lock(g_handles_mu);
  handles().erase(h);
}

template <typename T>
void check_struct(const T* s, const char* name) {
  require(s != nullptr, "null ", name);
  require(s->struct_size >= sizeof(T), name, ".struct_size is ", s->struct_size,
          "; this library's is ", sizeof(T), " (call ", name, "_init first)");
}

streamdiff::PixelFormat format_of(sd_pixel_format f) {
  require(f >= SD_PIXEL_RGB8 && f <= SD_PIXEL_BGRA8, "unknown pixel format ", int(f));
  return streamdiff::PixelFormat(int(f));
}

streamdiff::ImageView view_of(const sd_image* im, const char* what) {
  require(im != nullptr, "null ", what);
  return {im->data, im->width, im->height, im->stride, format_of(im->format)};
}

streamdiff::MutableImageView view_of(const sd_image_out* im, const char* what) {
  require(im != nullptr, "null ", what);
  return {im->data, im->width, im->height, im->stride, format_of(im->format)};
}

streamdiff::ModelOptions model_options(const sd_model_options* o) {
  streamdiff::ModelOptions m;
  if (!o) return m;
  check_struct(o, "sd_model_options");
  m.taesd = str(o->taesd);
  require(o->lora_count == 0 || o->loras != nullptr, "sd_model_options: lora_count ", o->lora_count,
          " with a null loras array");
  for (size_t i = 0; i < o->lora_count; ++i) {
    require(o->loras[i].path != nullptr, "sd_model_options: LoRA ", i, " has a null path");
    m.loras.push_back({o->loras[i].path, o->loras[i].scale});
  }
  m.lora_allow_unmatched = o->lora_allow_unmatched != 0;
  if (o->device) m.device = o->device;
  if (o->dtype) m.dtype = o->dtype;
  m.threads = o->threads;
  m.pull = o->pull != 0;
  return m;
}

streamdiff::StreamConfig stream_config(const sd_stream_config* c) {
  check_struct(c, "sd_stream_config");
  require(c->t_index_count >= 1 && c->t_index_count <= SD_MAX_T_INDEX,
          "sd_stream_config: t_index_count ", c->t_index_count, " is not in [1, ", SD_MAX_T_INDEX,
          "]");
  streamdiff::StreamConfig s;
  s.width = c->width;
  s.height = c->height;
  s.t_index_list.assign(c->t_index_list, c->t_index_list + c->t_index_count);
  s.num_inference_steps = c->num_inference_steps;
  s.frame_buffer_size = c->frame_buffer_size;
  s.cfg_type = streamdiff::CfgType(int(c->cfg_type));
  s.guidance_scale = c->guidance_scale;
  s.delta = c->delta;
  s.seed = c->seed;
  s.prompt = str(c->prompt);
  s.negative_prompt = str(c->negative_prompt);
  s.similarity_filter = c->similarity_filter != 0;
  s.similarity_threshold = c->similarity_threshold;
  s.similarity_max_skip = c->similarity_max_skip;
  s.warmup = c->warmup != 0;
  s.use_denoising_batch = c->use_denoising_batch != 0;
  s.do_add_noise = c->do_add_noise != 0;
  s.precompute_kv = c->precompute_kv != 0;
  s.time_stages = c->time_stages != 0;
  s.clip_skip = c->clip_skip;
  return s;
}

void fill_frame_info(const streamdiff::FrameInfo& f, sd_frame_info* out) {
  if (!out) return;
  check_struct(out, "sd_frame_info");
  out->index = f.index;
  out->skipped = f.skipped ? 1 : 0;
  out->latency_ms = f.latency_ms;
  out->encode_ms = f.encode_ms;
  out->unet_ms = f.unet_ms;
  out->decode_ms = f.decode_ms;
  out->tag = f.tag;
  out->shown_tag = f.shown_tag;
  out->compute_ms = f.compute_ms;
}

void copy_string(char* dst, size_t size, const std::string& src) {
  std::snprintf(dst, size, "%s", src.c_str());
}

streamdiff::Stream& stream_of(sd_stream* s) {
  check_handle(s, Kind::Stream);
  return s->stream;
}

}  // namespace

extern "C" {

const char* sd_version(void) {
  return streamdiff::version();
}

const char* sd_status_name(sd_status status) {
  if (status < SD_OK || status > SD_ERR_INTERNAL) return "unknown status";
  return streamdiff::status_name(Status(int(status)));
}

const char* sd_last_error(void) {
  return t_error.c_str();
}

// ---- models ---------------------------------------------------------------------------------

void sd_model_options_init(sd_model_options* options) {
  if (!options) return;
  *options = sd_model_options{};
  options->struct_size = sizeof(sd_model_options);
}

sd_status sd_model_load(const char* path, const sd_model_options* options, sd_model** out) {
  return c_call([&] {
    require(out != nullptr, "sd_model_load: null output pointer");
    *out = nullptr;
    require(path != nullptr, "sd_model_load: null path");
    auto* m = new sd_model{streamdiff::Model::load(path, model_options(options))};
    add_handle(m, Kind::Model);
    *out = m;
  });
}

sd_status sd_model_random(const char* arch, const sd_model_options* options, sd_model** out) {
  return c_call([&] {
    require(out != nullptr, "sd_model_random: null output pointer");
    *out = nullptr;
    require(arch != nullptr, "sd_model_random: null arch");
    auto* m = new sd_model{streamdiff::Model::random(arch, model_options(options))};
    add_handle(m, Kind::Model);
    *out = m;
  });
}

sd_status sd_model_info_get(const sd_model* model, sd_model_info* info) {
  return c_call([&] {
    check_handle(model, Kind::Model);
    check_struct(info, "sd_model_info");
    const streamdiff::ModelInfo i = model->model.info();
    copy_string(info->family, sizeof info->family, i.family);
    copy_string(info->vae, sizeof info->vae, i.vae);
    copy_string(info->dtype, sizeof info->dtype, i.dtype);
    copy_string(info->backend, sizeof info->backend, i.backend);
    info->size_multiple = i.size_multiple;
    info->cross_attention_dim = i.cross_attention_dim;
    info->lora_count = int32_t(i.loras.size());
    info->random_weights = i.random_weights ? 1 : 0;
    info->load_ms = i.load_ms;
  });
}

sd_status sd_model_free(sd_model* model) {
  return c_call([&] {
    remove_handle(model, Kind::Model);
    delete model;
  });
}

void sd_model_info_init(sd_model_info* info) {
  if (!info) return;
  *info = sd_model_info{};
  info->struct_size = sizeof(sd_model_info);
}

// ---- streams --------------------------------------------------------------------------------

void sd_stream_config_init(sd_stream_config* config) {
  if (!config) return;
  *config = sd_stream_config{};
  config->struct_size = sizeof(sd_stream_config);
  const streamdiff::StreamConfig d;
  config->width = d.width;
  config->height = d.height;
  config->t_index_count = int32_t(d.t_index_list.size());
  for (size_t i = 0; i < d.t_index_list.size(); ++i) config->t_index_list[i] = d.t_index_list[i];
  config->num_inference_steps = d.num_inference_steps;
  config->frame_buffer_size = d.frame_buffer_size;
  config->cfg_type = sd_cfg_type(int(d.cfg_type));
  config->guidance_scale = d.guidance_scale;
  config->delta = d.delta;
  config->seed = d.seed;
  config->similarity_filter = d.similarity_filter;
  config->similarity_threshold = d.similarity_threshold;
  config->similarity_max_skip = d.similarity_max_skip;
  config->warmup = d.warmup;
  config->use_denoising_batch = d.use_denoising_batch;
  config->do_add_noise = d.do_add_noise;
  config->precompute_kv = d.precompute_kv;
  config->time_stages = d.time_stages;
  config->clip_skip = d.clip_skip;
}

void sd_frame_info_init(sd_frame_info* info) {
  if (!info) return;
  *info = sd_frame_info{};
  info->struct_size = sizeof(sd_frame_info);
  info->index = -1;
  info->tag = -1;
  info->shown_tag = -1;
}

void sd_stream_stats_init(sd_stream_stats* stats) {
  if (!stats) return;
  *stats = sd_stream_stats{};
  stats->struct_size = sizeof(sd_stream_stats);
}

void sd_async_options_init(sd_async_options* options) {
  if (!options) return;
  *options = sd_async_options{};
  options->struct_size = sizeof(sd_async_options);
  const streamdiff::AsyncOptions d;
  options->queue_capacity = d.queue_capacity;
  options->output_capacity = d.output_capacity;
}

sd_status sd_stream_create(sd_model* model, const sd_stream_config* config, sd_stream** out) {
  return c_call([&] {
    require(out != nullptr, "sd_stream_create: null output pointer");
    *out = nullptr;
    check_handle(model, Kind::Model);
    auto* s = new sd_stream{streamdiff::Stream(model->model, stream_config(config))};
    add_handle(s, Kind::Stream);
    *out = s;
  });
}

sd_status sd_stream_free(sd_stream* stream) {
  return c_call([&] {
    remove_handle(stream, Kind::Stream);
    delete stream;
  });
}

sd_status sd_stream_set_prompt(sd_stream* stream, const char* prompt) {
  return c_call([&] {
    require(prompt != nullptr, "sd_stream_set_prompt: null prompt");
    stream_of(stream).set_prompt(prompt);
  });
}

sd_status sd_stream_set_negative_prompt(sd_stream* stream, const char* prompt) {
  return c_call([&] {
    require(prompt != nullptr, "sd_stream_set_negative_prompt: null prompt");
    stream_of(stream).set_negative_prompt(prompt);
  });
}

sd_status sd_stream_set_prompt_blend(sd_stream* stream, const char* const* prompts,
                                     const float* weights, size_t count, sd_blend blend) {
  return c_call([&] {
    streamdiff::Stream& s = stream_of(stream);
    require(count >= 1 && prompts != nullptr && weights != nullptr,
            "sd_stream_set_prompt_blend: no prompts (count ", count, " or null arrays)");
    std::vector<streamdiff::WeightedPrompt> list;
    for (size_t i = 0; i < count; ++i) {
      require(prompts[i] != nullptr, "sd_stream_set_prompt_blend: prompt ", i, " is null");
      list.push_back({prompts[i], weights[i]});
    }
    s.set_prompt_blend(list, streamdiff::Blend(int(blend)));
  });
}

sd_status sd_stream_set_seed(sd_stream* stream, uint64_t seed) {
  return c_call([&] { stream_of(stream).set_seed(seed); });
}

sd_status sd_stream_set_seed_blend(sd_stream* stream, const uint64_t* seeds, const float* weights,
                                   size_t count, sd_blend blend) {
  return c_call([&] {
    streamdiff::Stream& s = stream_of(stream);
    require(count >= 1 && seeds != nullptr && weights != nullptr,
            "sd_stream_set_seed_blend: no seeds (count ", count, " or null arrays)");
    std::vector<streamdiff::WeightedSeed> list;
    for (size_t i = 0; i < count; ++i) list.push_back({seeds[i], weights[i]});
    s.set_seed_blend(list, streamdiff::Blend(int(blend)));
  });
}

sd_status sd_stream_set_guidance_scale(sd_stream* stream, float guidance_scale) {
  return c_call([&] { stream_of(stream).set_guidance_scale(guidance_scale); });
}

sd_status sd_stream_set_delta(sd_stream* stream, float delta) {
  return c_call([&] { stream_of(stream).set_delta(delta); });
}

sd_status sd_stream_set_similarity_filter(sd_stream* stream, int32_t enabled, float threshold,
                                          int32_t max_skip) {
  return c_call(
      [&] { stream_of(stream).set_similarity_filter(enabled != 0, threshold, max_skip); });
}

sd_status sd_stream_set_t_index_list(sd_stream* stream, const int32_t* t_index, size_t count) {
  return c_call([&] {
    streamdiff::Stream& s = stream_of(stream);
    require(t_index != nullptr && count >= 1 && count <= SD_MAX_T_INDEX,
            "sd_stream_set_t_index_list: ", count, " indices (1 to ", SD_MAX_T_INDEX, ")");
    s.set_t_index_list(std::vector<int>(t_index, t_index + count));
  });
}

sd_status sd_stream_set_resolution(sd_stream* stream, int32_t width, int32_t height) {
  return c_call([&] { stream_of(stream).set_resolution(width, height); });
}

sd_status sd_stream_set_cfg_type(sd_stream* stream, sd_cfg_type cfg_type) {
  return c_call([&] { stream_of(stream).set_cfg_type(streamdiff::CfgType(int(cfg_type))); });
}

sd_status sd_stream_set_config(sd_stream* stream, const sd_stream_config* config) {
  return c_call([&] {
    streamdiff::Stream& s = stream_of(stream);
    s.set_config(stream_config(config));
  });
}

sd_status sd_stream_get_config(sd_stream* stream, sd_stream_config* config) {
  return c_call([&] {
    streamdiff::Stream& s = stream_of(stream);
    check_struct(config, "sd_stream_config");
    const streamdiff::StreamConfig c = s.config();
    const size_t size = config->struct_size;
    sd_stream_config_init(config);
    config->struct_size = size;
    config->width = c.width;
    config->height = c.height;
    config->t_index_count = int32_t(c.t_index_list.size());
    for (size_t i = 0; i < c.t_index_list.size(); ++i) config->t_index_list[i] = c.t_index_list[i];
    config->num_inference_steps = c.num_inference_steps;
    config->frame_buffer_size = c.frame_buffer_size;
    config->cfg_type = sd_cfg_type(int(c.cfg_type));
    config->guidance_scale = c.guidance_scale;
    config->delta = c.delta;
    config->seed = c.seed;
    t_prompt = c.prompt;
    t_negative = c.negative_prompt;
    config->prompt = t_prompt.c_str();
    config->negative_prompt = t_negative.c_str();
    config->similarity_filter = c.similarity_filter;
    config->similarity_threshold = c.similarity_threshold;
    config->similarity_max_skip = c.similarity_max_skip;
    config->warmup = c.warmup;
    config->use_denoising_batch = c.use_denoising_batch;
    config->do_add_noise = c.do_add_noise;
    config->precompute_kv = c.precompute_kv;
    config->time_stages = c.time_stages;
    config->clip_skip = c.clip_skip;
  });
}

sd_status sd_stream_img2img(sd_stream* stream, const sd_image* input, const sd_image_out* output,
                            sd_frame_info* info) {
  return sd_stream_img2img_batch(stream, input, output, 1, info);
}

sd_status sd_stream_img2img_batch(sd_stream* stream, const sd_image* inputs,
                                  const sd_image_out* outputs, size_t count, sd_frame_info* info) {
  return c_call([&] {
    streamdiff::Stream& s = stream_of(stream);
    require(inputs != nullptr && outputs != nullptr && count >= 1,
            "sd_stream_img2img: no frames (null arrays or count 0)");
    if (info) check_struct(info, "sd_frame_info");
    std::vector<streamdiff::ImageView> in;
    std::vector<streamdiff::MutableImageView> out;
    for (size_t i = 0; i < count; ++i) {
      in.push_back(view_of(&inputs[i], "input"));
      out.push_back(view_of(&outputs[i], "output"));
    }
    fill_frame_info(s.img2img(in.data(), out.data(), count), info);
  });
}

sd_status sd_stream_img2img_f32(sd_stream* stream, const float* input, float* output, int32_t width,
                                int32_t height, sd_frame_info* info) {
  return c_call([&] {
    streamdiff::Stream& s = stream_of(stream);
    if (info) check_struct(info, "sd_frame_info");
    fill_frame_info(s.img2img_f32(input, output, width, height), info);
  });
}

sd_status sd_stream_txt2img(sd_stream* stream, const sd_image_out* output, int32_t one_step_turbo,
                            sd_frame_info* info) {
  return sd_stream_txt2img_batch(stream, output, 1, one_step_turbo, info);
}

sd_status sd_stream_txt2img_batch(sd_stream* stream, const sd_image_out* outputs, size_t count,
                                  int32_t one_step_turbo, sd_frame_info* info) {
  return c_call([&] {
    streamdiff::Stream& s = stream_of(stream);
    require(outputs != nullptr && count >= 1, "sd_stream_txt2img: no outputs (null or count 0)");
    if (info) check_struct(info, "sd_frame_info");
    std::vector<streamdiff::MutableImageView> out;
    for (size_t i = 0; i < count; ++i) out.push_back(view_of(&outputs[i], "output"));
    fill_frame_info(s.txt2img(out.data(), count, one_step_turbo != 0), info);
  });
}

sd_status sd_stream_txt2img_f32(sd_stream* stream, float* output, int32_t width, int32_t height,
                                int32_t one_step_turbo, sd_frame_info* info) {
  return c_call([&] {
    streamdiff::Stream& s = stream_of(stream);
    if (info) check_struct(info, "sd_frame_info");
    fill_frame_info(s.txt2img_f32(output, width, height, one_step_turbo != 0), info);
  });
}

sd_status sd_stream_start(sd_stream* stream, const sd_async_options* options) {
  return c_call([&] {
    streamdiff::Stream& s = stream_of(stream);
    streamdiff::AsyncOptions a;
    if (options) {
      check_struct(options, "sd_async_options");
      a.queue_capacity = options->queue_capacity;
      a.output_capacity = options->output_capacity;
      require(options->policy == SD_QUEUE_BLOCK || options->policy == SD_QUEUE_DROP_OLDEST,
              "sd_async_options: unknown queue policy ", int(options->policy));
      a.policy = streamdiff::QueuePolicy(int(options->policy));
      a.output_format = format_of(options->output_format);
      if (options->callback) {
        const sd_output_callback cb = options->callback;
        void* user = options->user_data;
        a.on_output = [cb, user](const streamdiff::ImageView& out, const streamdiff::FrameInfo& f) {
          const sd_image img{out.data, out.width, out.height, out.stride,
                             sd_pixel_format(int(out.format))};
          sd_frame_info info;
          sd_frame_info_init(&info);
          fill_frame_info(f, &info);
          cb(user, &img, &info);
        };
      }
    }
    s.start(a);
  });
}

sd_status sd_stream_submit(sd_stream* stream, const sd_image* input, int64_t tag) {
  return c_call([&] {
    streamdiff::Stream& s = stream_of(stream);
    if (!s.submit(view_of(input, "input"), tag))
      throw Error(Status::Closed, "sd_stream_submit: the asynchronous worker has stopped");
  });
}

sd_status sd_stream_end_input(sd_stream* stream) {
  return c_call([&] { stream_of(stream).end_input(); });
}

sd_status sd_stream_poll(sd_stream* stream, const sd_image_out* output, int32_t timeout_ms,
                         sd_frame_info* info) {
  return c_call([&] {
    streamdiff::Stream& s = stream_of(stream);
    if (info) check_struct(info, "sd_frame_info");
    streamdiff::FrameInfo f;
    if (!s.poll(view_of(output, "output"), &f, timeout_ms)) {
      if (!s.running()) throw Error(Status::Closed, "sd_stream_poll: no more outputs (stopped)");
      throw Error(Status::NotReady, "sd_stream_poll: no output within the time given");
    }
    fill_frame_info(f, info);
  });
}

sd_status sd_stream_stop(sd_stream* stream) {
  return c_call([&] { stream_of(stream).stop(); });
}

sd_status sd_stream_reset(sd_stream* stream) {
  return c_call([&] { stream_of(stream).reset(); });
}

sd_status sd_stream_stats_get(sd_stream* stream, sd_stream_stats* stats) {
  return c_call([&] {
    streamdiff::Stream& s = stream_of(stream);
    check_struct(stats, "sd_stream_stats");
    const streamdiff::StreamStats st = s.stats();
    stats->frames_in = st.frames_in;
    stats->frames_out = st.frames_out;
    stats->skipped = st.skipped;
    stats->dropped = st.dropped;
    stats->fps = st.fps;
    stats->latency_mean_ms = st.latency_mean_ms;
    stats->latency_p50_ms = st.latency_p50_ms;
    stats->latency_p99_ms = st.latency_p99_ms;
    stats->latency_max_ms = st.latency_max_ms;
    stats->prepare_ms = st.prepare_ms;
    stats->plans = st.plans;
  });
}

// ---- images ---------------------------------------------------------------------------------

sd_status sd_image_read(const char* path, sd_image* out) {
  return c_call([&] {
    require(out != nullptr, "sd_image_read: null output");
    *out = sd_image{};
    require(path != nullptr, "sd_image_read: null path");
    streamdiff::Image img = streamdiff::read_image(path);
    auto* pixels = static_cast<uint8_t*>(std::malloc(img.rgb.size()));
    if (!pixels) throw std::bad_alloc();
    std::memcpy(pixels, img.rgb.data(), img.rgb.size());
    *out = sd_image{pixels, img.width, img.height, size_t(img.width) * 3, SD_PIXEL_RGB8};
  });
}

void sd_image_free(sd_image* image) {
  if (!image) return;
  std::free(const_cast<uint8_t*>(image->data));
  *image = sd_image{};
}

sd_status sd_image_write(const char* path, const sd_image* image) {
  return c_call([&] {
    require(path != nullptr, "sd_image_write: null path");
    streamdiff::write_image(path, streamdiff::to_image(view_of(image, "image")));
  });
}

}  // extern "C"
