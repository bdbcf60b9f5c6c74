// CUDA layer norm over the last `cols` values of each row: native/cpu/layer_norm.cc's contract and numerics.
// Statistics accumulate in double (biased variance, rstd = 1 / sqrt(var + eps)). Rows of at most kWarpCols
// values take one warp each, the row in the lanes' registers (read once, 16 bytes at a time where every row
// start is 16-byte aligned) and warp-shuffle sums: at bert's [512, 768] a block per row spent its time in two
// block-wide reductions through shared memory. Where rows are too few for the SMs, each takes a team of four warps
// instead (four sums through shared memory). Longer rows take one block each. The
// backward's dw / db are the CPU's two-pass column reduction: per block of 32 rows a float partial sum in row
// order, then the partials added in block order in double, each step rounded as on the CPU, so dw and db match
// it to the bit without atomics. One pass of blocks does both steps (the partials stay in shared memory). Rows of
// at most kWarpCols values take dw / db and dx in one launch, the launch's first blocks summing columns while the
// rest normalise rows: apart, the two short kernels ran one after the other, each on part of the SMs. Where dx
// may alias dy or x the columns are summed in a launch of their own first.
#include <napi.h>

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <string>

#include "common/args.h"
#include "common/kernel_args.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"

namespace ft::cuda::kernels {
namespace {

// Rows per partial sum of dw / db: the CPU's kRowsPerBlock.
constexpr int64_t kRowsPerBlock = 32;
// The warp-per-row kernels: the longest row they take (32 registers a lane per row operand) and warps per block
// (LN_ROW_WARPS; 4 spread bert's 512 rows over 128 of an H100's 132 SMs), which is also the forward's team.
constexpr int64_t kWarpCols = 1024;
constexpr int64_t kRowWarps = 4;
// The warps an SM should have at least before each row takes a single warp (RowTeam).
constexpr int64_t kTeamWarpsPerSm = 16;
// dw / db's blocks (ParamColumns), as large as the row blocks they share a launch with: tile columns x row groups
// (one 32-row block each). A tile of at least 8 columns reads whole 32-byte sectors of each row; tiles widen while
// the block has threads to spare (bert's [512, 768]: 8 columns x 16 groups, 96 blocks beside 128 row blocks).
constexpr int kParamThreads = kRowWarps * 32;
constexpr int kMinParamColumns = 8;
constexpr int kMaxParamGroups = kParamThreads / kMinParamColumns;

constexpr char kSource[] = R"CUDA(
#define ROWS_PER_BLOCK 32
#define LN_ROW_WARPS 4

// A lane's share of a row of `cols` (at most 1024) values, the row split over a team of W warps (1 or
// LN_ROW_WARPS): groups of V consecutive values, group j at column (j * 32 W + slot) * V, with slot the lane's
// index in its team (lane + 32 times the warp's), so each load instruction of a team reads 32 W V consecutive
// values. V == 4 needs cols % 4 == 0 and p 16-byte aligned. Registers past the row's end are 0.
template <int V, int W = 1>
__device__ __forceinline__ void LoadShare(const float* p, int cols, int slot, float (&out)[32 / W]) {
#pragma unroll
  for (int j = 0; j < 32 / (V * W); ++j) {
    const int k = (j * 32 * W + slot) * V;
    if (k < cols) {
      if constexpr (V == 4) {
        const Float4 t = *(const Float4*)(p + k);
#pragma unroll
        for (int i = 0; i < 4; ++i) out[j * 4 + i] = t.v[i];
      } else {
        out[j] = p[k];
      }
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i) out[j * V + i] = 0.0f;
    }
  }
}

template <int V, int W = 1>
__device__ __forceinline__ void StoreShare(float* p, int cols, int slot, const float (&in)[32 / W]) {
#pragma unroll
  for (int j = 0; j < 32 / (V * W); ++j) {
    const int k = (j * 32 * W + slot) * V;
    if (k < cols) {
      if constexpr (V == 4) {
        Float4 t;
#pragma unroll
        for (int i = 0; i < 4; ++i) t.v[i] = in[j * 4 + i];
        *(Float4*)(p + k) = t;
      } else {
        p[k] = in[j];
      }
    }
  }
}

// StoreShare's twin for the 16-bit copy of the row (autocast's products read it): the values rounded to dt, four
// in one 8-byte store.
template <int V, int W = 1>
__device__ __forceinline__ void StoreLowpShare(uint16* p, int cols, int slot, int dt, const float (&in)[32 / W]) {
#pragma unroll
  for (int j = 0; j < 32 / (V * W); ++j) {
    const int k = (j * 32 * W + slot) * V;
    if (k < cols) {
      if constexpr (V == 4) {
        StoreLowp4(p + k, dt, in[j * 4], in[j * 4 + 1], in[j * 4 + 2], in[j * 4 + 3]);
      } else {
        p[k] = F32ToLowp(in[j], dt);
      }
    }
  }
}

// Whether register e of a lane's share holds a value of the row.
template <int V, int W = 1>
__device__ __forceinline__ bool InRow(int e, int cols, int slot) {
  return ((e / V) * 32 * W + slot) * V < cols;
}

// dropout_add_layer_norm's forward: the layer norm's input is dropout(x) + res, made in the same pass.
struct DropoutAdd {
  const float* res;
  uint64 key, first;
  float threshold, scale;
  float* in;    // receives the layer norm's input (its backward reads it)
  uint8* mask;  // receives the keep bits
};

// A lane's share of row r of dropout(x) + res into v (and d.in, d.mask): element e = r * cols + k drawn and
// rounded as ft_dropout_add draws and rounds it (word (first + e) & 3 of Philox(key, (first + e) >> 2)).
template <int V, int W>
__device__ __forceinline__ void DropoutAddShare(const float* x, const DropoutAdd& d, int64 r, int cols, int slot,
                                                float (&v)[32 / W]) {
  float rs[32 / W];
  LoadShare<V, W>(x + r * cols, cols, slot, v);
  LoadShare<V, W>(d.res + r * cols, cols, slot, rs);
#pragma unroll
  for (int j = 0; j < 32 / (V * W); ++j) {
    const int k = (j * 32 * W + slot) * V;
    if (k >= cols) continue;
    const uint64 e0 = d.first + (uint64)(r * cols + k);
    const Philox4 lo = Philox(d.key, e0 >> 2);
    Philox4 hi = lo;  // a branch: computed as a select, both draws' registers spilled in the team kernel
    if (V > 1 && (e0 & 3) != 0) hi = Philox(d.key, (e0 >> 2) + 1);
    Bytes4 keeps;
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const uint64 e = e0 + i;
      keeps.v[i] = DropoutKeeps(Word((e >> 2) == (e0 >> 2) ? lo : hi, (uint32)(e & 3)), d.threshold);
      v[j * V + i] = __fadd_rn(DropoutValue(v[j * V + i], keeps.v[i], d.scale), rs[j * V + i]);
    }
    if constexpr (V == 4) *(Bytes4*)(d.mask + r * cols + k) = keeps;
    else d.mask[r * cols + k] = keeps.v[0];
  }
  StoreShare<V, W>(d.in + r * cols, cols, slot, v);
}

// The sum of a team's W warp sums `v` (each warp's, from a warp reduction), in warp order, to every lane of the
// team; `team` (LN_ROW_WARPS values, shared) carries them. The whole block calls it.
template <int W, typename T>
__device__ __forceinline__ T TeamSum(T v, T* team) {
  if constexpr (W == 1) {
    return v;
  } else {
    const int warp = threadIdx.x >> 5, first = warp - warp % W;
    __syncthreads();  // the team's previous sum is read
    if ((threadIdx.x & 31) == 0) team[warp] = v;
    __syncthreads();
    T s = team[first];
#pragma unroll
    for (int i = 1; i < W; ++i) s += team[first + i];
    return s;
  }
}

// A team of W warps per row (1, or LN_ROW_WARPS where rows are too few to keep the SMs' schedulers busy with a
// warp each: at BERT's 600 rows an H100 then had four warps an SM, each working through its row's loads, sums and
// stores alone), LN_ROW_WARPS / W rows a block at a time; a team past the last row still takes part in the block's
// barriers. Four double partial sums per lane (register e adds to sum e % 4) keep four additions in flight; w and
// b are the same columns for every row of a lane, so they are read once. With kDropout the row is dropout(x) + d.res
// (DropoutAddShare). `team`: LN_ROW_WARPS doubles, shared.
template <int V, int W, bool kDropout = false>
__device__ __forceinline__ void ForwardRows(int64 rows, int cols, const float* x, const float* w, const float* b,
                                            float eps, float* y, float* mean, float* rstd, uint16* lowp,
                                            int lowp_dt, double* team, const DropoutAdd& d = DropoutAdd{}) {
  constexpr int N = 32 / W, kTeams = LN_ROW_WARPS / W;
  const int warp = threadIdx.x >> 5, slot = (warp % W) * 32 + (threadIdx.x & 31);
  float ws[N], bs[N];
  if (w != 0) LoadShare<V, W>(w, cols, slot, ws);
  if (b != 0) LoadShare<V, W>(b, cols, slot, bs);
  for (int64 r0 = (int64)blockIdx.x * kTeams; r0 < rows; r0 += (int64)gridDim.x * kTeams) {
    const int64 r = r0 + warp / W;
    const bool valid = r < rows;
    float v[N] = {};
    if (valid) {
      if constexpr (kDropout) DropoutAddShare<V, W>(x, d, r, cols, slot, v);
      else LoadShare<V, W>(x + r * cols, cols, slot, v);
    }
    double s[4] = {0.0, 0.0, 0.0, 0.0};
#pragma unroll
    for (int e = 0; e < N; ++e) {
      if (InRow<V, W>(e, cols, slot)) s[e % 4] += v[e];
    }
    const double mu = TeamSum<W>(WarpSumDouble((s[0] + s[1]) + (s[2] + s[3])), team) / cols;
    double q[4] = {0.0, 0.0, 0.0, 0.0};
#pragma unroll
    for (int e = 0; e < N; ++e) {
      if (InRow<V, W>(e, cols, slot)) {
        const double dv = v[e] - mu;
        q[e % 4] += dv * dv;
      }
    }
    const double var = TeamSum<W>(WarpSumDouble((q[0] + q[1]) + (q[2] + q[3])), team) / cols;
    if (!valid) continue;
    const float m = (float)mu;
    const float rs = (float)(1.0 / sqrt(var + (double)eps));
    if (slot == 0) {
      mean[r] = m;
      rstd[r] = rs;
    }
#pragma unroll
    for (int e = 0; e < N; ++e) {
      float o = __fmul_rn(__fsub_rn(v[e], m), rs);
      if (w != 0) o = __fmul_rn(o, ws[e]);
      if (b != 0) o = __fadd_rn(o, bs[e]);
      v[e] = o;
    }
    StoreShare<V, W>(y + r * cols, cols, slot, v);
    if (lowp != 0) StoreLowpShare<V, W>(lowp + r * cols, cols, slot, lowp_dt, v);
  }
}

// ForwardRows for teams of W warps, 4 values to an access where `vec`.
template <int W, bool kDropout>
__device__ __forceinline__ void ForwardTeamRows(int vec, int64 rows, int cols, const float* x, const float* w,
                                                const float* b, float eps, float* y, float* mean, float* rstd,
                                                uint16* lowp, int lowp_dt, const DropoutAdd& d) {
  __shared__ double team_sums[LN_ROW_WARPS];
  if (vec) ForwardRows<4, W, kDropout>(rows, cols, x, w, b, eps, y, mean, rstd, lowp, lowp_dt, team_sums, d);
  else ForwardRows<1, W, kDropout>(rows, cols, x, w, b, eps, y, mean, rstd, lowp, lowp_dt, team_sums, d);
}

// The entry points, a warp a row (_warp) and a team of LN_ROW_WARPS a row (_team): apart, each has the registers
// its own rows need (a team's lanes hold a quarter of a warp's values), so that more of its blocks fit an SM.
// vec: cols % 4 == 0, x, w, b, y 16-byte aligned and lowp 8-byte aligned. lowp (null for none) receives y rounded
// to the 16-bit dtype lowp_dt. Blocks of LN_ROW_WARPS warps (the bound below).
extern "C" __global__ __launch_bounds__(128) void ft_layer_norm_forward_warp(int64 rows, int64 cols, int vec,
                                                                          const float* x, const float* w,
                                                                          const float* b, float eps, float* y,
                                                                          float* mean, float* rstd, uint16* lowp,
                                                                          int lowp_dt) {
  AwaitPriorGrid();
  ForwardTeamRows<1, false>(vec, rows, (int)cols, x, w, b, eps, y, mean, rstd, lowp, lowp_dt, DropoutAdd{});
}

extern "C" __global__ __launch_bounds__(128) void ft_layer_norm_forward_team(int64 rows, int64 cols, int vec,
                                                                          const float* x, const float* w,
                                                                          const float* b, float eps, float* y,
                                                                          float* mean, float* rstd, uint16* lowp,
                                                                          int lowp_dt) {
  AwaitPriorGrid();
  ForwardTeamRows<LN_ROW_WARPS, false>(vec, rows, (int)cols, x, w, b, eps, y, mean, rstd, lowp, lowp_dt, DropoutAdd{});
}

// The same of dropout(x) + res (DropoutAdd); vec also requires res and in 16-byte aligned and mask 4-byte aligned.
// base: in a CUDA graph the graph's random base, added to first.
extern "C" __global__ __launch_bounds__(128) void ft_dropout_add_layer_norm_warp(
    int64 rows, int64 cols, int vec, const float* x, DropoutAdd d, const uint64* base, const float* w, const float* b,
    float eps, float* y, float* mean, float* rstd, uint16* lowp, int lowp_dt) {
  AwaitPriorGrid();
  if (base != 0) d.first += *base;
  ForwardTeamRows<1, true>(vec, rows, (int)cols, x, w, b, eps, y, mean, rstd, lowp, lowp_dt, d);
}

extern "C" __global__ __launch_bounds__(128) void ft_dropout_add_layer_norm_team(
    int64 rows, int64 cols, int vec, const float* x, DropoutAdd d, const uint64* base, const float* w, const float* b,
    float eps, float* y, float* mean, float* rstd, uint16* lowp, int lowp_dt) {
  AwaitPriorGrid();
  if (base != 0) d.first += *base;
  ForwardTeamRows<LN_ROW_WARPS, true>(vec, rows, (int)cols, x, w, b, eps, y, mean, rstd, lowp, lowp_dt, d);
}

extern "C" __global__ __launch_bounds__(1024) void ft_layer_norm_forward(int64 rows, int64 cols, const float* x, const float* w,
                                                 const float* b, float eps, float* y, float* mean, float* rstd,
                                                 uint16* lowp, int lowp_dt) {
  AwaitPriorGrid();
  __shared__ double scratch[32];
  for (int64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    double s = 0.0;
    for (int64 k = threadIdx.x; k < cols; k += blockDim.x) s += xr[k];
    const double mu = BlockSumDouble(s, scratch) / cols;
    double q = 0.0;
    for (int64 k = threadIdx.x; k < cols; k += blockDim.x) {
      const double d = xr[k] - mu;
      q += d * d;
    }
    const double var = BlockSumDouble(q, scratch) / cols;
    const float m = (float)mu;
    const float rs = (float)(1.0 / sqrt(var + (double)eps));
    if (threadIdx.x == 0) {
      mean[r] = m;
      rstd[r] = rs;
    }
    for (int64 k = threadIdx.x; k < cols; k += blockDim.x) {
      float v = __fmul_rn(__fsub_rn(xr[k], m), rs);
      if (w != 0) v = __fmul_rn(v, w[k]);
      if (b != 0) v = __fadd_rn(v, b[k]);
      yr[k] = v;
      if (lowp != 0) lowp[r * cols + k] = F32ToLowp(v, lowp_dt);
    }
  }
}

__device__ __forceinline__ void AddParamRow(float g, float x, float mean, float rstd, float& dw, float& db) {
  dw = __fadd_rn(dw, __fmul_rn(g, __fmul_rn(__fsub_rn(x, mean), rstd)));
  db = __fadd_rn(db, g);
}

// dw[c] and db[c] (either may be null): per 32-row block the float sums, in row order, of dy * xhat and of dy;
// then those partials added in block order in double. Block `block` of `blocks` takes columns
// [block * tc, block * tc + tc), and on; thread (c, g) = (t % tc, t / tc), g < groups, sums row blocks g,
// g + groups, ... one per round, and after each round the g == 0 threads add the round's partials (in shared
// memory: part_w, part_b, a float per thread each) to their double sums in block order.
__device__ __forceinline__ void ParamColumns(int64 rows, int64 cols, int tc, int groups, int64 block, int64 blocks,
                                             const float* x, const float* dy, const float* mean, const float* rstd,
                                             float* dw, float* db, float* part_w, float* part_b) {
  const int c = threadIdx.x % tc, g = threadIdx.x / tc;
  const int64 row_blocks = (rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
  for (int64 col = block * tc + c; col - c < cols; col += blocks * tc) {
    double sw = 0.0, sb = 0.0;
    for (int64 first = 0; first < row_blocks; first += groups) {
      const int64 r0 = (first + g) * ROWS_PER_BLOCK;
      float pw = 0.0f, pb = 0.0f;
      if (g < groups && col < cols && r0 < rows) {
        const float* xc = x + r0 * cols + col;
        const float* gc = dy + r0 * cols + col;
        const float* m = mean + r0;
        const float* rs = rstd + r0;
        if (r0 + ROWS_PER_BLOCK <= rows) {
          // Unrolled so that the block's 32 rows are loaded at once rather than one latency apart.
#pragma unroll
          for (int j = 0; j < ROWS_PER_BLOCK; ++j) AddParamRow(gc[j * cols], xc[j * cols], m[j], rs[j], pw, pb);
        } else {
          for (int64 j = 0; j < rows - r0; ++j) AddParamRow(gc[j * cols], xc[j * cols], m[j], rs[j], pw, pb);
        }
      }
      __syncthreads();  // the previous round's partials have been added
      part_w[threadIdx.x] = pw;
      part_b[threadIdx.x] = pb;
      __syncthreads();
      if (g == 0) {
        const int64 n = min((int64)groups, row_blocks - first);
        for (int k = 0; k < n; ++k) {
          sw += part_w[k * tc + c];
          sb += part_b[k * tc + c];
        }
      }
    }
    if (g == 0 && col < cols) {
      if (dw != 0) dw[col] = (float)sw;
      if (db != 0) db[col] = (float)sb;
    }
  }
}

// dropout_add_layer_norm's backward beside dx: dropout's backward of dx (mask ? dx * scale : 0) goes to dxd and,
// where not null, rounded to the 16-bit dtype lowp_dt to lowp (the GEMMs' operand of the linear layer whose output
// the dropout took), and its column sums (that layer's bias gradient) to sums. The sums add, in double, each warp's
// rows in order, a block's warps in order, the blocks of a cluster of SUM_CLUSTER in order (the cluster's last
// block to finish, partial[block] then cluster_partial[cluster]) and the clusters in order (the last cluster to
// finish): the same bits whichever block finishes last. tickets counts the finished blocks of each cluster, then
// the finished clusters, and is left at 0.
struct DroppedGrad {
  const uint8* mask;
  float scale;
  float* dxd;
  uint16* lowp;
  int lowp_dt;
  float* sums;
  double* partial;
  double* cluster_partial;
  unsigned int* tickets;
};

#define SUM_CLUSTER 16

// A lane's share of a row replaced by its dropout backward (DropoutGrad); keep holds the row's mask bytes, read
// four at a time where V == 4.
template <int V, int W>
__device__ __forceinline__ void DroppedShare(const uint8* keep, float scale, int cols, int slot, float (&v)[32 / W]) {
#pragma unroll
  for (int j = 0; j < 32 / (V * W); ++j) {
    const int k = (j * 32 * W + slot) * V;
    Bytes4 keeps = {};
    if (k < cols) {
      if constexpr (V == 4) keeps = *(const Bytes4*)(keep + k);
      else keeps.v[0] = keep[k];
    }
#pragma unroll
    for (int i = 0; i < V; ++i) v[j * V + i] = k < cols ? DropoutGrad(v[j * V + i], keeps.v[i], scale) : 0.0f;
  }
}

// Adds a lane's share of a row to its warp's column sums (`sums`: a double per column, in shared memory).
template <int V, int W>
__device__ __forceinline__ void AddShare(double* sums, int cols, int slot, const float (&in)[32 / W]) {
#pragma unroll
  for (int j = 0; j < 32 / (V * W); ++j) {
    const int k = (j * 32 * W + slot) * V;
    if (k < cols) {
#pragma unroll
      for (int i = 0; i < V; ++i) sums[k + i] += (double)in[j * V + i];
    }
  }
}

// The column sums of DroppedGrad from each warp's (warp_sums: LN_ROW_WARPS rows of cols doubles), block `block` of
// `blocks`; `last`: a flag in shared memory.
__device__ void FinishDroppedSums(int cols, int64 block, int64 blocks, const double* warp_sums, const DroppedGrad& d,
                                  bool& last) {
  __syncthreads();
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    double s = warp_sums[c];
    for (int w = 1; w < LN_ROW_WARPS; ++w) s += warp_sums[w * cols + c];
    d.partial[block * cols + c] = s;
  }
  const int cluster = (int)(block / SUM_CLUSTER), first = cluster * SUM_CLUSTER;
  const int members = min(SUM_CLUSTER, (int)blocks - first);
  const int clusters = ((int)blocks + SUM_CLUSTER - 1) / SUM_CLUSTER;
  if (!LastToFinish(d.tickets + cluster, (unsigned int)members, last)) return;
  AddPartials(d.partial + (int64)first * cols, members, cols, d.cluster_partial + (int64)cluster * cols, 0);
  if (!LastToFinish(d.tickets + clusters, (unsigned int)clusters, last)) return;
  AddPartials(d.cluster_partial, clusters, cols, 0, d.sums);
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w, xhat = (x - mean) * rstd; a team of W warps per
// row as ForwardRows' (`team`: LN_ROW_WARPS floats, shared), g and xhat kept in registers between the sums and dx.
// Each lane writes only the values it read, so dx may alias dy. With d.dxd (not null) dropout's backward of dx goes
// there too (DroppedGrad), and with d.sums each warp adds its share of its rows to its row of warp_sums
// (LN_ROW_WARPS rows of cols doubles, shared). Block `block` of `blocks` takes rows from block * LN_ROW_WARPS / W.
template <int V, int W>
__device__ __forceinline__ void BackwardRows(int64 rows, int cols, const float* x, const float* dy, const float* w,
                                             const float* mean, const float* rstd, float* dx, const DroppedGrad& d,
                                             double* warp_sums, float* team, int64 block, int64 blocks) {
  constexpr int N = 32 / W, kTeams = LN_ROW_WARPS / W;
  const int warp = threadIdx.x >> 5, slot = (warp % W) * 32 + (threadIdx.x & 31);
  float ws[N];
  if (w != 0) LoadShare<V, W>(w, cols, slot, ws);
  for (int64 r0 = block * kTeams; r0 < rows; r0 += blocks * kTeams) {
    const int64 r = r0 + warp / W;
    const bool valid = r < rows;
    float g[N] = {}, xh[N] = {}, m = 0.0f, rs = 0.0f;
    if (valid) {
      m = mean[r];
      rs = rstd[r];
      LoadShare<V, W>(dy + r * cols, cols, slot, g);
      LoadShare<V, W>(x + r * cols, cols, slot, xh);
    }
    float sg[4] = {0.0f, 0.0f, 0.0f, 0.0f}, sgx[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int e = 0; e < N; ++e) {
      if (w != 0) g[e] = g[e] * ws[e];
      xh[e] = (xh[e] - m) * rs;
      if (InRow<V, W>(e, cols, slot)) {
        sg[e % 4] += g[e];
        sgx[e % 4] += g[e] * xh[e];
      }
    }
    const float a = TeamSum<W>(WarpSum((sg[0] + sg[1]) + (sg[2] + sg[3])), team) / (float)cols;
    const float c = TeamSum<W>(WarpSum((sgx[0] + sgx[1]) + (sgx[2] + sgx[3])), team) / (float)cols;
    if (!valid) continue;
#pragma unroll
    for (int e = 0; e < N; ++e) g[e] = (g[e] - a - xh[e] * c) * rs;
    StoreShare<V, W>(dx + r * cols, cols, slot, g);
    if (d.dxd != 0) {
      DroppedShare<V, W>(d.mask + r * cols, d.scale, cols, slot, g);
      StoreShare<V, W>(d.dxd + r * cols, cols, slot, g);
      if (d.lowp != 0) StoreLowpShare<V, W>(d.lowp + r * cols, cols, slot, d.lowp_dt, g);
      if (d.sums != 0) AddShare<V, W>(warp_sums + warp * cols, cols, slot, g);
    }
  }
}

// dw / db's part of a launch: ParamColumns' tiles, on the launch's first `blocks` blocks.
struct ParamPart {
  int tc, groups;
  int64 blocks;
  float *dw, *db;
};

// The launch's first p.blocks blocks compute dw / db (ParamColumns), the others dx (BackwardRows with teams of W
// warps, rows of at most 1024 values; none where the launch has only p's blocks). vec: cols % 4 == 0, x, dy, w, dx,
// d.dxd 16-byte aligned, d.mask 4-byte and d.lowp 8-byte aligned. With d.sums the dynamic shared memory holds
// LN_ROW_WARPS * cols doubles.
template <int W>
__device__ __forceinline__ void BackwardLaunch(int64 rows, int64 cols, int vec, const float* x, const float* dy,
                                               const float* w, const float* mean, const float* rstd, float* dx,
                                               const DroppedGrad& d, const ParamPart& p) {
  if (blockIdx.x < p.blocks) {
    __shared__ float part_w[LN_ROW_WARPS * 32], part_b[LN_ROW_WARPS * 32];
    ParamColumns(rows, cols, p.tc, p.groups, blockIdx.x, p.blocks, x, dy, mean, rstd, p.dw, p.db, part_w, part_b);
    return;
  }
  extern __shared__ double warp_sums[];
  __shared__ float team[LN_ROW_WARPS];
  __shared__ bool last;
  const int64 block = blockIdx.x - p.blocks, blocks = gridDim.x - p.blocks;
  if (d.sums != 0) {
    for (int i = threadIdx.x; i < LN_ROW_WARPS * cols; i += blockDim.x) warp_sums[i] = 0.0;
    __syncthreads();
  }
  if (vec) BackwardRows<4, W>(rows, (int)cols, x, dy, w, mean, rstd, dx, d, warp_sums, team, block, blocks);
  else BackwardRows<1, W>(rows, (int)cols, x, dy, w, mean, rstd, dx, d, warp_sums, team, block, blocks);
  if (d.sums != 0) FinishDroppedSums((int)cols, block, blocks, warp_sums, d, last);
}

// Its entry points, a warp a row and a team of LN_ROW_WARPS a row, as the forward's.
extern "C" __global__ __launch_bounds__(LN_ROW_WARPS * 32) void ft_layer_norm_backward_warp(
    int64 rows, int64 cols, int vec, const float* x, const float* dy, const float* w, const float* mean,
    const float* rstd, float* dx, DroppedGrad d, ParamPart p) {
  AwaitPriorGrid();
  BackwardLaunch<1>(rows, cols, vec, x, dy, w, mean, rstd, dx, d, p);
}

extern "C" __global__ __launch_bounds__(LN_ROW_WARPS * 32) void ft_layer_norm_backward_team(
    int64 rows, int64 cols, int vec, const float* x, const float* dy, const float* w, const float* mean,
    const float* rstd, float* dx, DroppedGrad d, ParamPart p) {
  AwaitPriorGrid();
  BackwardLaunch<LN_ROW_WARPS>(rows, cols, vec, x, dy, w, mean, rstd, dx, d, p);
}

// The same for rows longer than kWarpCols, one block per row.
extern "C" __global__ __launch_bounds__(1024) void ft_layer_norm_backward(int64 rows, int64 cols, const float* x, const float* dy,
                                                  const float* w, const float* mean, const float* rstd, float* dx,
                                                  const uint8* mask, float scale, float* dxd) {
  AwaitPriorGrid();
  __shared__ float scratch[32];
  for (int64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * cols;
    const float* dyr = dy + r * cols;
    float* dxr = dx + r * cols;
    const float m = mean[r], rs = rstd[r];
    float sg = 0.0f, sgx = 0.0f;
    for (int64 k = threadIdx.x; k < cols; k += blockDim.x) {
      const float g = w != 0 ? dyr[k] * w[k] : dyr[k];
      sg += g;
      sgx += g * ((xr[k] - m) * rs);
    }
    const float a = BlockSum(sg, scratch) / (float)cols;
    const float c = BlockSum(sgx, scratch) / (float)cols;
    for (int64 k = threadIdx.x; k < cols; k += blockDim.x) {
      const float g = w != 0 ? dyr[k] * w[k] : dyr[k];
      const float d = (g - a - (xr[k] - m) * rs * c) * rs;
      dxr[k] = d;
      if (dxd != 0) dxd[r * cols + k] = DropoutGrad(d, mask[r * cols + k], scale);
    }
  }
}
)CUDA";

CUfunction Kernel(Napi::Env env, const char* name) {
  static const std::string source = ModuleSource(kSource);
  return GetKernel(env, "layer_norm", source, name);
}

// An optional input (null allowed) at `index` with its offset at index + 1; 0 when null.
uint64_t OptionalFloats(const Napi::CallbackInfo& info, int index, const char* name, int64_t count) {
  if (NoneGiven(info, index)) return 0;
  return DeviceOperandAt<float>(info, index, name, name, count);
}

uint64_t OptionalOutput(const Napi::CallbackInfo& info, int index, const char* name, int64_t count) {
  if (NoneGiven(info, index)) return 0;
  return DeviceElements<float>(info, GetDeviceBuffer(info, index, name), 0, count, name);
}

// Whether the warp kernels may read and write every row 16 bytes at a time: each row start 16-byte aligned
// (null operands count as aligned).
int Vectorizable(int64_t cols, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  return cols % 4 == 0 && Aligned({{a, 16}, {b, 16}, {c, 16}, {d, 16}});
}

// kRowWarps rows per block, capped as RowGrid caps (the kernels loop over rows beyond it).
Dim3 WarpRowGrid(int64_t rows) { return Blocks(std::min(kMaxRowBlocks, (rows + kRowWarps - 1) / kRowWarps)); }

// Whether rows may take teams of warps: FINETUNE_CUDA_ROW_TEAMS=0 or rowTeams(false) keeps a warp a row, so that a
// benchmark can time both.
bool& RowTeamsEnabled() {
  static bool enabled = EnvSwitch("FINETUNE_CUDA_ROW_TEAMS", true);
  return enabled;
}

// Whether a row takes a team of kRowWarps warps (the _team kernels): where a warp a row would give the SMs fewer
// than kTeamWarpsPerSm warps and the row has values for every warp of the team.
bool RowTeam(int64_t rows, int64_t cols, int vec) {
  const int64_t team_values = (kRowWarps - 1) * 32 * (vec ? 4 : 1);
  return RowTeamsEnabled() && rows < kTeamWarpsPerSm * Multiprocessors() && cols > team_values;
}

// A block a row for teams, else WarpRowGrid.
Dim3 TeamRowGrid(int64_t rows, bool team) { return team ? Blocks(std::min(kMaxRowBlocks, rows)) : WarpRowGrid(rows); }

// The kernels' `struct ParamPart`, member for member.
struct ParamPart {
  int tc, groups;
  int64_t blocks;
  uint64_t dw, db;
};
static_assert(sizeof(ParamPart) == 32, "ParamPart must match the kernels' declaration");

// dw / db's tiles: a row group per 32-row block up to the block's threads, then tiles as wide as the rest allow;
// no blocks where neither is wanted.
ParamPart PlanParams(int64_t rows, int64_t cols, uint64_t dw, uint64_t db) {
  ParamPart p{kMinParamColumns, 1, 0, dw, db};
  if (dw == 0 && db == 0) return p;
  const int64_t row_blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  while (p.groups < kMaxParamGroups && p.groups < row_blocks) p.groups *= 2;
  while (p.tc * p.groups * 2 <= kParamThreads && p.tc < cols) p.tc *= 2;
  p.blocks = std::min(kMaxBlocks, (cols + p.tc - 1) / p.tc);
  return p;
}

bool Overlaps(uint64_t a, size_t a_bytes, uint64_t b, size_t b_bytes) {
  return a != 0 && b != 0 && a < b + b_bytes && b < a + a_bytes;
}

// The forward's arguments from w on: w, wOff, b, bOff, eps, y, yOff, mean, rstd, lowpDtype?, yLowp?. The members
// have the kernels' argument types: launches point at them.
struct NormOperands {
  uint64_t w, b;
  float eps;
  uint64_t y, mean, rstd;
  int lowp_dt;
  uint64_t lowp;
};

NormOperands GetNormOperands(const Napi::CallbackInfo& info, int first, int64_t rows, int64_t cols, int64_t numel) {
  NormOperands n{};
  n.w = OptionalFloats(info, first, "w", cols);
  n.b = OptionalFloats(info, first + 2, "b", cols);
  n.eps = static_cast<float>(GetNumber(info, first + 4, "eps"));
  n.y = DeviceOperandAt<float>(info, first + 5, "y", "yOff", numel);
  n.mean = DeviceElements<float>(info, GetDeviceBuffer(info, first + 7, "mean"), 0, rows, "mean");
  n.rstd = DeviceElements<float>(info, GetDeviceBuffer(info, first + 8, "rstd"), 0, rows, "rstd");
  n.lowp_dt = LowpDtypeAt(info, first + 9);
  n.lowp = LowpOutputAt(info, first + 10, "yLowp", n.lowp_dt, numel);
  return n;
}

Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t rows = GetCount(info, 0, "rows");
  int64_t cols = GetCount(info, 1, "cols");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  uint64_t x = DeviceOperandAt<float>(info, 2, "x", "xOff", numel);
  NormOperands n = GetNormOperands(info, 4, rows, cols, numel);
  auto& [w, b, eps, y, mean, rstd, lowp_dt, lowp] = n;
  if (cols == 0) throw Napi::RangeError::New(env, "layerNormForward: cols must be > 0");
  if (cols <= kWarpCols) {
    int vec = Vectorizable(cols, x, w, b, y) && Aligned({{lowp, 8}});
    const bool team = RowTeam(rows, cols, vec);
    void* args[] = {&rows, &cols, &vec, &x, &w, &b, &eps, &y, &mean, &rstd, &lowp, &lowp_dt};
    Launch(env, Kernel(env, team ? "ft_layer_norm_forward_team" : "ft_layer_norm_forward_warp"), TeamRowGrid(rows, team),
           Blocks(kRowWarps * 32), 0, args);
    return env.Undefined();
  }
  void* args[] = {&rows, &cols, &x, &w, &b, &eps, &y, &mean, &rstd, &lowp, &lowp_dt};
  Launch(env, Kernel(env, "ft_layer_norm_forward"), RowGrid(rows), RowThreads(cols), 0, args);
  return env.Undefined();
}

// The kernels' `struct DropoutAdd`, member for member.
struct DropoutAddParams {
  uint64_t res, key, first;
  float threshold, scale;
  uint64_t in, mask;
};
static_assert(sizeof(DropoutAddParams) == 48, "DropoutAddParams must match the kernels' declaration");

// dropoutAddLayerNorm(rows, cols, seed, offset, p, x, xOff, residual, residualOff, input, mask, w, wOff, b, bOff, eps,
// y, yOff, mean, rstd, lowpDtype?, yLowp?): layerNormForward of input = dropout(x) + residual, which it writes to `input`
// (float32) with the keep bits to `mask` (uint8), drawn as dropoutAdd(rows * cols, seed, offset, p, ...) draws them;
// rows of at most kWarpCols values.
Napi::Value DropoutAddLayerNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t rows = GetCount(info, 0, "rows");
  int64_t cols = GetCount(info, 1, "cols");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  DropoutAddParams d{};
  d.key = GetU64(info, 2, "seed");
  d.first = GetU64(info, 3, "offset");
  const DropoutScalars p = GetDropoutP(info, 4, "p");
  d.threshold = p.threshold;
  d.scale = p.scale;
  uint64_t x = DeviceOperandAt<float>(info, 5, "x", "xOff", numel);
  d.res = DeviceOperandAt<float>(info, 7, "residual", "residualOff", numel);
  d.in = DeviceElements<float>(info, GetDeviceBuffer(info, 9, "input"), 0, numel, "input");
  d.mask = DeviceElements<uint8_t>(info, GetDeviceBuffer(info, 10, "mask"), 0, numel, "mask");
  NormOperands n = GetNormOperands(info, 11, rows, cols, numel);
  auto& [w, b, eps, y, mean, rstd, lowp_dt, lowp] = n;
  if (cols == 0 || cols > kWarpCols)
    throw Napi::RangeError::New(env, "dropoutAddLayerNorm: cols must be in [1, " + std::to_string(kWarpCols) +
                                         "]: use dropoutAdd and layerNormForward");
  int vec = Vectorizable(cols, x, w, b, y) && Aligned({{d.res, 16}, {d.in, 16}, {d.mask, 4}, {lowp, 8}});
  uint64_t base = CaptureRandomBase(env);
  const bool team = RowTeam(rows, cols, vec);
  void* args[] = {&rows, &cols, &vec, &x, &d, &base, &w, &b, &eps, &y, &mean, &rstd, &lowp, &lowp_dt};
  Launch(env, Kernel(env, team ? "ft_dropout_add_layer_norm_team" : "ft_dropout_add_layer_norm_warp"),
         TeamRowGrid(rows, team), Blocks(kRowWarps * 32), 0, args);
  return env.Undefined();
}

// The kernels' `struct DroppedGrad`, member for member.
struct DroppedGradParams {
  uint64_t mask;
  float scale;
  uint64_t dxd, lowp;
  int lowp_dt;
  uint64_t sums, partial, cluster_partial, tickets;
};
static_assert(sizeof(DroppedGradParams) == 72, "DroppedGradParams must match the kernels' declaration");

// Row blocks a launch with column sums takes at most (the kernels loop over rows beyond them), in clusters of
// kSumCluster (SUM_CLUSTER): the tickets are a word per cluster and one for the clusters.
constexpr int64_t kSumCluster = 16;
constexpr int64_t kMaxSumClusters = 64;
static_assert(kMaxSumClusters + 1 <= kTicketWords, "the column sums' tickets must fit the runtime's");

// layerNormBackward(rows, cols, x, xOff, dy, dyOff, w, wOff, mean, rstd, dx, dxOff, dw, db, [mask, dropoutScale,
// dxDropout, [lowpDtype, dxDropoutLowp, dxDropoutSums]]): native/cpu/layer_norm.cc's layerNormBackward; with
// `mask` (uint8) dxDropout (float32) also receives mask ? dx * dropoutScale : 0, the backward of the dropout whose
// output plus a residual was x (dropout_add_layer_norm), and with dxDropoutSums (float32, cols) that gradient's
// column sums and its 16-bit copy in dxDropoutLowp (both or neither). Returns whether it wrote those two: not for
// rows longer than 1024 values (false: write them apart).
Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t rows = GetCount(info, 0, "rows");
  int64_t cols = GetCount(info, 1, "cols");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  uint64_t x = DeviceOperandAt<float>(info, 2, "x", "xOff", numel);
  uint64_t dy = DeviceOperandAt<float>(info, 4, "dy", "dyOff", numel);
  uint64_t w = OptionalFloats(info, 6, "w", cols);
  uint64_t mean = DeviceElements<float>(info, GetDeviceBuffer(info, 8, "mean"), 0, rows, "mean");
  uint64_t rstd = DeviceElements<float>(info, GetDeviceBuffer(info, 9, "rstd"), 0, rows, "rstd");
  uint64_t dx = DeviceOperandAt<float>(info, 10, "dx", "dxOff", numel);
  uint64_t dw = OptionalOutput(info, 12, "dw", cols);
  uint64_t db = OptionalOutput(info, 13, "db", cols);
  DroppedGradParams d{};
  if (!NoneGiven(info, 14)) {
    d.mask = DeviceElements<uint8_t>(info, GetDeviceBuffer(info, 14, "mask"), 0, numel, "mask");
    d.scale = static_cast<float>(GetNumber(info, 15, "dropoutScale"));
    d.dxd = DeviceElements<float>(info, GetDeviceBuffer(info, 16, "dxDropout"), 0, numel, "dxDropout");
  }
  bool extras = !NoneGiven(info, 19);
  if (extras) {
    if (d.mask == 0) throw Napi::TypeError::New(env, ArgName(19, "dxDropoutSums") + " needs a mask and dxDropout");
    d.lowp_dt = LowpDtypeAt(info, 17);
    d.lowp = LowpOutputAt(info, 18, "dxDropoutLowp", d.lowp_dt, numel);
    if (d.lowp == 0) throw Napi::TypeError::New(env, ArgName(18, "dxDropoutLowp") + " must be a CUDA device buffer beside dxDropoutSums");
    d.sums = DeviceElements<float>(info, GetDeviceBuffer(info, 19, "dxDropoutSums"), 0, cols, "dxDropoutSums");
  }
  if (cols == 0) throw Napi::RangeError::New(env, "layerNormBackward: cols must be > 0");
  ParamPart params = PlanParams(rows, cols, dw, db);
  const size_t bytes = static_cast<size_t>(numel) * sizeof(float);
  // dw / db read every row of x and dy: where dx may overwrite them, they are summed first, alone
  const bool apart = cols > kWarpCols || Overlaps(dx, bytes, x, bytes) || Overlaps(dx, bytes, dy, bytes) ||
                     Overlaps(d.dxd, bytes, x, bytes) || Overlaps(d.dxd, bytes, dy, bytes);
  if (params.blocks > 0 && apart) {
    DroppedGradParams none{};
    int vec = 0;
    void* args[] = {&rows, &cols, &vec, &x, &dy, &w, &mean, &rstd, &dx, &none, &params};
    Launch(env, Kernel(env, "ft_layer_norm_backward_warp"), Blocks(params.blocks), Blocks(kParamThreads), 0, args);
    params.blocks = 0;
  }
  if (cols > kWarpCols) {
    void* long_args[] = {&rows, &cols, &x, &dy, &w, &mean, &rstd, &dx, &d.mask, &d.scale, &d.dxd};
    Launch(env, Kernel(env, "ft_layer_norm_backward"), RowGrid(rows), RowThreads(cols), 0, long_args);
    return Napi::Boolean::New(env, false);
  }
  if (extras && rows == 0) {
    MemsetBytes(env, d.sums, 0, static_cast<size_t>(cols) * sizeof(float));
    d.sums = d.lowp = 0;
  }
  d.tickets = Tickets();
  int vec = Vectorizable(cols, x, dy, w, dx) && Aligned({{d.dxd, 16}, {d.mask, 4}, {d.lowp, 8}});
  const bool team = RowTeam(rows, cols, vec);
  int64_t row_blocks = TeamRowGrid(rows, team).x;
  size_t shared = 0;
  std::optional<ScratchBuffer> partial;
  if (d.sums != 0) {
    row_blocks = std::min(row_blocks, kSumCluster * kMaxSumClusters);
    const int64_t clusters = (row_blocks + kSumCluster - 1) / kSumCluster;
    partial.emplace(env, static_cast<size_t>((row_blocks + clusters) * cols) * sizeof(double));
    d.partial = partial->ptr();
    d.cluster_partial = d.partial + static_cast<uint64_t>(row_blocks * cols) * sizeof(double);
    shared = static_cast<size_t>(kRowWarps * cols) * sizeof(double);
  }
  void* args[] = {&rows, &cols, &vec, &x, &dy, &w, &mean, &rstd, &dx, &d, &params};
  Launch(env, Kernel(env, team ? "ft_layer_norm_backward_team" : "ft_layer_norm_backward_warp"),
         Blocks(params.blocks + row_blocks), Blocks(kRowWarps * 32), shared, args);
  return Napi::Boolean::New(env, extras);
}

// rowTeams(enabled?): whether layer norm rows may take teams of warps (RowTeamsEnabled), after setting it when given.
Napi::Value RowTeams(const Napi::CallbackInfo& info) {
  EnsureContext(info.Env());
  return FlagSetting(info, RowTeamsEnabled());
}

}  // namespace

void RegisterLayerNorm(Napi::Env env, Napi::Object cuda) {
  cuda.Set("rowTeams", Napi::Function::New(env, RowTeams, "rowTeams"));
  cuda.Set("layerNormForward", Napi::Function::New(env, LayerNormForward, "layerNormForward"));
  cuda.Set("layerNormBackward", Napi::Function::New(env, LayerNormBackward, "layerNormBackward"));
  cuda.Set("dropoutAddLayerNorm", Napi::Function::New(env, DropoutAddLayerNorm, "dropoutAddLayerNorm"));
}

}  // namespace ft::cuda::kernels
