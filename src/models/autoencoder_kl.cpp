#include "models/autoencoder_kl.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "io/json_config.h"
#include "io/model_files.h"
#include "io/safetensors_set.h"
#include "models/unet.h"
#include "models/unet_blocks.h"

namespace sd {

namespace fs = std::filesystem;

// ---- config ----------------------------------------------------------------------------------

AutoencoderKLConfig AutoencoderKLConfig::stable_diffusion() {
  AutoencoderKLConfig c;
  c.block_out_channels = {128, 256, 512, 512};
  c.layers_per_block = 2;
  c.norm_num_groups = 32;
  c.scaling_factor = 0.18215f;
  return c;
}

AutoencoderKLConfig AutoencoderKLConfig::from_json_file(const std::string& path) {
  JsonConfig j = JsonConfig::load(path, "VAE config");
  j.expect_class("AutoencoderKL");
  AutoencoderKLConfig c;
  j.read("in_channels", &c.in_channels);
  j.read("out_channels", &c.out_channels);
  j.read("latent_channels", &c.latent_channels);
  j.read("block_out_channels", &c.block_out_channels);
  j.read("layers_per_block", &c.layers_per_block);
  j.read("norm_num_groups", &c.norm_num_groups);
  j.read("scaling_factor", &c.scaling_factor);
  j.read("shift_factor", &c.shift_factor);
  j.read("use_quant_conv", &c.use_quant_conv);
  j.read("use_post_quant_conv", &c.use_post_quant_conv);
  j.read("mid_block_add_attention", &c.mid_block_add_attention);
  j.expect_one_of("act_fn", {"silu", "swish"});
  for (const char* key : {"down_block_types", "up_block_types"}) {
    if (!j.has(key)) continue;
    std::vector<std::string> types;
    j.read(key, &types);
    const char* want = key[0] == 'd' ? "DownEncoderBlock2D" : "UpDecoderBlock2D";
    for (const std::string& t : types)
      SD_CHECK(t == want, path, ": '", key, "' has \"", t, "\"; only \"", want, "\" is supported");
    SD_CHECK(types.size() == c.block_out_channels.size(), path, ": '", key, "' has ", types.size(),
             " entries but block_out_channels ", join_ints(c.block_out_channels), " has ",
             c.block_out_channels.size());
  }
  for (const char* key : {"latents_mean", "latents_std"})
    SD_CHECK(!j.has(key), path, ": '", key,
             "' is set; per-channel latent normalisation (SDXL-style pipelines) is not supported");
  c.validate(path);
  return c;
}

void AutoencoderKLConfig::validate(const std::string& where) const {
  SD_CHECK(in_channels > 0 && out_channels > 0 && latent_channels > 0, where,
           ": channel counts must be positive (in ", in_channels, ", out ", out_channels,
           ", latent ", latent_channels, ")");
  SD_CHECK(!block_out_channels.empty() && block_out_channels.size() <= 8, where,
           ": block_out_channels ", join_ints(block_out_channels), " must have 1 to 8 entries");
  SD_CHECK(layers_per_block >= 1, where, ": layers_per_block ", layers_per_block,
           " must be at least 1");
  SD_CHECK(norm_num_groups >= 1, where, ": norm_num_groups ", norm_num_groups, " must be positive");
  for (int ch : block_out_channels)
    SD_CHECK(ch > 0 && ch % norm_num_groups == 0, where, ": block_out_channels ",
             join_ints(block_out_channels), " must be positive multiples of norm_num_groups ",
             norm_num_groups);
  SD_CHECK(std::isfinite(scaling_factor) && scaling_factor != 0.f, where, ": scaling_factor ",
           scaling_factor, " must be finite and non-zero");
  SD_CHECK(std::isfinite(shift_factor), where, ": shift_factor ", shift_factor, " must be finite");
}

// ---- parameters ------------------------------------------------------------------------------

namespace {

constexpr float kNormEps = 1e-6f;  // every GroupNorm of the VAE (resnet_eps and conv_norm_out)

// The mid block's attention (diffusers' Attention with group_norm, heads = 1).
struct VaeAttention {
  UNetNorm norm;
  UNetLinear q, k, v, out;
};

struct MidBlock {
  ResnetBlock resnet_0, resnet_1;
  bool has_attention = false;
  VaeAttention attention;
};

struct Stage {
  std::vector<ResnetBlock> resnets;
  bool has_resample = false;
  UNetConv resample;  // encoder: 4x4 stride 2 pad 1 (see the header); decoder: 3x3 after 2x
};

// A weight source over one safetensors file or sharded weights that remembers what was read.
class VaeFileWeights : public UNetWeightSource {
 public:
  explicit VaeFileWeights(const std::string& path) : file_(SafetensorsSet::open(path)) {}
  Tensor get(const std::string& name, const Shape& expect) override {
    SD_CHECK(file_->contains(name), "'", file_->path(), "': missing tensor '", name, "' ",
             expect.str(), " (does the VAE config match the weights?)");
    used_.insert(name);
    return file_->load(name, DType::F32, expect);
  }
  void check_all_used() const override {
    for (const auto& e : file_->entries())
      SD_CHECK(used_.count(e.name), "'", file_->path(), "': unexpected tensor '", e.name, "' ",
               e.shape.str(), " (the VAE config does not use it; do config and weights match?)");
  }
  std::string describe() const override { return file_->describe(); }

 private:
  std::unique_ptr<SafetensorsSet> file_;
  std::set<std::string> used_;
};

}  // namespace

struct AutoencoderKL::Parts {
  // encoder
  UNetConv enc_conv_in;
  std::vector<Stage> down;
  MidBlock enc_mid;
  UNetNorm enc_norm_out;
  bool moments_after_conv_out = true;  // quant_conv present: conv_out, then the split 1x1s
  UNetConv enc_conv_out;               // full conv_out (only with quant_conv)
  UNetConv mean_conv, logvar_conv;     // the halves of quant_conv (or of conv_out without it)
  // decoder
  bool has_post_quant = true;
  UNetConv post_quant_conv;
  UNetConv dec_conv_in;
  MidBlock dec_mid;
  std::vector<Stage> up;
  UNetNorm dec_norm_out;
  UNetConv dec_conv_out;
};

AutoencoderKL::AutoencoderKL(Backend& backend, AutoencoderKLConfig config)
    : backend_(backend), config_(std::move(config)), parts_(std::make_unique<Parts>()) {}

AutoencoderKL::~AutoencoderKL() = default;

namespace {

MidBlock load_mid(UNetWeightReader& r, const std::string& prefix, int64_t ch, int groups,
                  bool attention) {
  MidBlock m;
  m.resnet_0 = ResnetBlock::load(r, prefix + ".resnets.0", ch, ch, 0, groups, kNormEps, 1.f);
  m.has_attention = attention;
  if (attention) {
    const std::string a = prefix + ".attentions.0";
    m.attention.norm = load_unet_norm(r, a + ".group_norm", ch);
    m.attention.q = load_unet_linear(r, a + ".to_q", ch, ch, true);
    m.attention.k = load_unet_linear(r, a + ".to_k", ch, ch, true);
    m.attention.v = load_unet_linear(r, a + ".to_v", ch, ch, true);
    m.attention.out = load_unet_linear(r, a + ".to_out.0", ch, ch, true);
  }
  m.resnet_1 = ResnetBlock::load(r, prefix + ".resnets.1", ch, ch, 0, groups, kNormEps, 1.f);
  return m;
}

// Downsample2D with padding 0 (pad right/bottom by one, 3x3 stride 2) as a 4x4 stride 2 pad 1
// conv whose first kernel row and column are zero.
UNetConv load_downsample(UNetWeightReader& r, Backend& backend, const std::string& prefix,
                         int64_t ch) {
  Tensor w3 = r.host(prefix + ".weight", Shape{ch, ch, 3, 3});
  Tensor w4 = Tensor::host(Shape{ch, ch, 4, 4}, DType::F32);  // zero-filled
  const float* src = w3.data_as<float>();
  float* dst = w4.data_as<float>();
  for (int64_t oi = 0; oi < ch * ch; ++oi)
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 3; ++x) dst[oi * 16 + (y + 1) * 4 + (x + 1)] = src[oi * 9 + y * 3 + x];
  UNetConv c;
  c.weight = backend.conv_weight(w4);
  c.bias = r.vector(prefix + ".bias", ch);
  c.params.stride = 2;
  c.params.pad = 1;
  return c;
}

// Rows [begin, end) of the conv "<prefix>" with `out` outputs (kernel k), as a conv of their own.
UNetConv load_conv_rows(UNetWeightReader& r, Backend& backend, const std::string& prefix,
                        int64_t out, int64_t in, int k, int64_t begin, int64_t end) {
  Tensor w = r.host(prefix + ".weight", Shape{out, in, k, k});
  Tensor b = r.host(prefix + ".bias", Shape{out});
  UNetConv c;
  c.weight = backend.conv_weight(w.slice0(begin, end));
  c.bias = backend.vector(b.slice0(begin, end));
  c.params.stride = 1;
  c.params.pad = (k - 1) / 2;
  return c;
}

Tensor conv(Backend& b, const Tensor& x, const UNetConv& c, Act act = Act::None,
            const Tensor* residual = nullptr) {
  return b.conv2d(x, c.weight, &c.bias, c.params, act, residual);
}

Tensor attention_forward(Backend& b, const VaeAttention& a, const Tensor& x, int groups) {
  const int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), ch = x.dim(3);
  Tensor t =
      b.group_norm(x, groups, a.norm.gamma, a.norm.beta, kNormEps).reshape(Shape{n, h * w, ch});
  Tensor o = b.attention(apply_linear(b, t, a.q), apply_linear(b, t, a.k), apply_linear(b, t, a.v),
                         /*heads=*/1);
  Tensor residual = x.reshape(Shape{n, h * w, ch});
  return apply_linear(b, o, a.out, Act::None, &residual).reshape(x.shape());
}

Tensor mid_forward(Backend& b, const MidBlock& m, Tensor x, int groups) {
  const Tensor no_temb;
  x = m.resnet_0.forward(b, x, no_temb);
  if (m.has_attention) x = attention_forward(b, m.attention, x, groups);
  return m.resnet_1.forward(b, x, no_temb);
}

}  // namespace

// ---- loading ---------------------------------------------------------------------------------

std::unique_ptr<AutoencoderKL> AutoencoderKL::load(const std::string& path, Backend& backend) {
  std::error_code ec;
  SD_CHECK(fs::exists(path, ec), "VAE model '", path, "' does not exist");
  SD_CHECK(fs::is_directory(path, ec), "VAE model '", path,
           "' is not a folder (expected a diffusers vae/ folder with config.json)");
  fs::path dir(path);
  dir = component_dir(dir, "vae");
  SD_CHECK(is_file(dir / "config.json"), "VAE folder '", path,
           "' has no config.json (nor a vae/ subfolder with one)");
  AutoencoderKLConfig config = AutoencoderKLConfig::from_json_file((dir / "config.json").string());
  VaeFileWeights weights(find_component_weights(dir, "diffusion_pytorch_model", "VAE folder"));
  return create(config, weights, backend);
}

std::unique_ptr<AutoencoderKL> AutoencoderKL::create(const AutoencoderKLConfig& config,
                                                     UNetWeightSource& weights, Backend& backend) {
  config.validate("VAE config for " + weights.describe());
  std::unique_ptr<AutoencoderKL> model(new AutoencoderKL(backend, config));
  const AutoencoderKLConfig& c = model->config_;
  Parts& p = *model->parts_;
  UNetWeightReader r(weights, backend);
  model->source_ = weights.describe();
  const int n = int(c.block_out_channels.size());
  const int g = c.norm_num_groups;
  const int64_t latent = c.latent_channels;
  const int64_t top = c.block_out_channels.back();

  // Encoder.
  p.enc_conv_in = load_unet_conv(r, "encoder.conv_in", c.block_out_channels[0], c.in_channels, 3);
  int64_t ch = c.block_out_channels[0];
  for (int i = 0; i < n; ++i) {
    const std::string prefix = "encoder.down_blocks." + std::to_string(i);
    const int64_t out = c.block_out_channels[i];
    Stage s;
    for (int j = 0; j < c.layers_per_block; ++j) {
      s.resnets.push_back(ResnetBlock::load(r, prefix + ".resnets." + std::to_string(j), ch, out, 0,
                                            g, kNormEps, 1.f));
      ch = out;
    }
    s.has_resample = i + 1 < n;
    if (s.has_resample)
      s.resample = load_downsample(r, backend, prefix + ".downsamplers.0.conv", out);
    p.down.push_back(std::move(s));
  }
  p.enc_mid = load_mid(r, "encoder.mid_block", top, g, c.mid_block_add_attention);
  p.enc_norm_out = load_unet_norm(r, "encoder.conv_norm_out", top);
  p.moments_after_conv_out = c.use_quant_conv;
  if (c.use_quant_conv) {
    p.enc_conv_out = load_unet_conv(r, "encoder.conv_out", 2 * latent, top, 3);
    p.mean_conv = load_conv_rows(r, backend, "quant_conv", 2 * latent, 2 * latent, 1, 0, latent);
    p.logvar_conv =
        load_conv_rows(r, backend, "quant_conv", 2 * latent, 2 * latent, 1, latent, 2 * latent);
  } else {
    p.mean_conv = load_conv_rows(r, backend, "encoder.conv_out", 2 * latent, top, 3, 0, latent);
    p.logvar_conv =
        load_conv_rows(r, backend, "encoder.conv_out", 2 * latent, top, 3, latent, 2 * latent);
  }

  // Decoder.
  p.has_post_quant = c.use_post_quant_conv;
  if (c.use_post_quant_conv)
    p.post_quant_conv = load_unet_conv(r, "post_quant_conv", latent, latent, 1);
  p.dec_conv_in = load_unet_conv(r, "decoder.conv_in", top, latent, 3);
  p.dec_mid = load_mid(r, "decoder.mid_block", top, g, c.mid_block_add_attention);
  ch = top;
  for (int i = 0; i < n; ++i) {
    const std::string prefix = "decoder.up_blocks." + std::to_string(i);
    const int64_t out = c.block_out_channels[n - 1 - i];
    Stage s;
    for (int j = 0; j < c.layers_per_block + 1; ++j) {
      s.resnets.push_back(ResnetBlock::load(r, prefix + ".resnets." + std::to_string(j), ch, out, 0,
                                            g, kNormEps, 1.f));
      ch = out;
    }
    s.has_resample = i + 1 < n;
    if (s.has_resample) s.resample = load_unet_conv(r, prefix + ".upsamplers.0.conv", out, out, 3);
    p.up.push_back(std::move(s));
  }
  p.dec_norm_out = load_unet_norm(r, "decoder.conv_norm_out", c.block_out_channels[0]);
  p.dec_conv_out =
      load_unet_conv(r, "decoder.conv_out", c.out_channels, c.block_out_channels[0], 3);

  weights.check_all_used();
  return model;
}

// ---- forward ---------------------------------------------------------------------------------

Tensor AutoencoderKL::encoder_features(const Tensor& image) const {
  SD_CHECK(image.rank() == 4 && image.dim(3) == config_.in_channels && image.dim(1) >= 2 &&
               image.dim(2) >= 2,
           "VAE encode: image ", image.shape().str(), " is not [N, H, W, ", config_.in_channels,
           "] with H, W >= 2");
  Backend& b = backend_;
  const Parts& p = *parts_;
  const int g = config_.norm_num_groups;
  const Tensor no_temb;
  Tensor x = conv(b, image, p.enc_conv_in);
  for (const Stage& s : p.down) {
    for (const ResnetBlock& rb : s.resnets) x = rb.forward(b, x, no_temb);
    if (s.has_resample) {
      SD_CHECK(x.dim(1) >= 2 && x.dim(2) >= 2, "VAE encode: image ", image.shape().str(),
               " is too small for ", config_.block_out_channels.size() - 1, " downsamplings");
      x = conv(b, x, s.resample);
    }
  }
  x = mid_forward(b, p.enc_mid, x, g);
  x = b.group_norm(x, g, p.enc_norm_out.gamma, p.enc_norm_out.beta, kNormEps, Act::SiLU);
  return p.moments_after_conv_out ? conv(b, x, p.enc_conv_out) : x;
}

AutoencoderKL::Moments AutoencoderKL::encode_moments(const Tensor& image) const {
  Tensor h = encoder_features(image);
  return {conv(backend_, h, parts_->mean_conv), conv(backend_, h, parts_->logvar_conv)};
}

Tensor AutoencoderKL::encode(const Tensor& image) const {
  Tensor mean = conv(backend_, encoder_features(image), parts_->mean_conv);
  const float sf = config_.scaling_factor;
  return backend_.scale(mean, sf, -config_.shift_factor * sf);
}

Tensor AutoencoderKL::encode(const Tensor& image, const Tensor& noise) const {
  Moments m = encode_moments(image);
  SD_CHECK(noise.device() == Device::CPU && noise.dtype() == DType::F32 &&
               noise.shape() == m.mean.shape(),
           "VAE encode: noise ", noise.shape().str(), " ", dtype_name(noise.dtype()),
           " must be a host f32 tensor shaped like the latents ", m.mean.shape().str());
  Tensor mean = backend_.download(m.mean);
  Tensor logvar = backend_.download(m.logvar);
  Tensor out = Tensor::host(mean.shape(), DType::F32);
  const float* pm = mean.data_as<float>();
  const float* pl = logvar.data_as<float>();
  const float* pn = noise.data_as<float>();
  float* po = out.data_as<float>();
  const float sf = config_.scaling_factor, shift = config_.shift_factor;
  for (int64_t i = 0; i < out.numel(); ++i) {
    const float stddev = std::exp(0.5f * std::clamp(pl[i], -30.f, 20.f));
    po[i] = (pm[i] + stddev * pn[i] - shift) * sf;
  }
  Tensor result = backend_.upload(out);
  backend_.synchronize();  // `out` is a local host tensor
  return result;
}

Tensor AutoencoderKL::decode(const Tensor& latents) const {
  SD_CHECK(latents.rank() == 4 && latents.dim(3) == config_.latent_channels, "VAE decode: latents ",
           latents.shape().str(), " are not [N, h, w, ", config_.latent_channels, "]");
  Backend& b = backend_;
  const Parts& p = *parts_;
  const int g = config_.norm_num_groups;
  const Tensor no_temb;
  Tensor z = b.scale(latents, 1.f / config_.scaling_factor, config_.shift_factor);
  if (p.has_post_quant) z = conv(b, z, p.post_quant_conv);
  Tensor x = conv(b, z, p.dec_conv_in);
  x = mid_forward(b, p.dec_mid, x, g);
  for (const Stage& s : p.up) {
    for (const ResnetBlock& rb : s.resnets) x = rb.forward(b, x, no_temb);
    if (s.has_resample) x = conv(b, b.upsample_nearest2x(x), s.resample);
  }
  x = b.group_norm(x, g, p.dec_norm_out.gamma, p.dec_norm_out.beta, kNormEps, Act::SiLU);
  return conv(b, x, p.dec_conv_out);
}

}  // namespace sd
