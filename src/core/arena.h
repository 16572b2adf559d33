// Arena: the activation allocator. Once a stream's shapes are fixed, every forward pass makes the
// same sequence of allocations and releases; the arena answers them from one reserved block with
// a deterministic first-fit placement, so a pass allocates no memory from the system and the
// same pass always gets the same addresses (which is what CUDA graph replay needs).
//
// Planning: run the pass once on an arena with too little (or no) reserved memory. Allocations
// that do not fit are served by the backend's raw allocator ("overflow") while the arena keeps
// placing them in its virtual address space; afterwards peak() is the block size the pass needs.
// reserve(peak()) then makes every later pass overflow-free. overflow_count() lets tests assert it.
#pragma once

#include <cstddef>
#include <functional>
#include <mutex>
#include <vector>

#include "core/tensor.h"

namespace sd {

class Arena {
 public:
  // raw(bytes) allocates device memory for the reserved block and for overflow allocations.
  using RawAlloc = std::function<StorageRef(size_t bytes)>;
  Arena(Device device, RawAlloc raw);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // A tensor whose memory comes from the arena; returned to it when the last reference goes.
  Tensor tensor(const Shape& shape, DType dtype);

  // Makes the reserved block at least `bytes` large. Requires no live allocations.
  void reserve(size_t bytes);
  size_t capacity() const { return capacity_; }
  size_t peak() const { return peak_; }                // highest virtual end offset seen
  size_t overflow_count() const { return overflow_; }  // allocations served outside the block
  size_t live_bytes() const;
  void reset_stats();  // peak := live end, overflow := 0

  static constexpr size_t kAlign = 256;

 private:
  class Block;
  struct Hole {
    size_t offset, size;
  };
  size_t place(size_t size);  // virtual offset for a new allocation
  void unplace(size_t offset, size_t size);
  void give_back(Block* b);

  Device device_;
  RawAlloc raw_;
  StorageRef block_;
  size_t capacity_ = 0;
  size_t top_ = 0;  // end of the highest live allocation region
  size_t peak_ = 0;
  size_t overflow_ = 0;
  size_t live_ = 0;
  std::vector<Hole> holes_;          // free ranges below top_, sorted by offset
  std::vector<Block*> free_blocks_;  // recycled Block records (no heap use per allocation)
  std::vector<Block*> all_blocks_;
  mutable std::mutex mu_;
};

}  // namespace sd
