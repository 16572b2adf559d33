// Core: dtype conversions, the activation Arena, the ThreadPool.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "core/arena.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace sd {
namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(CoreDType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(to_bf16(1.f).bits, 0x3f80);
  EXPECT_EQ(to_bf16(1.f + 0x1p-8f).bits, 0x3f80);             // tie, even stays
  EXPECT_EQ(to_bf16(1.f + 3 * 0x1p-8f).bits, 0x3f82);         // tie, rounds to even above
  EXPECT_EQ(to_bf16(1.f + 0x1p-8f + 0x1p-20f).bits, 0x3f81);  // above the tie
  EXPECT_EQ(to_float(to_bf16(-2.5f)), -2.5f);
  EXPECT_TRUE(std::isnan(to_float(to_bf16(std::nanf("")))));
  EXPECT_EQ(to_float(to_bf16(INFINITY)), INFINITY);
  EXPECT_EQ(to_float(to_bf16(3.4e38f)), INFINITY);  // rounds past the largest bf16
}

TEST(CoreDType, F16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_float_slow(uint16_t(h));
    const bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
    if (nan) {
      EXPECT_TRUE(std::isnan(f)) << h;
      EXPECT_TRUE(std::isnan(f16_to_float_slow(float_to_f16_slow(f)))) << h;
    } else {
      EXPECT_EQ(float_to_f16_slow(f), h) << "f16 bits " << h << " -> " << f;
    }
  }
}

TEST(CoreDType, F16SubnormalsInfinitiesAndRounding) {
  EXPECT_EQ(f16_to_float_slow(0x0001), 0x1p-24f);    // smallest subnormal
  EXPECT_EQ(f16_to_float_slow(0x03ff), 0x3ffp-24f);  // largest subnormal
  EXPECT_EQ(f16_to_float_slow(0x7bff), 65504.f);
  EXPECT_EQ(f16_to_float_slow(0xfc00), -INFINITY);
  EXPECT_EQ(float_to_f16_slow(65520.f), 0x7c00);  // rounds up to inf
  EXPECT_EQ(float_to_f16_slow(65519.f), 0x7bff);
  EXPECT_EQ(float_to_f16_slow(0x1p-25f), 0x0000);  // tie between 0 and the smallest: even
  EXPECT_EQ(float_to_f16_slow(0x1.8p-25f), 0x0001);
  EXPECT_EQ(float_to_f16_slow(3 * 0x1p-25f), 0x0002);  // 1.5 ulp ties to even (2)
  EXPECT_EQ(float_to_f16_slow(1e-9f), 0x0000);
  EXPECT_EQ(float_to_f16_slow(-0.f), 0x8000);
  EXPECT_EQ(float_to_f16_slow(1.f + 0x1p-11f), 0x3c00);  // tie at 1: even
  EXPECT_EQ(bits(f16_to_float_slow(float_to_f16_slow(-1e-30f))), 0x80000000u);
}

TEST(CoreDType, ConvertBetweenAllTypes) {
  const float src[5] = {0.f, -1.5f, 3.140625f, 65504.f, -0x1p-24f};
  for (DType mid : {DType::F32, DType::F16, DType::BF16}) {
    std::vector<uint8_t> buf(5 * dtype_size(mid));
    float back[5];
    convert(src, DType::F32, buf.data(), mid, 5);
    convert(buf.data(), mid, back, DType::F32, 5);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(back[i], src[i]) << dtype_name(mid);
  }
  EXPECT_EQ(parse_dtype("bfloat16"), DType::BF16);
  EXPECT_THROW(parse_dtype("int8"), Error);
}

TEST(CoreArena, FirstFitReusesFreedSpace) {
  Arena arena(Device::CPU, [](size_t n) { return host_storage(n); });
  arena.reserve(1 << 16);
  Tensor a = arena.tensor({1000}, DType::F32);
  Tensor b = arena.tensor({10}, DType::F32);
  void* a_addr = a.data();
  EXPECT_EQ(static_cast<char*>(b.data()) - static_cast<char*>(a.data()), 4096);  // 4000 -> 4096
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u);  // host blocks are 64-byte aligned
  a = Tensor();
  Tensor c = arena.tensor({500}, DType::F32);  // fits in a's hole
  EXPECT_EQ(c.data(), a_addr);
  Tensor d = arena.tensor({400}, DType::F32);  // fits in the rest of the hole (2000 + 1600)
  EXPECT_EQ(static_cast<char*>(d.data()) - static_cast<char*>(a_addr), 2048);
  EXPECT_EQ(arena.overflow_count(), 0u);
  EXPECT_EQ(arena.live_bytes(), size_t(2048 + 1792 + 256));
}

// A fixed allocation sequence with interleaved frees; returns the addresses it got.
std::vector<void*> sequence(Arena& arena) {
  std::vector<void*> addrs;
  std::vector<Tensor> live;
  for (int i = 0; i < 20; ++i) {
    live.push_back(arena.tensor({int64_t(100 + 37 * i)}, DType::BF16));
    addrs.push_back(live.back().data());
    if (i % 3 == 2) live.erase(live.begin());
  }
  return addrs;
}

TEST(CoreArena, PlanningThenReservedPassesAreDeterministic) {
  Arena arena(Device::CPU, [](size_t n) { return host_storage(n); });
  sequence(arena);
  EXPECT_EQ(arena.overflow_count(), 20u);  // nothing reserved: every allocation overflows
  const size_t peak = arena.peak();
  EXPECT_GT(peak, 0u);
  arena.reserve(peak);
  const std::vector<void*> first = sequence(arena);
  EXPECT_EQ(arena.overflow_count(), 0u);
  EXPECT_EQ(arena.peak(), peak);
  EXPECT_EQ(sequence(arena), first);
  Tensor held = arena.tensor({4}, DType::F32);
  EXPECT_THROW(arena.reserve(2 * peak), Error);  // live allocations
}

TEST(CoreThreadPool, ParallelForVisitsEachIndexOnce) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(1000);
  pool.parallel_for(1000, [&](int64_t i) { hits[size_t(i)].fetch_add(1); });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  pool.parallel_for(0, [](int64_t) { FAIL(); });
  EXPECT_EQ(pool.submit([] { return 42; }).get(), 42);
}

TEST(CoreThreadPool, ExceptionsPropagate) {
  ThreadPool pool(2);
  std::atomic<int> done{0};
  EXPECT_THROW(pool.parallel_for(100,
                                 [&](int64_t i) {
                                   if (i == 37) fail("item ", i, " failed");
                                   done.fetch_add(1);
                                 }),
               Error);
  EXPECT_EQ(done.load(), 99);  // the other items still ran
  auto fut = pool.submit([]() -> int { throw std::runtime_error("boom"); });
  EXPECT_THROW(fut.get(), std::runtime_error);
  EXPECT_EQ(pool.submit([] { return 1; }).get(), 1);  // the pool is still usable
  EXPECT_THROW(ThreadPool(0), Error);
}

}  // namespace
}  // namespace sd
