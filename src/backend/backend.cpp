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
