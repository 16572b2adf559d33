// hash_uniform: the C++ side must reproduce tools/hash_random.py bit for bit (the values below
// are printed by `tools/.venv/bin/python tools/hash_random.py`).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/hash_random.h"

namespace sd {
namespace {

TEST(HashRandom, KnownHashValues) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("text_model.encoder.layers.0.mlp.fc1.weight"), 0xd736fee8089cd361ull);
  EXPECT_EQ(splitmix64(0), 0xe220a8397b1dcdafull);
}

TEST(HashRandom, MatchesPythonTwin) {
  struct Case {
    std::string name;
    float scale, offset;
    std::vector<float> want;
  };
  const Case cases[] = {
      {"", 1.f, 0.f, {0x1.0e05fp-1f, 0x1.e74dbp-1f, -0x1.f7e8ap-3f, -0x1.0aff14p-1f}},
      {"a", 0.5f, 1.f, {0x1.be5384p-1f, 0x1.40fc98p+0f, 0x1.a2b1dep-1f, 0x1.16c0cep-1f}},
      {"text_model.encoder.layers.0.mlp.fc1.weight",
       0.036084f,
       0.f,
       {0x1.bc5f78p-6f, -0x1.a9b24cp-9f, -0x1.7d4f6ap-7f, -0x1.e8e3c8p-6f}},
  };
  for (const Case& c : cases) {
    std::vector<float> got(c.want.size());
    hash_uniform(c.name, c.scale, c.offset, got.data(), got.size());
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(got[i], c.want[i]) << "'" << c.name << "' element " << i;
  }
}

TEST(HashRandom, RangeAndNameDependence) {
  std::vector<float> all(10000), tail(100);
  hash_uniform("w", 2.f, 3.f, all.data(), all.size());
  double mean = 0;
  for (float x : all) {
    EXPECT_GE(x, 1.f);
    EXPECT_LT(x, 5.f);
    mean += x;
  }
  EXPECT_NEAR(mean / all.size(), 3.0, 0.05);
  // Element i depends only on (name, i): a different name gives different numbers.
  hash_uniform("w2", 2.f, 3.f, tail.data(), tail.size());
  int same = 0;
  for (size_t i = 0; i < tail.size(); ++i) same += tail[i] == all[i];
  EXPECT_LT(same, 3);
}

}  // namespace
}  // namespace sd
