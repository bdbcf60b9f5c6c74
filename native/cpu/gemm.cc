// float32 GEMM: C_b = alpha * op(A_b) @ op(B_b) + beta * C_b, row-major, batched. On CPUs with AVX512-BF16, A and
// B may also be bfloat16 (autocast's operands), multiplied by the dot-product instruction: pairs of products summed
// in float32, twice the float32 kernel's multiply-adds an instruction.
//
// BLIS-style: op(B) is packed into NR-wide k-major panels, op(A) into MR-tall k-major panels (zero-padded, so
// the micro-kernel never branches on edges until it stores), and a register-blocked micro-kernel computes an
// MR x NR tile of C. Blocking: a kc x NR panel of B stays in L1 while the kernel walks the mc x kc block of A
// held in L2; the kc x nc block of B lives in L3. C rows are contiguous, so the kernel vectorizes along N and
// broadcasts A.
//
// Threads split the batch where it has enough small matrices. Otherwise, for outputs wide enough, they share
// each packed block of A and B (each packs a share of its panels; a barrier separates packing from use) and
// split its column panels; narrow outputs are split into a grid of parts, each thread packing the operands of
// its own part.
#include <dlfcn.h>
#include <immintrin.h>
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <thread>

#include "binding/registry.h"
#include "common/args.h"
#include "common/gemm_args.h"
#include "cpu/cpu_features.h"
#include "cpu/threadpool.h"

#define FT_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define FT_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,fma")))
#define FT_AVX2 __attribute__((target("avx2,fma")))

namespace ft {
namespace {

// A and B are float32, or bfloat16 (A16 and B16 set, A and B null) for the bfloat16 kernel.
struct Problem {
  bool transA, transB;
  int64_t M, N, K;
  float alpha, beta;
  const float* A;
  const uint16_t* A16;
  int64_t lda, strideA;
  const float* B;
  const uint16_t* B16;
  int64_t ldb, strideB;
  float* C;
  int64_t ldc, strideC;
  int64_t batch;
};

// One matrix of the batch, with the operand pointers already offset.
struct Mat {
  bool transA, transB;
  int64_t K;
  float alpha, beta;
  const float* A;
  const uint16_t* A16;
  int64_t lda;
  const float* B;
  const uint16_t* B16;
  int64_t ldb;
  float* C;
  int64_t ldc;
};

Mat MatOf(const Problem& p, int64_t b) {
  return Mat{p.transA, p.transB, p.K, p.alpha, p.beta,
             p.A ? p.A + b * p.strideA : nullptr, p.A16 ? p.A16 + b * p.strideA : nullptr, p.lda,
             p.B ? p.B + b * p.strideB : nullptr, p.B16 ? p.B16 + b * p.strideB : nullptr, p.ldb,
             p.C + b * p.strideC, p.ldc};
}

// Grow-only 64-byte aligned scratch; one per thread and operand, so packing never allocates in steady state.
class Scratch {
 public:
  float* Get(size_t floats) {
    if (floats > size_) {
      data_.reset(static_cast<float*>(std::aligned_alloc(64, ((floats * sizeof(float) + 63) / 64) * 64)));
      if (!data_) throw std::bad_alloc();
      size_ = floats;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data_;
  size_t size_ = 0;
};

thread_local Scratch t_packA, t_packB;

// ---- packing. dst holds ceil(rows/R) panels, each kc x R, k-major; rows past the edge are zero so the kernel
// always runs full tiles and only masks its stores.

// Generic packs for the AVX2 and scalar paths: op(A)[ic + i, pc + k] for i < mc, k < kc.
template <int MR>
void PackAGeneric(const Mat& g, int64_t ic, int64_t mc, int64_t pc, int64_t kc, float* dst) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR) {
    const int64_t rows = std::min<int64_t>(MR, mc - i0);
    for (int64_t k = 0; k < kc; ++k) {
      float* d = dst + k * MR;
      for (int64_t i = 0; i < MR; ++i) {
        const int64_t m = ic + i0 + i;
        d[i] = i >= rows ? 0.f : g.transA ? g.A[(pc + k) * g.lda + m] : g.A[m * g.lda + pc + k];
      }
    }
    dst += MR * kc;
  }
}

// op(B)[pc + k, jc + j] for k < kc, j < nc
template <int NR>
void PackBGeneric(const Mat& g, int64_t pc, int64_t kc, int64_t jc, int64_t nc, float* dst) {
  for (int64_t j0 = 0; j0 < nc; j0 += NR) {
    const int64_t cols = std::min<int64_t>(NR, nc - j0);
    for (int64_t k = 0; k < kc; ++k) {
      float* d = dst + k * NR;
      for (int64_t j = 0; j < NR; ++j) {
        const int64_t n = jc + j0 + j;
        d[j] = j >= cols ? 0.f : g.transB ? g.B[n * g.ldb + pc + k] : g.B[(pc + k) * g.ldb + n];
      }
    }
    dst += NR * kc;
  }
}

// In-register 16 x 16 transpose: r[i][j] becomes r[j][i].
FT_AVX512 inline void Transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4g + c], 128-bit lane l: column 4l + c of rows 4g..4g+3
  for (int g = 0; g < 4; ++g) {
    u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd);
    const __m512 w0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
    r[c] = _mm512_shuffle_f32x4(v0, w0, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(v1, w1, 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(v0, w0, 0xdd);
    r[12 + c] = _mm512_shuffle_f32x4(v1, w1, 0xdd);
  }
}

inline __mmask16 Mask16(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

// Loads up to 16 rows of `len` (<= 16) floats spaced `ld` apart, zeros past `rows`, and transposes them, so
// r[k] holds element k of every row.
FT_AVX512 inline void LoadTransposed(const float* src, int64_t ld, int64_t rows, int64_t len, __m512 r[16]) {
  const __mmask16 m = Mask16(len);
  for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_maskz_loadu_ps(m, src + i * ld) : _mm512_setzero_ps();
  Transpose16(r);
}

// ---- micro-kernels: acc = Apanel (kc x MR) . Bpanel (kc x NR); C[:mr, :nr] = alpha * acc + beta * C.

// C[:mr, :nr] = alpha * acc + beta * C for a tile of MR rows of NV vectors of 16 columns.
template <int MR, int NV>
FT_AVX512 inline void StoreTile(const __m512 (&acc)[MR][NV], float* c, int64_t ldc, float alpha, float beta, int mr,
                                int nr) {
  __mmask16 mask[NV];
  for (int v = 0; v < NV; ++v) mask[v] = Mask16(nr - 16 * v);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
    float* row = c + i * ldc;
    for (int v = 0; v < NV; ++v) {
      __m512 r = _mm512_mul_ps(va, acc[i][v]);
      if (beta != 0.f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask[v], row + 16 * v), r);
      _mm512_mask_storeu_ps(row + 16 * v, mask[v], r);
    }
  }
}

// AVX-512: 14 x 32 keeps 28 accumulators + 2 B vectors + 1 broadcast in the 32 zmm registers; 28 independent
// FMA chains cover the 4-cycle latency of Zen 5's two 512-bit FMA pipes. Each k step reads 128 bytes of B and
// 56 of A per 14 cycles, which L2 sustains, so kc may exceed what fits L1: a deep kc (576: one block for
// BERT's 536 tokens, 512 for the powers of two) means fewer passes over C and fewer, larger packed blocks.
struct Avx512Kernel {
  static constexpr int MR = 14, NR = 32, MC = 448, KC = 576, NC = 3072;

  // NV = vectors of 16 columns computed; the 1-vector variant halves the wasted work on a narrow right edge.
  // A's element (i, k) is a[k * sa + i] (a packed panel, or op(A) = A^T read in place) or, with kRowsA,
  // a[i * sa + k] (op(A) = A read in place; rows past mr repeat the last row, so nothing past A is read).
  // B's row k is the NV vectors at b + k * sb.
  template <int NV, bool kRowsA>
  FT_AVX512 static void Tile(int64_t kc, const float* a, int64_t sa, const float* b, int64_t sb, float* c,
                             int64_t ldc, float alpha, float beta, int mr, int nr) {
    for (int i = 0; i < mr; ++i) __builtin_prefetch(c + i * ldc, 1, 3), __builtin_prefetch(c + i * ldc + 16, 1, 3);
    __m512 acc[MR][NV];
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
    const float* rows[MR];
    if (kRowsA) {
      for (int i = 0; i < MR; ++i) rows[i] = a + std::min(i, mr - 1) * sa;
    }
    for (int64_t k = 0; k < kc; ++k) {
      __m512 bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 14
      for (int i = 0; i < MR; ++i) {
        const __m512 ai = _mm512_set1_ps(kRowsA ? rows[i][k] : a[i]);
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
      }
      if (!kRowsA) a += sa;
      b += sb;
    }
    StoreTile<MR, NV>(acc, c, ldc, alpha, beta, mr, nr);
  }

  template <bool kRowsA>
  FT_AVX512 static void Any(int64_t kc, const float* a, int64_t sa, const float* b, int64_t sb, float* c,
                            int64_t ldc, float alpha, float beta, int mr, int nr) {
    if (nr > 16) {
      Tile<2, kRowsA>(kc, a, sa, b, sb, c, ldc, alpha, beta, mr, nr);
    } else {
      Tile<1, kRowsA>(kc, a, sa, b, sb, c, ldc, alpha, beta, mr, nr);
    }
  }

  FT_AVX512 static void Run(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                            float beta, int mr, int nr) {
    Any<false>(kc, a, MR, b, NR, c, ldc, alpha, beta, mr, nr);
  }

  // A whole matrix small enough to stay in L1/L2 (one k block): packing would cost a large share of its few
  // flops, so A and B are read in place wherever their layout allows it, and only transposed B and the
  // partial edge panels, which the kernel would read past, are packed.
  static constexpr int64_t kSmallK = 256, kSmallFloats = 24 * 1024;
  static bool IsSmall(const Mat& g, int64_t M, int64_t N) {
    return g.K <= kSmallK && M * g.K + g.K * N <= kSmallFloats;
  }

  FT_AVX512 static void Small(const Mat& g, int64_t M, int64_t N) {
    const int64_t K = g.K;
    const int64_t fullN = g.transB ? 0 : N / NR * NR;
    float* packB = t_packB.Get(static_cast<size_t>(K * ((N - fullN + NR - 1) / NR * NR)));
    if (fullN < N) PackB(g, 0, K, fullN, N - fullN, packB);
    const int64_t fullM = g.transA ? M / MR * MR : M;
    float* packA = t_packA.Get(static_cast<size_t>(K * MR));
    if (fullM < M) PackA(g, fullM, M - fullM, 0, K, packA);
    for (int64_t j = 0; j < N; j += NR) {
      const int nr = static_cast<int>(std::min<int64_t>(NR, N - j));
      const float* b = j < fullN ? g.B + j : packB + (j - fullN) * K;
      const int64_t sb = j < fullN ? g.ldb : NR;
      for (int64_t i = 0; i < M; i += MR) {
        const int mr = static_cast<int>(std::min<int64_t>(MR, M - i));
        float* c = g.C + i * g.ldc + j;
        if (!g.transA) {
          Any<true>(K, g.A + i * g.lda, g.lda, b, sb, c, g.ldc, g.alpha, g.beta, mr, nr);
        } else if (i < fullM) {
          Any<false>(K, g.A + i, g.lda, b, sb, c, g.ldc, g.alpha, g.beta, mr, nr);
        } else {
          Any<false>(K, packA, MR, b, sb, c, g.ldc, g.alpha, g.beta, mr, nr);
        }
      }
    }
  }

  FT_AVX512 static void PackA(const Mat& g, int64_t ic, int64_t mc, int64_t pc, int64_t kc, float* dst) {
    const __mmask16 full = Mask16(MR);
    for (int64_t i0 = 0; i0 < mc; i0 += MR, dst += MR * kc) {
      const int64_t rows = std::min<int64_t>(MR, mc - i0);
      if (g.transA) {
        // op(A) rows are contiguous in memory: one masked load per k.
        const float* src = g.A + pc * g.lda + ic + i0;
        const __mmask16 m = Mask16(rows);
        for (int64_t k = 0; k < kc; ++k)
          _mm512_mask_storeu_ps(dst + k * MR, full, _mm512_maskz_loadu_ps(m, src + k * g.lda));
      } else {
        const float* src = g.A + (ic + i0) * g.lda + pc;
        for (int64_t k0 = 0; k0 < kc; k0 += 16) {
          __m512 r[16];
          const int64_t len = std::min<int64_t>(16, kc - k0);
          LoadTransposed(src + k0, g.lda, rows, len, r);
          for (int64_t k = 0; k < len; ++k) _mm512_mask_storeu_ps(dst + (k0 + k) * MR, full, r[k]);
        }
      }
    }
  }

  FT_AVX512 static void PackB(const Mat& g, int64_t pc, int64_t kc, int64_t jc, int64_t nc, float* dst) {
    for (int64_t j0 = 0; j0 < nc; j0 += NR, dst += NR * kc) {
      const int64_t cols = std::min<int64_t>(NR, nc - j0);
      if (!g.transB) {
        const float* src = g.B + pc * g.ldb + jc + j0;
        const __mmask16 m0 = Mask16(cols), m1 = Mask16(cols - 16);
        for (int64_t k = 0; k < kc; ++k) {
          _mm512_store_ps(dst + k * NR, _mm512_maskz_loadu_ps(m0, src + k * g.ldb));
          _mm512_store_ps(dst + k * NR + 16, _mm512_maskz_loadu_ps(m1, src + k * g.ldb + 16));
        }
      } else {
        const float* src = g.B + (jc + j0) * g.ldb + pc;
        for (int64_t k0 = 0; k0 < kc; k0 += 16) {
          __m512 lo[16], hi[16];
          const int64_t len = std::min<int64_t>(16, kc - k0);
          LoadTransposed(src + k0, g.ldb, cols, len, lo);
          LoadTransposed(src + 16 * g.ldb + k0, g.ldb, cols - 16, len, hi);
          for (int64_t k = 0; k < len; ++k) {
            _mm512_store_ps(dst + (k0 + k) * NR, lo[k]);
            _mm512_store_ps(dst + (k0 + k) * NR + 16, hi[k]);
          }
        }
      }
    }
  }
};

// AVX512-BF16: the AVX-512 kernel's 14 x 32 tile, with pairs of k. A packed panel holds, for each pair of k
// (2p, 2p + 1) and row i, one 32-bit word: op(A)[i, 2p] in its low half, op(A)[i, 2p + 1] in its high half; a B
// panel the same words for its NR columns. VDPBF16PS then adds both products of a word pair to a float32 lane. A
// panel of kc values takes (kc + 1) / 2 words a row, an odd kc's last word padded with zero, in the room the
// drivers give a float32 panel (kc floats a row).
struct Bf16Kernel {
  static constexpr int MR = 14, NR = 32, MC = 448, KC = 576, NC = 3072;

  template <int NV>
  FT_AVX512BF16 static void Tile(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                                 float beta, int mr, int nr) {
    for (int i = 0; i < mr; ++i) __builtin_prefetch(c + i * ldc, 1, 3), __builtin_prefetch(c + i * ldc + 16, 1, 3);
    __m512 acc[MR][NV];
#pragma GCC unroll 14
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
    const int32_t* aw = reinterpret_cast<const int32_t*>(a);
    const int32_t* bw = reinterpret_cast<const int32_t*>(b);
    for (int64_t p = 0, pairs = (kc + 1) / 2; p < pairs; ++p) {
      __m512bh bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(bw + 16 * v);
#pragma GCC unroll 14
      for (int i = 0; i < MR; ++i) {
        const __m512bh ai = (__m512bh)_mm512_set1_epi32(aw[i]);
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
      }
      aw += MR;
      bw += NR;
    }
    StoreTile<MR, NV>(acc, c, ldc, alpha, beta, mr, nr);
  }

  FT_AVX512BF16 static void Run(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                                float beta, int mr, int nr) {
    if (nr > 16) {
      Tile<2>(kc, a, b, c, ldc, alpha, beta, mr, nr);
    } else {
      Tile<1>(kc, a, b, c, ldc, alpha, beta, mr, nr);
    }
  }

  static bool IsSmall(const Mat&, int64_t, int64_t) { return false; }
  static void Small(const Mat&, int64_t, int64_t) {}

  // Panels of `width` (MR or NR) rows of op(X), rows r0 .. r0 + n, k in [pc, pc + kc), each `width` * kc floats
  // apart, where op(X)[r, k] = X[k * ld + r] if trans, else X[r * ld + k]. Nothing past the block's values is read.
  FT_AVX512BF16 static void PackPanels(const uint16_t* x, int64_t ld, bool trans, int64_t r0, int64_t n, int64_t pc,
                                       int64_t kc, int width, float* dst) {
    const int64_t whole = kc / 2;  // pairs of two values of the block; an odd kc adds a last value alone
    for (int64_t i0 = 0; i0 < n; i0 += width, dst += width * kc) {
      int32_t* w = reinterpret_cast<int32_t*>(dst);
      const int64_t rows = std::min<int64_t>(width, n - i0);
      for (int h = 0; h < width; h += 16) {
        const __mmask16 live = Mask16(rows - h), lanes = Mask16(width - h);
        const int64_t r = r0 + i0 + h;
        if (trans) {
          // The pair's values are two rows of X: their 16-bit values interleave into words.
          for (int64_t p = 0; p * 2 < kc; ++p) {
            const uint16_t* row = x + (pc + 2 * p) * ld + r;
            const __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(live, row));
            const __m512i hi = p < whole ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(live, row + ld)) : _mm512_setzero_si512();
            _mm512_mask_storeu_epi32(w + p * width + h, lanes, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
          }
        } else {
          // The pair is one 32-bit word of a row of X, gathered from the 16 rows (64-bit offsets, in values).
          const __m512i step = _mm512_set1_epi64(ld * 8);
          __m512i lowRows = _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_epi64(ld));
          __m512i highRows = _mm512_add_epi64(lowRows, step);
          const uint16_t* base = x + r * ld + pc;
          for (int64_t p = 0; p < whole; ++p) {
            const __m256i a0 = _mm512_mask_i64gather_epi32(_mm256_setzero_si256(), static_cast<__mmask8>(live), lowRows, base, 2);
            const __m256i a1 = _mm512_mask_i64gather_epi32(_mm256_setzero_si256(), static_cast<__mmask8>(live >> 8), highRows, base, 2);
            _mm512_mask_storeu_epi32(w + p * width + h, lanes, _mm512_inserti64x4(_mm512_castsi256_si512(a0), a1, 1));
            lowRows = _mm512_add_epi64(lowRows, _mm512_set1_epi64(2));
            highRows = _mm512_add_epi64(highRows, _mm512_set1_epi64(2));
          }
          for (int i = 0; whole * 2 < kc && i < 16 && h + i < width; ++i)
            w[whole * width + h + i] = i < rows - h ? base[i * ld + 2 * whole] : 0;
        }
      }
    }
  }

  static void PackA(const Mat& g, int64_t ic, int64_t mc, int64_t pc, int64_t kc, float* dst) {
    PackPanels(g.A16, g.lda, g.transA, ic, mc, pc, kc, MR, dst);
  }

  // op(B)'s columns are the rows of op(B)^T, which is B read with the opposite transpose.
  static void PackB(const Mat& g, int64_t pc, int64_t kc, int64_t jc, int64_t nc, float* dst) {
    PackPanels(g.B16, g.ldb, !g.transB, jc, nc, pc, kc, NR, dst);
  }
};

// AVX2: 6 x 16 uses 12 accumulators + 2 B vectors + 1 broadcast of the 16 ymm registers.
struct Avx2Kernel {
  static constexpr int MR = 6, NR = 16, MC = 144, KC = 256, NC = 2048;

  FT_AVX2 static __m256i Mask(int n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
  }

  FT_AVX2 static void Run(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                          float beta, int mr, int nr) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; ++k) {
      const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
      for (int i = 0; i < MR; ++i) {
        const __m256 ai = _mm256_broadcast_ss(a + i);
        acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
      }
      a += MR;
      b += NR;
    }
    const __m256i m0 = Mask(nr), m1 = Mask(nr - 8);
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      if (i >= mr) break;
      float* row = c + i * ldc;
      __m256 r0 = _mm256_mul_ps(va, acc[i][0]), r1 = _mm256_mul_ps(va, acc[i][1]);
      if (beta != 0.f) {
        r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(row, m0), r0);
        r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(row + 8, m1), r1);
      }
      _mm256_maskstore_ps(row, m0, r0);
      _mm256_maskstore_ps(row + 8, m1, r1);
    }
  }

  static bool IsSmall(const Mat&, int64_t, int64_t) { return false; }
  static void Small(const Mat&, int64_t, int64_t) {}
  static void PackA(const Mat& g, int64_t ic, int64_t mc, int64_t pc, int64_t kc, float* dst) {
    PackAGeneric<MR>(g, ic, mc, pc, kc, dst);
  }
  static void PackB(const Mat& g, int64_t pc, int64_t kc, int64_t jc, int64_t nc, float* dst) {
    PackBGeneric<NR>(g, pc, kc, jc, nc, dst);
  }
};

// Portable fallback; a small tile the compiler can keep in registers and vectorize with SSE2.
struct ScalarKernel {
  static constexpr int MR = 4, NR = 8, MC = 128, KC = 256, NC = 1024;

  static void Run(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta,
                  int mr, int nr) {
    float acc[MR][NR] = {};
    for (int64_t k = 0; k < kc; ++k) {
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
      a += MR;
      b += NR;
    }
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < nr; ++j) {
        float& out = c[i * ldc + j];
        out = beta != 0.f ? alpha * acc[i][j] + beta * out : alpha * acc[i][j];
      }
  }

  static bool IsSmall(const Mat&, int64_t, int64_t) { return false; }
  static void Small(const Mat&, int64_t, int64_t) {}
  static void PackA(const Mat& g, int64_t ic, int64_t mc, int64_t pc, int64_t kc, float* dst) {
    PackAGeneric<MR>(g, ic, mc, pc, kc, dst);
  }
  static void PackB(const Mat& g, int64_t pc, int64_t kc, int64_t jc, int64_t nc, float* dst) {
    PackBGeneric<NR>(g, pc, kc, jc, nc, dst);
  }
};

// Splits n into the fewest blocks of at most `most`, of equal size rounded up to `unit`: equal blocks avoid a
// thin last block, which would pay the per-block overheads for little work.
inline int64_t BlockSize(int64_t n, int64_t most, int64_t unit) {
  const int64_t blocks = (n + most - 1) / most;
  const int64_t size = (n + blocks - 1) / blocks;
  return (size + unit - 1) / unit * unit;
}

// C[m0:m1, n0:n1] of one matrix, by the calling thread.
template <class Kern>
void GemmBlock(const Mat& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  constexpr int MR = Kern::MR, NR = Kern::NR;
  const int64_t KC = BlockSize(g.K, Kern::KC, 1);
  const int64_t MC = BlockSize(m1 - m0, Kern::MC, MR);
  const int64_t NC = BlockSize(n1 - n0, Kern::NC, NR);
  float* packB = t_packB.Get(static_cast<size_t>(KC * NC));
  float* packA = t_packA.Get(static_cast<size_t>(KC * MC));
  for (int64_t jc = n0; jc < n1; jc += NC) {
    const int64_t nc = std::min<int64_t>(NC, n1 - jc);
    for (int64_t pc = 0; pc < g.K; pc += KC) {
      const int64_t kc = std::min<int64_t>(KC, g.K - pc);
      // Later k blocks accumulate onto what the first one wrote.
      const float beta = pc == 0 ? g.beta : 1.f;
      Kern::PackB(g, pc, kc, jc, nc, packB);
      for (int64_t ic = m0; ic < m1; ic += MC) {
        const int64_t mc = std::min<int64_t>(MC, m1 - ic);
        Kern::PackA(g, ic, mc, pc, kc, packA);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
            Kern::Run(kc, packA + ir * kc, packB + jr * kc, g.C + (ic + ir) * g.ldc + jc + jr, g.ldc, g.alpha,
                      beta, mr, nr);
          }
        }
      }
    }
  }
}

// A barrier for the threads of one ParallelFor, each running one part; spins (the waits are short), then yields.
class SpinBarrier {
 public:
  explicit SpinBarrier(int n) : n_(n) {}
  void Wait() {
    const unsigned gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      count_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_release);
      return;
    }
    for (unsigned i = 0; gen_.load(std::memory_order_acquire) == gen; ++i) {
      if (i < 20000) {
        __builtin_ia32_pause();
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  const int n_;
  std::atomic<int> count_{0};
  std::atomic<unsigned> gen_{0};
};

// Buffers of packed blocks shared by the threads of one GemmShared.
struct SharedPack {
  float* B;     // KC x NC
  float* A[2];  // MC x KC each: one is packed while the other may still be read
};

// The whole of one matrix by `T` threads at once, this one being thread `t`: they share each packed block of
// B and of A, each packing its share of the panels, and split the NR-wide column panels of a block between
// them (each computes with the B panels it packed itself). Packing each element once, instead of once per
// thread that needs it, halves the packing traffic of a two-way split. The blocking is GemmBlock's, so every
// element of C sums the same products in the same order as it would on one thread.
template <class Kern>
void GemmShared(const Mat& g, int64_t M, int64_t N, int t, int T, const SharedPack& pack, SpinBarrier& barrier) {
  constexpr int MR = Kern::MR, NR = Kern::NR;
  const int64_t KC = BlockSize(g.K, Kern::KC, 1);
  const int64_t MC = BlockSize(M, Kern::MC, MR);
  const int64_t NC = BlockSize(N, Kern::NC, NR);
  int buf = 0;
  bool first = true;
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min<int64_t>(NC, N - jc);
    const int64_t nPanels = (nc + NR - 1) / NR;
    const int64_t j0 = nPanels * t / T * NR, j1 = std::min(nc, nPanels * (t + 1) / T * NR);
    for (int64_t pc = 0; pc < g.K; pc += KC) {
      const int64_t kc = std::min<int64_t>(KC, g.K - pc);
      const float beta = pc == 0 ? g.beta : 1.f;
      // The previous B block must be done with before it is overwritten.
      if (!first) barrier.Wait();
      first = false;
      if (j0 < j1) Kern::PackB(g, pc, kc, jc + j0, j1 - j0, pack.B + j0 * kc);
      for (int64_t ic = 0; ic < M; ic += MC) {
        const int64_t mc = std::min<int64_t>(MC, M - ic);
        const int64_t mPanels = (mc + MR - 1) / MR;
        const int64_t i0 = mPanels * t / T * MR, i1 = std::min(mc, mPanels * (t + 1) / T * MR);
        // A[buf] was last read two blocks ago; every thread has passed the barrier after that since.
        float* packA = pack.A[buf];
        buf ^= 1;
        if (i0 < i1) Kern::PackA(g, ic + i0, i1 - i0, pc, kc, packA + i0 * kc);
        barrier.Wait();
        for (int64_t jr = j0; jr < j1; jr += NR) {
          const int nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
            Kern::Run(kc, packA + ir * kc, pack.B + jr * kc, g.C + (ic + ir) * g.ldc + jc + jr, g.ldc, g.alpha,
                      beta, mr, nr);
          }
        }
      }
    }
  }
}

// K == 0 or alpha == 0: op(A) @ op(B) contributes nothing, and BLAS leaves A and B unread.
void ScaleC(const Mat& g, int64_t M, int64_t N) {
  for (int64_t i = 0; i < M; ++i) {
    float* row = g.C + i * g.ldc;
    if (g.beta == 0.f) {
      std::fill(row, row + N, 0.f);
    } else if (g.beta != 1.f) {
      for (int64_t j = 0; j < N; ++j) row[j] *= g.beta;
    }
  }
}

// Below this many flops per matrix a GEMM is not worth splitting across threads.
constexpr double kSplitFlops = 4e6;

template <class Kern>
void RunGemm(const Problem& p) {
  const int threads = GetNumThreads();
  const bool degenerate = p.K == 0 || p.alpha == 0.f;
  const double flops =
      degenerate ? 0.0 : 2.0 * static_cast<double>(p.M) * static_cast<double>(p.N) * static_cast<double>(p.K);
  auto whole = [&](int64_t b) {
    const Mat g = MatOf(p, b);
    if (degenerate) {
      ScaleC(g, p.M, p.N);
    } else if (Kern::IsSmall(g, p.M, p.N)) {
      Kern::Small(g, p.M, p.N);
    } else {
      GemmBlock<Kern>(g, 0, p.M, 0, p.N);
    }
  };
  // Overlapping outputs must be written in batch order, as the contract's loop says.
  const bool disjoint = p.batch == 1 || p.strideC >= (p.M - 1) * p.ldc + p.N;
  // A batch splits evenly enough over threads, or its matrices are too small to split: one matrix per task.
  if (disjoint && (threads == 1 || p.batch >= 4 * threads || p.batch % threads == 0 || flops < kSplitFlops)) {
    const double total = flops * static_cast<double>(p.batch);
    const int64_t grain = total < kSplitFlops ? p.batch : 1;
    ParallelFor(p.batch, grain, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) whole(b);
    });
    return;
  }
  // Wide enough for every thread to get a few column panels of each B block: the threads share the packing.
  if (disjoint && p.N >= 4 * threads * Kern::NR) {
    const int64_t KC = BlockSize(p.K, Kern::KC, 1), MC = BlockSize(p.M, Kern::MC, Kern::MR);
    const int64_t NC = BlockSize(p.N, Kern::NC, Kern::NR);
    float* packB = t_packB.Get(static_cast<size_t>(KC * NC));
    float* packA = t_packA.Get(static_cast<size_t>(2 * KC * MC));
    const SharedPack pack{packB, {packA, packA + KC * MC}};
    // (flops >= kSplitFlops here: smaller matrices took the batch path above.)
    for (int64_t b = 0; b < p.batch; ++b) {
      const Mat g = MatOf(p, b);
      SpinBarrier barrier(threads);
      ParallelFor(threads, 1, [&](int64_t t0, int64_t t1) {
        // The pool gives each of `threads` parts its own thread, all running at once, or else (a call nested in
        // a parallel region) runs the whole range on the calling thread, where no barrier could be passed.
        if (t1 - t0 == 1) {
          GemmShared<Kern>(g, p.M, p.N, static_cast<int>(t0), threads, pack, barrier);
        } else {
          GemmBlock<Kern>(g, 0, p.M, 0, p.N);
        }
      });
    }
    return;
  }
  // Split each matrix into a tm x tn grid of whole tiles, cutting the longer side of the output most.
  int tm = 1;
  double best = 1e300;
  for (int t = 1; t <= threads; ++t) {
    if (threads % t != 0) continue;
    const double cost = static_cast<double>(p.M) / t + static_cast<double>(p.N) / (threads / t);
    if (cost < best) best = cost, tm = t;
  }
  const int tn = threads / tm;
  const int64_t mTiles = (p.M + Kern::MR - 1) / Kern::MR, nTiles = (p.N + Kern::NR - 1) / Kern::NR;
  for (int64_t b = 0; b < p.batch; ++b) {
    // Also where the output overlaps: tiny matrices, or nothing to multiply.
    if (flops < kSplitFlops) {
      whole(b);
      continue;
    }
    const Mat g = MatOf(p, b);
    ParallelFor(threads, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t im = t / tn, in = t % tn;
        const int64_t m0 = std::min(p.M, mTiles * im / tm * Kern::MR);
        const int64_t m1 = std::min(p.M, mTiles * (im + 1) / tm * Kern::MR);
        const int64_t n0 = std::min(p.N, nTiles * in / tn * Kern::NR);
        const int64_t n1 = std::min(p.N, nTiles * (in + 1) / tn * Kern::NR);
        if (m0 < m1 && n0 < n1) GemmBlock<Kern>(g, m0, m1, n0, n1);
      }
    });
  }
}

void Sgemm(const Problem& p) {
  const CpuFeatures& f = GetCpuFeatures();
  if (p.A16 != nullptr) {
    RunGemm<Bf16Kernel>(p);
  } else if (f.avx512f) {
    RunGemm<Avx512Kernel>(p);
  } else if (f.avx2 && f.fma) {
    RunGemm<Avx2Kernel>(p);
  } else {
    RunGemm<ScalarKernel>(p);
  }
}

// ---- argument decoding shared by sgemm and openblasSgemm

Problem DecodeGemm(const Napi::CallbackInfo& info) {
  const GemmArgs g = DecodeGemmArgs(info);
  const bool bf16 = g.abDtype == kBF16 && GetCpuFeatures().avx512bf16;
  if ((g.abDtype != kF32 && !bf16) || g.cDtype != kF32)
    throw Napi::TypeError::New(info.Env(), "sgemm: the CPU kernels read float32 (or bfloat16 on CPUs with AVX512-BF16) and write float32; convert 16-bit A and B to float32 first");
  const Buffer a = GetBuffer(info, kGemmA, "A");
  const Buffer b = GetBuffer(info, kGemmB, "B");
  const Buffer c = GetBuffer(info, kGemmC, "C");
  Problem p;
  p.transA = g.transA;
  p.transB = g.transB;
  p.M = g.M;
  p.N = g.N;
  p.K = g.K;
  p.alpha = g.alpha;
  p.beta = g.beta;
  p.A = bf16 ? nullptr : Elements<float>(info, a, g.offA, g.extA, "A");
  p.A16 = bf16 ? Elements<uint16_t>(info, a, g.offA, g.extA, "A") : nullptr;
  p.lda = g.lda;
  p.strideA = g.strideA;
  p.B = bf16 ? nullptr : Elements<float>(info, b, g.offB, g.extB, "B");
  p.B16 = bf16 ? Elements<uint16_t>(info, b, g.offB, g.extB, "B") : nullptr;
  p.ldb = g.ldb;
  p.strideB = g.strideB;
  p.C = Elements<float>(info, c, g.offC, g.extC, "C");
  p.ldc = g.ldc;
  p.strideC = g.strideC;
  p.batch = g.batch;
  if (g.bias) {
    // The bias is C's starting value, accumulated as beta = 1 accumulates: the sum of products, then the bias.
    const float* bias = Elements<float>(info, GetBuffer(info, kGemmBias, "bias"), g.offBias, g.N, "bias");
    for (int64_t i = 0; i < g.M; ++i) std::copy(bias, bias + g.N, p.C + i * g.ldc);
    p.beta = 1.0f;
  }
  return p;
}

Napi::Value SgemmJs(const Napi::CallbackInfo& info) {
  const Problem p = DecodeGemm(info);
  if (p.M > 0 && p.N > 0 && p.batch > 0) Sgemm(p);
  return info.Env().Undefined();
}

// ---- OpenBLAS, loaded at run time, for measuring against a reference BLAS; never a build dependency.

using CblasSgemm = void (*)(int order, int transA, int transB, int M, int N, int K, float alpha, const float* A,
                            int lda, const float* B, int ldb, float beta, float* C, int ldc);

CblasSgemm LoadOpenBlas() {
  static const CblasSgemm fn = [] {
    for (const char* name :
         {"libopenblas.so.0", "libopenblas.so", "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"}) {
      if (void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL)) {
        if (void* sym = dlsym(lib, "cblas_sgemm")) return reinterpret_cast<CblasSgemm>(sym);
        dlclose(lib);
      }
    }
    return static_cast<CblasSgemm>(nullptr);
  }();
  return fn;
}

Napi::Value OpenBlasAvailableJs(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), LoadOpenBlas() != nullptr);
}

Napi::Value OpenBlasSgemmJs(const Napi::CallbackInfo& info) {
  const Problem p = DecodeGemm(info);
  if (p.A16 != nullptr) throw Napi::TypeError::New(info.Env(), "openblasSgemm: A and B must be float32");
  const CblasSgemm fn = LoadOpenBlas();
  if (fn == nullptr)
    throw Napi::Error::New(info.Env(),
                           "openblasSgemm: OpenBLAS is not installed (no libopenblas.so.0 could be loaded)");
  if (p.M == 0 || p.N == 0 || p.batch == 0) return info.Env().Undefined();
  constexpr int64_t kMaxInt = 0x7fffffff;
  if (p.lda > kMaxInt || p.ldb > kMaxInt || p.ldc > kMaxInt)
    throw Napi::RangeError::New(info.Env(), "openblasSgemm: leading dimensions must fit in 32 bits");
  constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
  // cblas rejects a leading dimension of 0 even where nothing is read through it.
  const int lda = static_cast<int>(std::max<int64_t>(1, p.lda)), ldb = static_cast<int>(std::max<int64_t>(1, p.ldb));
  for (int64_t b = 0; b < p.batch; ++b) {
    fn(kRowMajor, p.transA ? kTrans : kNoTrans, p.transB ? kTrans : kNoTrans, static_cast<int>(p.M),
       static_cast<int>(p.N), static_cast<int>(p.K), p.alpha, p.A + b * p.strideA, lda, p.B + b * p.strideB, ldb,
       p.beta, p.C + b * p.strideC, static_cast<int>(p.ldc));
  }
  return info.Env().Undefined();
}

}  // namespace

void RegisterGemm(Napi::Env env, Napi::Object exports) {
  exports.Set("sgemm", Napi::Function::New(env, SgemmJs, "sgemm"));
  exports.Set("openblasSgemm", Napi::Function::New(env, OpenBlasSgemmJs, "openblasSgemm"));
  exports.Set("openblasAvailable", Napi::Function::New(env, OpenBlasAvailableJs, "openblasAvailable"));
}

}  // namespace ft
