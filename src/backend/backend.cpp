#include "backend/backend.h"

namespace sd {

const char* act_name(Act a) {
  switch (a) {
    case Act::None:
      return "none";
    case Act::ReLU:
      return "relu";
    case Act::SiLU:
      return "silu";
    case Act::GELU:
      return "gelu";
    case Act::GELUTanh:
      return "gelu_tanh";
    case Act::Tanh:
      return "tanh";
  }
  return "?";
}

Tensor Backend::empty(const Shape& shape, DType dtype) {
  StorageRef s = allocate(size_t(shape.numel()) * dtype_size(dtype));
  void* p = s.get()->ptr();
  return Tensor(shape, dtype, device(), p, std::move(s));
}

void check_conv_chain(const std::vector<ChainStep>& steps, std::vector<int>& last_use) {
  last_use.assign(steps.size() + 1, 0);
  for (size_t i = 0; i < steps.size(); ++i) {
    const int r = steps[i].residual;
    SD_CHECK(r >= -1 && r <= int(i), "conv_chain: step ", i, " adds output ", r,
             ", which is not an earlier one (-1 or 0..", i, ")");
    SD_CHECK(steps[i].w || (r == -1 && !steps[i].bias && steps[i].act == Act::None),
             "conv_chain: step ", i, " is an upsample with a bias, residual or activation");
    last_use[i] = int(i);  // the next step reads it
    if (r >= 0) last_use[size_t(r)] = int(i);
  }
}

Tensor Backend::conv_chain(const Tensor& x, const std::vector<ChainStep>& steps) {
  std::vector<int> last_use;
  check_conv_chain(steps, last_use);
  std::vector<Tensor> out(steps.size() + 1);
  out[0] = x;
  for (size_t i = 0; i < steps.size(); ++i) {
    const ChainStep& s = steps[i];
    const Tensor* res = s.residual >= 0 ? &out[size_t(s.residual)] : nullptr;
    out[i + 1] = s.w ? conv2d(out[i], *s.w, s.bias, s.p, s.act, res) : upsample_nearest2x(out[i]);
    for (size_t k = 0; k <= i; ++k)
      if (last_use[k] <= int(i)) out[k] = Tensor{};  // back to the arena once no step needs it
  }
  return out.back();
}

Tensor Backend::upload(const Tensor& host) {
  Tensor t = alloc(host.shape(), compute_);
  copy_from_host(host, t);
  return t;
}

Tensor Backend::download(const Tensor& src, DType dtype) {
  Tensor h = Tensor::host(src.shape(), dtype);
  copy_to_host(src, h);
  synchronize();
  return h;
}

}  // namespace sd
