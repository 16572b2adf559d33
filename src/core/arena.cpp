#include "core/arena.h"

#include <algorithm>

namespace sd {

class Arena::Block final : public Storage {
 public:
  explicit Block(Arena* a) : Storage(nullptr, 0, a->device_), arena_(a) {}
  void set(void* p, size_t bytes, size_t offset, StorageRef overflow) {
    ptr_ = p;
    bytes_ = bytes;
    offset_ = offset;
    overflow_ = std::move(overflow);
  }
  size_t offset() const { return offset_; }
  void drop_overflow() { overflow_ = StorageRef(); }

 protected:
  void on_last_release() override { arena_->give_back(this); }

 private:
  Arena* arena_;
  size_t offset_ = 0;
  StorageRef overflow_;
};

Arena::Arena(Device device, RawAlloc raw) : device_(device), raw_(std::move(raw)) {
  holes_.reserve(1024);
}

Arena::~Arena() {
  for (Block* b : all_blocks_) delete b;
}

size_t Arena::live_bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  return live_;
}

void Arena::reset_stats() {
  std::lock_guard<std::mutex> lk(mu_);
  peak_ = top_;
  overflow_ = 0;
}

void Arena::reserve(size_t bytes) {
  std::lock_guard<std::mutex> lk(mu_);
  SD_CHECK(live_ == 0, "Arena::reserve with ", live_, " bytes still in use");
  if (bytes > capacity_) {
    block_ = StorageRef();
    bytes = (bytes + kAlign - 1) / kAlign * kAlign;
    block_ = raw_(bytes);
    capacity_ = bytes;
  }
  holes_.clear();
  top_ = 0;
  peak_ = 0;
  overflow_ = 0;
}

size_t Arena::place(size_t size) {
  for (size_t i = 0; i < holes_.size(); ++i) {
    Hole& h = holes_[i];
    if (h.size >= size) {
      size_t off = h.offset;
      h.offset += size;
      h.size -= size;
      if (h.size == 0) holes_.erase(holes_.begin() + long(i));
      return off;
    }
  }
  // Extend the top; a last hole that touches the top is absorbed first.
  if (!holes_.empty() && holes_.back().offset + holes_.back().size == top_) {
    top_ = holes_.back().offset;
    holes_.pop_back();
  }
  size_t off = top_;
  top_ += size;
  peak_ = std::max(peak_, top_);
  return off;
}

void Arena::unplace(size_t offset, size_t size) {
  auto it = std::lower_bound(holes_.begin(), holes_.end(), offset,
                             [](const Hole& h, size_t o) { return h.offset < o; });
  it = holes_.insert(it, Hole{offset, size});
  // Merge with the next and previous holes.
  if (it + 1 != holes_.end() && it->offset + it->size == (it + 1)->offset) {
    it->size += (it + 1)->size;
    holes_.erase(it + 1);
  }
  if (it != holes_.begin() && (it - 1)->offset + (it - 1)->size == it->offset) {
    (it - 1)->size += it->size;
    it = holes_.erase(it) - 1;
  }
  if (it->offset + it->size == top_) {
    top_ = it->offset;
    holes_.erase(it);
  }
}

Tensor Arena::tensor(const Shape& shape, DType dtype) {
  size_t bytes = size_t(shape.numel()) * dtype_size(dtype);
  size_t size = std::max<size_t>(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
  Block* b;
  {
    std::lock_guard<std::mutex> lk(mu_);
    size_t off = place(size);
    if (free_blocks_.empty()) {
      b = new Block(this);
      all_blocks_.push_back(b);
    } else {
      b = free_blocks_.back();
      free_blocks_.pop_back();
    }
    live_ += size;
    if (off + size <= capacity_) {
      b->set(static_cast<char*>(block_.get()->ptr()) + off, size, off, StorageRef());
    } else {
      ++overflow_;
      StorageRef o = raw_(size);
      void* p = o.get()->ptr();  // before the move: argument evaluation order is unspecified
      b->set(p, size, off, std::move(o));
    }
  }
  StorageRef ref(b);
  void* p = b->ptr();
  return Tensor(shape, dtype, device_, p, std::move(ref));
}

void Arena::give_back(Block* b) {
  std::lock_guard<std::mutex> lk(mu_);
  unplace(b->offset(), b->bytes());
  live_ -= b->bytes();
  b->drop_overflow();
  free_blocks_.push_back(b);
}

}  // namespace sd
