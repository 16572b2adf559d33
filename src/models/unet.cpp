#include "models/unet.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include "io/model_files.h"
#include "models/unet_blocks.h"

namespace sd {

namespace fs = std::filesystem;

// ---- parameters ------------------------------------------------------------------------------

namespace {

struct DownBlock {
  std::vector<ResnetBlock> resnets;
  std::vector<Transformer2D> attentions;  // empty for DownBlock2D
  bool has_downsample = false;
  UNetConv downsample;  // 3x3, stride 2, pad 1
};

struct UpBlock {
  std::vector<ResnetBlock> resnets;
  std::vector<Transformer2D> attentions;  // empty for UpBlock2D
  bool has_upsample = false;
  UNetConv upsample;  // 3x3 after nearest 2x
};

}  // namespace

struct UNet::Blocks {
  UNetConv conv_in;
  UNetLinear time_linear_1, time_linear_2;
  std::vector<DownBlock> down;
  bool has_mid = false;
  ResnetBlock mid_resnet_0, mid_resnet_1;
  Transformer2D mid_attention;
  std::vector<UpBlock> up;
  UNetNorm norm_out;
  UNetConv conv_out;
  int transformer_layers = 0;
  std::vector<std::pair<const UNetLinear*, const UNetLinear*>> kv_projections;  // by K/V entry
};

UNet::UNet(Backend& backend, UNetConfig config)
    : backend_(backend), config_(std::move(config)), blocks_(std::make_unique<Blocks>()) {}

UNet::~UNet() = default;

int UNet::num_transformer_layers() const {
  return blocks_->transformer_layers;
}

int UNet::num_kv_entries() const {
  return int(blocks_->kv_projections.size());
}

std::unique_ptr<UNet> UNet::load(const std::string& path, Backend& backend) {
  std::error_code ec;
  SD_CHECK(fs::exists(path, ec), "UNet model '", path, "' does not exist");
  SD_CHECK(fs::is_directory(path, ec), "UNet model '", path,
           "' is not a folder (expected a diffusers unet/ folder with config.json)");
  fs::path dir(path);
  dir = component_dir(dir, "unet");
  SD_CHECK(is_file(dir / "config.json"), "UNet folder '", path,
           "' has no config.json (nor a unet/ subfolder with one)");

  UNetConfig config = UNetConfig::from_json_file((dir / "config.json").string());
  auto weights = std::make_shared<SafetensorsUNetWeights>(
      find_component_weights(dir, "diffusion_pytorch_model", "UNet folder"));
  return create(config, weights, backend);
}

std::unique_ptr<UNet> UNet::create(const UNetConfig& config,
                                   std::shared_ptr<UNetWeightSource> weights, Backend& backend) {
  SD_CHECK(weights, "UNet::create: no weight source");
  std::unique_ptr<UNet> model = create(config, *weights, backend);
  const std::string describe = weights->describe();
  weights->release_resident();
  model->lora_.set_base(
      [weights](const std::string& name, const Shape& shape) { return weights->get(name, shape); },
      describe);
  return model;
}

std::unique_ptr<UNet> UNet::create(const UNetConfig& config, UNetWeightSource& weights,
                                   Backend& backend) {
  config.validate("UNet config for " + weights.describe());
  std::unique_ptr<UNet> model(new UNet(backend, config));
  const UNetConfig& c = model->config_;
  Blocks& m = *model->blocks_;
  UNetWeightReader r(weights, backend, &model->lora_);
  model->source_ = weights.describe();

  const int n = int(c.block_out_channels.size());
  const int64_t c0 = c.block_out_channels[0];
  const int64_t temb = c.temb_dim();
  const int groups = c.norm_num_groups;
  const float eps = c.norm_eps;
  int kv = 0;

  m.conv_in = load_unet_conv(r, "conv_in", c0, c.in_channels, c.conv_in_kernel);
  m.time_linear_1 = load_unet_linear(r, "time_embedding.linear_1", temb, c0, true);
  m.time_linear_2 = load_unet_linear(r, "time_embedding.linear_2", temb, temb, true);

  int64_t out_ch = c0;
  for (int i = 0; i < n; ++i) {
    const std::string p = "down_blocks." + std::to_string(i);
    const int64_t in_ch = out_ch;
    out_ch = c.block_out_channels[i];
    const bool cross = c.down_block_types[i] == "CrossAttnDownBlock2D";
    DownBlock blk;
    for (int j = 0; j < c.layers_per_block[i]; ++j) {
      const std::string s = std::to_string(j);
      blk.resnets.push_back(ResnetBlock::load(r, p + ".resnets." + s, j == 0 ? in_ch : out_ch,
                                              out_ch, temb, groups, eps, 1.f));
      if (cross)
        blk.attentions.push_back(Transformer2D::load(
            r, p + ".attentions." + s, out_ch, c.num_heads[i], c.transformer_layers_per_block[i],
            c.cross_attention_dim, groups, c.use_linear_projection, c.only_cross(i), &kv));
    }
    blk.has_downsample = i + 1 < n;
    if (blk.has_downsample) {
      blk.downsample = load_unet_conv(r, p + ".downsamplers.0.conv", out_ch, out_ch, 3);
      blk.downsample.params.stride = 2;
    }
    m.down.push_back(std::move(blk));
  }

  m.has_mid = c.has_mid_block;
  if (m.has_mid) {
    const int64_t ch = c.block_out_channels[n - 1];
    const float osf = c.mid_block_scale_factor;
    m.mid_resnet_0 = ResnetBlock::load(r, "mid_block.resnets.0", ch, ch, temb, groups, eps, osf);
    m.mid_attention = Transformer2D::load(
        r, "mid_block.attentions.0", ch, c.num_heads[n - 1], c.transformer_layers_per_block[n - 1],
        c.cross_attention_dim, groups, c.use_linear_projection, false, &kv);
    m.mid_resnet_1 = ResnetBlock::load(r, "mid_block.resnets.1", ch, ch, temb, groups, eps, osf);
  }

  out_ch = c.block_out_channels[n - 1];
  for (int i = 0; i < n; ++i) {
    const int rev = n - 1 - i;  // the down block this up block mirrors
    const std::string p = "up_blocks." + std::to_string(i);
    const int64_t prev_ch = out_ch;
    out_ch = c.block_out_channels[rev];
    const int64_t in_ch = c.block_out_channels[std::max(rev - 1, 0)];
    const bool cross = c.up_block_types[i] == "CrossAttnUpBlock2D";
    const int layers = c.layers_per_block[rev] + 1;
    UpBlock blk;
    for (int j = 0; j < layers; ++j) {
      const std::string s = std::to_string(j);
      const int64_t skip_ch = j == layers - 1 ? in_ch : out_ch;
      const int64_t res_in = j == 0 ? prev_ch : out_ch;
      blk.resnets.push_back(ResnetBlock::load(r, p + ".resnets." + s, res_in + skip_ch, out_ch,
                                              temb, groups, eps, 1.f));
      if (cross)
        blk.attentions.push_back(
            Transformer2D::load(r, p + ".attentions." + s, out_ch, c.num_heads[rev],
                                c.transformer_layers_per_block[rev], c.cross_attention_dim, groups,
                                c.use_linear_projection, c.only_cross(rev), &kv));
    }
    blk.has_upsample = i + 1 < n;
    if (blk.has_upsample)
      blk.upsample = load_unet_conv(r, p + ".upsamplers.0.conv", out_ch, out_ch, 3);
    m.up.push_back(std::move(blk));
  }

  m.norm_out = load_unet_norm(r, "conv_norm_out", c0);
  m.conv_out = load_unet_conv(r, "conv_out", c.out_channels, c0, c.conv_out_kernel);
  weights.check_all_used();

  // Index the K/V projections in execution order for the K/V cache.
  m.kv_projections.resize(kv);
  auto index = [&](const Transformer2D& t) {
    for (const TransformerLayer& l : t.layers) {
      ++m.transformer_layers;
      if (l.kv1_index >= 0) m.kv_projections[l.kv1_index] = {&l.k1, &l.v1};
      m.kv_projections[l.kv_index] = {&l.k2, &l.v2};
    }
  };
  for (const DownBlock& b : m.down)
    for (const Transformer2D& t : b.attentions) index(t);
  if (m.has_mid) index(m.mid_attention);
  for (const UpBlock& b : m.up)
    for (const Transformer2D& t : b.attentions) index(t);
  return model;
}

// ---- time embedding --------------------------------------------------------------------------

Tensor sinusoidal_timestep_embedding(const std::vector<float>& timesteps, int dim,
                                     bool flip_sin_to_cos, float freq_shift) {
  const int half = dim / 2;
  // In float32 as torch evaluates diffusers' get_timestep_embedding:
  //   freq_i = exp(-ln(10000) * i / (half - freq_shift)),  arg = t * freq_i,
  //   emb = [sin(arg), cos(arg)] (or [cos, sin] when flipped), plus a zero column when dim is odd.
  std::vector<float> freq(half);
  const float neg_log_period = float(-std::log(10000.0));
  const float denom = float(half) - freq_shift;
  for (int i = 0; i < half; ++i) freq[i] = std::exp(neg_log_period * float(i) / denom);
  const int64_t rows = int64_t(timesteps.size());
  Tensor out = Tensor::host(Shape{rows, dim}, DType::F32);
  float* p = out.data_as<float>();
  for (int64_t r = 0; r < rows; ++r) {
    float* row = p + r * dim;
    for (int i = 0; i < half; ++i) {
      const double arg = double(timesteps[r] * freq[i]);
      const float s = float(std::sin(arg)), c = float(std::cos(arg));
      row[i] = flip_sin_to_cos ? c : s;
      row[half + i] = flip_sin_to_cos ? s : c;
    }
  }
  return out;
}

Tensor UNet::time_embedding_arena(const std::vector<float>& timesteps, int64_t batch) const {
  SD_CHECK(timesteps.size() == 1 || (batch > 0 && int64_t(timesteps.size()) == batch),
           "UNet: ", timesteps.size(), " timesteps for a batch of ", batch,
           " rows (give one per row, or one for all)");
  std::vector<float> t(size_t(batch), timesteps[0]);
  if (timesteps.size() > 1) t = timesteps;
  const Tensor host = sinusoidal_timestep_embedding(t, config_.block_out_channels[0],
                                                    config_.flip_sin_to_cos, config_.freq_shift);
  Tensor emb = backend_.upload(host);
  backend_.synchronize();  // `host` may go now
  emb = apply_linear(backend_, emb, blocks_->time_linear_1, Act::SiLU);
  return apply_linear(backend_, emb, blocks_->time_linear_2);
}

Tensor UNet::time_embedding(const std::vector<float>& timesteps, int64_t batch) const {
  Tensor host = backend_.download(time_embedding_arena(timesteps, batch), backend_.compute_dtype());
  Tensor emb = backend_.empty(host.shape(), host.dtype());
  backend_.copy_from_host(host, emb);
  backend_.synchronize();
  return emb;
}

// ---- cross-attention sources -----------------------------------------------------------------

namespace {

// K/V projected from the encoder hidden states at every layer.
class EncoderStatesContext : public CrossAttentionContext {
 public:
  explicit EncoderStatesContext(const Tensor& states) : states_(states) {}
  std::pair<Tensor, Tensor> kv(Backend& b, int, const UNetLinear& k, const UNetLinear& v) override {
    return {apply_linear(b, states_, k), apply_linear(b, states_, v)};
  }

 private:
  Tensor states_;
};

class CachedContext : public CrossAttentionContext {
 public:
  explicit CachedContext(const UNetKVCache& cache) : cache_(cache) {}
  std::pair<Tensor, Tensor> kv(Backend&, int index, const UNetLinear&, const UNetLinear&) override {
    return {cache_.k[size_t(index)], cache_.v[size_t(index)]};
  }

 private:
  const UNetKVCache& cache_;
};

}  // namespace

// ---- forward ---------------------------------------------------------------------------------

Tensor UNet::forward(const Tensor& sample, const std::vector<float>& timesteps,
                     const Tensor& encoder_hidden_states) const {
  const Tensor& e = encoder_hidden_states;
  SD_CHECK(e.rank() == 3 && e.dim(2) == config_.cross_attention_dim && sample.rank() >= 1 &&
               e.dim(0) == sample.dim(0),
           "UNet: encoder_hidden_states ", e.shape().str(), " are not [", sample.dim(0),
           ", tokens, ", config_.cross_attention_dim, "] for sample ", sample.shape().str());
  EncoderStatesContext ctx(e);
  return run(sample, time_embedding_arena(timesteps, sample.dim(0)), ctx);
}

Tensor UNet::forward(const Tensor& sample, const std::vector<float>& timesteps,
                     const UNetKVCache& kv) const {
  SD_CHECK(sample.rank() >= 1, "UNet: sample ", sample.shape().str(), " is not [B, h, w, C]");
  return forward(sample, time_embedding_arena(timesteps, sample.dim(0)), kv);
}

Tensor UNet::forward(const Tensor& sample, const Tensor& time_embedding,
                     const UNetKVCache& kv) const {
  SD_CHECK(int(kv.k.size()) == num_kv_entries() && kv.v.size() == kv.k.size(),
           "UNet: the K/V cache holds ", kv.k.size(), " entries; this UNet has ", num_kv_entries(),
           " (was it made by another model?)");
  SD_CHECK(sample.rank() >= 1 && kv.batch == sample.dim(0), "UNet: the K/V cache is for ", kv.batch,
           " batch rows, sample ", sample.shape().str(), " has ",
           sample.rank() ? sample.dim(0) : 0);
  CachedContext ctx(kv);
  return run(sample, time_embedding, ctx);
}

Tensor UNet::run(const Tensor& sample, const Tensor& temb, CrossAttentionContext& ctx) const {
  const UNetConfig& c = config_;
  const Blocks& m = *blocks_;
  Backend& b = backend_;
  const int mult = c.size_multiple();
  SD_CHECK(sample.rank() == 4 && sample.dim(3) == c.in_channels && sample.dim(1) % mult == 0 &&
               sample.dim(2) % mult == 0 && sample.dim(1) > 0 && sample.dim(2) > 0,
           "UNet: sample ", sample.shape().str(), " is not [B, h, w, ", c.in_channels,
           "] with h and w multiples of ", mult);

  SD_CHECK(temb.rank() == 2 && temb.dim(0) == sample.dim(0) && temb.dim(1) == c.temb_dim(),
           "UNet: time embedding ", temb.shape().str(), " is not [", sample.dim(0), ", ",
           c.temb_dim(), "] for sample ", sample.shape().str());
  const Tensor temb_act = b.activate(temb, Act::SiLU);
  Tensor x = b.conv2d(sample, m.conv_in.weight, &m.conv_in.bias, m.conv_in.params);
  std::vector<Tensor> skips{x};
  for (const DownBlock& blk : m.down) {
    for (size_t j = 0; j < blk.resnets.size(); ++j) {
      x = blk.resnets[j].forward(b, x, temb_act);
      if (!blk.attentions.empty()) x = blk.attentions[j].forward(b, x, ctx);
      skips.push_back(x);
    }
    if (blk.has_downsample) {
      x = b.conv2d(x, blk.downsample.weight, &blk.downsample.bias, blk.downsample.params);
      skips.push_back(x);
    }
  }
  if (m.has_mid) {
    x = m.mid_resnet_0.forward(b, x, temb_act);
    x = m.mid_attention.forward(b, x, ctx);
    x = m.mid_resnet_1.forward(b, x, temb_act);
  }
  for (const UpBlock& blk : m.up) {
    for (size_t j = 0; j < blk.resnets.size(); ++j) {
      SD_CHECK(!skips.empty(),
               "UNet: the up blocks take more skip connections than the down "
               "blocks make (layers_per_block)");
      x = b.concat_channels(x, skips.back());
      skips.pop_back();
      x = blk.resnets[j].forward(b, x, temb_act);
      if (!blk.attentions.empty()) x = blk.attentions[j].forward(b, x, ctx);
    }
    if (blk.has_upsample) {
      x = b.upsample_nearest2x(x);
      x = b.conv2d(x, blk.upsample.weight, &blk.upsample.bias, blk.upsample.params);
    }
  }
  x = b.group_norm(x, c.norm_num_groups, m.norm_out.gamma, m.norm_out.beta, c.norm_eps, Act::SiLU);
  return b.conv2d(x, m.conv_out.weight, &m.conv_out.bias, m.conv_out.params);
}

// ---- K/V precompute --------------------------------------------------------------------------

UNetKVCache UNet::precompute_kv(const Tensor& prompts, const std::vector<int>& row_prompt) const {
  Backend& b = backend_;
  SD_CHECK(
      prompts.rank() == 3 && prompts.dim(2) == config_.cross_attention_dim && prompts.dim(0) > 0,
      "UNet::precompute_kv: prompts ", prompts.shape().str(), " are not [P, tokens, ",
      config_.cross_attention_dim, "]");
  SD_CHECK(!row_prompt.empty(), "UNet::precompute_kv: no batch rows");
  for (int p : row_prompt)
    SD_CHECK(p >= 0 && p < prompts.dim(0), "UNet::precompute_kv: row_prompt entry ", p,
             " is outside the ", prompts.dim(0), " prompts");
  UNetKVCache cache;
  cache.batch = int64_t(row_prompt.size());
  cache.tokens = prompts.dim(1);
  cache.distinct_prompts = prompts.dim(0);
  std::vector<Tensor> staging;  // host copies that must live until synchronize()
  // Projects the P prompts, then lays the rows out per batch row in persistent memory.
  auto project = [&](const UNetLinear& l) {
    Tensor per_prompt = b.download(apply_linear(b, prompts, l), b.compute_dtype());
    const int64_t row_elems = per_prompt.numel() / per_prompt.dim(0);
    const size_t row_bytes = size_t(row_elems) * dtype_size(per_prompt.dtype());
    Tensor rows =
        Tensor::host(Shape{cache.batch, cache.tokens, per_prompt.dim(2)}, per_prompt.dtype());
    for (int64_t r = 0; r < cache.batch; ++r)
      std::memcpy(static_cast<char*>(rows.data()) + size_t(r) * row_bytes,
                  static_cast<const char*>(per_prompt.data()) + size_t(row_prompt[r]) * row_bytes,
                  row_bytes);
    Tensor dev = b.empty(rows.shape(), rows.dtype());
    b.copy_from_host(rows, dev);
    staging.push_back(rows);
    return dev;
  };
  for (const auto& [k, v] : blocks_->kv_projections) {
    cache.k.push_back(project(*k));
    cache.v.push_back(project(*v));
  }
  b.synchronize();
  return cache;
}

UNetKVCache UNet::precompute_kv(const Tensor& encoder_hidden_states) const {
  Backend& b = backend_;
  const Tensor& e = encoder_hidden_states;
  SD_CHECK(e.rank() == 3 && e.dim(0) > 0, "UNet::precompute_kv: encoder_hidden_states ",
           e.shape().str(), " are not [B, tokens, ", config_.cross_attention_dim, "]");
  Tensor host = b.download(e, e.dtype());
  const size_t row_bytes = host.nbytes() / size_t(host.dim(0));
  const char* data = static_cast<const char*>(host.data());
  std::vector<int64_t> distinct;  // batch row of each distinct prompt
  std::vector<int> row_prompt;
  for (int64_t r = 0; r < host.dim(0); ++r) {
    int found = -1;
    for (size_t p = 0; p < distinct.size() && found < 0; ++p)
      if (std::memcmp(data + size_t(distinct[p]) * row_bytes, data + size_t(r) * row_bytes,
                      row_bytes) == 0)
        found = int(p);
    if (found < 0) {
      found = int(distinct.size());
      distinct.push_back(r);
    }
    row_prompt.push_back(found);
  }
  Tensor prompts = Tensor::host(Shape{int64_t(distinct.size()), e.dim(1), e.dim(2)}, e.dtype());
  for (size_t p = 0; p < distinct.size(); ++p)
    std::memcpy(static_cast<char*>(prompts.data()) + p * row_bytes,
                data + size_t(distinct[p]) * row_bytes, row_bytes);
  return precompute_kv(b.upload(prompts), row_prompt);
}

}  // namespace sd
