/* streamdiff: the C API, over the C++ API (streamdiff.hpp). Real-time Stable Diffusion
 * (StreamDiffusion) for C hosts and for bindings (the Python package uses it through ctypes).
 *
 *   sd_model* model;  sd_stream* stream;
 *   sd_model_options mo;  sd_model_options_init(&mo);  mo.taesd = "models/taesd";
 *   if (sd_model_load("models/sd-turbo", &mo, &model) != SD_OK) puts(sd_last_error());
 *   sd_stream_config sc;  sd_stream_config_init(&sc);  sc.prompt = "oil painting";
 *   sd_stream_create(model, &sc, &stream);
 *   sd_stream_img2img(stream, &in_frame, &out_frame, NULL);
 *   sd_stream_free(stream);  sd_model_free(model);
 *
 * Errors: every function returns an sd_status; on failure sd_last_error() gives a message for
 * the calling thread naming the problem (the file, the value, the handle). No C++ exception
 * crosses this API. Null, freed or wrong-kind handles give SD_ERR_INVALID_HANDLE.
 *
 * Ownership: a handle made by *_load / *_create is the caller's until its *_free. A stream keeps
 * its model alive: sd_model_free may come before sd_stream_free. Strings and arrays passed in
 * are copied before the call returns.
 *
 * Threads: as in streamdiff.hpp. A model may be shared by streams on any threads; one stream's
 * frame calls must not run concurrently; its setters may be called from any thread.
 *
 * Structs with a struct_size field are versioned: call the *_init function first, which sets
 * struct_size and the defaults; later versions only append fields.
 *
 * Enumerations: each has *_RANGE_MIN_ / *_RANGE_MAX_ members (not values to use) so that it is
 * 32 bits wide and any int a caller passes is a valid value of it, which the library then checks
 * and refuses by name (SD_ERR_INVALID_ARGUMENT) when it is not one of the listed ones. */
#ifndef STREAMDIFF_H_
#define STREAMDIFF_H_

#include <stddef.h>
#include <stdint.h>

#include "streamdiff/export.h"
#include "streamdiff/version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sd_status {
  SD_OK = 0,
  SD_ERR_INVALID_ARGUMENT = 1, /* a null pointer, a value out of range, a wrong size */
  SD_ERR_INVALID_HANDLE = 2,   /* a null, freed or wrong-kind handle */
  SD_ERR_IO = 3,               /* a file that cannot be read or written or is malformed */
  SD_ERR_UNSUPPORTED = 4,      /* a device, dtype or format this build or machine lacks */
  SD_ERR_OUT_OF_MEMORY = 5,
  SD_ERR_NOT_READY = 6, /* sd_stream_poll: no output within the time given */
  SD_ERR_CLOSED = 7,    /* the stream's asynchronous worker is not running */
  SD_ERR_INTERNAL = 8,
  SD_STATUS_RANGE_MIN_ = -0x7FFFFFFF - 1, /* (see "Enumerations" above) */
  SD_STATUS_RANGE_MAX_ = 0x7FFFFFFF
} sd_status;

typedef enum sd_pixel_format {
  SD_PIXEL_RGB8 = 0,
  SD_PIXEL_BGR8 = 1,
  SD_PIXEL_RGBA8 = 2,
  SD_PIXEL_BGRA8 = 3,
  SD_PIXEL_RANGE_MIN_ = -0x7FFFFFFF - 1,
  SD_PIXEL_RANGE_MAX_ = 0x7FFFFFFF
} sd_pixel_format;

typedef enum sd_cfg_type {
  SD_CFG_NONE = 0,
  SD_CFG_FULL = 1,
  SD_CFG_SELF = 2,
  SD_CFG_INITIALIZE = 3,
  SD_CFG_RANGE_MIN_ = -0x7FFFFFFF - 1,
  SD_CFG_RANGE_MAX_ = 0x7FFFFFFF
} sd_cfg_type;

typedef enum sd_blend {
  SD_BLEND_LINEAR = 0,
  SD_BLEND_SLERP = 1,
  SD_BLEND_RANGE_MIN_ = -0x7FFFFFFF - 1,
  SD_BLEND_RANGE_MAX_ = 0x7FFFFFFF
} sd_blend;

typedef enum sd_queue_policy {
  SD_QUEUE_BLOCK = 0,
  SD_QUEUE_DROP_OLDEST = 1,
  SD_QUEUE_RANGE_MIN_ = -0x7FFFFFFF - 1,
  SD_QUEUE_RANGE_MAX_ = 0x7FFFFFFF
} sd_queue_policy;

/* Pixels: row y at data + y * stride (stride 0: packed rows). Inputs may have any size (scaled
 * to cover the stream's size and centre-cropped); outputs must have the stream's size. */
typedef struct sd_image {
  const uint8_t* data;
  int32_t width;
  int32_t height;
  size_t stride;
  sd_pixel_format format;
} sd_image;

typedef struct sd_image_out {
  uint8_t* data;
  int32_t width;
  int32_t height;
  size_t stride;
  sd_pixel_format format;
} sd_image_out;

typedef struct sd_model sd_model;
typedef struct sd_stream sd_stream;

STREAMDIFF_API const char* sd_version(void);
STREAMDIFF_API const char* sd_status_name(sd_status status);
/* The message of the calling thread's last failed call ("" if none); valid until its next call. */
STREAMDIFF_API const char* sd_last_error(void);

/* ---- models ---------------------------------------------------------------------------------- */

typedef struct sd_lora {
  const char* path;
  float scale;
} sd_lora;

typedef struct sd_model_options {
  size_t struct_size;
  const char* taesd; /* TAESD folder or file instead of the model's VAE; NULL: the model's */
  const sd_lora* loras;
  size_t lora_count;
  int32_t lora_allow_unmatched;
  const char* device; /* "cpu" (default) or "cuda" */
  const char* dtype;  /* "auto" (default), "f32", "bf16" */
  int32_t threads;    /* 0: all cores */
  /* Paths (the model, taesd, LoRA files) may be Hugging Face repository ids ("org/name") in the
   * cache (sd_resolve_model_path); with pull != 0 those missing from it are downloaded first. */
  int32_t pull;
} sd_model_options;

typedef struct sd_model_info {
  size_t struct_size;
  char family[16];   /* "sd1" or "sd2" */
  char vae[32];      /* "taesd" or "autoencoder_kl" */
  char dtype[8];     /* "f32" or "bf16" */
  char backend[160]; /* e.g. "cpu: oneDNN 2.6.3, avx2, f32, 2 threads" */
  int32_t size_multiple;
  int32_t cross_attention_dim;
  int32_t lora_count;
  int32_t random_weights;
  double load_ms;
} sd_model_info;

STREAMDIFF_API void sd_model_options_init(sd_model_options* options);
STREAMDIFF_API void sd_model_info_init(sd_model_info* info);
/* path: a diffusers folder or a single-file .safetensors checkpoint. options may be NULL. */
STREAMDIFF_API sd_status sd_model_load(const char* path, const sd_model_options* options,
                                       sd_model** out);
/* arch "sd15", "sd21", "bk-sdm-base", "bk-sdm-small", "bk-sdm-tiny" or "sdxs-512":
   deterministic random weights (benchmarks, tests); options->taesd needed. */
STREAMDIFF_API sd_status sd_model_random(const char* arch, const sd_model_options* options,
                                         sd_model** out);
STREAMDIFF_API sd_status sd_model_info_get(const sd_model* model, sd_model_info* info);
STREAMDIFF_API sd_status sd_model_free(sd_model* model);

/* ---- streams --------------------------------------------------------------------------------- */

#define SD_MAX_T_INDEX 50

typedef struct sd_stream_config {
  size_t struct_size;
  int32_t width, height;
  int32_t t_index_list[SD_MAX_T_INDEX];
  int32_t t_index_count;
  int32_t num_inference_steps;
  int32_t frame_buffer_size;
  sd_cfg_type cfg_type;
  float guidance_scale;
  float delta;
  uint64_t seed;
  const char* prompt;          /* NULL: "" */
  const char* negative_prompt; /* NULL: "" */
  int32_t similarity_filter;
  float similarity_threshold;
  int32_t similarity_max_skip;
  int32_t warmup;
  int32_t use_denoising_batch;
  int32_t do_add_noise;
  int32_t precompute_kv;
  int32_t time_stages;
  int32_t clip_skip; /* text-encoder layers skipped at the end (1 = penultimate); default 0 */
} sd_stream_config;

typedef struct sd_frame_info {
  size_t struct_size;
  int64_t index;
  int32_t skipped;
  double latency_ms;
  double encode_ms, unet_ms, decode_ms;
  int64_t tag;       /* async: the tag of the input this call consumed */
  int64_t shown_tag; /* async: the tag of the input this output shows */
  double compute_ms; /* latency_ms without the time the frame waited (queue, other streams) */
} sd_frame_info;

typedef struct sd_stream_stats {
  size_t struct_size;
  int64_t frames_in, frames_out, skipped, dropped;
  double fps;
  double latency_mean_ms, latency_p50_ms, latency_p99_ms, latency_max_ms;
  double prepare_ms;
  int32_t plans;
} sd_stream_stats;

/* Called on the stream's worker thread with each output (valid during the call). */
typedef void (*sd_output_callback)(void* user_data, const sd_image* output,
                                   const sd_frame_info* info);

typedef struct sd_async_options {
  size_t struct_size;
  size_t queue_capacity; /* default 2 */
  sd_queue_policy policy;
  sd_pixel_format output_format;
  size_t output_capacity;      /* default 4 */
  sd_output_callback callback; /* NULL: outputs are queued for sd_stream_poll */
  void* user_data;
} sd_async_options;

STREAMDIFF_API void sd_stream_config_init(sd_stream_config* config);
STREAMDIFF_API void sd_frame_info_init(sd_frame_info* info);
STREAMDIFF_API void sd_stream_stats_init(sd_stream_stats* stats);
STREAMDIFF_API void sd_async_options_init(sd_async_options* options);

STREAMDIFF_API sd_status sd_stream_create(sd_model* model, const sd_stream_config* config,
                                          sd_stream** out);
STREAMDIFF_API sd_status sd_stream_free(sd_stream* stream);

/* Settings: checked now, applied at the next frame; callable from any thread. */
STREAMDIFF_API sd_status sd_stream_set_prompt(sd_stream* stream, const char* prompt);
STREAMDIFF_API sd_status sd_stream_set_negative_prompt(sd_stream* stream, const char* prompt);
STREAMDIFF_API sd_status sd_stream_set_prompt_blend(sd_stream* stream, const char* const* prompts,
                                                    const float* weights, size_t count,
                                                    sd_blend blend);
STREAMDIFF_API sd_status sd_stream_set_seed(sd_stream* stream, uint64_t seed);
STREAMDIFF_API sd_status sd_stream_set_seed_blend(sd_stream* stream, const uint64_t* seeds,
                                                  const float* weights, size_t count,
                                                  sd_blend blend);
STREAMDIFF_API sd_status sd_stream_set_guidance_scale(sd_stream* stream, float guidance_scale);
STREAMDIFF_API sd_status sd_stream_set_delta(sd_stream* stream, float delta);
STREAMDIFF_API sd_status sd_stream_set_similarity_filter(sd_stream* stream, int32_t enabled,
                                                         float threshold, int32_t max_skip);
STREAMDIFF_API sd_status sd_stream_set_t_index_list(sd_stream* stream, const int32_t* t_index,
                                                    size_t count);
STREAMDIFF_API sd_status sd_stream_set_resolution(sd_stream* stream, int32_t width, int32_t height);
STREAMDIFF_API sd_status sd_stream_set_cfg_type(sd_stream* stream, sd_cfg_type cfg_type);
STREAMDIFF_API sd_status sd_stream_set_config(sd_stream* stream, const sd_stream_config* config);
/* The settings the next frame uses; prompt strings point into the stream (valid until the next
 * call on it from this thread). */
STREAMDIFF_API sd_status sd_stream_get_config(sd_stream* stream, sd_stream_config* config);

/* Synchronous frames. count = frame_buffer_size images each; info may be NULL. */
STREAMDIFF_API sd_status sd_stream_img2img(sd_stream* stream, const sd_image* input,
                                           const sd_image_out* output, sd_frame_info* info);
STREAMDIFF_API sd_status sd_stream_img2img_batch(sd_stream* stream, const sd_image* inputs,
                                                 const sd_image_out* outputs, size_t count,
                                                 sd_frame_info* info);
/* f32 RGB [frame_buffer_size, height, width, 3] in [0, 1], packed; width and height are the
 * buffers' (they must be the stream's). */
STREAMDIFF_API sd_status sd_stream_img2img_f32(sd_stream* stream, const float* input, float* output,
                                               int32_t width, int32_t height, sd_frame_info* info);
STREAMDIFF_API sd_status sd_stream_txt2img(sd_stream* stream, const sd_image_out* output,
                                           int32_t one_step_turbo, sd_frame_info* info);
STREAMDIFF_API sd_status sd_stream_txt2img_batch(sd_stream* stream, const sd_image_out* outputs,
                                                 size_t count, int32_t one_step_turbo,
                                                 sd_frame_info* info);
STREAMDIFF_API sd_status sd_stream_txt2img_f32(sd_stream* stream, float* output, int32_t width,
                                               int32_t height, int32_t one_step_turbo,
                                               sd_frame_info* info);

/* Asynchronous frames: a worker thread owned by the stream runs the model. submit/end_input (a
 * producer thread) and poll (a consumer thread) may run at the same time. */
STREAMDIFF_API sd_status sd_stream_start(sd_stream* stream, const sd_async_options* options);
/* SD_ERR_CLOSED once the worker stopped. */
STREAMDIFF_API sd_status sd_stream_submit(sd_stream* stream, const sd_image* input, int64_t tag);
/* No more inputs: what is queued is processed, then polls report SD_ERR_CLOSED. */
STREAMDIFF_API sd_status sd_stream_end_input(sd_stream* stream);
/* SD_ERR_NOT_READY when no output came within timeout_ms (negative: wait); SD_ERR_CLOSED when
 * the worker has finished and every output was taken. */
STREAMDIFF_API sd_status sd_stream_poll(sd_stream* stream, const sd_image_out* output,
                                        int32_t timeout_ms, sd_frame_info* info);
/* Stops the worker now (queued inputs dropped); reports the worker's error, if any. */
STREAMDIFF_API sd_status sd_stream_stop(sd_stream* stream);

STREAMDIFF_API sd_status sd_stream_reset(sd_stream* stream);
STREAMDIFF_API sd_status sd_stream_stats_get(sd_stream* stream, sd_stream_stats* stats);

/* ---- models from the Hugging Face Hub (streamdiff/hub.hpp) ----------------------------------
 * The cache is huggingface_hub's ($HF_HUB_CACHE, else $HF_HOME/hub, else
 * ~/.cache/huggingface/hub); HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE=1 are honoured. Paths are
 * written to out_path (out_size bytes with the terminating NUL; SD_ERR_INVALID_ARGUMENT when it
 * does not fit, 4096 always does). */

/* Downloads the files the model `repo_id` needs (only those the cache lacks; fp16 weights where
 * they exist) at `revision` (NULL: "main") and writes its snapshot folder to out_path. */
STREAMDIFF_API sd_status sd_pull(const char* repo_id, const char* revision, char* out_path,
                                 size_t out_size);
/* An existing file or folder as it is; a repository id "org/name" as its snapshot folder (or the
 * one .safetensors of a LoRA / single-file repository) in the cache, SD_ERR_IO naming the
 * `streamdiff pull` command when it is not there. revision NULL: "main". */
STREAMDIFF_API sd_status sd_resolve_model_path(const char* path_or_repo_id, const char* revision,
                                               char* out_path, size_t out_size);
/* The cache folder in use. */
STREAMDIFF_API sd_status sd_hub_cache_dir(char* out_path, size_t out_size);

/* ---- images (PNG / JPEG files) --------------------------------------------------------------- */

/* Reads a PNG or JPEG as packed RGB8 into *out; free its pixels with sd_image_free. */
STREAMDIFF_API sd_status sd_image_read(const char* path, sd_image* out);
STREAMDIFF_API void sd_image_free(sd_image* image);
/* Writes any format and stride; PNG or JPEG by the extension. */
STREAMDIFF_API sd_status sd_image_write(const char* path, const sd_image* image);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* STREAMDIFF_H_ */
