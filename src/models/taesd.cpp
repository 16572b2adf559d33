#include "models/taesd.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "io/json_config.h"
#include "io/model_files.h"
#include "io/safetensors_set.h"

namespace sd {

namespace fs = std::filesystem;

// ---- config ----------------------------------------------------------------------------------

TaesdConfig TaesdConfig::from_json_file(const std::string& path) {
  JsonConfig j = JsonConfig::load(path, "TAESD config");
  j.expect_class("AutoencoderTiny");
  TaesdConfig c;
  j.read("in_channels", &c.in_channels);
  j.read("out_channels", &c.out_channels);
  j.read("latent_channels", &c.latent_channels);
  j.read("encoder_block_out_channels", &c.encoder_block_out_channels);
  j.read("decoder_block_out_channels", &c.decoder_block_out_channels);
  j.read("num_encoder_blocks", &c.num_encoder_blocks);
  j.read("num_decoder_blocks", &c.num_decoder_blocks);
  j.read("upsampling_scaling_factor", &c.upsampling_scaling_factor);
  j.read("latent_magnitude", &c.latent_magnitude);
  j.read("latent_shift", &c.latent_shift);
  j.read("scaling_factor", &c.scaling_factor);
  j.expect_one_of("act_fn", {"relu"});
  j.expect_one_of("upsample_fn", {"nearest"});
  if (j.has("shift_factor")) {
    float shift = 0.f;
    j.read("shift_factor", &shift);
    SD_CHECK(shift == 0.f, path, ": shift_factor ", shift, " is not supported (TAESD uses 0)");
  }
  c.validate(path);
  return c;
}

void TaesdConfig::validate(const std::string& where) const {
  SD_CHECK(in_channels > 0 && out_channels > 0 && latent_channels > 0, where,
           ": channel counts must be positive (in ", in_channels, ", out ", out_channels,
           ", latent ", latent_channels, ")");
  SD_CHECK(encoder_block_out_channels.size() == num_encoder_blocks.size(), where,
           ": encoder_block_out_channels ", join_ints(encoder_block_out_channels),
           " and num_encoder_blocks ", join_ints(num_encoder_blocks), " differ in length");
  SD_CHECK(decoder_block_out_channels.size() == num_decoder_blocks.size(), where,
           ": decoder_block_out_channels ", join_ints(decoder_block_out_channels),
           " and num_decoder_blocks ", join_ints(num_decoder_blocks), " differ in length");
  SD_CHECK(!num_encoder_blocks.empty() && num_encoder_blocks.size() <= 8 &&
               !num_decoder_blocks.empty() && num_decoder_blocks.size() <= 8,
           where, ": 1 to 8 encoder and decoder stages are supported");
  // diffusers builds every stage's convs as C -> C with C = that stage's channels, so a model
  // it can run has the same channel count in all stages.
  for (int c : encoder_block_out_channels)
    SD_CHECK(c > 0 && c == encoder_block_out_channels[0], where, ": encoder_block_out_channels ",
             join_ints(encoder_block_out_channels),
             " must be equal and positive (as diffusers' EncoderTiny requires)");
  for (int c : decoder_block_out_channels)
    SD_CHECK(c > 0 && c == decoder_block_out_channels[0], where, ": decoder_block_out_channels ",
             join_ints(decoder_block_out_channels),
             " must be equal and positive (as diffusers' DecoderTiny requires)");
  for (int n : num_encoder_blocks)
    SD_CHECK(n >= 0, where, ": num_encoder_blocks ", join_ints(num_encoder_blocks),
             " has a negative");
  for (int n : num_decoder_blocks)
    SD_CHECK(n >= 0, where, ": num_decoder_blocks ", join_ints(num_decoder_blocks),
             " has a negative");
  SD_CHECK(upsampling_scaling_factor == 2, where, ": upsampling_scaling_factor ",
           upsampling_scaling_factor, " is not supported (only 2)");
  SD_CHECK(scaling_factor == 1.f, where, ": scaling_factor ", scaling_factor,
           " is not supported (TAESD latents are unscaled: 1.0)");
}

// ---- loading ---------------------------------------------------------------------------------

namespace {

// Loads tensors from one file and remembers which, so that tensors the config does not account
// for (a config with fewer blocks than the weights, a bias where TAESD has none) are an error
// rather than silently ignored.
class TrackedFile {
 public:
  explicit TrackedFile(const std::string& path) : file_(SafetensorsSet::open(path)) {}
  const SafetensorsSet& file() const { return *file_; }
  Tensor load(const std::string& name, const Shape& expect) {
    used_.insert(name);
    return file_->load(name, DType::F32, expect);
  }
  void check_all_used() const {
    for (const auto& e : file_->entries())
      SD_CHECK(used_.count(e.name), "'", file_->path(), "': unexpected tensor '", e.name, "' ",
               e.shape.str(), " (the TAESD config does not use it; do config and weights match?)");
  }

 private:
  std::unique_ptr<SafetensorsSet> file_;
  std::set<std::string> used_;
};

// Where the parameters of one half (encoder or decoder) come from: diffusers names
// "<prefix>layers.<i>.<rest>" or the original nn.Sequential names "<i + offset>.<rest>" (the
// original decoder starts with a parameterless Clamp module, hence offset 1 for it).
struct ParamSource {
  TrackedFile* file = nullptr;
  std::string prefix;  // "encoder.layers." / "decoder.layers." or "" for original files
  int index_offset = 0;

  std::string name(int layer, const std::string& rest) const {
    return prefix + std::to_string(layer + index_offset) + "." + rest;
  }
};

// Constants folded into a conv at load: it sees its input multiplied by in_gain (weights
// scaled) and its output becomes out_gain * y + out_offset (weights and bias).
struct Fold {
  float in_gain = 1.f, out_gain = 1.f, out_offset = 0.f;
};

class HalfBuilder {
 public:
  HalfBuilder(Backend& backend, ParamSource src) : backend_(backend), src_(std::move(src)) {}

  // Loads conv `layer` (rest = "" for a bare nn.Conv2d, "conv.0." inside a block) with weight
  // [out, in, 3, 3] and the given folded constants.
  Taesd::Conv conv(int layer, const std::string& rest, int out, int in, bool bias, int stride,
                   Fold fold = {}) {
    Taesd::Conv c;
    c.params.stride = stride;
    c.params.pad = 1;
    Tensor w = src_.file->load(src_.name(layer, rest + "weight"), Shape{out, in, 3, 3});
    scale_host(w, fold.in_gain * fold.out_gain, 0.f);
    c.weight = backend_.conv_weight(w);
    if (bias) {
      Tensor b = src_.file->load(src_.name(layer, rest + "bias"), Shape{out});
      scale_host(b, fold.out_gain, fold.out_offset);
      c.bias = backend_.vector(b);
    }
    return c;
  }

  Taesd::Block block(int layer, int channels) {
    Taesd::Block b;
    b.c1 = conv(layer, "conv.0.", channels, channels, true, 1);
    b.c2 = conv(layer, "conv.2.", channels, channels, true, 1);
    b.c3 = conv(layer, "conv.4.", channels, channels, true, 1);
    return b;
  }

 private:
  static void scale_host(Tensor& t, float alpha, float beta) {
    if (alpha == 1.f && beta == 0.f) return;
    float* p = t.data_as<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = alpha * p[i] + beta;
  }
  Backend& backend_;
  ParamSource src_;
};

std::vector<Taesd::Layer> build_encoder(Backend& backend, const TaesdConfig& c,
                                        const ParamSource& src) {
  HalfBuilder hb(backend, src);
  std::vector<Taesd::Layer> layers;
  int index = 0;
  int channels = c.in_channels;
  for (size_t stage = 0; stage < c.num_encoder_blocks.size(); ++stage) {
    int ch = c.encoder_block_out_channels[stage];
    Taesd::Layer down{Taesd::Layer::kConv, {}, {}};
    down.conv = stage == 0 ? hb.conv(index, "", ch, channels, true, 1)
                           : hb.conv(index, "", ch, ch, false, 2);
    layers.push_back(std::move(down));
    ++index;
    channels = ch;
    for (int i = 0; i < c.num_encoder_blocks[stage]; ++i) {
      Taesd::Layer blk{Taesd::Layer::kBlock, {}, {}};
      blk.block = hb.block(index++, ch);
      layers.push_back(std::move(blk));
    }
  }
  Taesd::Layer out{Taesd::Layer::kConv, {}, {}};
  out.conv = hb.conv(index, "", c.latent_channels, channels, true, 1);
  layers.push_back(std::move(out));
  return layers;
}

std::vector<Taesd::Layer> build_decoder(Backend& backend, const TaesdConfig& c,
                                        const ParamSource& src) {
  HalfBuilder hb(backend, src);
  std::vector<Taesd::Layer> layers;
  int ch = c.decoder_block_out_channels[0];
  // layers.0: conv latent -> C; the clamp's factor 3 (tanh(z / 3) * 3) is folded into it.
  // layers.1: ReLU, fused into the conv.
  Taesd::Layer in{Taesd::Layer::kConvRelu, {}, {}};
  in.conv = hb.conv(0, "", ch, c.latent_channels, true, 1, {.in_gain = 3.f});
  layers.push_back(std::move(in));
  int index = 2;
  const size_t stages = c.num_decoder_blocks.size();
  for (size_t stage = 0; stage < stages; ++stage) {
    ch = c.decoder_block_out_channels[stage];
    for (int i = 0; i < c.num_decoder_blocks[stage]; ++i) {
      Taesd::Layer blk{Taesd::Layer::kBlock, {}, {}};
      blk.block = hb.block(index++, ch);
      layers.push_back(std::move(blk));
    }
    Taesd::Layer conv{Taesd::Layer::kConv, {}, {}};
    if (stage + 1 < stages) {
      layers.push_back(Taesd::Layer{Taesd::Layer::kUpsample, {}, {}});
      ++index;
      conv.conv = hb.conv(index++, "", ch, ch, false, 1);
    } else {
      // Final conv C -> out; the output mapping [0, 1] -> [-1, 1] (2y - 1) is folded into it.
      conv.conv =
          hb.conv(index++, "", c.out_channels, ch, true, 1, {.out_gain = 2.f, .out_offset = -1.f});
    }
    layers.push_back(std::move(conv));
  }
  return layers;
}

}  // namespace

std::unique_ptr<Taesd> Taesd::load(const std::string& path, Backend& backend) {
  std::unique_ptr<Taesd> model = load_layers(path, backend);
  model->encoder_steps_ = chain_of(model->encoder_);
  model->decoder_steps_ = chain_of(model->decoder_);
  return model;
}

std::unique_ptr<Taesd> Taesd::load_layers(const std::string& path, Backend& backend) {
  std::error_code ec;
  SD_CHECK(fs::exists(path, ec), "TAESD model '", path, "' does not exist");
  std::unique_ptr<Taesd> model;

  if (fs::is_directory(path, ec)) {
    fs::path dir(path);
    fs::path config = dir / "config.json";
    if (is_file(config)) {  // diffusers folder
      fs::path weights = find_component_weights(dir, "diffusion_pytorch_model", "TAESD folder");
      model.reset(new Taesd(backend, TaesdConfig::from_json_file(config.string())));
      TrackedFile file(weights.string());
      model->encoder_ = build_encoder(backend, model->config_, {&file, "encoder.layers.", 0});
      model->decoder_ = build_decoder(backend, model->config_, {&file, "decoder.layers.", 0});
      file.check_all_used();
      model->source_ = weights.string();
      return model;
    }
    fs::path enc = dir / "taesd_encoder.safetensors", dec = dir / "taesd_decoder.safetensors";
    SD_CHECK(is_file(enc) || is_file(dec), "TAESD folder '", path,
             "' has no config.json (diffusers layout) and no taesd_encoder.safetensors / "
             "taesd_decoder.safetensors (original layout)");
    model.reset(new Taesd(backend, TaesdConfig{}));
    if (is_file(enc)) {
      TrackedFile file(enc.string());
      model->encoder_ = build_encoder(backend, model->config_, {&file, "", 0});
      file.check_all_used();
      model->source_ = enc.string();
    }
    if (is_file(dec)) {
      TrackedFile file(dec.string());
      model->decoder_ = build_decoder(backend, model->config_, {&file, "", 1});
      file.check_all_used();
      model->source_ += (model->source_.empty() ? "" : " + ") + dec.string();
    }
    return model;
  }

  // A single file: diffusers layout or one original half, told apart by its keys.
  TrackedFile file(path);
  const SafetensorsSet& f = file.file();
  model.reset(new Taesd(backend, TaesdConfig{}));
  const TaesdConfig& c = model->config_;
  if (f.contains("encoder.layers.0.weight") || f.contains("decoder.layers.0.weight")) {
    model->encoder_ = build_encoder(backend, c, {&file, "encoder.layers.", 0});
    model->decoder_ = build_decoder(backend, c, {&file, "decoder.layers.", 0});
  } else if (f.contains("0.weight")) {
    model->encoder_ = build_encoder(backend, c, {&file, "", 0});
  } else if (f.contains("1.weight")) {
    model->decoder_ = build_decoder(backend, c, {&file, "", 1});
  } else {
    fail("'", path, "' is not a TAESD checkpoint: it has neither 'encoder.layers.0.weight' / ",
         "'decoder.layers.0.weight' (diffusers layout) nor '0.weight' (original encoder) / ",
         "'1.weight' (original decoder)");
  }
  file.check_all_used();
  model->source_ = path;
  return model;
}

// ---- forward -----------------------------------------------------------------------------------

std::vector<ChainStep> Taesd::chain_of(const std::vector<Layer>& layers) {
  std::vector<ChainStep> steps;
  auto conv = [&](const Conv& c, Act act, int residual = -1) {
    steps.push_back({&c.weight, c.bias.defined() ? &c.bias : nullptr, c.params, act, residual});
  };
  for (const Layer& layer : layers) {
    switch (layer.kind) {
      case Layer::kConv:
        conv(layer.conv, Act::None);
        break;
      case Layer::kConvRelu:
        conv(layer.conv, Act::ReLU);
        break;
      case Layer::kUpsample:
        steps.push_back(ChainStep{});
        break;
      case Layer::kBlock: {  // relu(c3(relu(c2(relu(c1(x))))) + x); x is output number size()
        const int x = int(steps.size());
        conv(layer.block.c1, Act::ReLU);
        conv(layer.block.c2, Act::ReLU);
        conv(layer.block.c3, Act::ReLU, x);
        break;
      }
    }
  }
  return steps;
}

Tensor Taesd::encode(const Tensor& image) const {
  SD_CHECK(has_encoder(), "TAESD '", source_, "' has no encoder (only a decoder was loaded)");
  SD_CHECK(image.rank() == 4 && image.dim(3) == config_.in_channels, "TAESD encode: image ",
           image.shape().str(), " is not [N, H, W, ", config_.in_channels, "]");
  // diffusers' EncoderTiny works on [0, 1] images: (x + 1) / 2. Not foldable into the first
  // conv: its zero padding would then mean -1 instead of 0.
  return backend_.conv_chain(backend_.scale(image, 0.5f, 0.5f), encoder_steps_);
}

Tensor Taesd::decode(const Tensor& latents) const {
  SD_CHECK(has_decoder(), "TAESD '", source_, "' has no decoder (only an encoder was loaded)");
  SD_CHECK(latents.rank() == 4 && latents.dim(3) == config_.latent_channels,
           "TAESD decode: latents ", latents.shape().str(), " are not [N, h, w, ",
           config_.latent_channels, "]");
  // Clamp tanh(z / 3) * 3; the factor 3 lives in the first conv's weights.
  Tensor z = backend_.activate(backend_.scale(latents, 1.f / 3.f), Act::Tanh);
  return backend_.conv_chain(z, decoder_steps_);
}

}  // namespace sd
