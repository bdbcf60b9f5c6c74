// Counter-based random numbers from Philox4x32-10 keyed by the seed. Element e = offset + i takes word e % 4
// of the block Philox(seed, e / 4) (uniform, dropout) or words 0 and 1 of Philox(seed, e) (normal's two
// uniforms): a pure function of (seed, e), so results are the same for every thread count and chunking, and
// a caller resumes a stream by advancing the offset.

// No FMA contraction: GCC contracts its vector loop bodies but not always their epilogues, which would make
// results depend on where a thread's chunk starts. Explicitly rounded steps give the same bits everywhere.
#pragma GCC optimize("fp-contract=off")

#include <napi.h>

#include <cmath>
#include <cstdint>

#include "binding/registry.h"
#include "common/args.h"
#include "common/kernel_args.h"
#include "cpu/threadpool.h"
#include "cpu/vec_math.h"

namespace ft {
namespace {

constexpr int64_t kGrain = 32768;

struct Philox4 {
  uint32_t x[4];
};

// Random123's Philox4x32 with 10 rounds.
FT_INLINE Philox4 Philox(uint64_t key, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
#pragma GCC unroll 10
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Calls f(i, bits) for i in [0, n) with the 32 random bits of element first + i; whole blocks use all four
// words of one Philox call.
template <typename F>
FT_INLINE void ForEachBits(uint64_t key, uint64_t first, int64_t n, F f) {
  int64_t i = 0;
  for (; i < n && ((first + i) & 3) != 0; ++i) f(i, Philox(key, (first + i) >> 2).x[(first + i) & 3]);
  for (; i + 4 <= n; i += 4) {
    const Philox4 r = Philox(key, (first + i) >> 2);
    for (int j = 0; j < 4; ++j) f(i + j, r.x[j]);
  }
  for (; i < n; ++i) f(i, Philox(key, (first + i) >> 2).x[(first + i) & 3]);
}

// 24 random bits as a float in [0, 1).
FT_INLINE float UnitFloat(uint32_t bits) { return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f); }

FT_VECTORIZE void UniformRange(uint64_t key, uint64_t first, int64_t n, float low, float span, float* out) {
  ForEachBits(key, first, n, [&](int64_t i, uint32_t bits) FT_INLINE_LAMBDA {
    out[i] = low + span * UnitFloat(bits);
  });
}

// Box-Muller on two uniforms; u1 is in (0, 1] so the log is finite.
FT_VECTORIZE void NormalRange(uint64_t key, uint64_t counter, int64_t n, float mean, float stddev, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const Philox4 r = Philox(key, counter + i);
    const float u1 = static_cast<float>((r.x[0] >> 8) + 1) * (1.0f / 16777216.0f);
    const float u2 = UnitFloat(r.x[1]);
    out[i] = mean + stddev * (std::sqrt(-2.0f * std::log(u1)) * std::cos(6.28318530717958648f * u2));
  }
}

// y = x * mask * scale like torch, so a NaN or inf in a dropped position still propagates.
FT_VECTORIZE void DropoutRange(uint64_t key, uint64_t first, int64_t n, float p, float scale, const float* x,
                               float* y, uint8_t* mask) {
  ForEachBits(key, first, n, [&](int64_t i, uint32_t bits) FT_INLINE_LAMBDA {
    const uint8_t keep = UnitFloat(bits) >= p;
    mask[i] = keep;
    y[i] = x[i] * static_cast<float>(keep) * scale;
  });
}

// A seed or counter offset: a JS number holding an integer in [0, 2^64).
uint64_t GetU64(const Napi::CallbackInfo& info, int index, const char* name) {
  const double d = GetNumber(info, index, name);
  if (!(d >= 0 && d < 18446744073709551616.0) || d != std::floor(d))
    throw Napi::RangeError::New(info.Env(), ArgName(index, name) + " must be an integer in [0, 2^64)");
  return static_cast<uint64_t>(d);
}

Napi::Value Uniform(const Napi::CallbackInfo& info) {
  int64_t n = GetCount(info, 0, "n");
  uint64_t seed = GetU64(info, 1, "seed");
  uint64_t offset = GetU64(info, 2, "offset");
  const float low = static_cast<float>(GetNumber(info, 3, "low"));
  const float high = static_cast<float>(GetNumber(info, 4, "high"));
  float* out = Elements<float>(info, GetBuffer(info, 5, "out"), GetInt(info, 6, "outOff"), n, "out");
  ParallelFor(n, kGrain, [&](int64_t begin, int64_t end) {
    UniformRange(seed, offset + begin, end - begin, low, high - low, out + begin);
  });
  return info.Env().Undefined();
}

Napi::Value Normal(const Napi::CallbackInfo& info) {
  int64_t n = GetCount(info, 0, "n");
  uint64_t seed = GetU64(info, 1, "seed");
  uint64_t offset = GetU64(info, 2, "offset");
  const float mean = static_cast<float>(GetNumber(info, 3, "mean"));
  const float stddev = static_cast<float>(GetNumber(info, 4, "std"));
  float* out = Elements<float>(info, GetBuffer(info, 5, "out"), GetInt(info, 6, "outOff"), n, "out");
  ParallelFor(n, kGrain, [&](int64_t begin, int64_t end) {
    NormalRange(seed, offset + begin, end - begin, mean, stddev, out + begin);
  });
  return info.Env().Undefined();
}

Napi::Value Dropout(const Napi::CallbackInfo& info) {
  int64_t n = GetCount(info, 0, "n");
  uint64_t seed = GetU64(info, 1, "seed");
  uint64_t offset = GetU64(info, 2, "offset");
  const double p = GetNumber(info, 3, "p");
  if (!(p >= 0 && p <= 1)) throw Napi::RangeError::New(info.Env(), ArgName(3, "p") + " must be in [0, 1]");
  const float* x = Elements<float>(info, GetBuffer(info, 4, "x"), GetInt(info, 5, "xOff"), n, "x");
  float* y = Elements<float>(info, GetBuffer(info, 6, "y"), GetInt(info, 7, "yOff"), n, "y");
  uint8_t* mask = Elements<uint8_t>(info, GetBuffer(info, 8, "mask"), 0, n, "mask");
  // p == 1 drops everything (torch returns zeros); the scale is then unused.
  const float scale = p < 1 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f;
  const float pf = static_cast<float>(p);
  ParallelFor(n, kGrain, [&](int64_t begin, int64_t end) {
    DropoutRange(seed, offset + begin, end - begin, p >= 1 ? 2.0f : pf, scale, x + begin, y + begin, mask + begin);
  });
  return info.Env().Undefined();
}

}  // namespace

void RegisterRandom(Napi::Env env, Napi::Object exports) {
  exports.Set("uniform", Napi::Function::New(env, Uniform, "uniform"));
  exports.Set("normal", Napi::Function::New(env, Normal, "normal"));
  exports.Set("dropout", Napi::Function::New(env, Dropout, "dropout"));
}

}  // namespace ft
