// The public tools (streamdiff/tools.hpp) but describe_model_path (describe.cpp): safetensors
// files as host f32 tensors, the CLIP tokenizer, a model's text encoder and TAESD on their own,
// and facts about the machine. Loading and file errors are Status::Io, bad arguments
// InvalidArgument, failures while computing Internal.
#include "streamdiff/tools.hpp"

#include <cmath>
#include <limits>
#include <utility>

#include "api/api_common.h"
#include "api/model_impl.h"
#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/machine.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "models/prompt_encoder.h"
#include "models/taesd.h"
#include "text/clip_tokenizer.h"

namespace streamdiff {

using detail::guarded;
using detail::require;

namespace {

// ---- tensors ------------------------------------------------------------------------------------

// `dims` as an engine Shape; `what` names the tensor in messages.
sd::Shape to_shape(const std::vector<int64_t>& dims, const std::string& what) {
  require(dims.size() <= size_t(sd::Shape::kMaxRank), what, ": rank ", dims.size(),
          " exceeds the most dimensions a tensor can have (", sd::Shape::kMaxRank, ")");
  sd::Shape s;
  s.rank = int(dims.size());
  int64_t numel = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    require(dims[i] >= 0, what, ": dimension ", i, " is negative (", dims[i], ")");
    require(dims[i] == 0 || numel <= std::numeric_limits<int64_t>::max() / dims[i], what,
            ": the shape's element count overflows");
    numel *= dims[i];
    s.dims[i] = dims[i];
  }
  return s;
}

// The shape `t.shape` says, after checking that t.data holds exactly that many values.
sd::Shape checked_shape(const TensorF32& t, const std::string& what) {
  const sd::Shape s = to_shape(t.shape, what);
  require(uint64_t(s.numel()) == t.data.size(), what, ": shape ", s.str(), " holds ", s.numel(),
          " values, the data ", t.data.size());
  return s;
}

// A borrowed engine view of a public tensor (valid while `t` lives; never written through).
sd::Tensor wrap(const TensorF32& t, const sd::Shape& shape) {
  return sd::Tensor::wrap(shape, sd::DType::F32, const_cast<float*>(t.data.data()));
}

// A host f32 engine tensor as a public one (a copy).
TensorF32 to_public(const sd::Tensor& t) {
  TensorF32 out;
  out.shape.assign(t.shape().dims, t.shape().dims + t.rank());
  const float* p = t.data_as<float>();
  out.data.assign(p, p + t.numel());
  return out;
}

// ---- parts --------------------------------------------------------------------------------------

// The device, dtype and threads of `options` (its other fields do not apply to a single part),
// checked.
ModelOptions backend_options(const ModelOptions& options) {
  ModelOptions o;
  o.device = options.device;
  o.dtype = options.dtype;
  o.threads = options.threads;
  detail::check_model_options(o);
  return o;
}

template <typename Impl>
Impl& live(const std::unique_ptr<Impl>& impl, const char* what) {
  require(impl != nullptr, what, ": used after being moved from");
  return *impl;
}

}  // namespace

// ---- safetensors --------------------------------------------------------------------------------

void save_tensors(const std::string& path, const std::map<std::string, TensorF32>& tensors,
                  const std::map<std::string, std::string>& metadata) {
  guarded(Status::Io, [&] {
    std::map<std::string, sd::Tensor> views;
    for (const auto& [name, t] : tensors)
      views[name] = wrap(t, checked_shape(t, "save_tensors '" + path + "': tensor '" + name + "'"));
    sd::write_safetensors(path, views, metadata);
  });
}

std::map<std::string, TensorF32> load_tensors(const std::string& path) {
  return guarded(Status::Io, [&] {
    const auto file = sd::SafetensorsFile::open(path);
    std::map<std::string, TensorF32> out;
    for (const sd::SafetensorsEntry& e : file->entries())
      out[e.name] = to_public(file->load(e.name, sd::DType::F32));
    return out;
  });
}

// ---- tokenizer ----------------------------------------------------------------------------------

struct Tokenizer::Impl {
  sd::text::ClipTokenizer tokenizer;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::builtin(bool pad_with_exclamation) {
  return guarded(Status::Io, [&] {
    return Tokenizer(std::make_unique<Impl>(Impl{sd::text::ClipTokenizer::builtin(
        pad_with_exclamation ? sd::text::ClipPad::kExclamation : sd::text::ClipPad::kEndOfText)}));
  });
}

Tokenizer Tokenizer::from_folder(const std::string& path) {
  return guarded(Status::Io, [&] {
    return Tokenizer(std::make_unique<Impl>(Impl{sd::text::ClipTokenizer::from_folder(path)}));
  });
}

std::vector<int> Tokenizer::encode(const std::string& text) const {
  return guarded(Status::Internal, [&] { return live(impl_, "tokenizer").tokenizer.encode(text); });
}

std::vector<int> Tokenizer::tokenize_for_model(const std::string& text, int max_len) const {
  return guarded(Status::Internal, [&] {
    const Impl& t = live(impl_, "tokenizer");
    require(max_len >= 2, "tokenize_for_model: max_len must be at least 2 (BOS and EOS), got ",
            max_len);
    return t.tokenizer.tokenize_for_model(text, max_len);
  });
}

// ---- text encoder -------------------------------------------------------------------------------

struct TextEncoder::Impl {
  int threads = 0;
  std::unique_ptr<sd::Backend> backend;  // declared first: destroyed after the encoder
  std::unique_ptr<sd::PromptEncoder> encoder;
};

TextEncoder::TextEncoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TextEncoder::~TextEncoder() = default;
TextEncoder::TextEncoder(TextEncoder&&) noexcept = default;
TextEncoder& TextEncoder::operator=(TextEncoder&&) noexcept = default;

TextEncoder TextEncoder::load(const std::string& path, const ModelOptions& options) {
  return guarded(Status::Io, [&] {
    auto t = std::make_unique<Impl>();
    t->backend = detail::make_backend_for(backend_options(options), &t->threads);
    t->encoder = sd::PromptEncoder::load(detail::local_model_path(path, options), *t->backend);
    return TextEncoder(std::move(t));
  });
}

TensorF32 TextEncoder::encode(const std::string& prompt, int clip_skip) {
  return guarded(Status::Internal, [&] {
    Impl& t = live(impl_, "text encoder");
    const int layers = t.encoder->model().config().num_hidden_layers;
    require(clip_skip >= 0 && clip_skip <= layers, "clip_skip must be in [0, ", layers, "], got ",
            clip_skip);
    return to_public(t.encoder->encode(prompt, clip_skip));  // host f32 [77, width]
  });
}

int TextEncoder::num_layers() const {
  return live(impl_, "text encoder").encoder->model().config().num_hidden_layers;
}

std::string TextEncoder::description() const {
  const sd::ClipTextModel& m = live(impl_, "text encoder").encoder->model();
  const sd::ClipTextConfig& c = m.config();
  return sd::detail::concat(m.source(), " (", c.num_hidden_layers, " layers, width ", c.hidden_size,
                            ", ", c.hidden_act, ")");
}

std::string TextEncoder::backend() const {
  return live(impl_, "text encoder").backend->description();
}

// ---- autoencoder --------------------------------------------------------------------------------

struct Autoencoder::Impl {
  // One direction's persistent device input (remade when the shape changes; kept out of the
  // arena so the arena can be reserved while it lives) and whether the arena was reserved for
  // a run at that shape.
  struct Slot {
    sd::Tensor input;
    bool planned = false;
  };

  int threads = 0;
  std::unique_ptr<sd::Backend> backend;  // declared first: destroyed last
  std::unique_ptr<sd::Taesd> taesd;
  Slot encoder, decoder;
  sd::Image scratch;  // the image being encoded, as the engine takes it

  // Uploads `host` into the slot's input, runs fn on it and returns its result as host f32.
  // Like the CLI's taesd command: the first run at a shape plans the arena, which is then
  // reserved at its peak, so later runs at that shape allocate nothing.
  template <typename F>
  sd::Tensor run(Slot& slot, const sd::Tensor& host, F fn) {
    sd::Backend& b = *backend;
    if (slot.input.shape() != host.shape()) {
      slot.input = sd::Tensor();  // free the old input before allocating the new one
      slot.input = b.empty(host.shape(), b.compute_dtype());
      slot.planned = false;
    }
    b.copy_from_host(host, slot.input);
    b.synchronize();
    sd::Tensor result = b.download(fn(slot.input), sd::DType::F32);  // the arena output is freed
    if (!slot.planned) {
      b.arena().reserve(b.arena().peak());  // no arena tensor is alive here
      slot.planned = true;
    }
    return result;
  }
};

Autoencoder::Autoencoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Autoencoder::~Autoencoder() = default;
Autoencoder::Autoencoder(Autoencoder&&) noexcept = default;
Autoencoder& Autoencoder::operator=(Autoencoder&&) noexcept = default;

Autoencoder Autoencoder::load_taesd(const std::string& path, const ModelOptions& options) {
  return guarded(Status::Io, [&] {
    auto a = std::make_unique<Impl>();
    a->backend = detail::make_backend_for(backend_options(options), &a->threads);
    a->taesd = sd::Taesd::load(detail::local_model_path(path, options), *a->backend);
    return Autoencoder(std::move(a));
  });
}

TensorF32 Autoencoder::encode(const Image& image) {
  return guarded(Status::Internal, [&] {
    Impl& a = live(impl_, "autoencoder");
    require(a.taesd->has_encoder(), "autoencoder '", a.taesd->source(),
            "' has only its decoder: it cannot encode");
    const int ds = a.taesd->config().encoder_downscale();
    require(image.width > 0 && image.height > 0 && image.width % ds == 0 && image.height % ds == 0,
            "encode: the image size must be positive and a multiple of ", ds, ", got ", image.width,
            "x", image.height);
    require(image.rgb.size() == size_t(image.width) * size_t(image.height) * 3, "encode: image ",
            image.width, "x", image.height, " holds ", image.rgb.size(), " bytes, expected ",
            size_t(image.width) * size_t(image.height) * 3);
    a.scratch.width = image.width;
    a.scratch.height = image.height;
    a.scratch.rgb.assign(image.rgb.begin(), image.rgb.end());
    const sd::Tensor latents = a.run(a.encoder, sd::image_to_tensor(a.scratch),
                                     [&](const sd::Tensor& x) { return a.taesd->encode(x); });
    return to_public(latents);  // [1, h, w, latent_channels]
  });
}

Image Autoencoder::decode(const TensorF32& latents) {
  return guarded(Status::Internal, [&] {
    Impl& a = live(impl_, "autoencoder");
    require(a.taesd->has_decoder(), "autoencoder '", a.taesd->source(),
            "' has only its encoder: it cannot decode");
    const sd::Shape s = checked_shape(latents, "decode: latents");
    const int64_t channels = a.taesd->config().latent_channels;
    const bool nhwc = s.rank == 4 && s.dims[0] == 1, hwc = s.rank == 3;
    require((nhwc || hwc) && s[-1] == channels && s[-2] > 0 && s[-3] > 0,
            "decode: latents of shape ", s.str(), "; expected [1, h, w, ", channels, "] or [h, w, ",
            channels, "]");
    const sd::Shape batched{1, s[-3], s[-2], channels};
    const sd::Tensor host = a.run(a.decoder, wrap(latents, batched),
                                  [&](const sd::Tensor& z) { return a.taesd->decode(z); });
    sd::Image img = sd::tensor_to_image(host);
    Image out;
    out.width = img.width;
    out.height = img.height;
    out.rgb = std::move(img.rgb);
    return out;
  });
}

int Autoencoder::downscale() const {
  return live(impl_, "autoencoder").taesd->config().encoder_downscale();
}

int Autoencoder::latent_channels() const {
  return live(impl_, "autoencoder").taesd->config().latent_channels;
}

std::string Autoencoder::description() const {
  const sd::Taesd& t = *live(impl_, "autoencoder").taesd;
  const char* halves = t.has_encoder() && t.has_decoder() ? "encoder and decoder"
                       : t.has_encoder()                  ? "encoder only"
                                                          : "decoder only";
  return sd::detail::concat("TAESD ", t.source(), " (", halves, ", ", t.config().latent_channels,
                            " latent channels, downscale ", t.config().encoder_downscale(), ")");
}

std::string Autoencoder::backend() const {
  return live(impl_, "autoencoder").backend->description();
}

// ---- machine ------------------------------------------------------------------------------------

std::string cpu_model_name() {
  return sd::cpu_model_name();
}

ProcessMemory process_memory() {
  const sd::ProcessMemory m = sd::process_memory();
  return {m.rss, m.peak_rss};
}

bool reset_peak_rss() {
  return sd::reset_peak_rss();
}

bool cuda_available() {
  return sd::cuda_available();
}

bool cpu_has_native_bf16() {
  return sd::cpu_has_native_bf16();
}

}  // namespace streamdiff
