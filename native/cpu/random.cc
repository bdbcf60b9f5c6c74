// Counter-based random numbers from Philox4x32-10 keyed by the seed. Element e = offset + i takes word e % 4
// of the block Philox(seed, e / 4) (uniform, dropout) or words 0 and 1 of Philox(seed, e) (normal's two
// uniforms): a pure function of (seed, e), so results are the same for every thread count and chunking, and
// a caller resumes a stream by advancing the offset.

// GCC 12 warns that its own AVX-512 intrinsic headers read an uninitialised __Y (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// No FMA contraction: GCC contracts its vector loop bodies but not always their epilogues, which would make
// results depend on where a thread's chunk starts. Explicitly rounded steps give the same bits everywhere.
#pragma GCC optimize("fp-contract=off")

#include <immintrin.h>
#include <napi.h>

#include <cmath>
#include <cstdint>

#include "binding/registry.h"
#include "common/args.h"
#include "common/kernel_args.h"
#include "cpu/cpu_features.h"
#include "cpu/threadpool.h"
#include "cpu/vec_math.h"

namespace ft {
namespace {

constexpr int64_t kGrain = 32768;

#define FT_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
#define FT_AVX2 __attribute__((target("avx2")))

constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u, kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;

struct Philox4 {
  uint32_t x[4];
};

// Random123's Philox4x32 with 10 rounds.
FT_INLINE Philox4 Philox(uint64_t key, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
#pragma GCC unroll 10
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Vector Philox: many blocks at once, each 64-bit lane holding one block's word pair, a = (c0, c1) and
// b = (c2, c3) with the even word in the low half. _mm*_mul_epu32 multiplies the low halves into the full
// 64-bit product, and one round is then
//   a' = (hi(p1) ^ c1 ^ k0, lo(p1)) = rotate(p1, 32) ^ (a >> 32) ^ k0
//   b' = (hi(p0) ^ c3 ^ k1, lo(p0)) = rotate(p0, 32) ^ (b >> 32) ^ k1
// The initial a is the 64-bit counter itself (c0 = low half, c1 = high half), b is zero.

// P groups of 8 blocks; a[p], b[p] hold their counters on entry and (c0, c1), (c2, c3) on return.
template <int P>
FT_AVX512 FT_INLINE void PhiloxRounds512(uint64_t key, __m512i* a, __m512i* b) {
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  const __m512i m0 = _mm512_set1_epi64(kMul0), m1 = _mm512_set1_epi64(kMul1);
#pragma GCC unroll 10
  for (int round = 0; round < 10; ++round) {
    const __m512i vk0 = _mm512_set1_epi64(k0), vk1 = _mm512_set1_epi64(k1);
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const __m512i p0 = _mm512_mul_epu32(a[p], m0), p1 = _mm512_mul_epu32(b[p], m1);
      a[p] = _mm512_ternarylogic_epi64(_mm512_ror_epi64(p1, 32), _mm512_srli_epi64(a[p], 32), vk0, 0x96);
      b[p] = _mm512_ternarylogic_epi64(_mm512_ror_epi64(p0, 32), _mm512_srli_epi64(b[p], 32), vk1, 0x96);
    }
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
}

// The 32 random bits of the 128 elements from block `block` on (elements 4 * block ...): bits[r] holds
// elements 16r .. 16r + 15. Lane i of a group holds block 8p + {0,4,1,5,2,6,3,7}[i], so the in-lane unpacks
// of a and b give whole blocks in order.
FT_AVX512 FT_INLINE void PhiloxBits512(uint64_t key, uint64_t block, __m512i bits[8]) {
  constexpr int P = 4;
  const __m512i lanes = _mm512_setr_epi64(0, 4, 1, 5, 2, 6, 3, 7);
  __m512i a[P], b[P];
  for (int p = 0; p < P; ++p) {
    a[p] = _mm512_add_epi64(_mm512_set1_epi64(static_cast<int64_t>(block + 8 * p)), lanes);
    b[p] = _mm512_setzero_si512();
  }
  PhiloxRounds512<P>(key, a, b);
  for (int p = 0; p < P; ++p) {
    bits[2 * p] = _mm512_unpacklo_epi64(a[p], b[p]);
    bits[2 * p + 1] = _mm512_unpackhi_epi64(a[p], b[p]);
  }
}

template <int P>
FT_AVX2 FT_INLINE void PhiloxRounds256(uint64_t key, __m256i* a, __m256i* b) {
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  const __m256i m0 = _mm256_set1_epi64x(kMul0), m1 = _mm256_set1_epi64x(kMul1);
#pragma GCC unroll 10
  for (int round = 0; round < 10; ++round) {
    const __m256i vk0 = _mm256_set1_epi64x(k0), vk1 = _mm256_set1_epi64x(k1);
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const __m256i p0 = _mm256_mul_epu32(a[p], m0), p1 = _mm256_mul_epu32(b[p], m1);
      a[p] = _mm256_xor_si256(_mm256_xor_si256(_mm256_shuffle_epi32(p1, 0xB1), _mm256_srli_epi64(a[p], 32)), vk0);
      b[p] = _mm256_xor_si256(_mm256_xor_si256(_mm256_shuffle_epi32(p0, 0xB1), _mm256_srli_epi64(b[p], 32)), vk1);
    }
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
}

// As PhiloxBits512 for 64 elements: bits[r] holds elements 8r .. 8r + 7; lane i of group p holds block
// 4p + {0,2,1,3}[i].
FT_AVX2 FT_INLINE void PhiloxBits256(uint64_t key, uint64_t block, __m256i bits[8]) {
  constexpr int P = 4;
  const __m256i lanes = _mm256_setr_epi64x(0, 2, 1, 3);
  __m256i a[P], b[P];
  for (int p = 0; p < P; ++p) {
    a[p] = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<int64_t>(block + 4 * p)), lanes);
    b[p] = _mm256_setzero_si256();
  }
  PhiloxRounds256<P>(key, a, b);
  for (int p = 0; p < P; ++p) {
    bits[2 * p] = _mm256_unpacklo_epi64(a[p], b[p]);
    bits[2 * p + 1] = _mm256_unpackhi_epi64(a[p], b[p]);
  }
}

// Calls f(i, bits) for i in [0, n) with the 32 random bits of element first + i; whole blocks use all four
// words of one Philox call. From the first whole block on, bulk(e, i, m) may handle elements [i, i + m)
// (e = first + i, a multiple of 4) with vector code and returns how many it did, a multiple of 4. It is not
// offered a range whose element numbers wrap past 2^64, where e / 4 + j would differ from (e + 4j) / 4.
template <typename F, typename B>
FT_INLINE void ForEachBits(uint64_t key, uint64_t first, int64_t n, F f, B bulk) {
  int64_t i = 0;
  for (; i < n && ((first + i) & 3) != 0; ++i) f(i, Philox(key, (first + i) >> 2).x[(first + i) & 3]);
  if (n - i >= 4 && first + i <= ~uint64_t{0} - static_cast<uint64_t>(n - i - 1)) i += bulk(first + i, i, n - i);
  for (; i + 4 <= n; i += 4) {
    const Philox4 r = Philox(key, (first + i) >> 2);
    for (int j = 0; j < 4; ++j) f(i + j, r.x[j]);
  }
  for (; i < n; ++i) f(i, Philox(key, (first + i) >> 2).x[(first + i) & 3]);
}

// 24 random bits as a float in [0, 1).
FT_INLINE float UnitFloat(uint32_t bits) { return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f); }

FT_AVX512 FT_INLINE __m512 UnitFloat512(__m512i bits) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(bits, 8)), _mm512_set1_ps(1.0f / 16777216.0f));
}

FT_AVX2 FT_INLINE __m256 UnitFloat256(__m256i bits) {
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(bits, 8)), _mm256_set1_ps(1.0f / 16777216.0f));
}

// ---- vector bodies: e is a multiple of 4; each returns how many of the n elements it did

FT_AVX512 int64_t UniformBulk512(uint64_t key, uint64_t e, int64_t n, float low, float span, float* out) {
  const __m512 vlow = _mm512_set1_ps(low), vspan = _mm512_set1_ps(span);
  int64_t i = 0;
  for (; i + 128 <= n; i += 128) {
    __m512i bits[8];
    PhiloxBits512(key, (e + i) >> 2, bits);
    for (int r = 0; r < 8; ++r)
      _mm512_storeu_ps(out + i + 16 * r, _mm512_add_ps(vlow, _mm512_mul_ps(vspan, UnitFloat512(bits[r]))));
  }
  return i;
}

FT_AVX2 int64_t UniformBulk256(uint64_t key, uint64_t e, int64_t n, float low, float span, float* out) {
  const __m256 vlow = _mm256_set1_ps(low), vspan = _mm256_set1_ps(span);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m256i bits[8];
    PhiloxBits256(key, (e + i) >> 2, bits);
    for (int r = 0; r < 8; ++r)
      _mm256_storeu_ps(out + i + 8 * r, _mm256_add_ps(vlow, _mm256_mul_ps(vspan, UnitFloat256(bits[r]))));
  }
  return i;
}

// With kResidual, y = x * mask * scale + r (dropout_add): the sum rounded after the product, as
// add(dropout(x), r) rounds it.
template <bool kResidual>
FT_AVX512 int64_t DropoutBulk512(uint64_t key, uint64_t e, int64_t n, float p, float scale, const float* x,
                                 const float* r, float* y, uint8_t* mask) {
  const __m512 vp = _mm512_set1_ps(p), vscale = _mm512_set1_ps(scale), one = _mm512_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 128 <= n; i += 128) {
    __m512i bits[8];
    PhiloxBits512(key, (e + i) >> 2, bits);
    for (int q = 0; q < 8; ++q) {
      const int64_t j = i + 16 * q;
      const __mmask16 keep = _mm512_cmp_ps_mask(UnitFloat512(bits[q]), vp, _CMP_GE_OQ);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(mask + j), _mm_maskz_set1_epi8(keep, 1));
      const __m512 kept = _mm512_mul_ps(_mm512_loadu_ps(x + j), _mm512_maskz_mov_ps(keep, one));
      __m512 out = _mm512_mul_ps(kept, vscale);
      if constexpr (kResidual) out = _mm512_add_ps(out, _mm512_loadu_ps(r + j));
      _mm512_storeu_ps(y + j, out);
    }
  }
  return i;
}

template <bool kResidual>
FT_AVX2 int64_t DropoutBulk256(uint64_t key, uint64_t e, int64_t n, float p, float scale, const float* x,
                               const float* r, float* y, uint8_t* mask) {
  const __m256 vp = _mm256_set1_ps(p), vscale = _mm256_set1_ps(scale), one = _mm256_set1_ps(1.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7), ones = _mm256_set1_epi8(1);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m256i bits[8];
    PhiloxBits256(key, (e + i) >> 2, bits);
    __m256i keep[8];
    for (int q = 0; q < 8; ++q) {
      const int64_t j = i + 8 * q;
      const __m256 k = _mm256_cmp_ps(UnitFloat256(bits[q]), vp, _CMP_GE_OQ);
      keep[q] = _mm256_castps_si256(k);
      const __m256 kept = _mm256_mul_ps(_mm256_loadu_ps(x + j), _mm256_and_ps(k, one));
      __m256 out = _mm256_mul_ps(kept, vscale);
      if constexpr (kResidual) out = _mm256_add_ps(out, _mm256_loadu_ps(r + j));
      _mm256_storeu_ps(y + j, out);
    }
    // all-ones / zero dwords to 0 / 1 bytes, 32 at a time; the in-lane packs leave dword d of the result
    // holding the elements of keep[4h + d % 4], half d / 4, which the permutation puts back in order
    for (int h = 0; h < 2; ++h) {
      const __m256i* k = keep + 4 * h;
      const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(k[0], k[1]), _mm256_packs_epi32(k[2], k[3]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(mask + i + 32 * h),
                          _mm256_and_si256(_mm256_permutevar8x32_epi32(bytes, order), ones));
    }
  }
  return i;
}

// Philox(key, counter + i) for i in [0, n): the words (c0, c1) of each as one 64-bit value, c0 low.
FT_AVX512 void PhiloxPairs512(uint64_t key, uint64_t counter, int64_t n, uint64_t* out) {
  constexpr int P = 4;
  const __m512i lanes = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t i = 0; i < n; i += 8 * P) {
    __m512i a[P], b[P];
    for (int p = 0; p < P; ++p) {
      a[p] = _mm512_add_epi64(_mm512_set1_epi64(static_cast<int64_t>(counter + i + 8 * p)), lanes);
      b[p] = _mm512_setzero_si512();
    }
    PhiloxRounds512<P>(key, a, b);
    for (int p = 0; p < P; ++p) _mm512_storeu_si512(out + i + 8 * p, a[p]);
  }
}

FT_AVX2 void PhiloxPairs256(uint64_t key, uint64_t counter, int64_t n, uint64_t* out) {
  constexpr int P = 2;
  const __m256i lanes = _mm256_setr_epi64x(0, 1, 2, 3);
  for (int64_t i = 0; i < n; i += 4 * P) {
    __m256i a[P], b[P];
    for (int p = 0; p < P; ++p) {
      a[p] = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<int64_t>(counter + i + 4 * p)), lanes);
      b[p] = _mm256_setzero_si256();
    }
    PhiloxRounds256<P>(key, a, b);
    for (int p = 0; p < P; ++p) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i + 4 * p), a[p]);
  }
}

FT_VECTORIZE void UniformRange(uint64_t key, uint64_t first, int64_t n, float low, float span, float* out) {
  const CpuFeatures& cpu = GetCpuFeatures();
  ForEachBits(
      key, first, n,
      [&](int64_t i, uint32_t bits) FT_INLINE_LAMBDA { out[i] = low + span * UnitFloat(bits); },
      [&](uint64_t e, int64_t i, int64_t m) -> int64_t {
        if (cpu.avx512f) return UniformBulk512(key, e, m, low, span, out + i);
        if (cpu.avx2) return UniformBulk256(key, e, m, low, span, out + i);
        return 0;
      });
}

// Box-Muller on two uniforms; u1 is in (0, 1] so the log is finite. The Philox words come in batches from
// the vector code where the processor has it; the transcendental part stays scalar libm.
FT_VECTORIZE void NormalRange(uint64_t key, uint64_t counter, int64_t n, float mean, float stddev, float* out) {
  const CpuFeatures& cpu = GetCpuFeatures();
  constexpr int64_t kBatch = 256;
  uint64_t words[kBatch];
  for (int64_t i0 = 0; i0 < n; i0 += kBatch) {
    const int64_t m = n - i0 < kBatch ? n - i0 : kBatch;
    if (cpu.avx512f) {
      PhiloxPairs512(key, counter + i0, m, words);  // rounds m up to 32: words holds 256
    } else if (cpu.avx2) {
      PhiloxPairs256(key, counter + i0, m, words);
    } else {
      for (int64_t j = 0; j < m; ++j) {
        const Philox4 r = Philox(key, counter + i0 + j);
        words[j] = r.x[0] | static_cast<uint64_t>(r.x[1]) << 32;
      }
    }
    for (int64_t j = 0; j < m; ++j) {
      const float u1 = static_cast<float>((static_cast<uint32_t>(words[j]) >> 8) + 1) * (1.0f / 16777216.0f);
      const float u2 = UnitFloat(static_cast<uint32_t>(words[j] >> 32));
      out[i0 + j] = mean + stddev * (std::sqrt(-2.0f * std::log(u1)) * std::cos(6.28318530717958648f * u2));
    }
  }
}

// y = x * mask * scale like torch, so a NaN or inf in a dropped position still propagates; with kResidual, + r.
template <bool kResidual>
FT_VECTORIZE void DropoutRange(uint64_t key, uint64_t first, int64_t n, float p, float scale, const float* x,
                               const float* r, float* y, uint8_t* mask) {
  const CpuFeatures& cpu = GetCpuFeatures();
  ForEachBits(
      key, first, n,
      [&](int64_t i, uint32_t bits) FT_INLINE_LAMBDA {
        const uint8_t keep = UnitFloat(bits) >= p;
        mask[i] = keep;
        const float dropped = x[i] * static_cast<float>(keep) * scale;
        if constexpr (kResidual) {
          y[i] = dropped + r[i];
        } else {
          y[i] = dropped;
        }
      },
      [&](uint64_t e, int64_t i, int64_t m) -> int64_t {
        if (cpu.avx512f) return DropoutBulk512<kResidual>(key, e, m, p, scale, x + i, r + i, y + i, mask + i);
        if (cpu.avx2) return DropoutBulk256<kResidual>(key, e, m, p, scale, x + i, r + i, y + i, mask + i);
        return 0;
      });
}

// dx = mask ? g * scale : 0: the backward of dropout and dropout_add, where(mask, g * scale, 0) to the bit.
FT_VECTORIZE void DropoutBackwardRange(int64_t n, float scale, const float* g, const uint8_t* mask, float* dx) {
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) dx[i] = mask[i] ? g[i] * scale : 0.0f;
}

Napi::Value Uniform(const Napi::CallbackInfo& info) {
  int64_t n = GetCount(info, 0, "n");
  uint64_t seed = GetU64(info, 1, "seed");
  uint64_t offset = GetU64(info, 2, "offset");
  const float low = static_cast<float>(GetNumber(info, 3, "low"));
  const float high = static_cast<float>(GetNumber(info, 4, "high"));
  float* out = OperandAt<float>(info, 5, "out", "outOff", n);
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
  float* out = OperandAt<float>(info, 5, "out", "outOff", n);
  ParallelFor(n, kGrain, [&](int64_t begin, int64_t end) {
    NormalRange(seed, offset + begin, end - begin, mean, stddev, out + begin);
  });
  return info.Env().Undefined();
}

// dropout(n, seed, offset, p, x, xOff, y, yOff, mask); with kResidual, dropoutAdd takes (residual, residualOff)
// after x.
template <bool kResidual>
Napi::Value Dropout(const Napi::CallbackInfo& info) {
  constexpr int kY = kResidual ? 8 : 6;
  int64_t n = GetCount(info, 0, "n");
  uint64_t seed = GetU64(info, 1, "seed");
  uint64_t offset = GetU64(info, 2, "offset");
  const DropoutScalars p = GetDropoutP(info, 3, "p");
  const float* x = OperandAt<float>(info, 4, "x", "xOff", n);
  // Read only with kResidual; x otherwise, so that the offsets below are taken on a real array.
  const float* r = kResidual ? OperandAt<float>(info, 6, "residual", "residualOff", n) : x;
  float* y = OperandAt<float>(info, kY, "y", "yOff", n);
  uint8_t* mask = Elements<uint8_t>(info, GetBuffer(info, kY + 2, "mask"), 0, n, "mask");
  ParallelFor(n, kGrain, [&](int64_t begin, int64_t end) {
    DropoutRange<kResidual>(seed, offset + begin, end - begin, p.threshold, p.scale, x + begin, r + begin, y + begin,
                            mask + begin);
  });
  return info.Env().Undefined();
}

Napi::Value DropoutBackward(const Napi::CallbackInfo& info) {
  int64_t n = GetCount(info, 0, "n");
  const float scale = static_cast<float>(GetNumber(info, 1, "scale"));
  const float* g = OperandAt<float>(info, 2, "g", "gOff", n);
  const uint8_t* mask = Elements<uint8_t>(info, GetBuffer(info, 4, "mask"), 0, n, "mask");
  float* dx = OperandAt<float>(info, 5, "dx", "dxOff", n);
  ParallelFor(n, kGrain, [&](int64_t begin, int64_t end) {
    DropoutBackwardRange(end - begin, scale, g + begin, mask + begin, dx + begin);
  });
  return info.Env().Undefined();
}

}  // namespace

void RegisterRandom(Napi::Env env, Napi::Object exports) {
  exports.Set("uniform", Napi::Function::New(env, Uniform, "uniform"));
  exports.Set("normal", Napi::Function::New(env, Normal, "normal"));
  exports.Set("dropout", Napi::Function::New(env, Dropout<false>, "dropout"));
  exports.Set("dropoutAdd", Napi::Function::New(env, Dropout<true>, "dropoutAdd"));
  exports.Set("dropoutBackward", Napi::Function::New(env, DropoutBackward, "dropoutBackward"));
}

}  // namespace ft
