// Tensor: a typed, shaped view of memory on one device.
//
// Layout: tensors are row-major (the last dimension is contiguous). Image-like activations are
// NHWC ([batch, height, width, channels]) everywhere in the engine: oneDNN's fastest
// convolutions and cuDNN's tensor-core kernels want channels-last, and attention reads the same
// bytes as [batch, tokens, channels] with no transpose (see docs/architecture.md for the
// measurement). Weights are stored as the backend prepares them (see backend.h).
//
// Memory is reference counted through Storage (intrusive, no per-tensor heap allocation when the
// storage comes from an Arena). A Tensor is cheap to copy; copies share memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "core/dtype.h"
#include "core/error.h"

namespace sd {

enum class Device : uint8_t { CPU, CUDA };
const char* device_name(Device d);

struct Shape {
  static constexpr int kMaxRank = 6;
  int rank = 0;
  int64_t dims[kMaxRank] = {};

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  int64_t operator[](int i) const { return dims[i < 0 ? i + rank : i]; }
  int64_t& operator[](int i) { return dims[i < 0 ? i + rank : i]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;  // "[1, 64, 64, 4]"
};

// A block of memory. Subclasses say how it is given back (heap free, arena release, cudaFree).
class Storage {
 public:
  Storage(void* ptr, size_t bytes, Device device) : ptr_(ptr), bytes_(bytes), device_(device) {}
  virtual ~Storage() = default;
  void* ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  void retain() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) on_last_release();
  }

 protected:
  virtual void on_last_release() { delete this; }
  void* ptr_;
  size_t bytes_;
  Device device_;

 private:
  std::atomic<int> refs_{0};
};

// Intrusive owning pointer to a Storage.
class StorageRef {
 public:
  StorageRef() = default;
  explicit StorageRef(Storage* s) : s_(s) {
    if (s_) s_->retain();
  }
  StorageRef(const StorageRef& o) : StorageRef(o.s_) {}
  StorageRef(StorageRef&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  StorageRef& operator=(StorageRef o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~StorageRef() {
    if (s_) s_->release();
  }
  Storage* get() const { return s_; }
  explicit operator bool() const { return s_ != nullptr; }

 private:
  Storage* s_ = nullptr;
};

// 64-byte aligned host memory.
StorageRef host_storage(size_t bytes);
// How many host_storage blocks were allocated so far in this process (for tests that check a
// frame allocates no tensor memory).
int64_t host_storage_allocations();

class Tensor {
 public:
  Tensor() = default;
  // A contiguous tensor over `data`, kept alive by `storage` (may be empty for borrowed memory).
  Tensor(const Shape& shape, DType dtype, Device device, void* data, StorageRef storage = {});

  static Tensor host(const Shape& shape, DType dtype);  // new zero-filled host tensor
  // Borrowed view of host memory the caller keeps alive.
  static Tensor wrap(const Shape& shape, DType dtype, void* data) {
    return Tensor(shape, dtype, Device::CPU, data);
  }

  bool defined() const { return data_ != nullptr || shape_.numel() == 0; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank; }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t stride(int i) const { return strides_[i < 0 ? i + shape_.rank : i]; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;

  void* data() const { return data_; }
  template <typename T>
  T* data_as() const {
    SD_CHECK(dtype_of<T>() == dtype_, "tensor ", shape_.str(), " is ", dtype_name(dtype_),
             ", accessed as ", dtype_name(dtype_of<T>()));
    return static_cast<T*>(data_);
  }

  // Same memory, new shape (same element count; tensor must be contiguous).
  Tensor reshape(const Shape& shape) const;
  // Rows [begin, end) of dimension 0, sharing memory.
  Tensor slice0(int64_t begin, int64_t end) const;
  // Host copy converted to `dtype` (CPU tensors only; device tensors go through the backend).
  Tensor to_host_dtype(DType dtype) const;

  const StorageRef& storage() const { return storage_; }

 private:
  void set_contiguous_strides();
  Shape shape_;
  int64_t strides_[Shape::kMaxRank] = {};
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  void* data_ = nullptr;
  StorageRef storage_;
};

}  // namespace sd
