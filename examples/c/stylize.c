/* Stylises an image with streamdiff's C API: loads a model, opens a stream, runs img2img on the
 * input a few times (the stream warms up on the first frame) and writes the last output.
 *
 *   stylize MODEL TAESD INPUT.png OUTPUT.png "PROMPT" [FRAMES]
 *
 * TAESD may be "-" to use the model's own VAE. Built by tests/install_test.sh against the
 * installed library, with CMake (find_package) and with pkg-config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <streamdiff/streamdiff.h>

static int fail(const char* what, sd_status status) {
  fprintf(stderr, "%s failed: %s: %s\n", what, sd_status_name(status), sd_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s MODEL TAESD|- INPUT OUTPUT PROMPT [FRAMES]\n", argv[0]);
    return 2;
  }
  const int frames = argc > 6 ? atoi(argv[6]) : 3;
  printf("streamdiff %s\n", sd_version());

  sd_model_options mo;
  sd_model_options_init(&mo);
  if (strcmp(argv[2], "-") != 0) mo.taesd = argv[2];
  sd_model* model = NULL;
  sd_status st = sd_model_load(argv[1], &mo, &model);
  if (st != SD_OK) return fail("sd_model_load", st);

  sd_image input;
  st = sd_image_read(argv[3], &input);
  if (st != SD_OK) return fail("sd_image_read", st);

  sd_stream_config sc;
  sd_stream_config_init(&sc);
  sc.width = input.width;
  sc.height = input.height;
  sc.prompt = argv[5];
  sd_stream* stream = NULL;
  st = sd_stream_create(model, &sc, &stream);
  if (st != SD_OK) return fail("sd_stream_create", st);

  unsigned char* pixels = malloc((size_t)input.width * input.height * 3);
  sd_image_out out = {pixels, input.width, input.height, 0, SD_PIXEL_RGB8};
  sd_frame_info info;
  sd_frame_info_init(&info);
  for (int k = 0; k < frames; ++k) {
    st = sd_stream_img2img(stream, &input, &out, &info);
    if (st != SD_OK) return fail("sd_stream_img2img", st);
    printf("frame %lld: %.1f ms\n", (long long)info.index, info.latency_ms);
  }
  const sd_image result = {pixels, input.width, input.height, 0, SD_PIXEL_RGB8};
  st = sd_image_write(argv[4], &result);
  if (st != SD_OK) return fail("sd_image_write", st);
  printf("wrote %s\n", argv[4]);

  free(pixels);
  sd_image_free(&input);
  sd_stream_free(stream);
  sd_model_free(model);
  return 0;
}
