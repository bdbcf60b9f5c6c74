// Fused scaled-dot-product attention, flash-attention style: out = dropout(softmax(q k^T * scale + mask)) v with no
// S x T matrix in memory. The forward streams key tiles through shared memory with an online softmax and keeps
// each query row's logsumexp; the backward recomputes every probability from q, k and that logsumexp, tile by
// tile, once for dq (blocks of query rows) and once for dk and dv (blocks of key rows), so no block needs another's
// partial sums and nothing is accumulated with atomics. D = rowsum(dout * out) is computed first: with dropout it
// still equals sum_t P[s, t] dP[s, t], the softmax backward's row term.
//
// The numbers follow the CPU's unfused path (matmul, masked_softmax, dropout, matmul) up to summation order: the
// logit is rounded as masked_softmax rounds it (q.k * scale, then + mask), Exp is the shared one, a row whose
// logits are all -inf is uniform (its logsumexp is stored as -inf to say so), and dropout keeps probability
// (b, h, s, t) exactly when native/cpu/random.cc's dropout over the flat [B, H, S, T] probabilities keeps element
// ((b * H + h) * S + s) * T + t for the same seed and offset.
//
// Work split: a warp owns a few rows (query rows in the forward and dq, key rows in dk/dv); within a tile lane j
// computes the dot products of tile row j, and the lanes then split the head dimension (lane + 32 c) to
// accumulate, taking each tile row's weight by shuffle. Tiles are padded to D + 1 floats a row so that lane j
// reading row j does not hit one bank 32 times.
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/args.h"
#include "common/kernel_args.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"

namespace ft::cuda::kernels {
namespace {

constexpr char kSource[] = R"CUDA(
#define FT_ATTN_TILE 32
#define FT_ATTN_MAX_D 128
#define FT_ATTN_PITCH (FT_ATTN_MAX_D + 1)
#define FT_ATTN_WARPS 4
#define FT_ATTN_LANE_D (FT_ATTN_MAX_D / 32)
// Rows per warp: the forward holds 16 query rows a block; the backward kernels keep two row sets and two tiles
// in shared memory, so 8 rows fit under the 48 KB of static shared memory.
#define FT_ATTN_FWD_ROWS 4
#define FT_ATTN_BWD_ROWS 2

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

__device__ __forceinline__ int64 RowAt(const Layout& l, int64 b, int64 h, int64 s) {
  return b * l.strides[0] + h * l.strides[1] + s * l.strides[2];
}

// Rows r0 .. r0 + count - 1 of a [rows, D] slice (row stride `stride`, unit stride in D) into a shared tile of row
// pitch `pitch`; rows from `limit` on are zeros. The whole block takes part.
__device__ __forceinline__ void LoadRows(float* tile, int pitch, int count, const float* base, int64 stride, int64 r0,
                                         int64 limit, int D) {
  for (int i = threadIdx.x; i < count * D; i += blockDim.x) {
    const int r = i / D, d = i - r * D;
    tile[r * pitch + d] = r0 + r < limit ? base[(r0 + r) * stride + d] : 0.0f;
  }
}

// The logit of query s for key t, rounded in masked_softmax's two steps; causal hides keys after the query (torch's
// tril mask).
__device__ __forceinline__ float Logit(const Attention& a, float dot, const float* mask, const Layout& m, int64 b,
                                       int64 h, int64 s, int64 t) {
  float z = __fmul_rn(dot, a.scale);
  if (mask != 0) z = __fadd_rn(z, mask[b * m.strides[0] + h * m.strides[1] + s * m.strides[2] + t * m.strides[3]]);
  return a.causal && t > s ? -FT_INF : z;
}

// A replayed graph's kernels draw fresh numbers: the counter offset moves on by the graph's random base.
__device__ __forceinline__ void ApplyRandomBase(Attention& a) {
  if (a.base != 0) a.offset += *(const uint64*)a.base;
}

__device__ __forceinline__ bool Keep(const Attention& a, int64 bh, int64 s, int64 t) {
  if (!a.dropout) return true;
  const uint64 e = a.offset + (uint64)((bh * a.S + s) * a.T + t);
  return UnitFloat(Word(Philox(a.seed, e >> 2), (uint32)(e & 3))) >= a.threshold;
}

// acc[c] += sum over the tile's rows j of lane j's x times tile[j][lane + 32c]: one scalar per lane (a probability
// or a gradient of one) times the tile's rows in shared memory, accumulated in j's order.
__device__ __forceinline__ void AccumulateTile(float (&acc)[FT_ATTN_LANE_D], float x, const float (*tile)[FT_ATTN_PITCH],
                                               int lane, int D) {
  for (int j = 0; j < FT_ATTN_TILE; ++j) {
    const float xj = __shfl_sync(0xffffffffu, x, j);
#pragma unroll
    for (int c = 0; c < FT_ATTN_LANE_D; ++c) {
      const int d = lane + 32 * c;
      if (d < D) acc[c] += xj * tile[j][d];
    }
  }
}

// dst[lane + 32c] = acc[c] * scale: a warp writes one row of D values.
__device__ __forceinline__ void StoreRow(float* dst, const float (&acc)[FT_ATTN_LANE_D], float scale, int lane, int D) {
#pragma unroll
  for (int c = 0; c < FT_ATTN_LANE_D; ++c) {
    const int d = lane + 32 * c;
    if (d < D) dst[d] = acc[c] * scale;
  }
}

__device__ __forceinline__ float Prob(const Attention& a, float z, float lse) {
  return lse == -FT_INF ? 1.0f / (float)a.T : Exp(z - lse);
}

extern "C" __global__ __launch_bounds__(128) void ft_attention_forward(Attention a, Layout lq, Layout lk, Layout lv,
                                                                      Layout lm, const float* q, const float* k,
                                                                      const float* v, const float* mask, float* out,
                                                                      float* lse) {
  ApplyRandomBase(a);
  __shared__ float qs[FT_ATTN_WARPS * FT_ATTN_FWD_ROWS][FT_ATTN_MAX_D];
  __shared__ float ks[FT_ATTN_TILE][FT_ATTN_PITCH];
  __shared__ float vs[FT_ATTN_TILE][FT_ATTN_PITCH];
  const int64 bh = blockIdx.x, b = bh / a.H, h = bh - b * a.H;
  const int64 s0 = (int64)blockIdx.y * (FT_ATTN_WARPS * FT_ATTN_FWD_ROWS);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, D = a.D;
  LoadRows(&qs[0][0], FT_ATTN_MAX_D, FT_ATTN_WARPS * FT_ATTN_FWD_ROWS, q + RowAt(lq, b, h, 0), lq.strides[2], s0, a.S, D);
  float m[FT_ATTN_FWD_ROWS], l[FT_ATTN_FWD_ROWS], o[FT_ATTN_FWD_ROWS][FT_ATTN_LANE_D];
#pragma unroll
  for (int r = 0; r < FT_ATTN_FWD_ROWS; ++r) {
    m[r] = -FT_INF;
    l[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < FT_ATTN_LANE_D; ++c) o[r][c] = 0.0f;
  }
  for (int64 t0 = 0; t0 < a.T; t0 += FT_ATTN_TILE) {
    __syncthreads();
    LoadRows(&ks[0][0], FT_ATTN_PITCH, FT_ATTN_TILE, k + RowAt(lk, b, h, 0), lk.strides[2], t0, a.T, D);
    LoadRows(&vs[0][0], FT_ATTN_PITCH, FT_ATTN_TILE, v + RowAt(lv, b, h, 0), lv.strides[2], t0, a.T, D);
    __syncthreads();
    const int64 t = t0 + lane;
#pragma unroll
    for (int r = 0; r < FT_ATTN_FWD_ROWS; ++r) {
      const int row = warp * FT_ATTN_FWD_ROWS + r;
      const int64 s = s0 + row;
      if (s >= a.S) break;  // the same for the whole warp
      float dot = 0.0f;
      for (int d = 0; d < D; ++d) dot += qs[row][d] * ks[lane][d];
      const float z = t < a.T ? Logit(a, dot, mask, lm, b, h, s, t) : -FT_INF;
      const float m_new = fmaxf(m[r], WarpMax(z));
      // While every logit so far is -inf the row counts as uniform (weight 1 per key); the first finite logit
      // discards that sum (alpha = 0).
      const float alpha = m[r] == m_new ? 1.0f : m[r] == -FT_INF ? 0.0f : Exp(m[r] - m_new);
      const float p = t >= a.T ? 0.0f : m_new == -FT_INF ? 1.0f : Exp(z - m_new);
      l[r] = l[r] * alpha + WarpSum(p);
      m[r] = m_new;
      const float kept = p != 0.0f && Keep(a, bh, s, t) ? p : 0.0f;
#pragma unroll
      for (int c = 0; c < FT_ATTN_LANE_D; ++c) o[r][c] *= alpha;
      AccumulateTile(o[r], kept, vs, lane, D);
    }
  }
#pragma unroll
  for (int r = 0; r < FT_ATTN_FWD_ROWS; ++r) {
    const int64 s = s0 + warp * FT_ATTN_FWD_ROWS + r;
    if (s >= a.S) break;
    // l is 0 only without keys (T == 0): torch's output is then zeros. A NaN l passes through.
    const float inv = l[r] == 0.0f ? 0.0f : a.dscale / l[r];
    StoreRow(out + (bh * a.S + s) * D, o[r], inv, lane, D);
    if (lane == 0) lse[bh * a.S + s] = m[r] == -FT_INF ? -FT_INF : m[r] + logf(l[r]);
  }
}

// delta[r] = sum_d out[r, d] * dout[r, d], one warp per row.
extern "C" __global__ void ft_attention_delta(int64 rows, int32 D, const float* out, const float* dout, float* delta) {
  const int lane = threadIdx.x & 31;
  for (int64 r = GlobalThread() >> 5; r < rows; r += GridThreads() >> 5) {
    float s = 0.0f;
    for (int d = lane; d < D; d += 32) s += out[r * D + d] * dout[r * D + d];
    s = WarpSum(s);
    if (lane == 0) delta[r] = s;
  }
}

// dq[s] = sum_t dS[s, t] k[t] with dS = P * (dP - delta[s]) * scale, dP = keep ? (dout[s] . v[t]) * dscale : 0.
extern "C" __global__ __launch_bounds__(128) void ft_attention_backward_dq(Attention a, Layout lq, Layout lk, Layout lv,
                                                                          Layout lm, const float* q, const float* k,
                                                                          const float* v, const float* mask,
                                                                          const float* dout, const float* lse,
                                                                          const float* delta, float* dq) {
  ApplyRandomBase(a);
  __shared__ float qs[FT_ATTN_WARPS * FT_ATTN_BWD_ROWS][FT_ATTN_MAX_D];
  __shared__ float dos[FT_ATTN_WARPS * FT_ATTN_BWD_ROWS][FT_ATTN_MAX_D];
  __shared__ float ks[FT_ATTN_TILE][FT_ATTN_PITCH];
  __shared__ float vs[FT_ATTN_TILE][FT_ATTN_PITCH];
  const int64 bh = blockIdx.x, b = bh / a.H, h = bh - b * a.H;
  const int64 s0 = (int64)blockIdx.y * (FT_ATTN_WARPS * FT_ATTN_BWD_ROWS);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, D = a.D;
  LoadRows(&qs[0][0], FT_ATTN_MAX_D, FT_ATTN_WARPS * FT_ATTN_BWD_ROWS, q + RowAt(lq, b, h, 0), lq.strides[2], s0, a.S, D);
  LoadRows(&dos[0][0], FT_ATTN_MAX_D, FT_ATTN_WARPS * FT_ATTN_BWD_ROWS, dout + bh * a.S * D, D, s0, a.S, D);
  float row_lse[FT_ATTN_BWD_ROWS], row_delta[FT_ATTN_BWD_ROWS], acc[FT_ATTN_BWD_ROWS][FT_ATTN_LANE_D];
#pragma unroll
  for (int r = 0; r < FT_ATTN_BWD_ROWS; ++r) {
    const int64 s = s0 + warp * FT_ATTN_BWD_ROWS + r;
    row_lse[r] = s < a.S ? lse[bh * a.S + s] : 0.0f;
    row_delta[r] = s < a.S ? delta[bh * a.S + s] : 0.0f;
#pragma unroll
    for (int c = 0; c < FT_ATTN_LANE_D; ++c) acc[r][c] = 0.0f;
  }
  for (int64 t0 = 0; t0 < a.T; t0 += FT_ATTN_TILE) {
    __syncthreads();
    LoadRows(&ks[0][0], FT_ATTN_PITCH, FT_ATTN_TILE, k + RowAt(lk, b, h, 0), lk.strides[2], t0, a.T, D);
    LoadRows(&vs[0][0], FT_ATTN_PITCH, FT_ATTN_TILE, v + RowAt(lv, b, h, 0), lv.strides[2], t0, a.T, D);
    __syncthreads();
    const int64 t = t0 + lane;
#pragma unroll
    for (int r = 0; r < FT_ATTN_BWD_ROWS; ++r) {
      const int row = warp * FT_ATTN_BWD_ROWS + r;
      const int64 s = s0 + row;
      if (s >= a.S) break;
      float qk = 0.0f, dov = 0.0f;
      for (int d = 0; d < D; ++d) {
        qk += qs[row][d] * ks[lane][d];
        dov += dos[row][d] * vs[lane][d];
      }
      float ds = 0.0f;
      if (t < a.T) {
        const float p = Prob(a, Logit(a, qk, mask, lm, b, h, s, t), row_lse[r]);
        const float dp = Keep(a, bh, s, t) ? dov * a.dscale : 0.0f;
        ds = p * (dp - row_delta[r]) * a.scale;
      }
      AccumulateTile(acc[r], ds, ks, lane, D);
    }
  }
#pragma unroll
  for (int r = 0; r < FT_ATTN_BWD_ROWS; ++r) {
    const int64 s = s0 + warp * FT_ATTN_BWD_ROWS + r;
    if (s >= a.S) break;
    StoreRow(dq + (bh * a.S + s) * D, acc[r], 1.0f, lane, D);
  }
}

// dv[t] = sum_s P~[s, t] dout[s] (P~ the kept, rescaled probability) and dk[t] = sum_s dS[s, t] q[s]; here lane j
// takes query s0 + j of each tile.
extern "C" __global__ __launch_bounds__(128) void ft_attention_backward_dkv(Attention a, Layout lq, Layout lk,
                                                                           Layout lv, Layout lm, const float* q,
                                                                           const float* k, const float* v,
                                                                           const float* mask, const float* dout,
                                                                           const float* lse, const float* delta,
                                                                           float* dk, float* dv) {
  ApplyRandomBase(a);
  __shared__ float ks[FT_ATTN_WARPS * FT_ATTN_BWD_ROWS][FT_ATTN_MAX_D];
  __shared__ float vs[FT_ATTN_WARPS * FT_ATTN_BWD_ROWS][FT_ATTN_MAX_D];
  __shared__ float qs[FT_ATTN_TILE][FT_ATTN_PITCH];
  __shared__ float dos[FT_ATTN_TILE][FT_ATTN_PITCH];
  __shared__ float tile_lse[FT_ATTN_TILE], tile_delta[FT_ATTN_TILE];
  const int64 bh = blockIdx.x, b = bh / a.H, h = bh - b * a.H;
  const int64 t0 = (int64)blockIdx.y * (FT_ATTN_WARPS * FT_ATTN_BWD_ROWS);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, D = a.D;
  LoadRows(&ks[0][0], FT_ATTN_MAX_D, FT_ATTN_WARPS * FT_ATTN_BWD_ROWS, k + RowAt(lk, b, h, 0), lk.strides[2], t0, a.T, D);
  LoadRows(&vs[0][0], FT_ATTN_MAX_D, FT_ATTN_WARPS * FT_ATTN_BWD_ROWS, v + RowAt(lv, b, h, 0), lv.strides[2], t0, a.T, D);
  float gk[FT_ATTN_BWD_ROWS][FT_ATTN_LANE_D], gv[FT_ATTN_BWD_ROWS][FT_ATTN_LANE_D];
#pragma unroll
  for (int r = 0; r < FT_ATTN_BWD_ROWS; ++r) {
#pragma unroll
    for (int c = 0; c < FT_ATTN_LANE_D; ++c) gk[r][c] = gv[r][c] = 0.0f;
  }
  for (int64 s0 = 0; s0 < a.S; s0 += FT_ATTN_TILE) {
    __syncthreads();
    LoadRows(&qs[0][0], FT_ATTN_PITCH, FT_ATTN_TILE, q + RowAt(lq, b, h, 0), lq.strides[2], s0, a.S, D);
    LoadRows(&dos[0][0], FT_ATTN_PITCH, FT_ATTN_TILE, dout + bh * a.S * D, D, s0, a.S, D);
    if (threadIdx.x < FT_ATTN_TILE) {
      const int64 s = s0 + threadIdx.x;
      tile_lse[threadIdx.x] = s < a.S ? lse[bh * a.S + s] : 0.0f;
      tile_delta[threadIdx.x] = s < a.S ? delta[bh * a.S + s] : 0.0f;
    }
    __syncthreads();
    const int64 s = s0 + lane;
#pragma unroll
    for (int r = 0; r < FT_ATTN_BWD_ROWS; ++r) {
      const int row = warp * FT_ATTN_BWD_ROWS + r;
      const int64 t = t0 + row;
      if (t >= a.T) break;
      float qk = 0.0f, dov = 0.0f;
      for (int d = 0; d < D; ++d) {
        qk += qs[lane][d] * ks[row][d];
        dov += dos[lane][d] * vs[row][d];
      }
      float kept = 0.0f, ds = 0.0f;
      if (s < a.S) {
        const float p = Prob(a, Logit(a, qk, mask, lm, b, h, s, t), tile_lse[lane]);
        const bool keep = Keep(a, bh, s, t);
        kept = keep ? p * a.dscale : 0.0f;
        const float dp = keep ? dov * a.dscale : 0.0f;
        ds = p * (dp - tile_delta[lane]) * a.scale;
      }
      AccumulateTile(gv[r], kept, dos, lane, D);
      AccumulateTile(gk[r], ds, qs, lane, D);
    }
  }
#pragma unroll
  for (int r = 0; r < FT_ATTN_BWD_ROWS; ++r) {
    const int64 t = t0 + warp * FT_ATTN_BWD_ROWS + r;
    if (t >= a.T) break;
    StoreRow(dk + (bh * a.T + t) * D, gk[r], 1.0f, lane, D);
    StoreRow(dv + (bh * a.T + t) * D, gv[r], 1.0f, lane, D);
  }
}
)CUDA";

// Must match the kernels' #defines.
constexpr int64_t kMaxHeadDim = 128;
constexpr int64_t kForwardRows = 16;
constexpr int64_t kBackwardRows = 8;
constexpr unsigned kAttentionThreads = 128;
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

CUfunction Kernel(Napi::Env env, const char* name) {
  static const std::string source = ModuleSource(kSource);
  return GetKernel(env, "attention", source, name);
}

// What the forward and the backward share: arguments 0 .. 21, checked.
//   B, H, S, T, D, q, qOff, qStrides, k, kOff, kStrides, v, vOff, vStrides, mask (or null), maskOff,
//   maskStrides, causal, scale, dropoutP, seed, offset
struct AttentionArgs {
  int64_t B = 0, BH = 0;
  AttentionParams p{};
  Layout lq, lk, lv, lm;
  uint64_t q = 0, k = 0, v = 0, mask = 0;
};

// A [B, H, rows, cols] view; the kernels read q, k and v rows as arrays, so those need unit stride in the last
// dimension (`rows_as_arrays`), while the mask may broadcast anywhere (zero strides).
uint64_t HeadView(const Napi::CallbackInfo& info, int index, const char* name, const std::vector<int64_t>& shape,
                  bool rows_as_arrays, Layout* layout) {
  std::vector<int64_t> strides;
  const uint64_t ptr = DeviceView(info, index, name, shape, &strides);
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
  a.q = HeadView(info, 5, "q", {a.B, H, S, D}, true, &a.lq);
  a.k = HeadView(info, 8, "k", {a.B, H, T, D}, true, &a.lk);
  a.v = HeadView(info, 11, "v", {a.B, H, T, D}, true, &a.lv);
  if (!info[14].IsNull() && !info[14].IsUndefined()) a.mask = HeadView(info, 14, "mask", {a.B, H, S, T}, false, &a.lm);
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

Dim3 RowBlocks(int64_t bh, int64_t rows, int64_t per_block) {
  Dim3 d;
  d.x = static_cast<unsigned>(bh);
  d.y = static_cast<unsigned>((rows + per_block - 1) / per_block);
  return d;
}

// attentionForward(...shared arguments, out, lse): out [B, H, S, D] and lse [B, H, S] contiguous.
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  AttentionArgs a = GetAttentionArgs(info);
  const int64_t rows = a.BH * a.p.S;
  uint64_t out = DeviceElements<float>(info, GetDeviceBuffer(info, 22, "out"), 0, rows * a.p.D, "out");
  uint64_t lse = DeviceElements<float>(info, GetDeviceBuffer(info, 23, "lse"), 0, rows, "lse");
  void* args[] = {&a.p, &a.lq, &a.lk, &a.lv, &a.lm, &a.q, &a.k, &a.v, &a.mask, &out, &lse};
  Launch(env, Kernel(env, "ft_attention_forward"), RowBlocks(a.BH, a.p.S, kForwardRows), Blocks(kAttentionThreads), 0,
         args);
  return env.Undefined();
}

// attentionBackward(...shared arguments, out, dout, doutOff, lse, dq, dk, dv): the forward's out and lse, dout
// [B, H, S, D]; dq, dk, dv are assigned. All contiguous.
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  AttentionArgs a = GetAttentionArgs(info);
  int64_t rows = a.BH * a.p.S;
  const int64_t q_numel = rows * a.p.D, kv_numel = a.BH * a.p.T * a.p.D;
  uint64_t out = DeviceElements<float>(info, GetDeviceBuffer(info, 22, "out"), 0, q_numel, "out");
  uint64_t dout = DeviceOperandAt<float>(info, 23, "dout", "doutOff", q_numel);
  uint64_t lse = DeviceElements<float>(info, GetDeviceBuffer(info, 25, "lse"), 0, rows, "lse");
  uint64_t dq = DeviceElements<float>(info, GetDeviceBuffer(info, 26, "dq"), 0, q_numel, "dq");
  uint64_t dk = DeviceElements<float>(info, GetDeviceBuffer(info, 27, "dk"), 0, kv_numel, "dk");
  uint64_t dv = DeviceElements<float>(info, GetDeviceBuffer(info, 28, "dv"), 0, kv_numel, "dv");
  ScratchBuffer delta_buffer(env, static_cast<size_t>(std::max<int64_t>(rows, 1)) * sizeof(float));
  uint64_t delta = delta_buffer.ptr();
  int32_t D = a.p.D;
  void* delta_args[] = {&rows, &D, &out, &dout, &delta};
  Launch(env, Kernel(env, "ft_attention_delta"), GridFor(rows * 32), Blocks(kThreads), 0, delta_args);
  void* dq_args[] = {&a.p, &a.lq, &a.lk, &a.lv, &a.lm, &a.q, &a.k, &a.v, &a.mask, &dout, &lse, &delta, &dq};
  Launch(env, Kernel(env, "ft_attention_backward_dq"), RowBlocks(a.BH, a.p.S, kBackwardRows),
         Blocks(kAttentionThreads), 0, dq_args);
  void* dkv_args[] = {&a.p, &a.lq, &a.lk, &a.lv, &a.lm, &a.q, &a.k, &a.v, &a.mask, &dout, &lse, &delta, &dk, &dv};
  Launch(env, Kernel(env, "ft_attention_backward_dkv"), RowBlocks(a.BH, a.p.T, kBackwardRows),
         Blocks(kAttentionThreads), 0, dkv_args);
  return env.Undefined();
}

}  // namespace

void RegisterAttention(Napi::Env env, Napi::Object cuda) {
  cuda.Set("attentionForward", Napi::Function::New(env, AttentionForward, "attentionForward"));
  cuda.Set("attentionBackward", Napi::Function::New(env, AttentionBackward, "attentionBackward"));
}

}  // namespace ft::cuda::kernels
