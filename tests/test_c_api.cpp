// The C API: every function with bad arguments (null, freed and wrong-kind handles, null
// pointers, unset struct sizes, values out of range) returns a status and a message naming the
// problem, never crashes; and the working path: load, stream, frames, settings, blends, async,
// statistics, images.
#include "streamdiff/streamdiff.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "api_test_support.h"

namespace {

const std::string kModel = streamdiff::test::kTinyModel;
const std::string kTaesd = streamdiff::test::kTinyTaesd;

// Expects `status` to be `want` and sd_last_error() to contain `text`.
void expect_error(sd_status status, sd_status want, const std::string& text) {
  EXPECT_EQ(status, want) << sd_status_name(status) << ": " << sd_last_error();
  EXPECT_NE(std::string(sd_last_error()).find(text), std::string::npos)
      << "'" << sd_last_error() << "' does not mention '" << text << "'";
}

sd_model_options tiny_options() {
  sd_model_options o;
  sd_model_options_init(&o);
  o.taesd = kTaesd.c_str();
  o.dtype = "f32";
  o.threads = 1;
  return o;
}

sd_stream_config tiny_config() {
  sd_stream_config c;
  sd_stream_config_init(&c);
  c.width = c.height = 64;
  c.prompt = "a photo of a cat";
  return c;
}

class CApi : public testing::Test {
 protected:
  void SetUp() override {
    const sd_model_options o = tiny_options();
    ASSERT_EQ(sd_model_load(kModel.c_str(), &o, &model_), SD_OK) << sd_last_error();
    const sd_stream_config c = tiny_config();
    ASSERT_EQ(sd_stream_create(model_, &c, &stream_), SD_OK) << sd_last_error();
    pixels_.assign(64 * 64 * 3, 128);
    out_.assign(64 * 64 * 3, 0);
    in_ = sd_image{pixels_.data(), 64, 64, 0, SD_PIXEL_RGB8};
    dst_ = sd_image_out{out_.data(), 64, 64, 0, SD_PIXEL_RGB8};
  }
  void TearDown() override {
    if (stream_) {
      EXPECT_EQ(sd_stream_free(stream_), SD_OK);
    }
    if (model_) {
      EXPECT_EQ(sd_model_free(model_), SD_OK);
    }
  }

  sd_model* model_ = nullptr;
  sd_stream* stream_ = nullptr;
  std::vector<uint8_t> pixels_, out_;
  sd_image in_{};
  sd_image_out dst_{};
};

TEST_F(CApi, VersionAndStatusNames) {
  EXPECT_STREQ(sd_version(), streamdiff::version());
  EXPECT_STREQ(sd_status_name(SD_OK), "ok");
  EXPECT_STREQ(sd_status_name(SD_ERR_INVALID_HANDLE), "invalid handle");
  EXPECT_STREQ(sd_status_name(sd_status(99)), "unknown status");
}

TEST_F(CApi, FramesSettingsAndStatistics) {
  sd_frame_info info;
  sd_frame_info_init(&info);
  ASSERT_EQ(sd_stream_img2img(stream_, &in_, &dst_, &info), SD_OK) << sd_last_error();
  EXPECT_EQ(info.index, 0);
  ASSERT_EQ(sd_stream_set_prompt(stream_, "a dog"), SD_OK);
  ASSERT_EQ(sd_stream_set_negative_prompt(stream_, "blurry"), SD_OK);
  ASSERT_EQ(sd_stream_set_guidance_scale(stream_, 1.5f), SD_OK);
  ASSERT_EQ(sd_stream_set_delta(stream_, 0.7f), SD_OK);
  ASSERT_EQ(sd_stream_set_seed(stream_, 9), SD_OK);
  ASSERT_EQ(sd_stream_set_similarity_filter(stream_, 1, 0.95f, 5), SD_OK);
  const int32_t t[2] = {20, 40};
  ASSERT_EQ(sd_stream_set_t_index_list(stream_, t, 2), SD_OK);
  ASSERT_EQ(sd_stream_set_cfg_type(stream_, SD_CFG_FULL), SD_OK);
  const char* prompts[2] = {"a dog", "a cat"};
  const float weights[2] = {0.3f, 0.7f};
  ASSERT_EQ(sd_stream_set_prompt_blend(stream_, prompts, weights, 2, SD_BLEND_SLERP), SD_OK);
  const uint64_t seeds[2] = {1, 2};
  ASSERT_EQ(sd_stream_set_seed_blend(stream_, seeds, weights, 2, SD_BLEND_LINEAR), SD_OK);
  ASSERT_EQ(sd_stream_img2img(stream_, &in_, &dst_, &info), SD_OK) << sd_last_error();
  EXPECT_EQ(info.index, 1);

  sd_stream_config c;
  sd_stream_config_init(&c);
  ASSERT_EQ(sd_stream_get_config(stream_, &c), SD_OK);
  EXPECT_STREQ(c.prompt, "a dog");
  EXPECT_STREQ(c.negative_prompt, "blurry");
  EXPECT_EQ(c.t_index_count, 2);
  EXPECT_EQ(c.t_index_list[1], 40);
  EXPECT_EQ(c.cfg_type, SD_CFG_FULL);
  EXPECT_EQ(c.seed, 1u);
  c.width = 96;
  ASSERT_EQ(sd_stream_set_config(stream_, &c), SD_OK);
  std::vector<uint8_t> wide(96 * 64 * 4);
  sd_image_out wide_out{wide.data(), 96, 64, 0, SD_PIXEL_BGRA8};
  ASSERT_EQ(sd_stream_img2img(stream_, &in_, &wide_out, nullptr), SD_OK) << sd_last_error();
  ASSERT_EQ(sd_stream_set_resolution(stream_, 64, 64), SD_OK);

  std::vector<float> fin(64 * 64 * 3, 0.5f), fout(64 * 64 * 3);
  ASSERT_EQ(sd_stream_img2img_f32(stream_, fin.data(), fout.data(), 64, 64, nullptr), SD_OK);
  ASSERT_EQ(sd_stream_txt2img(stream_, &dst_, 0, nullptr), SD_OK) << sd_last_error();
  ASSERT_EQ(sd_stream_txt2img_f32(stream_, fout.data(), 64, 64, 0, nullptr), SD_OK);
  expect_error(sd_stream_txt2img_f32(stream_, fout.data(), 32, 32, 0, nullptr),
               SD_ERR_INVALID_ARGUMENT, "buffers of 32x32");
  ASSERT_EQ(sd_stream_reset(stream_), SD_OK);
  sd_stream_stats st;
  sd_stream_stats_init(&st);
  ASSERT_EQ(sd_stream_stats_get(stream_, &st), SD_OK);
  EXPECT_EQ(st.frames_out, 6);
  EXPECT_EQ(st.plans, 3);  // 64x64 self, 64x64 full (+ t_index 20,40), 96x64 full

  sd_model_info mi;
  sd_model_info_init(&mi);
  ASSERT_EQ(sd_model_info_get(model_, &mi), SD_OK);
  EXPECT_STREQ(mi.family, "sd1");
  EXPECT_STREQ(mi.vae, "taesd");
  EXPECT_EQ(mi.size_multiple, 32);
}

TEST_F(CApi, AsynchronousFrames) {
  sd_async_options a;
  sd_async_options_init(&a);
  ASSERT_EQ(sd_stream_start(stream_, &a), SD_OK) << sd_last_error();
  for (int k = 0; k < 3; ++k) ASSERT_EQ(sd_stream_submit(stream_, &in_, k), SD_OK);
  ASSERT_EQ(sd_stream_end_input(stream_), SD_OK);
  sd_frame_info info;
  sd_frame_info_init(&info);
  int got = 0;
  while (sd_stream_poll(stream_, &dst_, -1, &info) == SD_OK) EXPECT_EQ(info.tag, got++);
  EXPECT_EQ(got, 3);
  expect_error(sd_stream_poll(stream_, &dst_, 0, &info), SD_ERR_CLOSED, "no more outputs");
  ASSERT_EQ(sd_stream_stop(stream_), SD_OK);
  expect_error(sd_stream_submit(stream_, &in_, 9), SD_ERR_CLOSED, "stopped");

  // Callback mode.
  struct Seen {
    int calls = 0;
    int width = 0;
  } seen;
  a.callback = [](void* user, const sd_image* img, const sd_frame_info*) {
    auto* s = static_cast<Seen*>(user);
    ++s->calls;
    s->width = img->width;
  };
  a.user_data = &seen;
  ASSERT_EQ(sd_stream_start(stream_, &a), SD_OK);
  ASSERT_EQ(sd_stream_submit(stream_, &in_, 0), SD_OK);
  ASSERT_EQ(sd_stream_end_input(stream_), SD_OK);
  EXPECT_EQ(sd_stream_poll(stream_, &dst_, -1, nullptr), SD_ERR_CLOSED);
  ASSERT_EQ(sd_stream_stop(stream_), SD_OK);
  EXPECT_EQ(seen.calls, 1);
  EXPECT_EQ(seen.width, 64);
}

TEST_F(CApi, NullFreedAndWrongKindHandles) {
  sd_stream_config c = tiny_config();
  expect_error(sd_stream_create(nullptr, &c, &stream_), SD_ERR_INVALID_HANDLE, "null sd_model");
  EXPECT_EQ(stream_, nullptr);
  ASSERT_EQ(sd_stream_create(model_, &c, &stream_), SD_OK);
  auto* as_model = reinterpret_cast<sd_model*>(stream_);
  expect_error(sd_model_free(as_model), SD_ERR_INVALID_HANDLE, "sd_stream handle was given");
  auto* as_stream = reinterpret_cast<sd_stream*>(model_);
  expect_error(sd_stream_set_seed(as_stream, 1), SD_ERR_INVALID_HANDLE, "sd_model handle");

  sd_stream* gone = nullptr;
  ASSERT_EQ(sd_stream_create(model_, &c, &gone), SD_OK);
  ASSERT_EQ(sd_stream_free(gone), SD_OK);
  expect_error(sd_stream_free(gone), SD_ERR_INVALID_HANDLE, "not live");
  expect_error(sd_stream_img2img(gone, &in_, &dst_, nullptr), SD_ERR_INVALID_HANDLE, "not live");
  int junk = 0;
  expect_error(sd_stream_set_prompt(reinterpret_cast<sd_stream*>(&junk), "x"),
               SD_ERR_INVALID_HANDLE, "never made by this library");

  // Every stream function with a null handle.
  sd_stream* n = nullptr;
  const float w[1] = {1.f};
  const char* p[1] = {"x"};
  const uint64_t s[1] = {1};
  const int32_t t[1] = {10};
  sd_stream_stats st;
  sd_stream_stats_init(&st);
  sd_async_options a;
  sd_async_options_init(&a);
  std::vector<float> f(64 * 64 * 3);
  for (sd_status r : {sd_stream_free(n),
                      sd_stream_set_prompt(n, "x"),
                      sd_stream_set_negative_prompt(n, "x"),
                      sd_stream_set_prompt_blend(n, p, w, 1, SD_BLEND_LINEAR),
                      sd_stream_set_seed(n, 1),
                      sd_stream_set_seed_blend(n, s, w, 1, SD_BLEND_LINEAR),
                      sd_stream_set_guidance_scale(n, 1),
                      sd_stream_set_delta(n, 1),
                      sd_stream_set_similarity_filter(n, 1, 0.9f, 3),
                      sd_stream_set_t_index_list(n, t, 1),
                      sd_stream_set_resolution(n, 64, 64),
                      sd_stream_set_cfg_type(n, SD_CFG_NONE),
                      sd_stream_set_config(n, &c),
                      sd_stream_get_config(n, &c),
                      sd_stream_img2img(n, &in_, &dst_, nullptr),
                      sd_stream_img2img_batch(n, &in_, &dst_, 1, nullptr),
                      sd_stream_img2img_f32(n, f.data(), f.data(), 64, 64, nullptr),
                      sd_stream_txt2img(n, &dst_, 0, nullptr),
                      sd_stream_txt2img_batch(n, &dst_, 1, 0, nullptr),
                      sd_stream_txt2img_f32(n, f.data(), 64, 64, 0, nullptr),
                      sd_stream_start(n, &a),
                      sd_stream_submit(n, &in_, 0),
                      sd_stream_end_input(n),
                      sd_stream_poll(n, &dst_, 0, nullptr),
                      sd_stream_stop(n),
                      sd_stream_reset(n),
                      sd_stream_stats_get(n, &st)})
    expect_error(r, SD_ERR_INVALID_HANDLE, "null sd_stream handle");
  sd_model_info mi;
  mi.struct_size = sizeof mi;
  expect_error(sd_model_info_get(nullptr, &mi), SD_ERR_INVALID_HANDLE, "null sd_model");
  expect_error(sd_model_free(nullptr), SD_ERR_INVALID_HANDLE, "null sd_model");
}

TEST_F(CApi, BadArgumentsAreNamed) {
  sd_model* m = reinterpret_cast<sd_model*>(1);
  sd_model_options o = tiny_options();
  expect_error(sd_model_load(nullptr, &o, &m), SD_ERR_INVALID_ARGUMENT, "null path");
  EXPECT_EQ(m, nullptr);  // cleared on failure
  expect_error(sd_model_load(kModel.c_str(), &o, nullptr), SD_ERR_INVALID_ARGUMENT,
               "null output pointer");
  expect_error(sd_model_load("/no/such/model", &o, &m), SD_ERR_IO, "/no/such/model");
  o.struct_size = 0;
  expect_error(sd_model_load(kModel.c_str(), &o, &m), SD_ERR_INVALID_ARGUMENT, "struct_size");
  o = tiny_options();
  o.device = "tpu";
  expect_error(sd_model_load(kModel.c_str(), &o, &m), SD_ERR_INVALID_ARGUMENT, "tpu");
  o = tiny_options();
  o.lora_count = 1;
  expect_error(sd_model_load(kModel.c_str(), &o, &m), SD_ERR_INVALID_ARGUMENT, "null loras");
  o = tiny_options();
  expect_error(sd_model_random("sd3", &o, &m), SD_ERR_INVALID_ARGUMENT, "sd3");
  expect_error(sd_model_random(nullptr, &o, &m), SD_ERR_INVALID_ARGUMENT, "null arch");
  sd_model_info mi;
  mi.struct_size = 3;
  expect_error(sd_model_info_get(model_, &mi), SD_ERR_INVALID_ARGUMENT, "sd_model_info");

  sd_stream* s = nullptr;
  sd_stream_config c = tiny_config();
  c.width = 65;
  expect_error(sd_stream_create(model_, &c, &s), SD_ERR_INVALID_ARGUMENT, "multiples of 32");
  c = tiny_config();
  c.t_index_count = 0;
  expect_error(sd_stream_create(model_, &c, &s), SD_ERR_INVALID_ARGUMENT, "t_index_count");
  expect_error(sd_stream_create(model_, nullptr, &s), SD_ERR_INVALID_ARGUMENT, "null");

  expect_error(sd_stream_set_prompt(stream_, nullptr), SD_ERR_INVALID_ARGUMENT, "null prompt");
  expect_error(sd_stream_set_guidance_scale(stream_, -2), SD_ERR_INVALID_ARGUMENT, "guidance");
  expect_error(sd_stream_set_similarity_filter(stream_, 1, 2.f, 1), SD_ERR_INVALID_ARGUMENT,
               "similarity_threshold");
  const int32_t desc[2] = {45, 32};
  expect_error(sd_stream_set_t_index_list(stream_, desc, 2), SD_ERR_INVALID_ARGUMENT, "ascending");
  expect_error(sd_stream_set_t_index_list(stream_, nullptr, 2), SD_ERR_INVALID_ARGUMENT, "indices");
  const char* three[3] = {"a", "b", "c"};
  const float w3[3] = {1, 1, 1};
  expect_error(sd_stream_set_prompt_blend(stream_, three, w3, 3, SD_BLEND_SLERP),
               SD_ERR_INVALID_ARGUMENT, "slerp");
  const char* with_null[2] = {"a", nullptr};
  expect_error(sd_stream_set_prompt_blend(stream_, with_null, w3, 2, SD_BLEND_LINEAR),
               SD_ERR_INVALID_ARGUMENT, "prompt 1 is null");
  const uint64_t seeds[2] = {1, 2};
  const float zero[2] = {0, 0};
  expect_error(sd_stream_set_seed_blend(stream_, seeds, zero, 2, SD_BLEND_LINEAR),
               SD_ERR_INVALID_ARGUMENT, "sum to 0");
  expect_error(sd_stream_set_resolution(stream_, 0, 64), SD_ERR_INVALID_ARGUMENT, "width 0");
  expect_error(sd_stream_set_cfg_type(stream_, sd_cfg_type(7)), SD_ERR_INVALID_ARGUMENT,
               "cfg_type");

  sd_image_out small{out_.data(), 32, 32, 0, SD_PIXEL_RGB8};
  expect_error(sd_stream_img2img(stream_, &in_, &small, nullptr), SD_ERR_INVALID_ARGUMENT, "32x32");
  sd_image bad_format{pixels_.data(), 64, 64, 0, sd_pixel_format(9)};
  expect_error(sd_stream_img2img(stream_, &bad_format, &dst_, nullptr), SD_ERR_INVALID_ARGUMENT,
               "pixel format");
  sd_image no_data{nullptr, 64, 64, 0, SD_PIXEL_RGB8};
  expect_error(sd_stream_img2img(stream_, &no_data, &dst_, nullptr), SD_ERR_INVALID_ARGUMENT,
               "null pointer");
  sd_image short_stride{pixels_.data(), 64, 64, 100, SD_PIXEL_RGB8};
  expect_error(sd_stream_img2img(stream_, &short_stride, &dst_, nullptr), SD_ERR_INVALID_ARGUMENT,
               "stride");
  expect_error(sd_stream_img2img(stream_, nullptr, &dst_, nullptr), SD_ERR_INVALID_ARGUMENT,
               "null");
  const sd_image two_in[2] = {in_, in_};
  const sd_image_out two_out[2] = {dst_, dst_};
  expect_error(sd_stream_img2img_batch(stream_, two_in, two_out, 2, nullptr),
               SD_ERR_INVALID_ARGUMENT, "frame_buffer_size");
  sd_frame_info info{};
  expect_error(sd_stream_img2img(stream_, &in_, &dst_, &info), SD_ERR_INVALID_ARGUMENT,
               "sd_frame_info");
  expect_error(sd_stream_img2img_f32(stream_, nullptr, nullptr, 64, 64, nullptr),
               SD_ERR_INVALID_ARGUMENT, "null");
  expect_error(sd_stream_txt2img(stream_, &dst_, 1, nullptr), SD_ERR_INVALID_ARGUMENT,
               "one t_index");
  expect_error(sd_stream_submit(stream_, &in_, 0), SD_ERR_CLOSED, "start()");
  expect_error(sd_stream_poll(stream_, &dst_, 0, nullptr), SD_ERR_CLOSED, "start()");
  expect_error(sd_stream_end_input(stream_), SD_ERR_CLOSED, "start()");
  sd_async_options a;
  sd_async_options_init(&a);
  a.queue_capacity = 0;
  expect_error(sd_stream_start(stream_, &a), SD_ERR_INVALID_ARGUMENT, "queue_capacity");
  a.queue_capacity = 2;
  a.policy = sd_queue_policy(5);
  expect_error(sd_stream_start(stream_, &a), SD_ERR_INVALID_ARGUMENT, "queue policy");
  sd_stream_stats st{};
  expect_error(sd_stream_stats_get(stream_, &st), SD_ERR_INVALID_ARGUMENT, "sd_stream_stats");
  expect_error(sd_stream_stats_get(stream_, nullptr), SD_ERR_INVALID_ARGUMENT, "null");

  // The stream still works after all that.
  EXPECT_EQ(sd_stream_img2img(stream_, &in_, &dst_, nullptr), SD_OK) << sd_last_error();
}

TEST_F(CApi, ImagesReadAndWrite) {
  sd_image img;
  ASSERT_EQ(sd_image_read(SD_FIXTURE_DIR "/stream/frames/frame_00.png", &img), SD_OK);
  EXPECT_EQ(img.width, 64);
  EXPECT_EQ(img.format, SD_PIXEL_RGB8);
  const std::string path = testing::TempDir() + "/c_api_image.png";
  ASSERT_EQ(sd_image_write(path.c_str(), &img), SD_OK) << sd_last_error();
  sd_image back;
  ASSERT_EQ(sd_image_read(path.c_str(), &back), SD_OK);
  EXPECT_EQ(std::memcmp(img.data, back.data, 64 * 64 * 3), 0);
  sd_image_free(&img);
  sd_image_free(&back);
  EXPECT_EQ(img.data, nullptr);
  sd_image_free(nullptr);
  expect_error(sd_image_read("/no/such.png", &img), SD_ERR_IO, "/no/such.png");
  expect_error(sd_image_read(nullptr, &img), SD_ERR_INVALID_ARGUMENT, "null path");
  expect_error(sd_image_write("/no/dir/x.png", &in_), SD_ERR_IO, "/no/dir/x.png");
  expect_error(sd_image_write(path.c_str(), nullptr), SD_ERR_INVALID_ARGUMENT, "null");
}

TEST(CApiErrors, MessagesAreThreadLocal) {
  sd_model* m = nullptr;
  sd_model_load("/first/path", nullptr, &m);
  std::string other;
  std::thread t([&] {
    sd_model_load("/second/path", nullptr, &m);
    other = sd_last_error();
  });
  t.join();
  EXPECT_NE(std::string(sd_last_error()).find("/first/path"), std::string::npos);
  EXPECT_NE(other.find("/second/path"), std::string::npos);
}

}  // namespace
