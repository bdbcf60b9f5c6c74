// CUDA reductions over contiguous [outer, n, inner] views, argmax, and the multi-tensor grad-norm / clipping
// helpers: native/cpu/reduce.cc's contract. Sums accumulate in double, per thread and across the block. Long
// reductions are split into fixed chunks whose double partials a second kernel combines in chunk order, so
// every result is deterministic (no atomics) and does not depend on the device's SM count.
#include <napi.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/args.h"
#include "common/kernel_args.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"

namespace ft::cuda::kernels {
namespace {

enum ReduceOp { kSum = 0, kMax, kMin };

// Elements of a row that one block reduces (inner == 1): the CPU's block size.
constexpr int64_t kRowChunk = 65536;
// Along a narrow strided axis (1 < inner < kMinTileColumns) one thread reduces a column chunk; chunks are
// split until about this many threads run, but never below kMinColumnChunk elements.
constexpr int64_t kColumnThreads = int64_t{1} << 17;
constexpr int64_t kMinColumnChunk = 64;
// Wider strided axes (bias gradients: sums over the rows of [rows, features]) go to ft_reduce_column_tiles:
// blocks of kTileThreads = tile columns x row groups. A tile is at least 8 columns, 32 bytes of a row: one
// whole memory sector, so every row group's reads are coalesced however narrow the tile.
constexpr int64_t kTileThreads = 256;
constexpr int64_t kMinTileColumns = 8;
constexpr int64_t kMaxRowGroups = kTileThreads / kMinTileColumns;
// Rows are split across blocks (partials for ft_reduce_finish) only while there are fewer tiles than this,
// and never into chunks below kMinTileRows, so short reductions such as bert's 512 rows take one launch.
constexpr int64_t kTileBlocks = 256;
constexpr int64_t kMinTileRows = 1024;

constexpr char kSource[] = R"CUDA(
#define OP_SUM 0
#define OP_MAX 1

__device__ __forceinline__ double Combine(int op, double a, double b) {
  if (op == OP_SUM) return a + b;
  const float x = (float)a, y = (float)b;
  return op == OP_MAX ? NanMax(x, y) : NanMin(x, y);
}

__device__ __forceinline__ double WarpCombine(int op, double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = Combine(op, v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Every thread gets the block's combined value. `identity` fills the unused warp slots.
__device__ double BlockCombine(int op, double v, double identity) {
  __shared__ double scratch[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = WarpCombine(op, v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : identity;
  return WarpCombine(op, v);
}

__device__ __forceinline__ double Identity(int op) { return op == OP_SUM ? 0.0 : (op == OP_MAX ? -FT_INF : FT_INF); }

// inner == 1: block u reduces chunk u % chunks of row u / chunks; with one chunk per row it writes dst, else
// partial[u] for ft_reduce_finish.
extern "C" __global__ void ft_reduce_rows(int op, int64 outer, int64 n, int64 chunk, int64 chunks, const float* src,
                                          double* partial, float* dst) {
  AwaitPriorGrid();
  const double identity = Identity(op);
  for (int64 u = blockIdx.x; u < outer * chunks; u += gridDim.x) {
    const int64 o = u / chunks, k0 = (u % chunks) * chunk;
    const int64 len = min(chunk, n - k0);
    const float* x = src + o * n + k0;
    double acc = identity;
    for (int64 k = threadIdx.x; k < len; k += blockDim.x) acc = Combine(op, acc, (double)x[k]);
    acc = BlockCombine(op, acc, identity);
    if (threadIdx.x == 0) {
      if (chunks == 1) dst[o] = (float)acc; else partial[u] = acc;
    }
  }
}

// 1 < inner < 8: thread t reduces column t % inner of chunk (t / inner) % chunks of outer index t / (inner * chunks)
// (consecutive threads read consecutive columns); with one chunk it writes dst, else partial[t].
extern "C" __global__ void ft_reduce_columns(int op, int64 outer, int64 n, int64 inner, int64 chunk, int64 chunks,
                                             const float* src, double* partial, float* dst) {
  AwaitPriorGrid();
  const int64 total = outer * chunks * inner;
  for (int64 t = GlobalThread(); t < total; t += GridThreads()) {
    const int64 i = t % inner, b = (t / inner) % chunks, o = t / (inner * chunks);
    const int64 k0 = b * chunk, k1 = min(n, k0 + chunk);
    const float* x = src + o * n * inner + i;
    double acc = Identity(op);
    for (int64 k = k0; k < k1; ++k) acc = Combine(op, acc, (double)x[k * inner]);
    if (chunks == 1) dst[o * inner + i] = (float)acc; else partial[t] = acc;
  }
}

// inner >= 8: block u reduces tile u % tiles (columns [tile * tc, tile * tc + tc)) over row chunk
// (u / tiles) % chunks of outer index u / (tiles * chunks). Thread (c, g) = (t % tc, t / tc) reads rows
// g, g + groups, ... of its column (a row group's tc threads read tc consecutive floats); the groups' values are
// then combined by a fixed tree in shared memory (groups is a power of 2), so the result is deterministic. With
// one chunk it writes dst, else partial[(o * chunks + b) * inner + i] for ft_reduce_finish. read(e) loads what
// element e's value comes from and use(e, r) gives the value (ft_cast_column_sums also stores its cast there):
// a thread reads up to TILE_BATCH of its rows before it uses any, so that stores through `use` cannot hold back the
// loads, and a chunk's last rows come in one batch too, not one load latency apart (BERT's 256 to 832 rows take one
// or two batches).
#define TILE_BATCH 16
template <typename Read, typename Use>
__device__ __forceinline__ void ColumnTiles(int op, int64 outer, int64 n, int64 inner, int64 chunk, int64 chunks,
                                            int tc, int groups, Read read, Use use, double* partial, float* dst) {
  __shared__ double scratch[256];
  const int c = threadIdx.x % tc, g = threadIdx.x / tc;
  const int64 tiles = (inner + tc - 1) / tc;
  const double identity = Identity(op);
  for (int64 u = blockIdx.x; u < outer * chunks * tiles; u += gridDim.x) {
    const int64 i = (u % tiles) * tc + c, b = (u / tiles) % chunks, o = u / (tiles * chunks);
    const int64 k1 = min(n, (b + 1) * chunk);
    double acc = identity;
    if (i < inner) {
      const int64 e0 = o * n * inner + i, step = groups * inner;
      for (int64 k = b * chunk + g; k < k1; k += TILE_BATCH * groups) {
        decltype(read(e0)) r[TILE_BATCH] = {};
#pragma unroll
        for (int j = 0; j < TILE_BATCH; ++j) {
          if (k + j * groups < k1) r[j] = read(e0 + k * inner + j * step);
        }
#pragma unroll
        for (int j = 0; j < TILE_BATCH; ++j) {
          if (k + j * groups < k1) acc = Combine(op, acc, (double)use(e0 + k * inner + j * step, r[j]));
        }
      }
    }
    __syncthreads();  // the previous tile's tree has read scratch
    scratch[threadIdx.x] = acc;
    for (int s = groups >> 1; s > 0; s >>= 1) {
      __syncthreads();
      if (g < s) scratch[threadIdx.x] = acc = Combine(op, acc, scratch[threadIdx.x + s * tc]);
    }
    if (g == 0 && i < inner) {
      if (chunks == 1) dst[o * inner + i] = (float)acc; else partial[(o * chunks + b) * inner + i] = acc;
    }
  }
}

extern "C" __global__ __launch_bounds__(256) void ft_reduce_column_tiles(int op, int64 outer, int64 n, int64 inner,
                                                                       int64 chunk, int64 chunks, int tc, int groups,
                                                                       const float* src, double* partial, float* dst) {
  AwaitPriorGrid();
  ColumnTiles(op, outer, n, inner, chunk, chunks, tc, groups, [src](int64 e) { return src[e]; },
              [](int64, float v) { return v; }, partial, dst);
}

// An element of a linear layer's gradient and, for linear_gelu, its pre-activation.
struct GradAndPre {
  float g, pre;
};

// A linear layer's incoming gradient g [n, inner] (float32, or 16-bit of dtype g_dt) read once for its backward:
// v = g, or g * GELU'(pre) with the forward's pre-activation (linear_gelu; pre float32, or 16-bit of dtype pre_dt,
// null for none), is stored to lowp rounded to lowp_dt (the GEMMs' operand), and dst receives its column sums (the
// bias gradient) as ft_reduce_column_tiles sums a float32 [1, n, inner]: the same partials in the same order. With
// `table` (16-bit pre only: ft_gelu_grad_table's) GELU'(pre) is looked up by pre's bits (with `hot`, bfloat16's
// mostly in the block's copy of the table's hot part); `pre` of GradAndPre then holds it.
extern "C" __global__ __launch_bounds__(256) void ft_cast_column_sums(int64 n, int64 inner, int64 chunk, int64 chunks,
                                                                    int tc, int groups, const void* g, int g_dt,
                                                                    const void* pre, int pre_dt,
                                                                    const float* table, int hot, uint16* lowp,
                                                                    int lowp_dt, double* partial, float* dst) {
  AwaitPriorGrid();
  __shared__ float hot_part[2 * FT_HOT_COUNT];
  const bool hot_table = hot && pre != 0 && table != 0 && pre_dt == DT_BF16;
  if (hot_table) {
    LoadHotTable(hot_part, table);
    __syncthreads();
  }
  const auto read = [=](int64 e) {
    GradAndPre r{g_dt == DT_F32 ? ((const float*)g)[e] : LowpToF32(((const uint16*)g)[e], g_dt), 0.0f};
    if (pre == 0) return r;
    if (pre_dt == DT_F32) r.pre = ((const float*)pre)[e];
    else if (hot_table) r.pre = HotLookup(hot_part, table, ((const uint16*)pre)[e]);
    else if (table != 0) r.pre = table[((const uint16*)pre)[e]];
    else r.pre = LowpToF32(((const uint16*)pre)[e], pre_dt);
    return r;
  };
  const auto use = [=](int64 e, GradAndPre r) {
    const float v = pre == 0 ? r.g : r.g * (table != 0 ? r.pre : GeluErfGrad(r.pre));
    lowp[e] = F32ToLowp(v, lowp_dt);
    return v;
  };
  ColumnTiles(OP_SUM, 1, n, inner, chunk, chunks, tc, groups, read, use, partial, dst);
}

// table[i] = GELU'(x) for the 16-bit value x of dtype dt with bits i, every i < 65536: ft_cast_column_sums looks
// it up where evaluating erf and exp per element made it compute-bound (20.7 us of a bert-base layer's backward on
// an H100, at half the SMs' throughput).
extern "C" __global__ void ft_gelu_grad_table(int dt, float* table) {
  AwaitPriorGrid();
  for (int64 i = GlobalThread(); i < 65536; i += GridThreads()) table[i] = GeluErfGrad(LowpToF32((uint16)i, dt));
}

// dst[o, i] = the partials of (o, i) combined in chunk order: partial[(o * chunks + b) * inner + i].
extern "C" __global__ void ft_reduce_finish(int op, int64 outer, int64 chunks, int64 inner, const double* partial,
                                            float* dst) {
  AwaitPriorGrid();
  for (int64 t = GlobalThread(); t < outer * inner; t += GridThreads()) {
    const int64 o = t / inner, i = t % inner;
    const double* p = partial + o * chunks * inner + i;
    double r = p[0];
    for (int64 b = 1; b < chunks; ++b) r = Combine(op, r, p[b * inner]);
    dst[t] = (float)r;
  }
}

// Whether (v2, i2) beats (v1, i1) for torch.argmax: a NaN beats any number, then the larger value, then the
// smaller index (the first occurrence).
__device__ __forceinline__ bool Better(float v1, int64 i1, float v2, int64 i2) {
  const bool n1 = v1 != v1, n2 = v2 != v2;
  if (n1 || n2) return n2 && (!n1 || i2 < i1);
  if (v2 != v1) return v2 > v1;
  return i2 < i1;
}

// inner == 1: one block per row.
extern "C" __global__ void ft_argmax_rows(int64 outer, int64 n, const float* src, int64* dst) {
  AwaitPriorGrid();
  __shared__ float values[32];
  __shared__ int64 indices[32];
  for (int64 o = blockIdx.x; o < outer; o += gridDim.x) {
    const float* x = src + o * n;
    float best = -FT_INF;
    int64 arg = 0x7fffffffffffffffll;  // loses to every element, -inf included
    for (int64 k = threadIdx.x; k < n; k += blockDim.x) {
      if (Better(best, arg, x[k], k)) {
        best = x[k];
        arg = k;
      }
    }
#pragma unroll
    for (int s = 16; s > 0; s >>= 1) {
      const float v = __shfl_xor_sync(0xffffffffu, best, s);
      const int64 i = __shfl_xor_sync(0xffffffffu, arg, s);
      if (Better(best, arg, v, i)) {
        best = v;
        arg = i;
      }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0) {
      values[warp] = best;
      indices[warp] = arg;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < warps; ++w) {
        if (Better(best, arg, values[w], indices[w])) {
          best = values[w];
          arg = indices[w];
        }
      }
      dst[o] = arg;
    }
  }
}

// inner > 1: one thread per output, scanning k in order as the CPU does.
extern "C" __global__ void ft_argmax_columns(int64 outer, int64 n, int64 inner, const float* src, int64* dst) {
  AwaitPriorGrid();
  for (int64 t = GlobalThread(); t < outer * inner; t += GridThreads()) {
    const float* x = src + (t / inner) * n * inner + t % inner;
    float best = x[0];
    int64 arg = 0;
    for (int64 k = 1; k < n && best == best; ++k) {
      const float v = x[k * inner];
      if (v > best || v != v) {
        best = v;
        arg = k;
      }
    }
    dst[t] = arg;
  }
}

__device__ __forceinline__ double Squares(const Float4& f) {
  return ((double)f.v[0] * f.v[0] + (double)f.v[1] * f.v[1]) + ((double)f.v[2] * f.v[2] + (double)f.v[3] * f.v[3]);
}

// The sum of squares of x[0, len), in double, by one warp (every lane gets it). A lane keeps four 16-byte loads
// in flight (where x is 16-byte aligned, as whole tensors from the allocator are): fewer bytes in flight left the
// bus half idle.
__device__ __forceinline__ double ChunkSquares(const float* x, int64 len, int lane) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  int64 k = lane;
  if (((uint64)x & 15) == 0) {
    const Float4* x4 = (const Float4*)x;
    const int64 len4 = len >> 2;
    int64 q = lane;
    for (; q + 96 < len4; q += 128) {
      const Float4 v0 = x4[q], v1 = x4[q + 32], v2 = x4[q + 64], v3 = x4[q + 96];
      acc[0] += Squares(v0);
      acc[1] += Squares(v1);
      acc[2] += Squares(v2);
      acc[3] += Squares(v3);
    }
    for (; q < len4; q += 32) acc[0] += Squares(x4[q]);
    k = 4 * len4 + lane;
  }
  for (; k < len; k += 32) acc[0] += (double)x[k] * x[k];
  return WarpSumDouble((acc[0] + acc[1]) + (acc[2] + acc[3]));
}

// partial[b] = the sum of squares of chunk b, in double. One warp per chunk: a block-wide reduction for every
// 4096 elements cost more than reading them. A tensor whose slot has data[1] (ft_sum_squares_chunks' partials of
// its chunks, summed earlier) has them copied, and one with row flags reads only chunks with a flagged row: the
// same bits as summing it all here.
extern "C" __global__ void ft_sum_squares(const Slot* slots, const int64* first_block, int count, int64 blocks,
                                          double* partial) {
  AwaitPriorGrid();
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (int64 b = (int64)blockIdx.x * warps + (threadIdx.x >> 5); b < blocks; b += (int64)gridDim.x * warps) {
    int64 begin, end;
    const Slot& slot = ChunkOf(slots, first_block, count, b, begin, end);
    if (slot.data[1] != 0) {
      if (lane == 0) partial[b] = ((const double*)slot.data[1])[begin / FT_CHUNK];
      continue;
    }
    if (slot.row_flags != 0) {
      const unsigned char* flags = (const unsigned char*)slot.row_flags;
      int any = 0;
      for (int64 r = begin / slot.row_length + lane; r <= (end - 1) / slot.row_length; r += 32) any |= flags[r] != 0;
      for (int o = 16; o > 0; o >>= 1) any |= __shfl_xor_sync(0xffffffffu, any, o);
      if (!any) {
        if (lane == 0) partial[b] = 0.0;  // what summing the chunk's zeros gives
        continue;
      }
    }
    const double sum = ChunkSquares((const float*)slot.data[0] + begin, end - begin, lane);
    if (lane == 0) partial[b] = sum;
  }
}

// partial[c] = the sum of squares of x's chunk c (FT_CHUNK elements, the last one shorter), as ft_sum_squares sums
// it: a gradient's, while it is fresh (sumSquaresChunks), for the clipping to copy.
extern "C" __global__ void ft_sum_squares_chunks(const float* x, int64 n, double* partial) {
  AwaitPriorGrid();
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  const int64 chunks = (n + FT_CHUNK - 1) / FT_CHUNK;
  for (int64 c = (int64)blockIdx.x * warps + (threadIdx.x >> 5); c < chunks; c += (int64)gridDim.x * warps) {
    const int64 begin = c * FT_CHUNK;
    const double sum = ChunkSquares(x + begin, min(n - begin, (int64)FT_CHUNK), lane);
    if (lane == 0) partial[c] = sum;
  }
}

// clip_grad_norm_'s scalars from the sum of squares, rounded as src/nn/utils.ts rounds them on the host:
// *norm = float(sqrt(sum)); *coef = float(float(max_norm) / float(*norm + 1e-6)).
__device__ __forceinline__ void ClipScalars(double sum, float max_norm, float* norm, float* coef) {
  const float total = (float)sqrt(sum);
  *norm = total;
  *coef = (float)((double)max_norm / (double)(float)((double)total + 1e-6));
}

// One block: *out = the sum of n doubles (0 for none); with `norm` (clip_grad_norm_: a sum of squares) also the
// clip scalars (ClipScalars).
extern "C" __global__ __launch_bounds__(1024) void ft_sum_doubles(const double* x, int64 n, double* out,
                                                                  float max_norm, float* norm, float* coef) {
  AwaitPriorGrid();
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64 k = threadIdx.x; k < n; k += blockDim.x) acc += x[k];
  acc = BlockSumDouble(acc, scratch);
  if (threadIdx.x == 0) {
    *out = acc;
    if (norm != 0) ClipScalars(acc, max_norm, norm, coef);
  }
}

extern "C" __global__ void ft_scale_many(const Slot* slots, const int64* first_block, int count, int64 blocks,
                                         float factor) {
  AwaitPriorGrid();
  for (int64 b = blockIdx.x; b < blocks; b += gridDim.x) {
    int64 begin, end;
    float* x = (float*)ChunkOf(slots, first_block, count, b, begin, end).data[0];
    for (int64 k = begin + threadIdx.x; k < end; k += blockDim.x) x[k] *= factor;
  }
}

// ft_scale_many by a factor on the device, skipped unless it is below 1 (clipping only ever shrinks).
extern "C" __global__ void ft_scale_many_below_one(const Slot* slots, const int64* first_block, int count,
                                                   int64 blocks, const float* factor) {
  AwaitPriorGrid();
  const float f = *factor;
  if (!(f < 1.0f)) return;
  for (int64 b = blockIdx.x; b < blocks; b += gridDim.x) {
    int64 begin, end;
    float* x = (float*)ChunkOf(slots, first_block, count, b, begin, end).data[0];
    for (int64 k = begin + threadIdx.x; k < end; k += blockDim.x) x[k] *= f;
  }
}
)CUDA";

CUfunction Kernel(Napi::Env env, const char* name) {
  static const std::string source = ModuleSource(kSource);
  return GetKernel(env, "reduce", source, name);
}

// ft_reduce_finish over the partials of a reduction split into `chunks` (nothing for one chunk).
void Finish(Napi::Env env, int op, int64_t outer, int64_t chunks, int64_t inner, uint64_t partial, uint64_t dst) {
  if (chunks == 1) return;
  void* args[] = {&op, &outer, &chunks, &inner, &partial, &dst};
  Launch(env, Kernel(env, "ft_reduce_finish"), GridFor(outer * inner), Blocks(kThreads), 0, args);
}

// How ColumnTiles splits an [outer, n, inner] reduction: tiles of tc columns x `groups` row groups, rows in
// `chunks` chunks of `chunk`. The members have the kernels' argument types: launches point at them.
struct TilePlan {
  int64_t chunk, chunks;
  int tc, groups;
  // Bytes of the double partials for ft_reduce_finish, when the rows are split, of `outputs` column sums.
  size_t PartialBytes(int64_t outputs) const {
    return chunks > 1 ? static_cast<size_t>(outputs * chunks) * sizeof(double) : 0;
  }
};

TilePlan PlanColumnTiles(int64_t outer, int64_t n, int64_t inner) {
  TilePlan p{};
  // Short reductions get fewer row groups and wider tiles, long ones narrow tiles of 32 row groups.
  for (p.groups = 1; p.groups < kMaxRowGroups && p.groups < n;) p.groups *= 2;
  for (p.tc = kTileThreads / p.groups; p.tc > kMinTileColumns && p.tc / 2 >= inner;) p.tc /= 2;
  const int64_t tiles = outer * ((inner + p.tc - 1) / p.tc);
  const int64_t wanted =
      std::clamp<int64_t>((kTileBlocks + tiles - 1) / tiles, 1, (n + kMinTileRows - 1) / kMinTileRows);
  p.chunk = (n + wanted - 1) / wanted;
  p.chunks = (n + p.chunk - 1) / p.chunk;
  return p;
}

// Launches a ColumnTiles kernel with `args`, then ft_reduce_finish when the rows were split.
void LaunchColumnTiles(Napi::Env env, const char* kernel, const TilePlan& plan, int64_t outer, int64_t inner,
                       void** args, int op, uint64_t partial, uint64_t dst) {
  const int64_t blocks = outer * plan.chunks * ((inner + plan.tc - 1) / plan.tc);
  Launch(env, Kernel(env, kernel), Blocks(std::min(kMaxBlocks, blocks)), Blocks(plan.tc * plan.groups), 0, args);
  Finish(env, op, outer, plan.chunks, inner, partial, dst);
}

Napi::Value Reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int op = GetOp(info, 0, "op", kMin + 1);
  int64_t outer = GetCount(info, 1, "outer");
  int64_t n = GetCount(info, 2, "n");
  int64_t inner = GetCount(info, 3, "inner");
  const int64_t out_count = CountProduct(info, outer, inner, "outer * inner");
  const int64_t in_count = CountProduct(info, out_count, n, "outer * n * inner");
  uint64_t src =
      DeviceOperandAt<float>(info, 4, "src", "srcOff", in_count);
  uint64_t dst =
      DeviceOperandAt<float>(info, 6, "dst", "dstOff", out_count);
  if (out_count == 0) return env.Undefined();
  if (n == 0) {
    // Like torch: the empty sum is 0; max / min of nothing has no value.
    if (op != kSum) throw Napi::RangeError::New(env, "reduce: max/min over an empty dimension (n = 0)");
    MemsetBytes(env, dst, 0, static_cast<size_t>(out_count) * sizeof(float));
    return env.Undefined();
  }
  if (inner >= kMinTileColumns) {
    TilePlan plan = PlanColumnTiles(outer, n, inner);
    ScratchBuffer partial(env, plan.PartialBytes(out_count));
    uint64_t partial_ptr = partial.ptr();
    void* args[] = {&op, &outer, &n, &inner, &plan.chunk, &plan.chunks, &plan.tc, &plan.groups, &src, &partial_ptr, &dst};
    LaunchColumnTiles(env, "ft_reduce_column_tiles", plan, outer, inner, args, op, partial_ptr, dst);
    return env.Undefined();
  }
  int64_t chunk;
  if (inner == 1) {
    chunk = std::min(n, kRowChunk);
  } else {
    const int64_t wanted = std::clamp<int64_t>(kColumnThreads / out_count, 1, (n + kMinColumnChunk - 1) / kMinColumnChunk);
    chunk = (n + wanted - 1) / wanted;
  }
  int64_t chunks = (n + chunk - 1) / chunk;
  ScratchBuffer partial(env, chunks > 1 ? static_cast<size_t>(out_count * chunks) * sizeof(double) : 0);
  uint64_t partial_ptr = partial.ptr();
  if (inner == 1) {
    void* args[] = {&op, &outer, &n, &chunk, &chunks, &src, &partial_ptr, &dst};
    Launch(env, Kernel(env, "ft_reduce_rows"), RowGrid(outer * chunks), Blocks(kThreads), 0, args);
  } else {
    void* args[] = {&op, &outer, &n, &inner, &chunk, &chunks, &src, &partial_ptr, &dst};
    Launch(env, Kernel(env, "ft_reduce_columns"), GridFor(out_count * chunks), Blocks(kThreads), 0, args);
  }
  Finish(env, op, outer, chunks, inner, partial_ptr, dst);
  return env.Undefined();
}

// A float32 or 16-bit operand of `count` elements at arguments index (buffer) and index + 1 (offset), its dtype
// code at argument dtype_index (float32, float16 or bfloat16), which `dt` receives.
uint64_t FloatOperandAt(const Napi::CallbackInfo& info, int index, const char* name, const char* off_name,
                        int dtype_index, const char* dtype_name, int64_t count, int& dt) {
  dt = static_cast<int>(GetInt(info, dtype_index, dtype_name));
  if (dt == kF32) return DeviceOperandAt<float>(info, index, name, off_name, count);
  if (dt == kF16 || dt == kBF16) return DeviceOperandAt<uint16_t>(info, index, name, off_name, count);
  throw Napi::RangeError::New(info.Env(), ArgName(dtype_index, dtype_name) + " must be float32, float16 or bfloat16");
}

// castColumnSums(rows, cols, g, gOff, pre, preOff, preDtype, lowpDtype, lowp, sums, [gDtype]): see
// ft_cast_column_sums; g is float32, or of the 16-bit gDtype.
Napi::Value CastColumnSums(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t rows = GetCount(info, 0, "rows");
  int64_t cols = GetCount(info, 1, "cols");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  int g_dt = kF32;
  uint64_t g = Omitted(info, 10) ? DeviceOperandAt<float>(info, 2, "g", "gOff", numel)
                                 : FloatOperandAt(info, 2, "g", "gOff", 10, "gDtype", numel, g_dt);
  int pre_dt = kF32;
  uint64_t pre = 0;
  if (!NoneGiven(info, 4)) pre = FloatOperandAt(info, 4, "pre", "preOff", 6, "preDtype", numel, pre_dt);
  int lowp_dt = LowpDtypeAt(info, 7);
  if (lowp_dt < 0) throw Napi::TypeError::New(env, ArgName(7, "lowpDtype") + " must be float16 or bfloat16");
  uint64_t lowp = LowpOutputAt(info, 8, "lowp", lowp_dt, numel);
  if (lowp == 0) throw Napi::TypeError::New(env, ArgName(8, "lowp") + " must be a CUDA device buffer");
  uint64_t dst = DeviceElements<float>(info, GetDeviceBuffer(info, 9, "sums"), 0, cols, "sums");
  if (numel == 0) {
    MemsetBytes(env, dst, 0, static_cast<size_t>(cols) * sizeof(float));
    return env.Undefined();
  }
  static LowpTables gelu_grad;
  uint64_t table = pre != 0 && pre_dt != kF32 ? LowpTable(env, gelu_grad, pre_dt, Kernel, "ft_gelu_grad_table") : 0;
  TilePlan plan = PlanColumnTiles(1, rows, cols);
  ScratchBuffer partial(env, plan.PartialBytes(cols));
  uint64_t partial_ptr = partial.ptr();
  int hot = HotTablesEnabled();
  void* args[] = {&rows, &cols, &plan.chunk, &plan.chunks, &plan.tc, &plan.groups, &g, &g_dt, &pre, &pre_dt, &table,
                  &hot, &lowp, &lowp_dt, &partial_ptr, &dst};
  LaunchColumnTiles(env, "ft_cast_column_sums", plan, 1, cols, args, kSum, partial_ptr, dst);
  return env.Undefined();
}

Napi::Value Argmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t outer = GetCount(info, 0, "outer");
  int64_t n = GetCount(info, 1, "n");
  int64_t inner = GetCount(info, 2, "inner");
  const int64_t out_count = CountProduct(info, outer, inner, "outer * inner");
  const int64_t in_count = CountProduct(info, out_count, n, "outer * n * inner");
  uint64_t src =
      DeviceOperandAt<float>(info, 3, "src", "srcOff", in_count);
  uint64_t dst =
      DeviceOperandAt<int64_t>(info, 5, "dst", "dstOff", out_count);
  if (out_count == 0) return env.Undefined();
  if (n == 0) throw Napi::RangeError::New(env, "argmax: empty dimension (n = 0)");
  if (inner == 1) {
    void* args[] = {&outer, &n, &src, &dst};
    Launch(env, Kernel(env, "ft_argmax_rows"), RowGrid(outer), RowThreads(n, kThreads), 0, args);
  } else {
    void* args[] = {&outer, &n, &inner, &src, &dst};
    Launch(env, Kernel(env, "ft_argmax_columns"), GridFor(out_count), Blocks(kThreads), 0, args);
  }
  return env.Undefined();
}

// ft_sum_squares' grid: a warp per chunk.
Dim3 ChunkWarpsGrid(int64_t chunks) { return RowGrid((chunks + kThreads / 32 - 1) / (kThreads / 32)); }

Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  TensorList list = GetList(info);
  int64_t blocks = list.blocks();
  if (blocks == 0) return Napi::Number::New(env, 0.0);
  DeviceTensorList device(env, list);
  ScratchBuffer partial(env, static_cast<size_t>(blocks + 1) * sizeof(double));
  uint64_t slots = device.slots(), first_block = device.first_block(), partial_ptr = partial.ptr();
  uint64_t total_ptr = partial.ptr() + static_cast<uint64_t>(blocks) * sizeof(double);
  int count = device.count();
  void* args[] = {&slots, &first_block, &count, &blocks, &partial_ptr};
  Launch(env, Kernel(env, "ft_sum_squares"), ChunkWarpsGrid(blocks), Blocks(kThreads), 0, args);
  float unused_max_norm = 0.0f;
  uint64_t no_norm = 0;
  void* finish_args[] = {&partial_ptr, &blocks, &total_ptr, &unused_max_norm, &no_norm, &no_norm};
  Launch(env, Kernel(env, "ft_sum_doubles"), Blocks(1), Blocks(1024), 0, finish_args);
  double total = 0;
  CopyDeviceToHost(env, &total, total_ptr, sizeof(double));
  return Napi::Number::New(env, total);
}

Napi::Value ScaleMany(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  TensorList list = GetList(info);
  float factor = static_cast<float>(GetNumber(info, 3, "factor"));
  int64_t blocks = list.blocks();
  if (blocks == 0) return env.Undefined();
  DeviceTensorList device(env, list);
  uint64_t slots = device.slots(), first_block = device.first_block();
  int count = device.count();
  void* args[] = {&slots, &first_block, &count, &blocks, &factor};
  Launch(env, Kernel(env, "ft_scale_many"), RowGrid(blocks), Blocks(kThreads), 0, args);
  return env.Undefined();
}

// sumSquaresChunks(buf, off, numel, partials, partialsOff): partials[partialsOff + c] (doubles) = the sum of
// squares of chunk c of the float32 tensor (ft_sum_squares_chunks), queued on the current stream.
Napi::Value SumSquaresChunks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t n = GetCount(info, 2, "numel");
  uint64_t x = DeviceOperandAt<float>(info, 0, "buf", "off", n);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  uint64_t partial = DeviceOperandAt<double>(info, 3, "partials", "partialsOff", chunks);
  if (chunks == 0) return env.Undefined();
  void* args[] = {&x, &n, &partial};
  Launch(env, Kernel(env, "ft_sum_squares_chunks"), ChunkWarpsGrid(chunks), Blocks(kThreads), 0, args);
  return env.Undefined();
}

// The chunk partials some tensors of a clipGradNorm list come with, at arguments index (per tensor a device
// buffer of doubles, or null) and index + 1 (where each tensor's first partial is, in doubles): slot data[1].
void SetSquarePartials(const Napi::CallbackInfo& info, int index, TensorList& list) {
  if (Omitted(info, index)) return;
  std::vector<bool> present;
  const std::vector<DeviceBuffer> bufs = GetDeviceBufferList(info, index, "partials", &present);
  const std::vector<int64_t> offs = GetIntArray(info, index + 1, "partialOffs");
  CheckListLength(info, bufs.size(), list.slots.size(), index, "partials");
  CheckListLength(info, offs.size(), list.slots.size(), index + 1, "partialOffs");
  for (size_t i = 0; i < bufs.size(); ++i) {
    if (!present[i]) continue;
    const std::string name = ArgName(index, "partials") + "[" + std::to_string(i) + "]";
    const int64_t chunks = list.first_block[i + 1] - list.first_block[i];
    list.slots[i].data[1] = DeviceElements<double>(info, bufs[i], offs[i], chunks, name.c_str());
  }
}

// clipGradNorm(bufs, offs, sizes, maxNorm, norm, normOff, [coef, coefOff, partials, partialOffs, rowFlags,
// rowLengths]):
// clip_grad_norm_ without leaving the device: the total norm goes to norm[normOff] (float32) and the tensors are
// scaled when max_norm / (norm + 1e-6) < 1, all queued on the stream, so a CUDA graph can capture it. With `coef`
// that factor is written to coef[coefOff] instead and nothing is scaled: the optimizer applies it as it reads the
// gradients (adamwDevice). A tensor given partials (sumSquaresChunks') is not read for its norm, one given row
// flags (a byte a row of rowLengths[i] values, 0 where the row is all zeros) only where a row is flagged.
Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  TensorList list = GetList(info);
  SetSquarePartials(info, 8, list);
  if (!Omitted(info, 11)) {
    const std::vector<int64_t> lengths = GetIntArray(info, 11, "rowLengths");
    CheckListLength(info, lengths.size(), list.slots.size(), 11, "rowLengths");
    for (size_t i = 0; i < lengths.size(); ++i) list.slots[i].row_length = lengths[i];
  }
  SetRowFlags(info, 10, list.slots);
  float max_norm = static_cast<float>(GetNumber(info, 3, "maxNorm"));
  uint64_t norm = DeviceOperandAt<float>(info, 4, "norm", "normOff", 1);
  const bool deferred = !NoneGiven(info, 6);
  const uint64_t coef_out = deferred ? DeviceOperandAt<float>(info, 6, "coef", "coefOff", 1) : 0;
  int64_t blocks = list.blocks();
  // The partial sums, the total (a double) and the factor (a float) in one scratch block.
  ScratchBuffer scratch(env, static_cast<size_t>(blocks + 2) * sizeof(double));
  uint64_t partial_ptr = scratch.ptr();
  uint64_t total_ptr = partial_ptr + static_cast<uint64_t>(blocks) * sizeof(double);
  uint64_t coef_ptr = deferred ? coef_out : total_ptr + sizeof(double);
  // No gradient: no partials, a norm of 0 and a factor that clips nothing.
  void* finish_args[] = {&partial_ptr, &blocks, &total_ptr, &max_norm, &norm, &coef_ptr};
  if (blocks == 0) {
    Launch(env, Kernel(env, "ft_sum_doubles"), Blocks(1), Blocks(1024), 0, finish_args);
    return env.Undefined();
  }
  DeviceTensorList device(env, list);
  uint64_t slots = device.slots(), first_block = device.first_block();
  int count = device.count();
  void* sum_args[] = {&slots, &first_block, &count, &blocks, &partial_ptr};
  Launch(env, Kernel(env, "ft_sum_squares"), ChunkWarpsGrid(blocks), Blocks(kThreads), 0, sum_args);
  Launch(env, Kernel(env, "ft_sum_doubles"), Blocks(1), Blocks(1024), 0, finish_args);
  if (deferred) return env.Undefined();
  void* scale_args[] = {&slots, &first_block, &count, &blocks, &coef_ptr};
  Launch(env, Kernel(env, "ft_scale_many_below_one"), RowGrid(blocks), Blocks(kThreads), 0, scale_args);
  return env.Undefined();
}

}  // namespace

void RegisterReduce(Napi::Env env, Napi::Object cuda) {
  cuda.Set("clipGradNorm", Napi::Function::New(env, ClipGradNorm, "clipGradNorm"));
  cuda.Set("reduce", Napi::Function::New(env, Reduce, "reduce"));
  cuda.Set("castColumnSums", Napi::Function::New(env, CastColumnSums, "castColumnSums"));
  cuda.Set("argmax", Napi::Function::New(env, Argmax, "argmax"));
  cuda.Set("sumSquares", Napi::Function::New(env, SumSquares, "sumSquares"));
  cuda.Set("sumSquaresChunks", Napi::Function::New(env, SumSquaresChunks, "sumSquaresChunks"));
  cuda.Set("scaleMany", Napi::Function::New(env, ScaleMany, "scaleMany"));
}

}  // namespace ft::cuda::kernels
