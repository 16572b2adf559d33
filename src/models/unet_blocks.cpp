#include "models/unet_blocks.h"

#include "io/safetensors_set.h"

namespace sd {

// ---- weight reader ---------------------------------------------------------------------------

SafetensorsUNetWeights::SafetensorsUNetWeights(const std::string& path)
    : file_(SafetensorsSet::open(path)) {}

SafetensorsUNetWeights::~SafetensorsUNetWeights() = default;

std::string SafetensorsUNetWeights::describe() const {
  return file_->describe();
}

Tensor SafetensorsUNetWeights::get(const std::string& name, const Shape& expect) {
  SD_CHECK(file_->contains(name), "'", file_->path(), "': missing tensor '", name, "' ",
           expect.str(), " (does the UNet config match the weights?)");
  used_.insert(name);
  return file_->load(name, DType::F32, expect);
}

void SafetensorsUNetWeights::release_resident() {
  file_->release_resident();
}

void SafetensorsUNetWeights::check_all_used() const {
  for (const auto& e : file_->entries())
    SD_CHECK(used_.count(e.name), "'", file_->path(), "': unexpected tensor '", e.name, "' ",
             e.shape.str(), " (the UNet config does not use it; do config and weights match?)");
}

Weight UNetWeightReader::record(const std::string& name, Weight w, const Shape& torch_shape,
                                const Shape& stored_shape) {
  if (lora_ && name.ends_with(".weight"))
    lora_->add(name.substr(0, name.size() - 7), w, torch_shape, stored_shape);
  return w;
}

Weight UNetWeightReader::conv(const std::string& name, int64_t out, int64_t in, int64_t k) {
  const Shape shape{out, in, k, k};
  return record(name, backend_.conv_weight(host(name, shape)), shape, shape);
}

Weight UNetWeightReader::linear(const std::string& name, int64_t out, int64_t in) {
  const Shape shape{out, in};
  return record(name, backend_.linear_weight(host(name, shape)), shape, shape);
}

Weight UNetWeightReader::conv1x1_as_linear(const std::string& name, int64_t out, int64_t in) {
  const Shape torch_shape{out, in, 1, 1}, stored{out, in};
  return record(name, backend_.linear_weight(host(name, torch_shape).reshape(stored)), torch_shape,
                stored);
}

Weight UNetWeightReader::vector(const std::string& name, int64_t n) {
  return backend_.vector(host(name, Shape{n}));
}

UNetNorm load_unet_norm(UNetWeightReader& r, const std::string& prefix, int64_t channels) {
  return {r.vector(prefix + ".weight", channels), r.vector(prefix + ".bias", channels)};
}

UNetConv load_unet_conv(UNetWeightReader& r, const std::string& prefix, int64_t out, int64_t in,
                        int k) {
  UNetConv c;
  c.weight = r.conv(prefix + ".weight", out, in, k);
  c.bias = r.vector(prefix + ".bias", out);
  c.params.stride = 1;
  c.params.pad = (k - 1) / 2;
  return c;
}

UNetLinear load_unet_linear(UNetWeightReader& r, const std::string& prefix, int64_t out, int64_t in,
                            bool bias) {
  UNetLinear l;
  l.weight = r.linear(prefix + ".weight", out, in);
  if (bias) l.bias = r.vector(prefix + ".bias", out);
  return l;
}

Tensor apply_linear(Backend& b, const Tensor& x, const UNetLinear& l, Act act,
                    const Tensor* residual) {
  return b.linear(x, l.weight, l.bias.defined() ? &l.bias : nullptr, act, residual);
}

namespace {

Tensor apply(Backend& b, const Tensor& x, const UNetLinear& l, const Tensor* residual = nullptr) {
  return apply_linear(b, x, l, Act::None, residual);
}

}  // namespace

// ---- ResnetBlock2D ---------------------------------------------------------------------------

ResnetBlock ResnetBlock::load(UNetWeightReader& r, const std::string& prefix, int64_t in_channels,
                              int64_t out_channels, int64_t temb_channels, int groups, float eps,
                              float output_scale_factor) {
  ResnetBlock rb;
  rb.groups = groups;
  rb.eps = eps;
  rb.output_scale_factor = output_scale_factor;
  rb.norm1 = load_unet_norm(r, prefix + ".norm1", in_channels);
  rb.conv1 = load_unet_conv(r, prefix + ".conv1", out_channels, in_channels, 3);
  if (temb_channels > 0)
    rb.time_emb_proj =
        load_unet_linear(r, prefix + ".time_emb_proj", out_channels, temb_channels, true);
  rb.norm2 = load_unet_norm(r, prefix + ".norm2", out_channels);
  rb.conv2 = load_unet_conv(r, prefix + ".conv2", out_channels, out_channels, 3);
  rb.has_shortcut = in_channels != out_channels;
  if (rb.has_shortcut)
    rb.conv_shortcut = load_unet_conv(r, prefix + ".conv_shortcut", out_channels, in_channels, 1);
  return rb;
}

Tensor ResnetBlock::forward(Backend& b, const Tensor& x, const Tensor& temb_act) const {
  Tensor h = b.group_norm(x, groups, norm1.gamma, norm1.beta, eps, Act::SiLU);
  h = b.conv2d(h, conv1.weight, &conv1.bias, conv1.params);
  if (time_emb_proj.weight.defined()) {
    Tensor t = apply(b, temb_act, time_emb_proj);  // [B, C]
    h = b.binary(BinaryOp::Add, h, t.reshape(Shape{t.dim(0), 1, 1, t.dim(1)}));
  }
  h = b.group_norm(h, groups, norm2.gamma, norm2.beta, eps, Act::SiLU);
  Tensor shortcut =
      has_shortcut ? b.conv2d(x, conv_shortcut.weight, &conv_shortcut.bias, conv_shortcut.params)
                   : x;
  h = b.conv2d(h, conv2.weight, &conv2.bias, conv2.params, Act::None, &shortcut);
  if (output_scale_factor != 1.f) h = b.scale(h, 1.f / output_scale_factor);
  return h;
}

// ---- Transformer2DModel ----------------------------------------------------------------------

Transformer2D Transformer2D::load(UNetWeightReader& r, const std::string& prefix, int64_t channels,
                                  int heads, int num_layers, int64_t cross_dim, int groups,
                                  bool linear_projection, bool only_cross, int* next_kv_index) {
  Transformer2D t;
  t.groups = groups;
  const int64_t inner = int64_t(heads) * (channels / heads);
  t.norm = load_unet_norm(r, prefix + ".norm", channels);
  auto projection = [&](const std::string& name, int64_t out, int64_t in) {
    UNetLinear l;
    l.weight = linear_projection ? r.linear(name + ".weight", out, in)
                                 : r.conv1x1_as_linear(name + ".weight", out, in);
    l.bias = r.vector(name + ".bias", out);
    return l;
  };
  t.proj_in = projection(prefix + ".proj_in", inner, channels);
  for (int i = 0; i < num_layers; ++i) {
    const std::string p = prefix + ".transformer_blocks." + std::to_string(i);
    TransformerLayer l;
    l.heads = heads;
    if (only_cross) l.kv1_index = (*next_kv_index)++;
    l.kv_index = (*next_kv_index)++;
    const int64_t kv1_in = only_cross ? cross_dim : inner;
    l.norm1 = load_unet_norm(r, p + ".norm1", inner);
    l.q1 = load_unet_linear(r, p + ".attn1.to_q", inner, inner, false);
    l.k1 = load_unet_linear(r, p + ".attn1.to_k", inner, kv1_in, false);
    l.v1 = load_unet_linear(r, p + ".attn1.to_v", inner, kv1_in, false);
    l.out1 = load_unet_linear(r, p + ".attn1.to_out.0", inner, inner, true);
    l.norm2 = load_unet_norm(r, p + ".norm2", inner);
    l.q2 = load_unet_linear(r, p + ".attn2.to_q", inner, inner, false);
    l.k2 = load_unet_linear(r, p + ".attn2.to_k", inner, cross_dim, false);
    l.v2 = load_unet_linear(r, p + ".attn2.to_v", inner, cross_dim, false);
    l.out2 = load_unet_linear(r, p + ".attn2.to_out.0", inner, inner, true);
    l.norm3 = load_unet_norm(r, p + ".norm3", inner);
    l.ff1 = load_unet_linear(r, p + ".ff.net.0.proj", 8 * inner, inner, true);
    l.ff2 = load_unet_linear(r, p + ".ff.net.2", inner, 4 * inner, true);
    t.layers.push_back(std::move(l));
  }
  t.proj_out = projection(prefix + ".proj_out", channels, inner);
  return t;
}

Tensor Transformer2D::forward(Backend& b, const Tensor& x, CrossAttentionContext& ctx) const {
  const int64_t batch = x.dim(0), height = x.dim(1), width = x.dim(2), channels = x.dim(3);
  constexpr float kGroupNormEps = 1e-6f;  // Transformer2DModel's GroupNorm
  constexpr float kLayerNormEps = 1e-5f;  // BasicTransformerBlock's norm_eps default
  Tensor h = b.group_norm(x, groups, norm.gamma, norm.beta, kGroupNormEps);
  h = apply(b, h.reshape(Shape{batch, height * width, channels}), proj_in);
  for (const TransformerLayer& l : layers) {
    Tensor n = b.layer_norm(h, l.norm1.gamma, l.norm1.beta, kLayerNormEps);
    Tensor a;
    if (l.kv1_index >= 0) {
      auto [k1, v1] = ctx.kv(b, l.kv1_index, l.k1, l.v1);
      a = b.attention(apply(b, n, l.q1), k1, v1, l.heads);
    } else {
      a = b.attention(apply(b, n, l.q1), apply(b, n, l.k1), apply(b, n, l.v1), l.heads);
    }
    h = apply(b, a, l.out1, &h);

    n = b.layer_norm(h, l.norm2.gamma, l.norm2.beta, kLayerNormEps);
    auto [k, v] = ctx.kv(b, l.kv_index, l.k2, l.v2);
    a = b.attention(apply(b, n, l.q2), k, v, l.heads);
    h = apply(b, a, l.out2, &h);

    n = b.layer_norm(h, l.norm3.gamma, l.norm3.beta, kLayerNormEps);
    h = apply(b, b.geglu(apply(b, n, l.ff1)), l.ff2, &h);
  }
  Tensor residual = x.reshape(Shape{batch, height * width, channels});
  return apply(b, h, proj_out, &residual).reshape(x.shape());
}

}  // namespace sd
