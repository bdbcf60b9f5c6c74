// Fused scaled-dot-product attention, flash-attention style: out = dropout(softmax(q k^T * scale + mask)) v with no
// S x T matrix in memory. The forward streams key tiles through shared memory with an online softmax and keeps
// each query row's logsumexp; the backward recomputes every probability from q, k and that logsumexp, tile by
// tile, once for dq (blocks of query rows) and once for dk and dv (blocks of key rows), so no block needs another's
// partial sums and nothing is accumulated with atomics. The dq kernel first computes its rows' D = rowsum(dout *
// out), and stores it for the dk/dv kernel: with dropout it still equals sum_t P[s, t] dP[s, t], the softmax
// backward's row term.
//
// Under autocast q, k and v come in 16 bits (bfloat16 or float16), as PyTorch's flash attention takes them, and the
// backward reads them and out's 16-bit copy: the tiles in shared memory and all arithmetic stay float32.
//
// The numbers follow the CPU's unfused path (matmul, masked_softmax, dropout, matmul) up to summation order: the
// logit is rounded as masked_softmax rounds it (q.k * scale, then + mask), Exp is the shared one, a row whose
// logits are all -inf is uniform (its logsumexp is stored as -inf to say so), and dropout keeps probability
// (b, h, s, t) exactly when native/cpu/random.cc's dropout over the flat [B, H, S, T] probabilities keeps element
// ((b * H + h) * S + s) * T + t for the same seed and offset.
//
// Work split: a warp owns 4 rows (query rows in the forward and dq, key rows in dk/dv) and works on them
// together, so every shared load feeds several independent chains. Within a tile lane j computes the dot
// products of tile row j with the warp's 4 rows (16-byte shared loads; the tile's rows are 4 mod 32 floats apart so
// the lanes' rows fall on distinct banks); the weights go through shared memory and the lanes then split the head
// dimension (lane + 32 c) to accumulate, each key row's value feeding the 4 rows. One Philox call serves 4
// consecutive dropout elements. The dot products and the accumulations are fused multiply-adds, as the CPU's
// GEMM's are.
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/args.h"
#include "common/dtype.h"
#include "common/kernel_args.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"

namespace ft::cuda::kernels {
namespace {

// What the CUDA-core and the tensor-core kernels share: the host's argument structs, the operands' loads, the
// logits, dropout's keep bits, the probabilities recomputed in the backward.
constexpr char kCommonSource[] = R"CUDA(
// ModuleKernel() below prepends FT_ATTN_OPERANDS's definition; check-sources.sh compiles the sources as they stand.
#ifndef FT_ATTN_OPERANDS
#define FT_ATTN_OPERANDS DT_BF16
#endif
// The softmax's exp: the shared Exp (the CPU's numbers) unless the module's source defines another (ModuleKernel).
#ifndef FT_ATTN_EXP
#define FT_ATTN_EXP Exp
#endif
// The host's AttentionParams, member for member.
struct Attention {
  int64 H, S, T;
  int32 D, causal;
  float scale;
  int32 dropout;
  float threshold, dscale;
  uint64 seed, offset;
  uint64 base;  // in a CUDA graph, the address of the graph's random base (added to offset); else 0
};

// The host's AttentionOperands, member for member: q, k, v and the mask (null for none) with their views. q, k and
// v (and in the backward out) are stored in FT_ATTN_OPERANDS, which the module's source defines: DT_F32, or
// DT_BF16 / DT_F16 under autocast. A compile-time dtype: with the dtype an argument, every load carried all three
// conversions and the kernels' code grew fourfold, which cost them twice their time.
struct Operands {
  Layout lq, lk, lv, lm;
  const void *q, *k, *v;
  const float* mask;
};

// The forward's results: out, a [B, H, S, D] view with unit stride in D, and lse [B, H, S] contiguous; and, where
// lowp is not null, out's 16-bit copy (lowp_dtype: DT_BF16 or DT_F16) laid out as out, for autocast's next product.
struct Output {
  Layout lo;
  float* out;
  float* lse;
  uint16* lowp;
  int32 lowp_dtype;
};

// The backward's other operands: the forward's out, dout, and the gradients dq [B, H, S, D], dk and dv
// [B, H, T, D], views with unit stride in D; the forward's lse and the delta that the dq kernel stores, contiguous
// [B, H, S]. With sums (not null; the tensor-core kernels only) the gradients are 16-bit, in the operands' dtype,
// as PyTorch's flash attention writes them under autocast, and sums [3, H, D] receives their column sums over
// (b, s) (a packed query/key/value projection's bias gradient): each block's through `partial`, added by the last
// block of its head to finish (`tickets`, a word per head, left at 0).
struct Backward {
  Layout lout, ldout, ldq, ldk, ldv;
  const void* out;
  const float *dout, *lse;
  float *delta, *dq, *dk, *dv;
  float* sums;
  double* partial;
  unsigned int* tickets;
};

__device__ __forceinline__ int64 RowAt(const Layout& l, int64 b, int64 h, int64 s) {
  return b * l.strides[0] + h * l.strides[1] + s * l.strides[2];
}

// Element i of a float32 or 16-bit array, in float32.
__device__ __forceinline__ float LoadAt(const void* p, int64 i, int dtype) {
  return dtype == DT_F32 ? ((const float*)p)[i] : LowpToF32(((const uint16*)p)[i], dtype);
}

// The mask's values along query s's keys (QueryMask) or key t's queries (KeyMask) of head (b, h), which a kernel
// finds once per row rather than once per element. `at` is null without a mask and past the rows, where the values
// are 0.
struct MaskLine {
  const float* at;
  int64 step;
};
__device__ __forceinline__ MaskLine QueryMask(const Attention& a, const Operands& o, int64 b, int64 h, int64 s) {
  const Layout& m = o.lm;
  return {o.mask == 0 || s >= a.S ? 0 : o.mask + b * m.strides[0] + h * m.strides[1] + s * m.strides[2], m.strides[3]};
}
__device__ __forceinline__ MaskLine KeyMask(const Attention& a, const Operands& o, int64 b, int64 h, int64 t) {
  const Layout& m = o.lm;
  return {o.mask == 0 || t >= a.T ? 0 : o.mask + b * m.strides[0] + h * m.strides[1] + t * m.strides[3], m.strides[2]};
}
// Value i < the line's length (T keys or S queries) along it.
__device__ __forceinline__ float MaskValue(const MaskLine& l, int64 i) { return l.at == 0 ? 0.0f : l.at[i * l.step]; }

// The mask's value for query s and key t (0 outside [S, T], where nothing reads it).
__device__ __forceinline__ float MaskAt(const Attention& a, const Operands& o, int64 b, int64 h, int64 s, int64 t) {
  return t < a.T ? MaskValue(QueryMask(a, o, b, h, s), t) : 0.0f;
}

// The logit of query s for key t, rounded in masked_softmax's two steps (`bias` is the mask's value); causal
// hides keys after the query (torch's tril mask).
__device__ __forceinline__ float Logit(const Attention& a, float dot, const float* mask, float bias, int64 s, int64 t) {
  float z = __fmul_rn(dot, a.scale);
  if (mask != 0) z = __fadd_rn(z, bias);
  return a.causal && t > s ? -FT_INF : z;
}

// A replayed graph's kernels draw fresh numbers: the counter offset moves on by the graph's random base.
__device__ __forceinline__ void ApplyRandomBase(Attention& a) {
  if (a.base != 0) a.offset += *(const uint64*)a.base;
}

// Dropout keeps element e = offset + ((bh * S + s) * T + t) of the flat probabilities when word e & 3 of
// Philox(seed, e >> 2) is at least the threshold. Bit w of the result: the verdict on word w of `counter`.
__device__ __forceinline__ uint32 KeepWords(const Attention& a, uint64 counter) {
  const Philox4 r = Philox(a.seed, counter);
  return (uint32)DropoutKeeps(r.x0, a.threshold) | (uint32)DropoutKeeps(r.x1, a.threshold) << 1 |
         (uint32)DropoutKeeps(r.x2, a.threshold) << 2 | (uint32)DropoutKeeps(r.x3, a.threshold) << 3;
}

__device__ __forceinline__ uint64 Element(const Attention& a, int64 bh, int64 s, int64 t) {
  return a.offset + (uint64)((bh * a.S + s) * a.T + t);
}

__device__ __forceinline__ float Prob(const Attention& a, float z, float lse) {
  return lse == -FT_INF ? 1.0f / (float)a.T : FT_ATTN_EXP(z - lse);
}

// A score's backward, from query s's product with key t (`dot`; `bias` the mask's value), the row's lse and delta,
// dropout's verdict `kept` on the probability p and dout . v: P~ = kept ? p dscale : 0 (dv's operand) and the
// softmax backward's dS = p (dP - delta) scale with dP = kept ? (dout . v) dscale : 0.
struct ScoreGrads {
  float kept, ds;
};
__device__ __forceinline__ ScoreGrads ScoreBackward(const Attention& a, const Operands& o, float dot, float bias,
                                                    int64 s, int64 t, float lse, bool kept, float dout_v, float delta) {
  const float p = Prob(a, Logit(a, dot, o.mask, bias, s, t), lse);
  const float dp = kept ? dout_v * a.dscale : 0.0f;
  return {kept ? p * a.dscale : 0.0f, p * (dp - delta) * a.scale};
}

// The forward's online softmax. A key's weight in a row's running sum at maximum m: 0 past the keys (`valid`
// false), 1 while every logit so far is -inf (the row counts as uniform), else exp(z - m).
__device__ __forceinline__ float RunningWeight(float z, float m, bool valid) {
  return !valid ? 0.0f : m == -FT_INF ? 1.0f : FT_ATTN_EXP(z - m);
}

// The factor that brings a running sum at maximum m_part to maximum m: the uniform sum of -inf logits is dropped
// once a finite one appears.
__device__ __forceinline__ float Rescale(float m_part, float m) {
  return m_part == m ? 1.0f : m_part == -FT_INF ? 0.0f : FT_ATTN_EXP(m_part - m);
}

)CUDA";

// The CUDA-core kernels: what the tensor-core ones do not take (float32 operands, head dims over 64 or odd, views
// not 4-byte aligned, GPUs before sm_80).
constexpr char kCoreSource[] = R"CUDA(
#define FT_ATTN_TILE 32
// Rows per warp, computed together: four independent dot products per lane, and the warp's 4 x 32 dropout
// elements of a tile fit one Philox call per lane (8 counters a row).
#define FT_ATTN_ROWS 4
// The forward holds 16 query rows a block; the backward kernels keep two row sets and two tiles in shared
// memory, so 8 rows (two warps) a block keep D = 128's under the 48 KB of static shared memory.
#define FT_ATTN_FWD_WARPS 4
#define FT_ATTN_BWD_WARPS 2
#define FT_ATTN_FWD_THREADS (FT_ATTN_FWD_WARPS * 32)
#define FT_ATTN_BWD_THREADS (FT_ATTN_BWD_WARPS * 32)

// Every kernel comes in two sizes, for head dims up to 32 C with C = 2 and 4: a lane accumulates columns
// lane + 32 c for c < C, and the shared arrays hold 32 C columns. Sized for D <= 64 (BERT's), a block's
// registers and shared memory are about half of D = 128's, so three times as many blocks fit on an SM.
template <int C>
struct Dims {
  static constexpr int kMaxD = 32 * C;
  // Tiles that lane j reads row j of, 16 bytes at a time: a pitch of 4 mod 32 words puts the 8 lanes of each
  // quarter-warp phase of a 16-byte shared load on distinct banks.
  static constexpr int kPitch = kMaxD + 4;
};

__device__ __forceinline__ float At(const Float4& f, int i) {
  return i == 0 ? f.v[0] : i == 1 ? f.v[1] : i == 2 ? f.v[2] : f.v[3];
}

__device__ __forceinline__ void Dot4(float& acc, const Float4& a, const Float4& b) {
  acc = __fmaf_rn(a.v[0], b.v[0], acc);
  acc = __fmaf_rn(a.v[1], b.v[1], acc);
  acc = __fmaf_rn(a.v[2], b.v[2], acc);
  acc = __fmaf_rn(a.v[3], b.v[3], acc);
}

// p + i elements of a float32 or 16-bit array.
__device__ __forceinline__ const void* Offset(const void* p, int64 i, int dtype) {
  return dtype == DT_F32 ? (const void*)((const float*)p + i) : (const void*)((const uint16*)p + i);
}

// An operand's [rows, D] slice (row stride `stride` elements, unit stride in D; float32, or 16-bit when dtype is
// DT_BF16 or DT_F16) and the shared tile (float32, row pitch `pitch`, a multiple of 4) its rows go to.
struct Rows {
  const void* base;
  int64 stride;
  float* tile;
  int pitch;
  int dtype;
};

// Head (b, h) of q, k or v (or the backward's out) as Rows into `tile`.
__device__ __forceinline__ Rows OperandRows(const void* p, const Layout& l, int64 b, int64 h, float* tile, int pitch) {
  return {Offset(p, RowAt(l, b, h, 0), FT_ATTN_OPERANDS), l.strides[2], tile, pitch, FT_ATTN_OPERANDS};
}

// Elements i .. i + 3 (those below `count`) of a float32 or 16-bit array, zeros past `count`; `vec`: one 16-byte
// (float32) or 8-byte (16-bit) load, aligned.
__device__ __forceinline__ Float4 Load4(const void* p, int64 i, int count, int dtype, bool vec) {
  Float4 x;
  if (vec && dtype == DT_F32) return *(const Float4*)((const float*)p + i);
  if (vec) {
    const uint64 raw = *(const uint64*)((const uint16*)p + i);
#pragma unroll
    for (int j = 0; j < 4; ++j) x.v[j] = LowpToF32((uint16)(raw >> (16 * j)), dtype);
    return x;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) x.v[j] = j < count ? LoadAt(p, i + j, dtype) : 0.0f;
  return x;
}

// Rows r0 .. r0 + count - 1 of each of N operands into their tiles; rows from `limit` on, and the columns from D
// to the next multiple of 4, are zeros. The whole block (THREADS threads) takes part. A thread issues all its
// global loads (16 bytes each where the operand's rows are 16-byte aligned) before it stores any, so their
// latencies overlap: for D = 64 one round covers a 32-row tile.
template <int N, int THREADS>
__device__ __forceinline__ void LoadRows(const Rows (&ops)[N], int count, int64 r0, int64 limit, int D) {
  constexpr int kPerThread = FT_ATTN_TILE * 16 / THREADS;
  const int D4 = (D + 3) >> 2, chunks = count * D4;
  bool vec[N];
#pragma unroll
  for (int n = 0; n < N; ++n) {
    const uint64 align = ops[n].dtype == DT_F32 ? 15 : 7;
    vec[n] = ((uint64)ops[n].base & align) == 0 && (ops[n].stride & 3) == 0 && (D & 3) == 0;
  }
  for (int i0 = threadIdx.x; i0 < chunks; i0 += kPerThread * THREADS) {
    Float4 x[N][kPerThread];
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int i = i0 + k * THREADS, r = i / D4, c = i - r * D4;
      const bool valid = i < chunks && r0 + r < limit;
#pragma unroll
      for (int n = 0; n < N; ++n) {
        x[n][k] = Load4(ops[n].base, (r0 + r) * ops[n].stride + 4 * c, valid ? D - 4 * c : 0, ops[n].dtype, valid && vec[n]);
      }
    }
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int i = i0 + k * THREADS, r = i / D4, c = i - r * D4;
      if (i < chunks) {
#pragma unroll
        for (int n = 0; n < N; ++n) *(Float4*)(ops[n].tile + r * ops[n].pitch + 4 * c) = x[n][k];
      }
    }
  }
}

// Bit r: whether dropout keeps probability (bh, s + r, t0 + lane), the warp's rows s .. s + 3 against a tile of
// keys. A row's 32 elements span 8 counters, or 9 where its first is not word 0: lane 8r + i draws counter i
// of row r, lane r the ninth when some row needs one, and every lane takes its words' verdicts by shuffle.
__device__ __forceinline__ uint32 KeepKeys(const Attention& a, int64 bh, int64 s, int64 t0, int lane) {
  if (!a.dropout) return 0xfu;
  const uint32 drawn = KeepWords(a, (Element(a, bh, s + (lane >> 3), t0) >> 2) + (lane & 7));
  bool ninth = false;
#pragma unroll
  for (int r = 0; r < FT_ATTN_ROWS; ++r) ninth = ninth || (Element(a, bh, s + r, t0) & 3) != 0;
  const uint32 extra = ninth ? KeepWords(a, (Element(a, bh, s + (lane & 3), t0) >> 2) + 8) : 0u;
  uint32 keep = 0;
#pragma unroll
  for (int r = 0; r < FT_ATTN_ROWS; ++r) {
    const uint64 first = Element(a, bh, s + r, t0), e = first + (uint64)lane;
    const uint32 slot = (uint32)((e >> 2) - (first >> 2));
    const uint32 words = __shfl_sync(0xffffffffu, drawn, r * 8 + (int)(slot & 7));
    const uint32 last = ninth ? __shfl_sync(0xffffffffu, extra, r) : 0u;
    keep |= ((slot == 8 ? last : words) >> (uint32)(e & 3) & 1u) << r;
  }
  return keep;
}

// Bit r: whether dropout keeps probability (bh, s, t + r): four consecutive elements, so one counter or two.
__device__ __forceinline__ uint32 KeepQuery(const Attention& a, int64 bh, int64 s, int64 t) {
  if (!a.dropout) return 0xfu;
  const uint64 first = Element(a, bh, s, t);
  const uint32 w0 = KeepWords(a, first >> 2);
  const uint32 w1 = (first & 3) != 0 ? KeepWords(a, (first >> 2) + 1) : 0u;
  const uint32 both = w0 | w1 << 4;  // bit 4 + w: word w of the second counter
  return both >> (uint32)(first & 3) & 0xfu;
}

// acc[r][c] += sum over the tile's rows j of w[r][j] times tile[j][lane + 32c]: the weights (a warp's 4 x 32, in
// shared memory) times the tile's rows, accumulated in j's order.
template <int C>
__device__ __forceinline__ void AccumulateTile(float (&acc)[FT_ATTN_ROWS][C], const float (*w)[FT_ATTN_TILE],
                                               const float (*tile)[Dims<C>::kPitch], int lane, int D) {
  const int nc = (D + 31) >> 5;
#pragma unroll 2
  for (int j4 = 0; j4 < FT_ATTN_TILE / 4; ++j4) {
    Float4 wj[FT_ATTN_ROWS];
#pragma unroll
    for (int r = 0; r < FT_ATTN_ROWS; ++r) wj[r] = ((const Float4*)w[r])[j4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int c = 0; c < C; ++c) {
        if (c < nc) {
          const float x = tile[4 * j4 + i][lane + 32 * c];
#pragma unroll
          for (int r = 0; r < FT_ATTN_ROWS; ++r) acc[r][c] = __fmaf_rn(At(wj[r], i), x, acc[r][c]);
        }
      }
    }
  }
}

// dst[lane + 32c] = acc[c] * scale: a warp writes one row of D values; and the same values rounded to lowp_dtype
// to lowp[lane + 32c] where lowp is not null.
template <int C>
__device__ __forceinline__ void StoreRow(float* dst, const float (&acc)[C], float scale, int lane, int D,
                                         uint16* lowp = 0, int lowp_dtype = DT_BF16) {
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int d = lane + 32 * c;
    if (d < D) {
      const float x = acc[c] * scale;
      dst[d] = x;
      if (lowp != 0) lowp[d] = F32ToLowp(x, lowp_dtype);
    }
  }
}

template <int C>
__device__ __forceinline__ void Zero(float (&acc)[FT_ATTN_ROWS][C]) {
#pragma unroll
  for (int r = 0; r < FT_ATTN_ROWS; ++r) {
#pragma unroll
    for (int c = 0; c < C; ++c) acc[r][c] = 0.0f;
  }
}

// The key tile from t0 as the forward and dq kernels read it: each of the warp's rows' mask value for this lane's
// key (requested before the barrier), the tile's k and v rows in shared memory, and the lane's keep bits.
template <int kThreads>
__device__ __forceinline__ uint32 KeyTile(const Attention& a, const Operands& o, const Rows (&tiles)[2], int64 b,
                                          int64 h, int64 bh, int64 sw, int64 t0, int lane, int D,
                                          float (&bias)[FT_ATTN_ROWS]) {
#pragma unroll
  for (int r = 0; r < FT_ATTN_ROWS; ++r) bias[r] = MaskAt(a, o, b, h, sw + r, t0 + lane);
  __syncthreads();
  LoadRows<2, kThreads>(tiles, FT_ATTN_TILE, t0, a.T, D);
  __syncthreads();
  return KeepKeys(a, bh, sw, t0, lane);
}

template <int C>
__device__ __forceinline__ void Forward(Attention a, const Operands& o, const Output& y) {
  constexpr int kMaxD = Dims<C>::kMaxD, kPitch = Dims<C>::kPitch;
  ApplyRandomBase(a);
  __align__(16) __shared__ float qs[FT_ATTN_FWD_WARPS * FT_ATTN_ROWS][kMaxD];
  __align__(16) __shared__ float ks[FT_ATTN_TILE][kPitch];
  __align__(16) __shared__ float vs[FT_ATTN_TILE][kPitch];
  __align__(16) __shared__ float ps[FT_ATTN_FWD_WARPS][FT_ATTN_ROWS][FT_ATTN_TILE];
  const int64 bh = blockIdx.x, b = bh / a.H, h = bh - b * a.H;
  const int64 s0 = (int64)blockIdx.y * (FT_ATTN_FWD_WARPS * FT_ATTN_ROWS);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, D = a.D, D4 = (D + 3) >> 2;
  const int64 sw = s0 + warp * FT_ATTN_ROWS;
  {
    const Rows rows[1] = {OperandRows(o.q, o.lq, b, h, &qs[0][0], kMaxD)};
    LoadRows<1, FT_ATTN_FWD_THREADS>(rows, FT_ATTN_FWD_WARPS * FT_ATTN_ROWS, s0, a.S, D);
  }
  const Rows tiles[2] = {OperandRows(o.k, o.lk, b, h, &ks[0][0], kPitch),
                         OperandRows(o.v, o.lv, b, h, &vs[0][0], kPitch)};
  float m[FT_ATTN_ROWS], l[FT_ATTN_ROWS], acc[FT_ATTN_ROWS][C];
#pragma unroll
  for (int r = 0; r < FT_ATTN_ROWS; ++r) {
    m[r] = -FT_INF;
    l[r] = 0.0f;  // this lane's keys' share of the row sum
  }
  Zero(acc);
  for (int64 t0 = 0; t0 < a.T; t0 += FT_ATTN_TILE) {
    const int64 t = t0 + lane;
    float bias[FT_ATTN_ROWS];
    const uint32 keep = KeyTile<FT_ATTN_FWD_THREADS>(a, o, tiles, b, h, bh, sw, t0, lane, D, bias);
    float dot[FT_ATTN_ROWS] = {};
#pragma unroll 4
    for (int d4 = 0; d4 < D4; ++d4) {
      const Float4 kx = ((const Float4*)ks[lane])[d4];
#pragma unroll
      for (int r = 0; r < FT_ATTN_ROWS; ++r) Dot4(dot[r], ((const Float4*)qs[warp * FT_ATTN_ROWS + r])[d4], kx);
    }
#pragma unroll
    for (int r = 0; r < FT_ATTN_ROWS; ++r) {
      const float z = t < a.T ? Logit(a, dot[r], o.mask, bias[r], sw + r, t) : -FT_INF;
      const float m_new = fmaxf(m[r], WarpMax(z));
      const float alpha = Rescale(m[r], m_new);
      const float p = RunningWeight(z, m_new, t < a.T);
      l[r] = l[r] * alpha + p;
      m[r] = m_new;
      ps[warp][r][lane] = p != 0.0f && (keep >> r & 1u) ? p : 0.0f;
#pragma unroll
      for (int c = 0; c < C; ++c) acc[r][c] *= alpha;
    }
    __syncthreads();
    AccumulateTile<C>(acc, ps[warp], vs, lane, D);
  }
#pragma unroll
  for (int r = 0; r < FT_ATTN_ROWS; ++r) {
    const int64 s = sw + r;
    const float sum = WarpSum(l[r]);
    if (s >= a.S) break;  // the same for the whole warp
    // the sum is 0 only without keys (T == 0): torch's output is then zeros. A NaN sum passes through.
    const float inv = sum == 0.0f ? 0.0f : a.dscale / sum;
    const int64 row = RowAt(y.lo, b, h, s);
    StoreRow<C>(y.out + row, acc[r], inv, lane, D, y.lowp == 0 ? 0 : y.lowp + row, y.lowp_dtype);
    if (lane == 0) y.lse[bh * a.S + s] = m[r] == -FT_INF ? -FT_INF : m[r] + logf(sum);
  }
}

// dq[s] = sum_t dS[s, t] k[t] with dS = P * (dP - delta[s]) * scale, dP = keep ? (dout[s] . v[t]) * dscale : 0.
// It first computes its rows' delta = rowsum(dout * out) and stores them for the dk/dv kernel, launched next.
template <int C>
__device__ __forceinline__ void BackwardDq(Attention a, const Operands& o, const Backward& g) {
  constexpr int kMaxD = Dims<C>::kMaxD, kPitch = Dims<C>::kPitch;
  ApplyRandomBase(a);
  __align__(16) __shared__ float qs[FT_ATTN_BWD_WARPS * FT_ATTN_ROWS][kMaxD];
  __align__(16) __shared__ float dos[FT_ATTN_BWD_WARPS * FT_ATTN_ROWS][kMaxD];
  __align__(16) __shared__ float ks[FT_ATTN_TILE][kPitch];
  __align__(16) __shared__ float vs[FT_ATTN_TILE][kPitch];
  __align__(16) __shared__ float ps[FT_ATTN_BWD_WARPS][FT_ATTN_ROWS][FT_ATTN_TILE];
  const int64 bh = blockIdx.x, b = bh / a.H, h = bh - b * a.H;
  const int64 s0 = (int64)blockIdx.y * (FT_ATTN_BWD_WARPS * FT_ATTN_ROWS);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, D = a.D, D4 = (D + 3) >> 2;
  const int64 sw = s0 + warp * FT_ATTN_ROWS;
  // The warp's rows of out and lse, requested before the block's row loads so that their latencies overlap.
  float row_out[FT_ATTN_ROWS][C], row_lse[FT_ATTN_ROWS], row_delta[FT_ATTN_ROWS], acc[FT_ATTN_ROWS][C];
#pragma unroll
  for (int r = 0; r < FT_ATTN_ROWS; ++r) {
    const int64 s = sw + r;
    row_lse[r] = s < a.S ? g.lse[bh * a.S + s] : 0.0f;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int d = lane + 32 * c;
      row_out[r][c] = s < a.S && d < D ? LoadAt(g.out, RowAt(g.lout, b, h, s) + d, FT_ATTN_OPERANDS) : 0.0f;
    }
  }
  {
    const Rows rows[2] = {OperandRows(o.q, o.lq, b, h, &qs[0][0], kMaxD),
                          {g.dout + RowAt(g.ldout, b, h, 0), g.ldout.strides[2], &dos[0][0], kMaxD, DT_F32}};
    LoadRows<2, FT_ATTN_BWD_THREADS>(rows, FT_ATTN_BWD_WARPS * FT_ATTN_ROWS, s0, a.S, D);
  }
  const Rows tiles[2] = {OperandRows(o.k, o.lk, b, h, &ks[0][0], kPitch),
                         OperandRows(o.v, o.lv, b, h, &vs[0][0], kPitch)};
  __syncthreads();
#pragma unroll
  for (int r = 0; r < FT_ATTN_ROWS; ++r) {
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int d = lane + 32 * c;
      if (d < D) sum += row_out[r][c] * dos[warp * FT_ATTN_ROWS + r][d];
    }
    row_delta[r] = WarpSum(sum);
    if (sw + r < a.S && lane == 0) g.delta[bh * a.S + sw + r] = row_delta[r];
  }
  Zero(acc);
  for (int64 t0 = 0; t0 < a.T; t0 += FT_ATTN_TILE) {
    const int64 t = t0 + lane;
    float bias[FT_ATTN_ROWS];
    const uint32 keep = KeyTile<FT_ATTN_BWD_THREADS>(a, o, tiles, b, h, bh, sw, t0, lane, D, bias);
    float qk[FT_ATTN_ROWS] = {}, dov[FT_ATTN_ROWS] = {};
#pragma unroll 2
    for (int d4 = 0; d4 < D4; ++d4) {
      const Float4 kx = ((const Float4*)ks[lane])[d4], vx = ((const Float4*)vs[lane])[d4];
#pragma unroll
      for (int r = 0; r < FT_ATTN_ROWS; ++r) {
        Dot4(qk[r], ((const Float4*)qs[warp * FT_ATTN_ROWS + r])[d4], kx);
        Dot4(dov[r], ((const Float4*)dos[warp * FT_ATTN_ROWS + r])[d4], vx);
      }
    }
#pragma unroll
    for (int r = 0; r < FT_ATTN_ROWS; ++r) {
      float ds = 0.0f;
      if (t < a.T)
        ds = ScoreBackward(a, o, qk[r], bias[r], sw + r, t, row_lse[r], keep >> r & 1u, dov[r], row_delta[r]).ds;
      ps[warp][r][lane] = ds;
    }
    __syncthreads();
    AccumulateTile<C>(acc, ps[warp], ks, lane, D);
  }
#pragma unroll
  for (int r = 0; r < FT_ATTN_ROWS; ++r) {
    const int64 s = sw + r;
    if (s >= a.S) break;
    StoreRow<C>(g.dq + RowAt(g.ldq, b, h, s), acc[r], 1.0f, lane, D);
  }
}

// dv[t] = sum_s P~[s, t] dout[s] (P~ the kept, rescaled probability) and dk[t] = sum_s dS[s, t] q[s]; here lane j
// takes query s0 + j of each tile.
template <int C>
__device__ __forceinline__ void BackwardDkv(Attention a, const Operands& o, const Backward& g) {
  constexpr int kMaxD = Dims<C>::kMaxD, kPitch = Dims<C>::kPitch;
  ApplyRandomBase(a);
  __align__(16) __shared__ float ks[FT_ATTN_BWD_WARPS * FT_ATTN_ROWS][kMaxD];
  __align__(16) __shared__ float vs[FT_ATTN_BWD_WARPS * FT_ATTN_ROWS][kMaxD];
  __align__(16) __shared__ float qs[FT_ATTN_TILE][kPitch];
  __align__(16) __shared__ float dos[FT_ATTN_TILE][kPitch];
  __align__(16) __shared__ float pv[FT_ATTN_BWD_WARPS][FT_ATTN_ROWS][FT_ATTN_TILE];
  __align__(16) __shared__ float pk[FT_ATTN_BWD_WARPS][FT_ATTN_ROWS][FT_ATTN_TILE];
  const int64 bh = blockIdx.x, b = bh / a.H, h = bh - b * a.H;
  const int64 t0 = (int64)blockIdx.y * (FT_ATTN_BWD_WARPS * FT_ATTN_ROWS);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, D = a.D, D4 = (D + 3) >> 2;
  const int64 tw = t0 + warp * FT_ATTN_ROWS;
  {
    const Rows rows[2] = {OperandRows(o.k, o.lk, b, h, &ks[0][0], kMaxD),
                          OperandRows(o.v, o.lv, b, h, &vs[0][0], kMaxD)};
    LoadRows<2, FT_ATTN_BWD_THREADS>(rows, FT_ATTN_BWD_WARPS * FT_ATTN_ROWS, t0, a.T, D);
  }
  const Rows tiles[2] = {OperandRows(o.q, o.lq, b, h, &qs[0][0], kPitch),
                         {g.dout + RowAt(g.ldout, b, h, 0), g.ldout.strides[2], &dos[0][0], kPitch, DT_F32}};
  float gk[FT_ATTN_ROWS][C], gv[FT_ATTN_ROWS][C];
  Zero(gk);
  Zero(gv);
  for (int64 s0 = 0; s0 < a.S; s0 += FT_ATTN_TILE) {
    const int64 s = s0 + lane;
    float bias[FT_ATTN_ROWS];
#pragma unroll
    for (int r = 0; r < FT_ATTN_ROWS; ++r) bias[r] = MaskAt(a, o, b, h, s, tw + r);
    const float s_lse = s < a.S ? g.lse[bh * a.S + s] : 0.0f;
    const float s_delta = s < a.S ? g.delta[bh * a.S + s] : 0.0f;
    __syncthreads();
    LoadRows<2, FT_ATTN_BWD_THREADS>(tiles, FT_ATTN_TILE, s0, a.S, D);
    __syncthreads();
    const uint32 keep = KeepQuery(a, bh, s, tw);
    float qk[FT_ATTN_ROWS] = {}, dov[FT_ATTN_ROWS] = {};
#pragma unroll 2
    for (int d4 = 0; d4 < D4; ++d4) {
      const Float4 qx = ((const Float4*)qs[lane])[d4], dx = ((const Float4*)dos[lane])[d4];
#pragma unroll
      for (int r = 0; r < FT_ATTN_ROWS; ++r) {
        Dot4(qk[r], qx, ((const Float4*)ks[warp * FT_ATTN_ROWS + r])[d4]);
        Dot4(dov[r], dx, ((const Float4*)vs[warp * FT_ATTN_ROWS + r])[d4]);
      }
    }
#pragma unroll
    for (int r = 0; r < FT_ATTN_ROWS; ++r) {
      ScoreGrads sg{};
      if (s < a.S) sg = ScoreBackward(a, o, qk[r], bias[r], s, tw + r, s_lse, keep >> r & 1u, dov[r], s_delta);
      pv[warp][r][lane] = sg.kept;
      pk[warp][r][lane] = sg.ds;
    }
    __syncthreads();
    AccumulateTile<C>(gv, pv[warp], dos, lane, D);
    AccumulateTile<C>(gk, pk[warp], qs, lane, D);
  }
#pragma unroll
  for (int r = 0; r < FT_ATTN_ROWS; ++r) {
    const int64 t = tw + r;
    if (t >= a.T) break;
    StoreRow<C>(g.dk + RowAt(g.ldk, b, h, t), gk[r], 1.0f, lane, D);
    StoreRow<C>(g.dv + RowAt(g.ldv, b, h, t), gv[r], 1.0f, lane, D);
  }
}

// The entry points, _64 for D <= 64 and _128 for the rest. D = 64's backward blocks need at most 6 per SM to
// run B * H * S / 8 = 768 blocks (bert-base's batch of 8 x 64 tokens) on 132 SMs in one wave.
extern "C" __global__ __launch_bounds__(FT_ATTN_FWD_THREADS) void ft_attention_forward_64(
    Attention a, Operands o, Output y) {
  AwaitPriorGrid();
  Forward<2>(a, o, y);
}
extern "C" __global__ __launch_bounds__(FT_ATTN_FWD_THREADS) void ft_attention_forward_128(
    Attention a, Operands o, Output y) {
  AwaitPriorGrid();
  Forward<4>(a, o, y);
}
extern "C" __global__ __launch_bounds__(FT_ATTN_BWD_THREADS, 6) void ft_attention_backward_dq_64(
    Attention a, Operands o, Backward g) {
  AwaitPriorGrid();
  BackwardDq<2>(a, o, g);
}
extern "C" __global__ __launch_bounds__(FT_ATTN_BWD_THREADS, 1) void ft_attention_backward_dq_128(
    Attention a, Operands o, Backward g) {
  AwaitPriorGrid();
  BackwardDq<4>(a, o, g);
}
extern "C" __global__ __launch_bounds__(FT_ATTN_BWD_THREADS, 6) void ft_attention_backward_dkv_64(
    Attention a, Operands o, Backward g) {
  AwaitPriorGrid();
  BackwardDkv<2>(a, o, g);
}
extern "C" __global__ __launch_bounds__(FT_ATTN_BWD_THREADS, 1) void ft_attention_backward_dkv_128(
    Attention a, Operands o, Backward g) {
  AwaitPriorGrid();
  BackwardDkv<4>(a, o, g);
}
)CUDA";

// Tensor-core kernels: 16-bit operands, head dims up to 64 (zero-padded to 64), sm_80 and later. The products
// q k^T, dout v^T, P v, dS k, k q^T, v dout^T, P~^T dout and dS^T q run as mma.m16n8k16 with float32 accumulators,
// as flash attention's do, so the probabilities, dS and dout enter their products rounded to the operands' dtype.
// A block owns 16 rows (queries in the forward and dq, keys in dk/dv), which each of its four warps keeps as
// fragments in registers, and streams 64-row tiles of the other operands through shared memory, row-major and
// transposed, so that every fragment is one 32-bit shared load. Warp w takes columns 16 w .. 16 w + 15 of every
// tile (keys, or queries in dk/dv): BERT's short sequences then still give every SM several warps. At the end the
// warps' partial results are combined through shared memory in warp order: the forward's by the online softmax's
// rule (running maxima and rescaled sums), the gradients by summing. The rest of the contract is the CUDA-core
// kernels': logits rounded as masked_softmax rounds them, -inf rows uniform, the same dropout keep bits, lse and
// delta. Dropout's keep bits come in runs: a lane draws the Philox counters of 8 consecutive elements and the lanes
// that need them take the run by shuffle.
constexpr char kMmaSource[] = R"CUDA(
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define FT_MMA_TILE 64
// A shared tile row: 64 16-bit elements and 4 words of padding, so that a fragment's 8 rows x 4 words hit 32 banks.
#define FT_MMA_WORDS 36
#define FT_MMA_WARPS 4
#define FT_MMA_THREADS (32 * FT_MMA_WARPS)
// The warps' partial results in shared memory: [warp][row][column], rows 72 floats apart (fewer bank conflicts).
#define FT_MMA_PART_PITCH 72
#define FT_MMA_PART_FLOATS (FT_MMA_WARPS * 16 * FT_MMA_PART_PITCH)

typedef uint32 (*TileWords)[FT_MMA_WORDS];
typedef const uint32 (*TileWordsIn)[FT_MMA_WORDS];
// A shared tile row of 128 16-bit elements and 4 words of padding (the whole-head kernel's transposed tiles).
#define FT_MMA_WIDE_WORDS 68
typedef uint32 (*WideWords)[FT_MMA_WIDE_WORDS];

// T itself, in a context where a template parameter is not deduced (so that a null tile may be passed).
template <typename T>
struct Same {
  typedef T type;
};

#if FT_ATTN_OPERANDS == DT_F16
#define FT_MMA_TYPE "f16"
#else
#define FT_MMA_TYPE "bf16"
#endif

// d += a b on the tensor cores (FTEMU_MMA: the CPU emulation's). Fragments as PTX lays them out, with g = lane / 4
// and q = lane % 4: a[h + 2 c] holds A's row g + 8 h at columns 8 c + 2 q + {0, 1}; b0 and b1 B's rows 2 q + {0, 1}
// and 8 + 2 q + {0, 1} of column g; d[2 h + i] D's row g + 8 h at column 2 q + i.
__device__ __forceinline__ void Mma(float (&d)[4], const uint32 (&a)[4], uint32 b0, uint32 b1) {
#if defined(FTEMU_MMA)
  ftemu_mma_m16n8k16<FT_ATTN_OPERANDS == DT_F16>(d, a, b0, b1);
#else
  asm("mma.sync.aligned.m16n8k16.row.col.f32." FT_MMA_TYPE "." FT_MMA_TYPE
      ".f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Two values rounded to the operands' dtype, the first in the low half: an mma operand word. On the GPU one
// instruction rounds both (to nearest even, as F32ToLowp; only a NaN's payload may differ), where F32ToLowp's
// integer rounding took a dozen a value, and the kernels round dozens of values a thread and tile.
__device__ __forceinline__ uint32 Pack(float lo, float hi) {
#if defined(FTEMU_MMA)
  return (uint32)F32ToLowp(lo, FT_ATTN_OPERANDS) | (uint32)F32ToLowp(hi, FT_ATTN_OPERANDS) << 16;
#else
  uint32 packed;
  asm("cvt.rn." FT_MMA_TYPE "x2.f32 %0, %1, %2;" : "=r"(packed) : "f"(hi), "f"(lo));
  return packed;
#endif
}

// Elements i and i + 1 of a 16-bit operand (i even, the array 4-byte aligned: the host checks) or of float32 dout.
__device__ __forceinline__ uint32 PairAt(const uint16* p, int64 i) { return *(const uint32*)(p + i); }
__device__ __forceinline__ uint32 PairAt(const float* p, int64 i) { return Pack(p[i], p[i + 1]); }

// A fragments of rows r0 .. r0 + 15 of a [rows, D] operand (row stride `stride`), for the k-steps of 16 columns;
// zeros from row `limit` and column D on.
template <typename T>
__device__ __forceinline__ void RowFragments(uint32 (&f)[4][4], const T* base, int64 stride, int64 r0, int64 limit,
                                             int D, int lane) {
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int ks = 0; ks < 4; ++ks) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64 r = r0 + g + 8 * (i & 1);
      const int col = 16 * ks + 8 * (i >> 1) + 2 * q;
      f[ks][i] = r < limit && col < D ? PairAt(base, r * stride + col) : 0u;
    }
  }
}

// Eight consecutive elements of a 16-bit operand or of float32 dout, 16-byte aligned, as four words of pairs.
struct __align__(16) Words4 {
  uint32 w[4];
};
__device__ __forceinline__ Words4 EightAt(const uint16* p) { return *(const Words4*)p; }
__device__ __forceinline__ Words4 EightAt(const float* p) {
  const Float4 a = *(const Float4*)p, b = *(const Float4*)(p + 4);
  return {{Pack(a.v[0], a.v[1]), Pack(a.v[2], a.v[3]), Pack(b.v[0], b.v[1]), Pack(b.v[2], b.v[3])}};
}

// Rows r0 .. r0 + 63 of a [rows, D] operand on their way to shared memory, held in registers: LoadTile issues a
// thread's global loads, PutTile stores them into `rows` ([row][column pair]) and `cols` (the transpose, [column][row
// pair]), either may be null; zeros from row `limit` and column D on. Apart, so that a kernel issues several tiles'
// loads before it waits for any. WARPS: the block's warps, all taking part; CP: the row pitch of `cols` in words (a
// wide tile's cols may start at word 32, for rows 64 .. 127).
// Where every row's start is 16-byte aligned and D a multiple of 8 (`vec`), lane p of warp w reads rows 2 p and
// 2 p + 1, columns 8 c .. 8 c + 7 for its warp's chunks c = w, w + WARPS .., 16 bytes a load; each of its words of
// `cols` then holds both rows, and the warp's 32 words of a column are consecutive (no bank conflicts). Otherwise a
// warp reads a row's 32 pairs, 64 / WARPS rows a thread.
template <int WARPS>
struct TileRegs {
  static constexpr int kChunks = 8 / WARPS;  // a warp's chunks of 8 columns, where vec
  uint32 w[8 * kChunks];
  bool vec;
};

template <int WARPS, typename T>
__device__ __forceinline__ void LoadTile(TileRegs<WARPS>& t, const T* base, int64 stride, int64 r0, int64 limit, int D) {
  const int p = threadIdx.x & 31, warp = threadIdx.x >> 5;
  t.vec = ((uint64)base & 15) == 0 && (stride & 7) == 0 && (D & 7) == 0;
  if (t.vec) {
#pragma unroll
    for (int k = 0; k < TileRegs<WARPS>::kChunks; ++k) {
      const int c = warp + WARPS * k;
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int64 r = r0 + 2 * p + i;
        const Words4 x = r < limit && 8 * c < D ? EightAt(base + r * stride + 8 * c) : Words4{{0u, 0u, 0u, 0u}};
#pragma unroll
        for (int e = 0; e < 4; ++e) t.w[8 * k + 4 * i + e] = x.w[e];
      }
    }
    return;
  }
#pragma unroll
  for (int k = 0; k < 8 * TileRegs<WARPS>::kChunks; ++k) {
    const int i = threadIdx.x + k * 32 * WARPS, r = i >> 5, c = 2 * (i & 31);
    t.w[k] = r0 + r < limit && c < D ? PairAt(base, (r0 + r) * stride + c) : 0u;
  }
}

template <int WARPS, int CP = FT_MMA_WORDS>
__device__ __forceinline__ void PutTile(const TileRegs<WARPS>& t, TileWords rows, typename Same<uint32 (*)[CP]>::type cols) {
  const int p = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (t.vec) {
#pragma unroll
    for (int k = 0; k < TileRegs<WARPS>::kChunks; ++k) {
      const int c = warp + WARPS * k;
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        if (rows != 0) *(Words4*)&rows[2 * p + i][4 * c] = Words4{{t.w[8 * k + 4 * i], t.w[8 * k + 4 * i + 1],
                                                                   t.w[8 * k + 4 * i + 2], t.w[8 * k + 4 * i + 3]}};
      }
      if (cols != 0) {
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const uint32 lo = t.w[8 * k + (e >> 1)] >> (16 * (e & 1)) & 0xffffu;
          const uint32 hi = t.w[8 * k + 4 + (e >> 1)] >> (16 * (e & 1)) & 0xffffu;
          cols[8 * c + e][p] = lo | hi << 16;
        }
      }
    }
    return;
  }
#pragma unroll
  for (int k = 0; k < 8 * TileRegs<WARPS>::kChunks; ++k) {
    const int i = threadIdx.x + k * 32 * WARPS, r = i >> 5, c = 2 * (i & 31);
    if (rows != 0) rows[r][c >> 1] = t.w[k];
    if (cols != 0) {
      ((uint16*)cols[c])[r] = (uint16)t.w[k];
      ((uint16*)cols[c + 1])[r] = (uint16)(t.w[k] >> 16);
    }
  }
}

// LoadTile then PutTile, for a block of FT_MMA_WARPS warps.
template <typename T>
__device__ __forceinline__ void StoreTile(TileWords rows, TileWords cols, const T* base, int64 stride, int64 r0,
                                          int64 limit, int D) {
  TileRegs<FT_MMA_WARPS> t;
  LoadTile(t, base, stride, r0, limit, D);
  PutTile(t, rows, cols);
}

// c[j] += a times B over the k-steps ks < kst, for the two n8 tiles j of B = w's rows r0 + 8 j .. read as columns
// ([n][k] words): this warp's 16 columns of a tile against the block's rows.
__device__ __forceinline__ void ProductOfColumns(float (&c)[2][4], const uint32 (&a)[4][4], TileWordsIn w, int r0,
                                                 int kst, int lane) {
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int ks = 0; ks < 4; ++ks) {
    if (ks < kst) {
#pragma unroll
      for (int j = 0; j < 2; ++j) Mma(c[j], a[ks], w[r0 + 8 * j + g][8 * ks + q], w[r0 + 8 * j + g][8 * ks + 4 + q]);
    }
  }
}

// c[j] += a times B for the n8 tiles j < nt of B = w's rows 8 j .. read as columns, over the one k-step of this
// warp's 16 columns of the tile (words 8 w ..): its share of a product over the tile. P: w's row pitch in words.
template <int P>
__device__ __forceinline__ void ProductOverColumns(float (&c)[8][4], const uint32 (&a)[4], const uint32 (*w)[P],
                                                   int warp, int nt, int lane) {
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    if (j < nt) Mma(c[j], a, w[8 * j + g][8 * warp + q], w[8 * j + g][8 * warp + 4 + q]);
  }
}

// A 16 x 16 accumulator block as an A fragment, rounded to the operands' dtype.
__device__ __forceinline__ void PackBlock(uint32 (&a)[4], const float (&c)[2][4]) {
  a[0] = Pack(c[0][0], c[0][1]);
  a[1] = Pack(c[0][2], c[0][3]);
  a[2] = Pack(c[1][0], c[1][1]);
  a[3] = Pack(c[1][2], c[1][3]);
}

// Bit i < 8: whether dropout keeps element first + i of the flat probabilities.
__device__ __forceinline__ uint32 KeepRun8(const Attention& a, uint64 first) {
  if (!a.dropout) return 0xffu;
  const int shift = (int)(first & 3);
  uint32 bits = KeepWords(a, first >> 2) | KeepWords(a, (first >> 2) + 1) << 4;
  if (shift > 0) bits |= KeepWords(a, (first >> 2) + 2) << 8;
  return bits >> shift & 0xffu;
}

// Rows g and g + 8's keep bits for this warp's keys t0 + 16 w .., [row half][n8 tile]: lane 2 r + j draws row
// sw + r's keys t0 + 16 w + 8 j .. 8 j + 7.
__device__ __forceinline__ void RowKeeps(uint32 (&keep)[2][2], const Attention& a, int64 bh, int64 sw, int64 t0,
                                         int warp, int lane) {
  const uint32 run = KeepRun8(a, Element(a, bh, sw + (lane >> 1), t0 + 16 * warp + 8 * (lane & 1)));
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int j = 0; j < 2; ++j) keep[h][j] = __shfl_sync(0xffffffffu, run, 2 * ((lane >> 2) + 8 * h) + j);
  }
}

// One step of the forward's online softmax for a warp's rows sw + g and sw + g + 8 over keys t0 .. t0 + 15 (`keep`:
// their dropout bits, RowKeeps): s, holding the rows' products with the keys, becomes their kept weights (0 past T
// or where dropout drops them), rounded into the A fragment pf; the running maxima m, sums l and output acc move to
// the new maxima first.
__device__ __forceinline__ void SoftmaxStep(uint32 (&pf)[4], float (&s)[2][4], float (&m)[2], float (&l)[2],
                                            float (&acc)[8][4], const Attention& a, const Operands& o,
                                            const MaskLine (&mask)[2], const uint32 (&keep)[2][2], int64 sw, int64 t0,
                                            int lane) {
  const int g = lane >> 2, q = lane & 3;
  float top[2] = {-FT_INF, -FT_INF};
#pragma unroll
  for (int j = 0; j < 2; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64 row = sw + g + 8 * (e >> 1), t = t0 + 8 * j + 2 * q + (e & 1);
      const float z = t < a.T ? Logit(a, s[j][e], o.mask, MaskValue(mask[e >> 1], t), row, t) : -FT_INF;
      s[j][e] = z;
      top[e >> 1] = fmaxf(top[e >> 1], z);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    top[r] = fmaxf(top[r], __shfl_xor_sync(0xffffffffu, top[r], 1));
    top[r] = fmaxf(top[r], __shfl_xor_sync(0xffffffffu, top[r], 2));
    const float m_new = fmaxf(m[r], top[r]);
    const float alpha = Rescale(m[r], m_new);
    l[r] *= alpha;
    m[r] = m_new;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      acc[j][2 * r] *= alpha;
      acc[j][2 * r + 1] *= alpha;
    }
  }
#pragma unroll
  for (int j = 0; j < 2; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = e >> 1;
      const float p = RunningWeight(s[j][e], m[r], t0 + 8 * j + 2 * q + (e & 1) < a.T);
      l[r] += p;
      s[j][e] = p != 0.0f && (keep[r][j] >> (2 * q + (e & 1)) & 1u) ? p : 0.0f;
    }
  }
  PackBlock(pf, s);
}

// The sum over the block's warps of c (16 x 64; each warp's rows g and g + 8 scaled by its f[0] and f[1]), for
// this warp's quarter of the columns: r[h][j][i] is row g + 8 h, column 16 w + 8 j + 2 q + i. The whole block
// calls it; `part` (FT_MMA_PART_FLOATS) may alias tiles that are no longer read.
__device__ __forceinline__ void SumWarps(float (&r)[2][2][2], const float (&c)[8][4], const float (&f)[2],
                                         float* part, int warp, int lane) {
  const int g = lane >> 2, q = lane & 3;
  __syncthreads();
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e)
      part[(warp * 16 + g + 8 * (e >> 1)) * FT_MMA_PART_PITCH + 8 * j + 2 * q + (e & 1)] = c[j][e] * f[e >> 1];
  }
  __syncthreads();
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        float sum = 0.0f;
        for (int w = 0; w < FT_MMA_WARPS; ++w)
          sum += part[(w * 16 + g + 8 * h) * FT_MMA_PART_PITCH + 16 * warp + 8 * j + 2 * q + i];
        r[h][j][i] = sum;
      }
    }
  }
}

// Values x0 and x1 at offsets at and at + 1 of dst (float32; null for none) and, where lowp is not null, rounded to
// lowp_dtype at the same offsets of lowp: one 4-byte store where aligned and in the operands' dtype.
__device__ __forceinline__ void StorePair(float* dst, uint16* lowp, int lowp_dtype, int64 at, float x0, float x1) {
  if (dst != 0) {
    dst[at] = x0;
    dst[at + 1] = x1;
  }
  if (lowp == 0) return;
  if (lowp_dtype == FT_ATTN_OPERANDS && ((uint64)(lowp + at) & 3) == 0) {
    *(uint32*)(lowp + at) = Pack(x0, x1);
  } else {
    lowp[at] = F32ToLowp(x0, lowp_dtype);
    lowp[at + 1] = F32ToLowp(x1, lowp_dtype);
  }
}

// Rows r0 + g + 8 h below `limit` of values v[h][j][i] at columns c0 + 8 j + 2 q + i below D (a warp's quarter of
// SumWarps' sums: J = 2, c0 = 16 w; or its accumulators over every column: J = 8, c0 = 0, Rearranged), each times
// scale[h], to dst (row stride `stride`; null for none) and, where lowp is not null, rounded to lowp_dtype to lowp
// at the same offsets.
template <int J>
__device__ __forceinline__ void StoreRowPairs(float* dst, uint16* lowp, int lowp_dtype, int64 stride,
                                              const float (&v)[2][J][2], const float (&scale)[2], int64 r0,
                                              int64 limit, int c0, int D, int lane) {
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64 row = r0 + g + 8 * h;
    if (row >= limit) continue;
#pragma unroll
    for (int j = 0; j < J; ++j) {
      const int d = c0 + 8 * j + 2 * q;  // and d + 1, below D with d: D is even
      if (d < D) StorePair(dst, lowp, lowp_dtype, row * stride + d, v[h][j][0] * scale[h], v[h][j][1] * scale[h]);
    }
  }
}

// A gradient's rows r0 + g + 8 h below `limit` of head (b, h) from v (StoreRowPairs' layout, columns c0 + ..) to dst
// (float32, view l), or with gr.sums in 16 bits there and their column sums to sums_row[c0 + 8 j + 2 q + i] (below
// D): in double in a fixed order (a lane's two, then across the lanes with its columns by a butterfly, which gives
// each lane the same bits), as the other column sums do, so the sums do not depend on the schedule.
template <int J>
__device__ __forceinline__ void StoreGradientRows(const Backward& gr, float* dst, const Layout& l, int64 b, int64 h,
                                                  const float (&v)[2][J][2], int64 r0, int64 limit, int c0, int D,
                                                  double* sums_row, int lane) {
  const int g = lane >> 2, q = lane & 3;
  const int64 at = RowAt(l, b, h, 0);
  const float ones[2] = {1.0f, 1.0f};
  StoreRowPairs(gr.sums == 0 ? dst + at : 0, gr.sums == 0 ? 0 : (uint16*)dst + at, FT_ATTN_OPERANDS, l.strides[2], v,
                ones, r0, limit, c0, D, lane);
  if (gr.sums == 0) return;
#pragma unroll
  for (int j = 0; j < J; ++j) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      double c = 0.0;
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        if (r0 + g + 8 * hh < limit) c += (double)v[hh][j][i];
      }
      c += __shfl_xor_sync(0xffffffffu, c, 4);
      c += __shfl_xor_sync(0xffffffffu, c, 8);
      c += __shfl_xor_sync(0xffffffffu, c, 16);
      const int d = c0 + 8 * j + 2 * q + i;
      if (g == 0 && d < D) sums_row[d] = c;
    }
  }
}

// The blocks of one head in a backward launch: B of gridDim.y row blocks.
__device__ __forceinline__ int64 HeadBlocks(int64 H) { return (int64)(gridDim.x / H) * gridDim.y; }

// A gradient's rows r0 .. r0 + 15 (SumWarps' sums, this warp's columns) of head (b, h) to dst (StoreGradientRows),
// their column sums to the block's row of the partials (`kind` of the kernel's: [kinds, H, HeadBlocks(H), D], row
// b * gridDim.y + blockIdx.y).
__device__ __forceinline__ void StoreGradient(const Backward& gr, float* dst, const Layout& l, int64 H, int64 b,
                                              int64 h, const float (&r)[2][2][2], int64 r0, int64 limit, int D,
                                              int kind, int warp, int lane) {
  double* row = gr.sums == 0 ? 0 : gr.partial + ((kind * H + h) * HeadBlocks(H) + b * gridDim.y + blockIdx.y) * D;
  StoreGradientRows(gr, dst, l, b, h, r, r0, limit, 16 * warp, D, row, lane);
}

// With gr.sums, after the block's StoreGradient calls: the last block of head h to finish adds the partials of
// the kernel's `kinds` gradients, slot by slot, into sums' rows first_kind .. (the whole block calls it; `last`: a
// flag in shared memory).
__device__ __forceinline__ void FinishGradientSums(const Backward& gr, int64 H, int64 h, int D, int first_kind,
                                                   int kinds, bool& last) {
  if (gr.sums == 0) return;
  const int64 slots = HeadBlocks(H);
  if (!LastToFinish(gr.tickets + h, (unsigned int)slots, last)) return;
  for (int k = 0; k < kinds; ++k)
    AddPartials(gr.partial + (k * H + h) * slots * D, (int)slots, D, 0, gr.sums + ((first_kind + k) * H + h) * D);
}

// Rows sw + g and sw + g + 8's delta = rowsum(dout * out) and lse (0 past S), the warp's 16 rows of head (b, h):
// lane 2 r + half sums half of row r's products. With `store`, the rows' delta go to gr.delta too.
__device__ __forceinline__ void RowDeltas(float (&delta)[2], float (&lse)[2], const Attention& a, const Backward& gr,
                                          int64 b, int64 h, int64 sw, int lane, bool store) {
  const int64 bh = b * a.H + h, s = sw + (lane >> 1);
  const int D = a.D;
  float sum = 0.0f;
  if (s < a.S) {
    const int64 ro = RowAt(gr.lout, b, h, s), rd = RowAt(gr.ldout, b, h, s);
    // 8 columns' loads at a time before their products, so that their latencies overlap
#pragma unroll
    for (int d8 = 32 * (lane & 1); d8 < 32 * (lane & 1) + 32; d8 += 8) {
      float o[8], dout[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        o[i] = d8 + i < D ? LoadAt(gr.out, ro + d8 + i, FT_ATTN_OPERANDS) : 0.0f;
        dout[i] = d8 + i < D ? gr.dout[rd + d8 + i] : 0.0f;
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) sum += o[i] * dout[i];
    }
  }
  sum += __shfl_xor_sync(0xffffffffu, sum, 1);
  if (store && s < a.S && (lane & 1) == 0) gr.delta[bh * a.S + s] = sum;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    delta[r] = __shfl_sync(0xffffffffu, sum, 2 * ((lane >> 2) + 8 * r));
    const int64 row = sw + (lane >> 2) + 8 * r;
    lse[r] = row < a.S ? gr.lse[bh * a.S + row] : 0.0f;
  }
}

extern "C" __global__ __launch_bounds__(FT_MMA_THREADS) void ft_attention_forward_mma(Attention a, Operands o,
                                                                                      Output y) {
  AwaitPriorGrid();
  ApplyRandomBase(a);
  __align__(16) __shared__ uint32 tiles[2][FT_MMA_TILE][FT_MMA_WORDS];  // k's rows, v's columns
  __shared__ float stats[FT_MMA_WARPS][16][2];                          // each warp's row maxima and sums
  const int64 bh = blockIdx.x, b = bh / a.H, h = bh - b * a.H, sw = (int64)blockIdx.y * 16;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3, D = a.D;
  const int kst = (D + 15) >> 4, nt = (D + 7) >> 3;
  uint32 qf[4][4];
  RowFragments(qf, (const uint16*)o.q + RowAt(o.lq, b, h, 0), o.lq.strides[2], sw, a.S, D, lane);
  const uint16* kb = (const uint16*)o.k + RowAt(o.lk, b, h, 0);
  const uint16* vb = (const uint16*)o.v + RowAt(o.lv, b, h, 0);
  const MaskLine mask[2] = {QueryMask(a, o, b, h, sw + g), QueryMask(a, o, b, h, sw + g + 8)};
  float m[2] = {-FT_INF, -FT_INF}, l[2] = {0.0f, 0.0f}, acc[8][4] = {};
  for (int64 t0 = 0; t0 < a.T; t0 += FT_MMA_TILE) {
    __syncthreads();  // the last tile is read
    StoreTile(tiles[0], 0, kb, o.lk.strides[2], t0, a.T, D);
    StoreTile(0, tiles[1], vb, o.lv.strides[2], t0, a.T, D);
    // a warp whose 16 keys of the tile all lie past T has nothing to add (the last tile of most lengths)
    const bool idle = t0 + 16 * warp >= a.T;
    uint32 keep[2][2];
    if (!idle) RowKeeps(keep, a, bh, sw, t0, warp, lane);
    __syncthreads();
    if (idle) continue;
    float s[2][4] = {};
    ProductOfColumns(s, qf, tiles[0], 16 * warp, kst, lane);
    uint32 pf[4];
    SoftmaxStep(pf, s, m, l, acc, a, o, mask, keep, sw, t0 + 16 * warp, lane);
    ProductOverColumns(acc, pf, tiles[1], warp, nt, lane);
  }
  // the block's row maxima and sums from the warps', in warp order
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    if (q == 0) {
      stats[warp][g + 8 * r][0] = m[r];
      stats[warp][g + 8 * r][1] = l[r];
    }
  }
  __syncthreads();
  float mine[2], scale[2], lse[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float top = -FT_INF, sum = 0.0f;
    for (int w = 0; w < FT_MMA_WARPS; ++w) top = fmaxf(top, stats[w][g + 8 * r][0]);
    for (int w = 0; w < FT_MMA_WARPS; ++w) sum += stats[w][g + 8 * r][1] * Rescale(stats[w][g + 8 * r][0], top);
    mine[r] = Rescale(m[r], top);
    // the sum is 0 only without keys (T == 0): torch's output is then zeros. A NaN sum passes through.
    scale[r] = sum == 0.0f ? 0.0f : a.dscale / sum;
    lse[r] = top == -FT_INF ? -FT_INF : top + logf(sum);
  }
  float out[2][2][2];
  SumWarps(out, acc, mine, (float*)tiles, warp, lane);
  const int64 at = RowAt(y.lo, b, h, 0);
  StoreRowPairs(y.out + at, y.lowp == 0 ? 0 : y.lowp + at, y.lowp_dtype, y.lo.strides[2], out, scale, sw, a.S,
                16 * warp, D, lane);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64 s = sw + g + 8 * r;
    if (warp == 0 && q == 0 && s < a.S) y.lse[bh * a.S + s] = lse[r];
  }
}

// dq = dS k with dS = P * (dP - delta) * scale, dP = keep ? (dout v^T) * dscale : 0, after storing the rows'
// delta = rowsum(dout * out) for the dk/dv kernel, launched next.
extern "C" __global__ __launch_bounds__(FT_MMA_THREADS) void ft_attention_backward_dq_mma(Attention a, Operands o,
                                                                                          Backward gr) {
  AwaitPriorGrid();
  ApplyRandomBase(a);
  __align__(16) __shared__ uint32 tiles[3][FT_MMA_TILE][FT_MMA_WORDS];  // k's rows and columns, v's rows
  const int64 bh = blockIdx.x, b = bh / a.H, h = bh - b * a.H, sw = (int64)blockIdx.y * 16;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3, D = a.D;
  const int kst = (D + 15) >> 4, nt = (D + 7) >> 3;
  float delta[2], lse[2];
  // every warp computes its rows' delta, warp 0 stores them
  RowDeltas(delta, lse, a, gr, b, h, sw, lane, warp == 0);
  uint32 qf[4][4], df[4][4];
  RowFragments(qf, (const uint16*)o.q + RowAt(o.lq, b, h, 0), o.lq.strides[2], sw, a.S, D, lane);
  RowFragments(df, gr.dout + RowAt(gr.ldout, b, h, 0), gr.ldout.strides[2], sw, a.S, D, lane);
  const uint16* kb = (const uint16*)o.k + RowAt(o.lk, b, h, 0);
  const uint16* vb = (const uint16*)o.v + RowAt(o.lv, b, h, 0);
  const MaskLine mask[2] = {QueryMask(a, o, b, h, sw + g), QueryMask(a, o, b, h, sw + g + 8)};
  float dq[8][4] = {};
  for (int64 t0 = 0; t0 < a.T; t0 += FT_MMA_TILE) {
    __syncthreads();
    StoreTile(tiles[0], tiles[1], kb, o.lk.strides[2], t0, a.T, D);
    StoreTile(tiles[2], 0, vb, o.lv.strides[2], t0, a.T, D);
    const bool idle = t0 + 16 * warp >= a.T;
    uint32 keep[2][2];
    if (!idle) RowKeeps(keep, a, bh, sw, t0, warp, lane);
    __syncthreads();
    if (idle) continue;
    float s[2][4] = {}, dp[2][4] = {};
    ProductOfColumns(s, qf, tiles[0], 16 * warp, kst, lane);
    ProductOfColumns(dp, df, tiles[2], 16 * warp, kst, lane);
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1;
        const int64 row = sw + g + 8 * r, t = t0 + 16 * warp + 8 * j + 2 * q + (e & 1);
        const bool keep_e = keep[r][j] >> (2 * q + (e & 1)) & 1u;
        float ds = 0.0f;
        if (t < a.T)
          ds = ScoreBackward(a, o, s[j][e], MaskValue(mask[r], t), row, t, lse[r], keep_e, dp[j][e], delta[r]).ds;
        s[j][e] = ds;
      }
    }
    uint32 sf[4];
    PackBlock(sf, s);
    ProductOverColumns(dq, sf, tiles[1], warp, nt, lane);
  }
  const float ones[2] = {1.0f, 1.0f};
  float sum[2][2][2];
  SumWarps(sum, dq, ones, (float*)tiles, warp, lane);
  StoreGradient(gr, gr.dq, gr.ldq, a.H, b, h, sum, sw, a.S, D, 0, warp, lane);
  __shared__ bool last;
  FinishGradientSums(gr, a.H, h, D, 0, 1, last);
}

// dv = P~^T dout (P~ the kept, rescaled probabilities) and dk = dS^T q, for the block's 16 key rows.
extern "C" __global__ __launch_bounds__(FT_MMA_THREADS) void ft_attention_backward_dkv_mma(Attention a, Operands o,
                                                                                           Backward gr) {
  AwaitPriorGrid();
  ApplyRandomBase(a);
  __align__(16) __shared__ uint32 tiles[4][FT_MMA_TILE][FT_MMA_WORDS];  // q's rows and columns, dout's likewise
  __shared__ float lse[FT_MMA_TILE], delta[FT_MMA_TILE];
  const int64 bh = blockIdx.x, b = bh / a.H, h = bh - b * a.H, tw = (int64)blockIdx.y * 16;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3, D = a.D;
  const int kst = (D + 15) >> 4, nt = (D + 7) >> 3;
  uint32 kf[4][4], vf[4][4];
  RowFragments(kf, (const uint16*)o.k + RowAt(o.lk, b, h, 0), o.lk.strides[2], tw, a.T, D, lane);
  RowFragments(vf, (const uint16*)o.v + RowAt(o.lv, b, h, 0), o.lv.strides[2], tw, a.T, D, lane);
  const uint16* qb = (const uint16*)o.q + RowAt(o.lq, b, h, 0);
  const float* db = gr.dout + RowAt(gr.ldout, b, h, 0);
  const MaskLine mask[2] = {KeyMask(a, o, b, h, tw + g), KeyMask(a, o, b, h, tw + g + 8)};
  float dk[8][4] = {}, dv[8][4] = {};
  for (int64 s0 = 0; s0 < a.S; s0 += FT_MMA_TILE) {
    __syncthreads();
    StoreTile(tiles[0], tiles[1], qb, o.lq.strides[2], s0, a.S, D);
    StoreTile(tiles[2], tiles[3], db, gr.ldout.strides[2], s0, a.S, D);
    for (int i = threadIdx.x; i < FT_MMA_TILE; i += FT_MMA_THREADS) {
      const int64 s = s0 + i;
      lse[i] = s < a.S ? gr.lse[bh * a.S + s] : 0.0f;
      delta[i] = s < a.S ? gr.delta[bh * a.S + s] : 0.0f;
    }
    // lane 2 c + h draws query 16 w + c against keys tw + 8 h ..: consecutive elements
    const bool idle = s0 + 16 * warp >= a.S;
    const uint32 run = idle ? 0u : KeepRun8(a, Element(a, bh, s0 + 16 * warp + (lane >> 1), tw + 8 * (lane & 1)));
    __syncthreads();
    if (idle) continue;
    float st[2][4] = {}, dpt[2][4] = {};
    ProductOfColumns(st, kf, tiles[0], 16 * warp, kst, lane);
    ProductOfColumns(dpt, vf, tiles[2], 16 * warp, kst, lane);
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1, col = 16 * warp + 8 * j + 2 * q + (e & 1);
        const int64 t = tw + g + 8 * r, s = s0 + col;
        const bool keep_e = __shfl_sync(0xffffffffu, run, 2 * (col - 16 * warp) + r) >> g & 1u;
        ScoreGrads sg{};
        if (s < a.S)
          sg = ScoreBackward(a, o, st[j][e], MaskValue(mask[r], s), s, t, lse[col], keep_e, dpt[j][e], delta[col]);
        st[j][e] = sg.kept;
        dpt[j][e] = sg.ds;
      }
    }
    uint32 pf[4];
    PackBlock(pf, st);
    ProductOverColumns(dv, pf, tiles[3], warp, nt, lane);
    PackBlock(pf, dpt);
    ProductOverColumns(dk, pf, tiles[1], warp, nt, lane);
  }
  const float ones[2] = {1.0f, 1.0f};
  float sum[2][2][2];
  SumWarps(sum, dk, ones, (float*)tiles, warp, lane);
  StoreGradient(gr, gr.dk, gr.ldk, a.H, b, h, sum, tw, a.T, D, 0, warp, lane);
  SumWarps(sum, dv, ones, (float*)tiles, warp, lane);
  StoreGradient(gr, gr.dv, gr.ldv, a.H, b, h, sum, tw, a.T, D, 1, warp, lane);
  __shared__ bool last;
  FinishGradientSums(gr, a.H, h, D, 1, 2, last);
}

// The whole-head backward, for S and T up to FT_MMA_HEAD_ROWS: one block of FT_MMA_HEAD_WARPS warps a head (b, h)
// computes each probability, its dropout verdict and dS once, and dq, dk and dv from them, where the dq and dk/dv
// kernels above each recompute them for their blocks of 16 rows and each block loads the head's other operands
// again. Warp w first takes query rows 16 w ..: dq = dS k against every key, P~ and dS rounded to the operands'
// dtype into shared memory, transposed ([key][query]); then key rows 16 w ..: dv = P~^T dout and dk = dS^T q, whose
// operands are those transposed tiles and q's and dout's columns. The same products in the same dtypes as the
// kernels above (only float32 summation orders differ), in 4 * FT_MMA_HEAD_WORDS bytes of dynamic shared memory
// (the host's kMmaHeadSharedBytes).
#define FT_MMA_HEAD_ROWS 128
#define FT_MMA_HEAD_WARPS 8
#define FT_MMA_HEAD_THREADS (32 * FT_MMA_HEAD_WARPS)
// Its words: the warps' column sums (FT_MMA_HEAD_WARPS x 64 doubles), k's and v's rows (FT_MMA_HEAD_ROWS x
// FT_MMA_WORDS each), k's, q's and dout's columns (64 x FT_MMA_WIDE_WORDS each), P~ and dS transposed
// (FT_MMA_HEAD_ROWS x FT_MMA_WIDE_WORDS each): 159 KiB, which sm_80's 163 take. Every operand has its own place, so
// that the block issues all its global loads at once.
#define FT_MMA_HEAD_SUM_WORDS (FT_MMA_HEAD_WARPS * 64 * 2)
#define FT_MMA_HEAD_WORDS                                                                                         \
  (FT_MMA_HEAD_SUM_WORDS + 2 * FT_MMA_HEAD_ROWS * FT_MMA_WORDS + 3 * 64 * FT_MMA_WIDE_WORDS +                     \
   2 * FT_MMA_HEAD_ROWS * FT_MMA_WIDE_WORDS)

// A warp's accumulators over every column (c[j][2 h + i]: row g + 8 h, column 8 j + 2 q + i) as StoreRowPairs' v.
__device__ __forceinline__ void Rearranged(float (&v)[2][8][2], const float (&c)[8][4]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      v[h][j][0] = c[j][2 * h];
      v[h][j][1] = c[j][2 * h + 1];
    }
  }
}

// A gradient's rows r0 .. r0 + 15 of head (b, h) from a warp's accumulators over every column to dst (float32, view
// l), or with gr.sums in 16 bits there; with gr.sums also the block's column sums over the rows below `limit` to its
// row of the partials (as StoreGradient's: a column's 16 rows in double in a fixed order, then the warps' sums in
// warp order through `warp_sums`). The whole block calls it; a warp whose rows all lie past `limit` adds zeros.
__device__ __forceinline__ void StoreHeadGradient(const Backward& gr, float* dst, const Layout& l, int64 H, int64 b,
                                                  int64 h, const float (&c)[8][4], int64 r0, int64 limit, int D,
                                                  int kind, double* warp_sums, int warp, int lane) {
  float v[2][8][2];
  Rearranged(v, c);
  StoreGradientRows(gr, dst, l, b, h, v, r0, limit, 0, D, warp_sums + warp * 64, lane);
  if (gr.sums == 0) return;
  __syncthreads();
  double* row = gr.partial + ((kind * H + h) * HeadBlocks(H) + b * gridDim.y + blockIdx.y) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    double sum = 0.0;
    for (int w = 0; w < FT_MMA_HEAD_WARPS; ++w) sum += warp_sums[w * 64 + d];
    row[d] = sum;
  }
  __syncthreads();  // warp_sums may be written again
}

// A head's `rows` rows (up to FT_MMA_HEAD_ROWS) of an operand, loaded as two 64-row tiles (LoadTile; the second
// only where rows > 64), for PutTile.
template <typename T>
__device__ __forceinline__ void LoadHeadRows(TileRegs<FT_MMA_HEAD_WARPS> (&t)[2], const T* base, int64 stride,
                                             int64 rows, int D) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    if (64 * half < rows) LoadTile(t[half], base, stride, 64 * half, rows, D);
  }
}

// Writes the 16 x 16 block x (a warp's rows sw + g + 8 r, keys t0 + 8 j + 2 q + i) transposed into `tile`
// ([key][query pair]), rounded to the operands' dtype: the lanes with rows g and g ^ 1 swap values, so that each
// word (two consecutive queries) is one store.
__device__ __forceinline__ void StoreTransposed(WideWords tile, const float (&x)[2][4], int64 sw, int64 t0, int lane) {
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int j = 0; j < 2; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float other = __shfl_xor_sync(0xffffffffu, x[j][e], 4);
      const int r = e >> 1;
      if ((g & 1) != r) continue;
      const uint32 word = (g & 1) == 0 ? Pack(x[j][e], other) : Pack(other, x[j][e]);
      tile[t0 + 8 * j + 2 * q + (e & 1)][(sw + (g & ~1) + 8 * r) >> 1] = word;
    }
  }
}

extern "C" __global__ __launch_bounds__(FT_MMA_HEAD_THREADS) void ft_attention_backward_head_mma(Attention a,
                                                                                             Operands o, Backward gr) {
  AwaitPriorGrid();
  ApplyRandomBase(a);
  extern __shared__ __align__(16) uint32 head_shared[];
  double* warp_sums = (double*)head_shared;
  const TileWords krow = (TileWords)(head_shared + FT_MMA_HEAD_SUM_WORDS);
  const TileWords vrow = krow + FT_MMA_HEAD_ROWS;
  const WideWords kcol = (WideWords)(vrow + FT_MMA_HEAD_ROWS);
  const WideWords qcol = kcol + 64, docol = qcol + 64;
  const WideWords pt = docol + 64, dst = pt + FT_MMA_HEAD_ROWS;
  const int64 bh = blockIdx.x, b = bh / a.H, h = bh - b * a.H;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3, D = a.D;
  const int kst = (D + 15) >> 4, nt = (D + 7) >> 3;
  const uint16* qb = (const uint16*)o.q + RowAt(o.lq, b, h, 0);
  const uint16* kb = (const uint16*)o.k + RowAt(o.lk, b, h, 0);
  const uint16* vb = (const uint16*)o.v + RowAt(o.lv, b, h, 0);
  const float* db = gr.dout + RowAt(gr.ldout, b, h, 0);
  // k, v, q and dout in halves of 64 rows, every load issued before the first store
  TileRegs<FT_MMA_HEAD_WARPS> kt[2], vt[2], qt[2], dt[2];
  LoadHeadRows(kt, kb, o.lk.strides[2], a.T, D);
  LoadHeadRows(vt, vb, o.lv.strides[2], a.T, D);
  LoadHeadRows(qt, qb, o.lq.strides[2], a.S, D);
  LoadHeadRows(dt, db, gr.ldout.strides[2], a.S, D);
  // First phase: this warp's query rows against every key.
  const int64 sw = 16 * warp;
  const bool queries = sw < a.S;
  float delta[2], lse[2];
  uint32 qf[4][4], df[4][4];
  if (queries) {
    RowDeltas(delta, lse, a, gr, b, h, sw, lane, false);
    RowFragments(qf, qb, o.lq.strides[2], sw, a.S, D, lane);
    RowFragments(df, db, gr.ldout.strides[2], sw, a.S, D, lane);
  }
  const MaskLine mask[2] = {QueryMask(a, o, b, h, sw + g), QueryMask(a, o, b, h, sw + g + 8)};
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64 r0 = 64 * half;
    if (r0 < a.T) {
      PutTile<FT_MMA_HEAD_WARPS, FT_MMA_WIDE_WORDS>(kt[half], krow + r0, (WideWords)((uint32*)kcol + r0 / 2));
      PutTile<FT_MMA_HEAD_WARPS>(vt[half], vrow + r0, 0);
    }
    if (r0 < a.S) {
      PutTile<FT_MMA_HEAD_WARPS, FT_MMA_WIDE_WORDS>(qt[half], 0, (WideWords)((uint32*)qcol + r0 / 2));
      PutTile<FT_MMA_HEAD_WARPS, FT_MMA_WIDE_WORDS>(dt[half], 0, (WideWords)((uint32*)docol + r0 / 2));
    }
  }
  float dq[8][4] = {};
  __syncthreads();  // the tiles are stored
  for (int64 t0 = 0; queries && t0 < a.T; t0 += 16) {
    uint32 keep[2][2];
    RowKeeps(keep, a, bh, sw, t0, 0, lane);
    float s[2][4] = {}, dp[2][4] = {}, kept[2][4];
    ProductOfColumns(s, qf, krow, (int)t0, kst, lane);
    ProductOfColumns(dp, df, vrow, (int)t0, kst, lane);
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1;
        const int64 row = sw + g + 8 * r, t = t0 + 8 * j + 2 * q + (e & 1);
        const bool keep_e = keep[r][j] >> (2 * q + (e & 1)) & 1u;
        ScoreGrads sg{};
        if (row < a.S && t < a.T)
          sg = ScoreBackward(a, o, s[j][e], MaskValue(mask[r], t), row, t, lse[r], keep_e, dp[j][e], delta[r]);
        kept[j][e] = sg.kept;
        s[j][e] = sg.ds;
      }
    }
    StoreTransposed(pt, kept, sw, t0, lane);
    StoreTransposed(dst, s, sw, t0, lane);
    uint32 sf[4];
    PackBlock(sf, s);
    ProductOverColumns(dq, sf, kcol, (int)(t0 >> 4), nt, lane);
  }
  StoreHeadGradient(gr, gr.dq, gr.ldq, a.H, b, h, dq, sw, a.S, D, 0, warp_sums, warp, lane);
  // Second phase: this warp's key rows against every query.
  __syncthreads();  // P~ and dS are stored
  const int64 tw = 16 * warp;
  float dk[8][4] = {}, dv[8][4] = {};
  const int qst = tw < a.T ? (int)((a.S + 15) >> 4) : 0;
  for (int ks = 0; ks < qst; ++ks) {
    uint32 pf[4], sf[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64 t = tw + g + 8 * (i & 1);
      const int word = 8 * ks + 4 * (i >> 1) + q;
      pf[i] = pt[t][word];
      sf[i] = dst[t][word];
    }
    ProductOverColumns(dv, pf, docol, ks, nt, lane);
    ProductOverColumns(dk, sf, qcol, ks, nt, lane);
  }
  StoreHeadGradient(gr, gr.dk, gr.ldk, a.H, b, h, dk, tw, a.T, D, 1, warp_sums, warp, lane);
  StoreHeadGradient(gr, gr.dv, gr.ldv, a.H, b, h, dv, tw, a.T, D, 2, warp_sums, warp, lane);
  __shared__ bool last;
  FinishGradientSums(gr, a.H, h, D, 0, 3, last);
}

// The whole-head forward, for S and T up to FT_MMA_HEAD_ROWS: one block a head (b, h), warp w taking query rows
// 16 w .. against every key with an online softmax, k's rows and v's columns in shared memory once for the head,
// where the forward above loads them for each block of 16 rows and splits each tile's keys over its warps, whose
// partial results it then combines. The same products in the same dtypes (only float32 summation orders differ).
extern "C" __global__ __launch_bounds__(FT_MMA_HEAD_THREADS) void ft_attention_forward_head_mma(Attention a,
                                                                                            Operands o, Output y) {
  AwaitPriorGrid();
  ApplyRandomBase(a);
  __align__(16) __shared__ uint32 krow[FT_MMA_HEAD_ROWS][FT_MMA_WORDS];
  __align__(16) __shared__ uint32 vcol[64][FT_MMA_WIDE_WORDS];
  const int64 bh = blockIdx.x, b = bh / a.H, h = bh - b * a.H;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3, D = a.D;
  const int kst = (D + 15) >> 4, nt = (D + 7) >> 3;
  const uint16* kb = (const uint16*)o.k + RowAt(o.lk, b, h, 0);
  const uint16* vb = (const uint16*)o.v + RowAt(o.lv, b, h, 0);
  TileRegs<FT_MMA_HEAD_WARPS> kt[2], vt[2];
  LoadHeadRows(kt, kb, o.lk.strides[2], a.T, D);
  LoadHeadRows(vt, vb, o.lv.strides[2], a.T, D);
  const int64 sw = 16 * warp;
  uint32 qf[4][4];
  RowFragments(qf, (const uint16*)o.q + RowAt(o.lq, b, h, 0), o.lq.strides[2], sw, a.S, D, lane);
  const MaskLine mask[2] = {QueryMask(a, o, b, h, sw + g), QueryMask(a, o, b, h, sw + g + 8)};
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64 r0 = 64 * half;
    if (r0 < a.T) {
      PutTile<FT_MMA_HEAD_WARPS>(kt[half], krow + r0, 0);
      PutTile<FT_MMA_HEAD_WARPS, FT_MMA_WIDE_WORDS>(vt[half], 0, (WideWords)((uint32*)vcol + r0 / 2));
    }
  }
  __syncthreads();
  if (sw >= a.S) return;
  float m[2] = {-FT_INF, -FT_INF}, l[2] = {0.0f, 0.0f}, acc[8][4] = {};
  for (int64 t0 = 0; t0 < a.T; t0 += 16) {
    uint32 keep[2][2];
    RowKeeps(keep, a, bh, sw, t0, 0, lane);
    float s[2][4] = {};
    ProductOfColumns(s, qf, krow, (int)t0, kst, lane);
    uint32 pf[4];
    SoftmaxStep(pf, s, m, l, acc, a, o, mask, keep, sw, t0, lane);
    ProductOverColumns(acc, pf, vcol, (int)(t0 >> 4), nt, lane);
  }
  float scale[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    // the sum is 0 only without keys (T == 0): torch's output is then zeros. A NaN sum passes through.
    scale[r] = l[r] == 0.0f ? 0.0f : a.dscale / l[r];
    const int64 row = sw + g + 8 * r;
    if (q == 0 && row < a.S) y.lse[bh * a.S + row] = m[r] == -FT_INF ? -FT_INF : m[r] + logf(l[r]);
  }
  const int64 at = RowAt(y.lo, b, h, 0);
  float v[2][8][2];
  Rearranged(v, acc);
  StoreRowPairs(y.out + at, y.lowp == 0 ? 0 : y.lowp + at, y.lowp_dtype, y.lo.strides[2], v, scale, sw, a.S, 0, D, lane);
}
#endif
)CUDA";

// Must match the kernels' #defines and entry points.
constexpr int64_t kMaxHeadDim = 128;
constexpr int64_t kSmallHeadDim = 64;
constexpr int64_t kForwardRows = 16;
constexpr int64_t kBackwardRows = 8;
constexpr int64_t kMmaRows = 16;
constexpr unsigned kMmaThreads = 128;
constexpr int64_t kMmaHeadRows = 128;
constexpr unsigned kMmaHeadThreads = 256;
// 4 * FT_MMA_HEAD_WORDS: the whole-head backward's dynamic shared memory.
constexpr unsigned kMmaHeadSharedBytes = 4 * (8 * 64 * 2 + 2 * 128 * 36 + 3 * 64 * 68 + 2 * 128 * 68);
constexpr int kMmaMinArch = 80;
constexpr unsigned kForwardThreads = 128;
constexpr unsigned kBackwardThreads = 64;
// gridDim.y's limit bounds the row blocks.
constexpr int64_t kMaxGridY = 65535;

// The kernels' `struct Attention`, member for member.
struct AttentionParams {
  int64_t H, S, T;
  int32_t D, causal;
  float scale;
  int32_t dropout;
  float threshold, dscale;
  uint64_t seed, offset;
  uint64_t base;
};
static_assert(sizeof(AttentionParams) == 72, "AttentionParams must match the kernels' declaration");

// The kernels' `struct Operands`, member for member.
struct AttentionOperands {
  Layout lq, lk, lv, lm;
  uint64_t q = 0, k = 0, v = 0, mask = 0;
};
static_assert(sizeof(AttentionOperands) == 4 * sizeof(Layout) + 32, "AttentionOperands must match the kernels'");

// The kernels' `struct Output`, member for member.
struct OutputOperands {
  Layout lo;
  uint64_t out = 0, lse = 0, lowp = 0;
  int32_t lowp_dtype = kBF16;
};
static_assert(sizeof(OutputOperands) == sizeof(Layout) + 32, "OutputOperands must match the kernels' declaration");

// The kernels' `struct Backward`, member for member.
struct BackwardOperands {
  Layout lout, ldout, ldq, ldk, ldv;
  uint64_t out = 0, dout = 0, lse = 0, delta = 0, dq = 0, dk = 0, dv = 0, sums = 0, partial = 0, tickets = 0;
};

// The function `name` of the module for operands of `dtype`, its CUDA-core kernels or (`mma`, 16-bit dtypes) its
// tensor-core ones: one module each, compiled when first used, so BERT under autocast compiles only the latter.
// The tensor-core kernels take the softmax's exp from the hardware's exp2 (a few instructions where Exp's
// polynomial takes 25, for 8 of them a thread and tile): their probabilities are rounded to 16 bits for the
// products anyway, and the forward's logsumexp and the backward's probabilities use the same function.
CUfunction ModuleKernel(Napi::Env env, int32_t dtype, const char* name, bool mma = false) {
  const auto source_for = [](const char* operands, const char* kernels, const char* defines = "") {
    return ModuleSource(("#define FT_ATTN_OPERANDS " + std::string(operands) + "\n" + defines + kCommonSource + kernels).c_str());
  };
  static const char kHardwareExp[] = "#define FT_ATTN_EXP(x) exp2f((x) * 1.44269504088896341f)\n";
  static const std::string core[] = {source_for("DT_F32", kCoreSource), source_for("DT_BF16", kCoreSource),
                                     source_for("DT_F16", kCoreSource)};
  static const std::string tensor_core[] = {source_for("DT_BF16", kMmaSource, kHardwareExp),
                                            source_for("DT_F16", kMmaSource, kHardwareExp)};
  if (mma) return GetKernel(env, "attention_mma", tensor_core[dtype == kF16 ? 1 : 0], name);
  return GetKernel(env, "attention", core[dtype == kBF16 ? 1 : dtype == kF16 ? 2 : 0], name);
}

// The CUDA-core entry point for head dim D: `small` (the _64 one) or `large`.
CUfunction Kernel(Napi::Env env, int32_t dtype, int32_t D, const char* small, const char* large) {
  return ModuleKernel(env, dtype, D <= kSmallHeadDim ? small : large);
}

// What the forward and the backward share: arguments 0 .. 22, checked.
//   B, H, S, T, D, q, qOff, qStrides, k, kOff, kStrides, v, vOff, vStrides, mask (or null), maskOff,
//   maskStrides, causal, scale, dropoutP, seed, offset, dtype
// dtype is the code of the dtype q, k and v (and the backward's out) are stored in: float32, bfloat16 or float16.
struct AttentionArgs {
  int64_t B = 0, BH = 0;
  int32_t dtype = kF32;
  AttentionParams p{};
  AttentionOperands o;
};

// A [B, H, rows, cols] view; the kernels read and write the rows of q, k, v, out and the gradients as arrays, so
// those need unit stride in the last dimension (`rows_as_arrays`), while the mask may broadcast anywhere (zero
// strides).
uint64_t HeadView(const Napi::CallbackInfo& info, int index, const char* name, const std::vector<int64_t>& shape,
                  bool rows_as_arrays, Layout* layout, int32_t dtype = kF32) {
  std::vector<int64_t> strides;
  const uint64_t ptr = dtype == kF32 ? DeviceView(info, index, name, shape, &strides)
                                     : DeviceView<uint16_t>(info, index, name, shape, &strides);
  if (rows_as_arrays && shape[3] > 1 && strides[3] != 1)
    throw Napi::RangeError::New(info.Env(), ArgName(index + 2, name) + ": the last dimension must have stride 1");
  *layout = MakeLayout(shape, strides);
  return ptr;
}

AttentionArgs GetAttentionArgs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AttentionArgs a;
  a.B = GetCount(info, 0, "B");
  const int64_t H = GetCount(info, 1, "H");
  const int64_t S = GetCount(info, 2, "S");
  const int64_t T = GetCount(info, 3, "T");
  const int64_t D = GetCount(info, 4, "D");
  if (D < 1 || D > kMaxHeadDim)
    throw Napi::RangeError::New(env, ArgName(4, "D") + " must be in [1, " + std::to_string(kMaxHeadDim) + "]");
  a.BH = CountProduct(info, a.B, H, "B * H");
  const int64_t rows = CountProduct(info, a.BH, S, "B * H * S");
  // every probability's flat index (the dropout counter) and every operand's size must be element counts
  CountProduct(info, rows, T, "B * H * S * T");
  CountProduct(info, rows, D, "B * H * S * D");
  CountProduct(info, CountProduct(info, a.BH, T, "B * H * T"), D, "B * H * T * D");
  if (a.BH > INT32_MAX) throw Napi::RangeError::New(env, "B * H must be below 2^31");
  if ((std::max(S, T) + kBackwardRows - 1) / kBackwardRows > kMaxGridY)  // the backward's blocks are the smaller
    throw Napi::RangeError::New(env, "S and T must be at most " + std::to_string(kMaxGridY * kBackwardRows));
  a.dtype = static_cast<int32_t>(GetInt(info, 22, "dtype"));
  if (a.dtype != kF32 && a.dtype != kBF16 && a.dtype != kF16)
    throw Napi::RangeError::New(env, ArgName(22, "dtype") + " must be float32's, bfloat16's or float16's code");
  a.o.q = HeadView(info, 5, "q", {a.B, H, S, D}, true, &a.o.lq, a.dtype);
  a.o.k = HeadView(info, 8, "k", {a.B, H, T, D}, true, &a.o.lk, a.dtype);
  a.o.v = HeadView(info, 11, "v", {a.B, H, T, D}, true, &a.o.lv, a.dtype);
  if (!NoneGiven(info, 14))
    a.o.mask = HeadView(info, 14, "mask", {a.B, H, S, T}, false, &a.o.lm);
  const DropoutScalars dropout = GetDropoutP(info, 19, "dropoutP");
  a.p.H = H;
  a.p.S = S;
  a.p.T = T;
  a.p.D = static_cast<int32_t>(D);
  a.p.causal = GetBool(info, 17, "causal") ? 1 : 0;
  a.p.scale = static_cast<float>(GetNumber(info, 18, "scale"));
  // a p that rounds to a float 0 keeps everything, as the dropout kernels do
  a.p.dropout = dropout.threshold > 0 ? 1 : 0;
  a.p.threshold = dropout.threshold;
  a.p.dscale = a.p.dropout ? dropout.scale : 1.0f;
  a.p.seed = GetU64(info, 20, "seed");
  a.p.offset = GetU64(info, 21, "offset");
  a.p.base = CaptureRandomBase(env);
  return a;
}

// Whether the tensor-core kernels take operands of `dtype` and head dim D on this GPU: 16-bit, an even D up to 64,
// sm_80 or later.
bool MmaTakes(int64_t dtype, int64_t D) {
  return dtype != kF32 && D <= kSmallHeadDim && D % 2 == 0 && Arch() >= kMmaMinArch;
}

// Whether the tensor-core kernels take the call: MmaTakes, and q, k, v (and the backward's out) read as pairs of
// elements: 4-byte aligned with even strides.
bool UseMma(const AttentionArgs& a, std::initializer_list<std::pair<uint64_t, const Layout*>> views) {
  if (!MmaTakes(a.dtype, a.p.D)) return false;
  for (const auto& [ptr, layout] : views) {
    if (ptr % 4 != 0 || layout->strides[0] % 2 != 0 || layout->strides[1] % 2 != 0 || layout->strides[2] % 2 != 0)
      return false;
  }
  return true;
}

// Whether the backward writes 16-bit gradients with column sums for these operands: the tensor-core kernels', and
// a ticket word per head.
bool LowpGradientsTaken(int64_t dtype, int64_t H, int64_t D) { return MmaTakes(dtype, D) && H <= kTicketWords; }

// Whether the tensor-core forward and backward take the whole-head kernels where they can: 0 off, 1 on, 2 auto (as
// JavaScript decides call by call, ops/attention.ts); FINETUNE_CUDA_ATTENTION_HEADS=1 / 0 for on / off.
int& HeadsMode() {
  static int mode = EnvMode("FINETUNE_CUDA_ATTENTION_HEADS");
  return mode;
}

// Whether the whole-head kernels take S queries and T keys with operands of `dtype` and head dim D: the
// tensor-core kernels' dtypes and head dims, and neither side empty nor over kMmaHeadRows.
bool HeadsTake(int32_t dtype, int64_t D, int64_t S, int64_t T) {
  return MmaTakes(dtype, D) && S >= 1 && T >= 1 && S <= kMmaHeadRows && T <= kMmaHeadRows;
}

// The whole-head backward kernel for these operands, or null where it does not take them (HeadsTake) or the GPU
// lacks the shared memory it needs.
CUfunction HeadBackwardKernel(Napi::Env env, int32_t dtype, int64_t D, int64_t S, int64_t T) {
  if (!HeadsTake(dtype, D, S, T)) return nullptr;
  CUfunction fn = ModuleKernel(env, dtype, "ft_attention_backward_head_mma", true);
  return AllowDynamicShared(fn, kMmaHeadSharedBytes) ? fn : nullptr;
}

Dim3 RowBlocks(int64_t bh, int64_t rows, int64_t per_block) {
  Dim3 d;
  d.x = static_cast<unsigned>(bh);
  d.y = static_cast<unsigned>((rows + per_block - 1) / per_block);
  return d;
}

// attentionForward(...shared arguments, out, outOff, outStrides, lse, lowp, lowpOff, lowpDtype, [wholeHeads]): out a
// [B, H, S, D] view with unit stride in D, lse [B, H, S] contiguous; lowp (or null) out's copy in lowpDtype (bfloat16
// or float16) at lowpOff with out's strides. wholeHeads (optional, false): the tensor-core kernels take one block a
// head where HeadsTake.
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  AttentionArgs a = GetAttentionArgs(info);
  const int64_t B = a.B, H = a.p.H, S = a.p.S, D = a.p.D;
  OutputOperands y;
  y.out = HeadView(info, 23, "out", {B, H, S, D}, true, &y.lo);
  y.lse = DeviceElements<float>(info, GetDeviceBuffer(info, 26, "lse"), 0, a.BH * S, "lse");
  if (!NoneGiven(info, 27)) {
    y.lowp_dtype = static_cast<int32_t>(GetInt(info, 29, "lowpDtype"));
    if (y.lowp_dtype != kBF16 && y.lowp_dtype != kF16)
      throw Napi::RangeError::New(env, ArgName(29, "lowpDtype") + " must be bfloat16's or float16's code");
    const std::vector<int64_t> shape = {B, H, S, D}, strides(y.lo.strides, y.lo.strides + 4);
    y.lowp = DeviceElements<uint16_t>(info, GetDeviceBuffer(info, 27, "lowp"), GetInt(info, 28, "lowpOff"),
                                      StridedExtent(info, shape, strides, "lowp"), "lowp");
  }
  void* args[] = {&a.p, &a.o, &y};
  const bool mma = UseMma(a, {{a.o.q, &a.o.lq}, {a.o.k, &a.o.lk}, {a.o.v, &a.o.lv}});
  const bool whole_heads = OptionalFlag(info, 30, "wholeHeads");
  if (mma && whole_heads && HeadsTake(a.dtype, D, S, a.p.T))
    Launch(env, ModuleKernel(env, a.dtype, "ft_attention_forward_head_mma", true), RowBlocks(a.BH, 1, 1),
           Blocks(kMmaHeadThreads), 0, args);
  else if (mma)
    Launch(env, ModuleKernel(env, a.dtype, "ft_attention_forward_mma", true), RowBlocks(a.BH, a.p.S, kMmaRows),
           Blocks(kMmaThreads), 0, args);
  else
    Launch(env, Kernel(env, a.dtype, a.p.D, "ft_attention_forward_64", "ft_attention_forward_128"),
           RowBlocks(a.BH, a.p.S, kForwardRows), Blocks(kForwardThreads), 0, args);
  return env.Undefined();
}

// attentionBackward(...shared arguments, out, outOff, outStrides, dout, doutOff, doutStrides, lse, dq, dqOff,
// dqStrides, dk, dkOff, dkStrides, dv, dvOff, dvStrides, [sums]): the forward's out (in the operands' dtype) and
// lse, dout; dq, dk, dv are assigned. out, dout, dq [B, H, S, D] and dk, dv [B, H, T, D] are views with unit stride
// in D, lse [B, H, S] contiguous; dout is float32, and so are the gradients unless `sums` (float32, [3, H, D]) is
// given: then they are in the operands' 16-bit dtype and sums receives their column sums over (b, s), which needs
// the tensor-core kernels (attentionLowpGradients). `wholeHeads` (optional, false): the tensor-core kernels take one
// kernel a head where it can (attentionHeadKernel), instead of the dq and dk/dv kernels.
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  AttentionArgs a = GetAttentionArgs(info);
  const int64_t B = a.B, H = a.p.H, S = a.p.S, T = a.p.T, D = a.p.D, rows = a.BH * S;
  const bool lowp = !NoneGiven(info, 39);
  const int32_t grad_dtype = lowp ? a.dtype : kF32;
  if (lowp && !LowpGradientsTaken(a.dtype, H, D))
    throw Napi::RangeError::New(env, ArgName(39, "sums") + ": 16-bit gradients need the tensor-core kernels (attentionLowpGradients)");
  BackwardOperands g;
  g.out = HeadView(info, 23, "out", {B, H, S, D}, true, &g.lout, a.dtype);
  g.dout = HeadView(info, 26, "dout", {B, H, S, D}, true, &g.ldout);
  g.lse = DeviceElements<float>(info, GetDeviceBuffer(info, 29, "lse"), 0, rows, "lse");
  g.dq = HeadView(info, 30, "dq", {B, H, S, D}, true, &g.ldq, grad_dtype);
  g.dk = HeadView(info, 33, "dk", {B, H, T, D}, true, &g.ldk, grad_dtype);
  g.dv = HeadView(info, 36, "dv", {B, H, T, D}, true, &g.ldv, grad_dtype);
  const bool mma = UseMma(a, {{a.o.q, &a.o.lq}, {a.o.k, &a.o.lk}, {a.o.v, &a.o.lv}, {g.out, &g.lout}});
  if (lowp && !mma)
    throw Napi::RangeError::New(env, "attentionBackward: 16-bit gradients need q, k, v and out 4-byte aligned with even strides");
  const bool whole_heads = OptionalFlag(info, 40, "wholeHeads");
  const CUfunction head = mma && whole_heads ? HeadBackwardKernel(env, a.dtype, D, S, T) : nullptr;
  // the dq kernel's rows' delta for the dk/dv kernel (the whole-head kernel keeps its own)
  ScratchBuffer delta(env, head != nullptr ? 0 : static_cast<size_t>(std::max<int64_t>(rows, 1)) * sizeof(float));
  g.delta = delta.ptr();
  // a row of D partial sums per block and gradient: the dq kernel's are added before the dk/dv kernel writes its
  // two gradients' over them; the whole-head kernel's three are a block's each
  const int64_t partial_rows =
      H * (head != nullptr ? 3 * B : std::max(B * ((S + kMmaRows - 1) / kMmaRows), 2 * B * ((T + kMmaRows - 1) / kMmaRows)));
  ScratchBuffer partial(env, lowp ? static_cast<size_t>(partial_rows * D) * sizeof(double) : 0);
  if (lowp) {
    g.sums = DeviceElements<float>(info, GetDeviceBuffer(info, 39, "sums"), 0, 3 * H * D, "sums");
    g.partial = partial.ptr();
    g.tickets = Tickets();
  }
  void* args[] = {&a.p, &a.o, &g};
  // the dq kernel stores delta, which the dk/dv kernel after it on the stream reads
  if (head != nullptr) {
    Launch(env, head, RowBlocks(a.BH, 1, 1), Blocks(kMmaHeadThreads), kMmaHeadSharedBytes, args);
  } else if (mma) {
    Launch(env, ModuleKernel(env, a.dtype, "ft_attention_backward_dq_mma", true), RowBlocks(a.BH, S, kMmaRows),
           Blocks(kMmaThreads), 0, args);
    Launch(env, ModuleKernel(env, a.dtype, "ft_attention_backward_dkv_mma", true), RowBlocks(a.BH, T, kMmaRows),
           Blocks(kMmaThreads), 0, args);
  } else {
    Launch(env, Kernel(env, a.dtype, a.p.D, "ft_attention_backward_dq_64", "ft_attention_backward_dq_128"),
           RowBlocks(a.BH, S, kBackwardRows), Blocks(kBackwardThreads), 0, args);
    Launch(env, Kernel(env, a.dtype, a.p.D, "ft_attention_backward_dkv_64", "ft_attention_backward_dkv_128"),
           RowBlocks(a.BH, T, kBackwardRows), Blocks(kBackwardThreads), 0, args);
  }
  return env.Undefined();
}

// attentionLowpGradients(dtype, H, D): whether attentionBackward can write the gradients of H heads of dim D with
// operands of `dtype` (a dtype code) in 16 bits, with their column sums, on this GPU.
Napi::Value AttentionLowpGradients(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  return Napi::Boolean::New(env, LowpGradientsTaken(GetInt(info, 0, "dtype"), GetCount(info, 1, "H"), GetCount(info, 2, "D")));
}

// attentionHeads(mode?): whether the tensor-core forward and backward take the whole-head kernels where they can:
// "on", "off" or "auto" (HeadsMode), after setting it when given.
Napi::Value AttentionHeads(const Napi::CallbackInfo& info) {
  EnsureContext(info.Env());
  return ModeSetting(info, HeadsMode(), "attentionHeads");
}

// attentionHeadKernel(dtype, D, S, T): whether the forward's and backward's wholeHeads take one kernel a head for S
// queries and T keys with operands of `dtype` (a dtype code) and head dim D, on this GPU (where the tensor-core
// kernels take the call: 4-byte aligned operands with even strides).
Napi::Value AttentionHeadKernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  const int32_t dtype = static_cast<int32_t>(GetInt(info, 0, "dtype"));
  return Napi::Boolean::New(env, HeadBackwardKernel(env, dtype, GetCount(info, 1, "D"), GetCount(info, 2, "S"),
                                                    GetCount(info, 3, "T")) != nullptr);
}

}  // namespace

void RegisterAttention(Napi::Env env, Napi::Object cuda) {
  cuda.Set("attentionHeads", Napi::Function::New(env, AttentionHeads, "attentionHeads"));
  cuda.Set("attentionHeadKernel", Napi::Function::New(env, AttentionHeadKernel, "attentionHeadKernel"));
  cuda.Set("attentionForward", Napi::Function::New(env, AttentionForward, "attentionForward"));
  cuda.Set("attentionBackward", Napi::Function::New(env, AttentionBackward, "attentionBackward"));
  cuda.Set("attentionLowpGradients", Napi::Function::New(env, AttentionLowpGradients, "attentionLowpGradients"));
}

}  // namespace ft::cuda::kernels
