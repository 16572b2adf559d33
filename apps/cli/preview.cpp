// The --preview window (see preview.h). SDL2 draws two streaming textures (input | output) and a
// status bar whose text comes from a tiny built-in 5x7 bitmap font (SDL2 has no text rendering,
// and a font library for a dozen glyphs is not worth a dependency).
#include "preview.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "commands.h"
#include "interrupt.h"

#ifdef SD_HAVE_SDL2
#include <SDL.h>
#endif

namespace streamdiff::cli {

#ifdef SD_HAVE_SDL2

namespace {

constexpr int kBarRows = 11;  // font rows (7) + margins, before scaling

// 5x7 glyphs, one row per byte (bit 4 = leftmost column).
struct Glyph {
  char c;
  uint8_t rows[7];
};
constexpr Glyph kFont[] = {
    {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},
    {'2', {14, 17, 1, 2, 4, 8, 31}},     {'3', {31, 2, 4, 2, 1, 17, 14}},
    {'4', {2, 6, 10, 18, 31, 2, 2}},     {'5', {31, 16, 30, 1, 1, 17, 14}},
    {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},
    {'8', {14, 17, 17, 14, 17, 17, 14}}, {'9', {14, 17, 17, 15, 1, 2, 12}},
    {'A', {14, 17, 17, 31, 17, 17, 17}}, {'C', {14, 17, 16, 16, 16, 17, 14}},
    {'D', {30, 17, 17, 17, 17, 17, 30}}, {'E', {31, 16, 16, 30, 16, 16, 31}},
    {'F', {31, 16, 16, 30, 16, 16, 16}}, {'I', {14, 4, 4, 4, 4, 4, 14}},
    {'L', {16, 16, 16, 16, 16, 16, 31}}, {'M', {17, 27, 21, 21, 17, 17, 17}},
    {'N', {17, 17, 25, 21, 19, 17, 17}}, {'O', {14, 17, 17, 17, 17, 17, 14}},
    {'P', {30, 17, 17, 30, 16, 16, 16}}, {'S', {15, 16, 16, 14, 1, 1, 30}},
    {'T', {31, 4, 4, 4, 4, 4, 4}},       {'U', {17, 17, 17, 17, 17, 17, 14}},
    {'Y', {17, 17, 10, 4, 4, 4, 4}},     {'.', {0, 0, 0, 0, 0, 12, 12}},
    {':', {0, 12, 12, 0, 12, 12, 0}},    {'-', {0, 0, 0, 31, 0, 0, 0}},
};

const Glyph* glyph_of(char c) {
  for (const Glyph& g : kFont)
    if (g.c == c) return &g;
  return nullptr;  // a space, or a character the font lacks
}

// Draws `text` at (x, y) with each font pixel `scale` screen pixels wide.
void draw_text(SDL_Renderer* r, const std::string& text, int x, int y, int scale) {
  for (char c : text) {
    if (const Glyph* g = glyph_of(c))
      for (int row = 0; row < 7; ++row)
        for (int col = 0; col < 5; ++col)
          if (g->rows[row] & (16 >> col)) {
            const SDL_Rect px{x + col * scale, y + row * scale, scale, scale};
            SDL_RenderFillRect(r, &px);
          }
    x += 6 * scale;
  }
}

}  // namespace

struct Preview::Impl {
  std::string title;
  SDL_Window* window = nullptr;
  SDL_Renderer* renderer = nullptr;
  SDL_Texture* left = nullptr;
  SDL_Texture* right = nullptr;
  int frame_w = 0, frame_h = 0, scale = 1;
  const char* screenshot_path = nullptr;
  std::vector<uint8_t> screenshot;  // the last frame drawn, RGB
  int shot_w = 0, shot_h = 0;
  bool closed = false;

  ~Impl() {
    if (left) SDL_DestroyTexture(left);
    if (right) SDL_DestroyTexture(right);
    if (renderer) SDL_DestroyRenderer(renderer);
    if (window) SDL_DestroyWindow(window);
    SDL_Quit();
  }

  [[noreturn]] static void fail(const char* what) {
    check(false, "--preview: ", what, ": ", SDL_GetError());
    std::abort();  // not reached
  }

  void open(int w, int h) {
    frame_w = w;
    frame_h = h;
    scale = std::max(1, 256 / std::max(1, h));  // small test frames are shown bigger
    const int win_w = 2 * w * scale, win_h = h * scale + kBarRows * 2;
    window = SDL_CreateWindow(title.c_str(), SDL_WINDOWPOS_UNDEFINED, SDL_WINDOWPOS_UNDEFINED,
                              win_w, win_h, 0);
    if (!window) fail("cannot open a window");
    renderer = SDL_CreateRenderer(window, -1, 0);
    if (!renderer) renderer = SDL_CreateRenderer(window, -1, SDL_RENDERER_SOFTWARE);
    if (!renderer) fail("cannot draw in the window");
    for (SDL_Texture** t : {&left, &right}) {
      *t = SDL_CreateTexture(renderer, SDL_PIXELFORMAT_RGB24, SDL_TEXTUREACCESS_STREAMING, w, h);
      if (!*t) fail("cannot make a texture");
    }
  }

  void draw(const Image& input, const Image& output, const PreviewFigures& f) {
    if (!window) open(output.width, output.height);
    SDL_UpdateTexture(left, nullptr, input.rgb.data(), input.width * 3);
    SDL_UpdateTexture(right, nullptr, output.rgb.data(), output.width * 3);
    const int w = frame_w * scale, h = frame_h * scale;
    SDL_SetRenderDrawColor(renderer, 16, 16, 16, 255);
    SDL_RenderClear(renderer);
    const SDL_Rect l{0, 0, w, h}, r{w, 0, w, h};
    SDL_RenderCopy(renderer, left, nullptr, &l);
    SDL_RenderCopy(renderer, right, nullptr, &r);
    char text[128];
    std::snprintf(text, sizeof text, "%.2f FPS  LATENCY %.0f MS  COMPUTE %.0f MS  SEED %llu", f.fps,
                  f.latency_ms, f.compute_ms, static_cast<unsigned long long>(f.seed));
    const int font = int(std::string(text).size()) * 12 <= 2 * w ? 2 : 1;
    SDL_SetRenderDrawColor(renderer, 230, 230, 230, 255);
    draw_text(renderer, text, 4, h + (kBarRows * 2 - 7 * font) / 2, font);
    char caption[160];
    std::snprintf(caption, sizeof caption, "%s - %.2f fps, latency %.0f ms, compute %.0f ms",
                  title.c_str(), f.fps, f.latency_ms, f.compute_ms);
    SDL_SetWindowTitle(window, caption);
    if (screenshot_path) {  // before presenting: the back buffer is undefined afterwards
      SDL_GetRendererOutputSize(renderer, &shot_w, &shot_h);
      screenshot.resize(size_t(shot_w) * size_t(shot_h) * 3);
      if (SDL_RenderReadPixels(renderer, nullptr, SDL_PIXELFORMAT_RGB24, screenshot.data(),
                               shot_w * 3) != 0)
        fail("cannot read the window back for the screenshot");
    }
    SDL_RenderPresent(renderer);
  }
};

Preview::Preview(const std::string& title) : impl_(std::make_unique<Impl>()) {
  impl_->title = title;
  SDL_SetHint(SDL_HINT_NO_SIGNAL_HANDLERS, "1");  // Ctrl-C stays ours (interrupt.h)
  if (SDL_Init(SDL_INIT_VIDEO) != 0)
    check(false, "--preview: cannot open the display: ", SDL_GetError(),
          " (a window needs a graphical session: DISPLAY or WAYLAND_DISPLAY)");
  const char* shot = std::getenv("STREAMDIFF_PREVIEW_SCREENSHOT");
  if (shot && *shot) impl_->screenshot_path = shot;
}

Preview::~Preview() {
  try {
    close();
  } catch (const std::exception& e) {
    warn("%s\n", e.what());
  }
}

void Preview::show(const Image& input, const Image& output, const PreviewFigures& figures) {
  impl_->draw(input, output, figures);
  pump();
}

void Preview::pump() {
  SDL_Event e;
  while (SDL_PollEvent(&e)) {
    if (e.type == SDL_QUIT) request_stop();
    if (e.type != SDL_KEYDOWN) continue;
    const SDL_Keycode k = e.key.keysym.sym;
    if (k == SDLK_q || k == SDLK_ESCAPE) request_stop();
    if (k == SDLK_n && on_new_seed) on_new_seed();
  }
}

void Preview::close() {
  if (!impl_ || impl_->closed) return;
  impl_->closed = true;
  if (!impl_->screenshot_path) return;
  check(!impl_->screenshot.empty(), "--preview: no frame was shown, so no screenshot for ",
        impl_->screenshot_path);
  Image shot;
  shot.width = impl_->shot_w;
  shot.height = impl_->shot_h;
  shot.rgb = impl_->screenshot;
  write_image(impl_->screenshot_path, shot);
  say("preview screenshot: %s (%dx%d)\n", impl_->screenshot_path, shot.width, shot.height);
}

#else  // no SDL2 in this build

struct Preview::Impl {};

Preview::Preview(const std::string&) {
  check(false,
        "--preview: this streamdiff was built without SDL2 (install libsdl2-dev, run "
        "scripts/install-deps.sh, and rebuild)");
}
Preview::~Preview() = default;
void Preview::show(const Image&, const Image&, const PreviewFigures&) {}
void Preview::pump() {}
void Preview::close() {}

#endif

}  // namespace streamdiff::cli
