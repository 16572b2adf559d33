#include "core/tensor.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "core/machine.h"

namespace sd {

const char* device_name(Device d) {
  return d == Device::CPU ? "cpu" : "cuda";
}

Shape::Shape(std::initializer_list<int64_t> d) {
  SD_CHECK(d.size() <= size_t(kMaxRank), "shape rank ", d.size(), " exceeds ", kMaxRank);
  for (int64_t v : d) dims[rank++] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= dims[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (rank != o.rank) return false;
  for (int i = 0; i < rank; ++i)
    if (dims[i] != o.dims[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < rank; ++i) os << (i ? ", " : "") << dims[i];
  os << ']';
  return os.str();
}

namespace {
// Large host allocations are checked against the memory the machine has left: Linux grants
// nearly any request and the OOM killer ends the process when the pages are touched, so a
// stream too large for the machine (an impossible resolution) would die instead of failing.
void* host_alloc(size_t bytes) {
  constexpr size_t kChecked = size_t(256) << 20;
  const auto gib = [](double b) {
    char s[32];
    std::snprintf(s, sizeof s, "%.1f GiB", b / double(1 << 30));
    return std::string(s);
  };
  if (bytes >= kChecked) {
    const int64_t available = available_memory();
    if (available >= 0 && double(bytes) > double(available))
      throw OutOfMemory(detail::concat(
          "out of memory: cannot allocate ", gib(double(bytes)), " of host memory, ",
          gib(double(available)),
          " available (MemAvailable + SwapFree); a smaller size or batch needs less"));
  }
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  if (!p)
    throw OutOfMemory(
        detail::concat("out of memory: cannot allocate ", gib(double(bytes)), " of host memory"));
  return p;
}

class HostStorage final : public Storage {
 public:
  explicit HostStorage(size_t bytes) : Storage(host_alloc(bytes), bytes, Device::CPU) {}
  ~HostStorage() override { std::free(ptr_); }
};
}  // namespace

namespace {
std::atomic<int64_t> g_host_storage_allocations{0};
}  // namespace

StorageRef host_storage(size_t bytes) {
  g_host_storage_allocations.fetch_add(1, std::memory_order_relaxed);
  return StorageRef(new HostStorage(bytes));
}

int64_t host_storage_allocations() {
  return g_host_storage_allocations.load(std::memory_order_relaxed);
}

Tensor::Tensor(const Shape& shape, DType dtype, Device device, void* data, StorageRef storage)
    : shape_(shape), dtype_(dtype), device_(device), data_(data), storage_(std::move(storage)) {
  for (int i = 0; i < shape.rank; ++i)
    SD_CHECK(shape.dims[i] >= 0, "negative dimension in shape ", shape.str());
  set_contiguous_strides();
}

Tensor Tensor::host(const Shape& shape, DType dtype) {
  size_t bytes = size_t(shape.numel()) * dtype_size(dtype);
  StorageRef s = host_storage(bytes);
  std::memset(s.get()->ptr(), 0, bytes);
  void* p = s.get()->ptr();
  return Tensor(shape, dtype, Device::CPU, p, std::move(s));
}

void Tensor::set_contiguous_strides() {
  int64_t s = 1;
  for (int i = shape_.rank - 1; i >= 0; --i) {
    strides_[i] = s;
    s *= shape_.dims[i];
  }
}

bool Tensor::is_contiguous() const {
  int64_t s = 1;
  for (int i = shape_.rank - 1; i >= 0; --i) {
    if (shape_.dims[i] != 1 && strides_[i] != s) return false;
    s *= shape_.dims[i];
  }
  return true;
}

Tensor Tensor::reshape(const Shape& shape) const {
  SD_CHECK(shape.numel() == numel(), "cannot reshape ", shape_.str(), " to ", shape.str());
  SD_CHECK(is_contiguous(), "reshape of a non-contiguous tensor ", shape_.str());
  return Tensor(shape, dtype_, device_, data_, storage_);
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
  SD_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= dim(0), "slice [", begin, ", ", end,
           ") out of range for ", shape_.str());
  Shape s = shape_;
  s.dims[0] = end - begin;
  char* p = static_cast<char*>(data_) + size_t(begin) * size_t(strides_[0]) * dtype_size(dtype_);
  return Tensor(s, dtype_, device_, p, storage_);
}

Tensor Tensor::to_host_dtype(DType dtype) const {
  SD_CHECK(device_ == Device::CPU, "to_host_dtype on a ", device_name(device_), " tensor");
  SD_CHECK(is_contiguous(), "to_host_dtype of a non-contiguous tensor");
  Tensor out = Tensor::host(shape_, dtype);
  convert(data_, dtype_, out.data(), dtype, size_t(numel()));
  return out;
}

}  // namespace sd
