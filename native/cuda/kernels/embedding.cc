// CUDA embedding lookup and its backward: native/cpu/embedding.cc's contract. The ids are checked on the device
// first (index_check.cc; one synchronisation per call), so a bad id throws the CPU's RangeError before any
// kernel reads the table with it, and there is no partial result. In a CUDA graph the check is deferred to the
// next sync, so the kernels skip bad ids themselves: NaN rows forward, no update backward.
// The backward must give the CPU's bits: each dtable entry plus its id's dy rows, added one at a time in token
// order. So the tokens are first grouped by id (a stable sort, by counting, into scratch memory), and then one
// thread per (id, column) adds that id's rows in order into a register, starting from the dtable entry, and
// stores it once: no atomics, no races, and only the additions of a long run of one id are serial.
#include <napi.h>

#include <algorithm>
#include <string>

#include "common/args.h"
#include "common/kernel_args.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"

namespace ft::cuda::kernels {
namespace {

constexpr char kSource[] = R"CUDA(
extern "C" __global__ void ft_embedding_forward(int64 n, int64 D, int64 V, const int64* ids, const float* table,
                                                float* out) {
  AwaitPriorGrid();
  for (int64 t = GlobalThread(); t < n * D; t += GridThreads()) {
    const int64 i = t / D;
    const int64 id = ids[i];
    out[t] = id < 0 || id >= V ? FT_NAN : table[id * D + (t - i * D)];
  }
}

// Three lookups added as the composition adds them, (t0[id0] + t1[id1]) + t2[id2] (BERT's word, token type and
// position embeddings): one launch for three lookups and two additions, with their checks. Row r = b * S + s takes
// table k's id at ids[b * batch + s] (batch 0: one row of ids for every b). A bad id makes the row NaN, as the
// lookup's NaN row does the sum; while a CUDA graph is captured (record not null) the first column's thread also
// records it (RecordBadIndex). With `vector` a thread adds four columns per access.
struct SummedTable {
  const int64* ids;
  int64 batch, V;
  const float* table;
  int64* record;
};

__device__ __forceinline__ int64 SummedRow(const SummedTable& t, int64 b, int64 s, bool first) {
  const int64 at = b * t.batch + s, id = t.ids[at];
  if (id >= 0 && id < t.V) return id;
  if (first && t.record != 0) RecordBadIndex(t.record, at, id);
  return -1;
}

__device__ __forceinline__ Float4 SummedValues(const SummedTable& t, int64 row, int64 D, int64 c, int width) {
  Float4 x;
  if (row < 0) {
    x.v[0] = x.v[1] = x.v[2] = x.v[3] = FT_NAN;
  } else if (width == 4) {
    x = *(const Float4*)(t.table + row * D + c);
  } else {
    x.v[0] = t.table[row * D + c];
    x.v[1] = x.v[2] = x.v[3] = 0.0f;
  }
  return x;
}

extern "C" __global__ void ft_embedding_sum(int64 rows, int64 S, int64 D, SummedTable t0, SummedTable t1,
                                            SummedTable t2, float* out, int vector) {
  AwaitPriorGrid();
  const int width = vector ? 4 : 1;
  const int64 per_row = D / width;
  for (int64 q = GlobalThread(); q < rows * per_row; q += GridThreads()) {
    const int64 r = q / per_row, c = (q - r * per_row) * width, b = r / S, s = r - b * S;
    const bool first = c == 0;
    const Float4 x0 = SummedValues(t0, SummedRow(t0, b, s, first), D, c, width);
    const Float4 x1 = SummedValues(t1, SummedRow(t1, b, s, first), D, c, width);
    const Float4 x2 = SummedValues(t2, SummedRow(t2, b, s, first), D, c, width);
    Float4 y;
#pragma unroll
    for (int j = 0; j < 4; ++j) y.v[j] = __fadd_rn(__fadd_rn(x0.v[j], x1.v[j]), x2.v[j]);
    if (width == 4) *(Float4*)(out + r * D + c) = y;
    else out[r * D + c] = y.v[0];
  }
}

// The stable sort of the tokens by id, by counting, one warp per token i: its rank is the number of tokens
// with a smaller id or the same id earlier. order[rank] = i, sorted[rank] = its id, and run[rank] is the id's
// token count where i is its first token, 0 elsewhere (and for ids that get no gradient: padding, or out of
// range in a graph). O(n^2) comparisons, all from L1: a few microseconds for the few thousand tokens of a batch.
extern "C" __global__ void ft_embedding_group(int64 n, int64 V, int64 padding, const int64* ids, int64* order,
                                              int64* sorted, int64* run) {
  AwaitPriorGrid();
  const int lane = threadIdx.x & 31;
  for (int64 i = GlobalThread() >> 5; i < n; i += GridThreads() >> 5) {
    const int64 id = ids[i];
    int64 smaller = 0, same = 0, earlier = 0;
    for (int64 j = lane; j < n; j += 32) {
      const int64 other = ids[j];
      smaller += other < id;
      same += other == id;
      earlier += other == id && j < i;
    }
    for (int o = 16; o > 0; o >>= 1) {
      smaller += __shfl_xor_sync(0xffffffffu, smaller, o);
      same += __shfl_xor_sync(0xffffffffu, same, o);
      earlier += __shfl_xor_sync(0xffffffffu, earlier, o);
    }
    if (lane == 0) {
      order[smaller + earlier] = i;
      sorted[smaller + earlier] = id;
      run[smaller + earlier] = earlier == 0 && id != padding && id >= 0 && id < V ? same : 0;
    }
  }
}

// acc plus dy[rows[k] + c], ..., dy[rows[k + kRows - 1] + c] in order, stopping at rows[m - 1]. Every load is
// issued before the first addition, so the batch waits on memory once; rows past the end load the last row
// again (no branch between the loads) and are not added. The empty asm keeps the loads together in the PTX:
// without it NVRTC interleaves each load with its addition, and ptxas then allocates too few registers to
// hold a batch in flight.
template <int kRows>
__device__ __forceinline__ float AddRows(float acc, const int64* rows, int k, int m, int64 c, const float* dy) {
  float v[kRows];
#pragma unroll
  for (int u = 0; u < kRows; ++u) v[u] = dy[rows[min(k + u, m - 1)] + c];
  asm volatile("" ::: "memory");
#pragma unroll
  for (int u = 0; u < kRows; ++u) acc = k + u < m ? acc + v[u] : acc;
  return acc;
}

// Blocks of at most 256 threads over (sorted position p, column chunk); where a run starts at p, each thread
// takes one column: the dtable entry plus the run's dy rows in token order, stored once. The block stages the
// run's row offsets in shared memory, a block's worth at a time, so a batch of loads waits on dy alone. Long
// runs (every token on one id) go 32 rows a batch, the rest (most runs are a few tokens) 8. With `touched` (a byte
// a table row, zeros) the rows given a gradient are flagged there, for the clipping and AdamW's deferred rows.
extern "C" __global__ __launch_bounds__(256) void ft_embedding_backward(int64 n, int64 D, const int64* order,
                                                                        const int64* sorted, const int64* run,
                                                                        const float* dy, float* dtable,
                                                                        unsigned char* touched) {
  AwaitPriorGrid();
  __shared__ int64 rows[256];
  const int stage = blockDim.x;
  for (int64 p = blockIdx.x; p < n; p += gridDim.x) {
    const int64 len = run[p], id = sorted[p];
    if (len == 0) continue;
    if (touched != 0 && threadIdx.x == 0 && blockIdx.y == 0) touched[id] = 1;
    for (int64 c0 = (int64)blockIdx.y * stage; c0 < D; c0 += (int64)gridDim.y * stage) {
      const int64 c = c0 + threadIdx.x;
      float acc = c < D ? dtable[id * D + c] : 0.0f;
      for (int64 k0 = 0; k0 < len; k0 += stage) {
        const int m = (int)min(len - k0, (int64)stage);
        __syncthreads();  // every thread is done with the last stage's rows
        if ((int)threadIdx.x < m) rows[threadIdx.x] = order[p + k0 + threadIdx.x] * D;
        __syncthreads();
        if (c < D) {
          int k = 0;
          for (; k + 32 <= m; k += 32) acc = AddRows<32>(acc, rows, k, m, c, dy);
          for (; k < m; k += 8) acc = AddRows<8>(acc, rows, k, m, c, dy);
        }
      }
      if (c < D) dtable[id * D + c] = acc;
    }
  }
}
)CUDA";

CUfunction Kernel(Napi::Env env, const char* name) {
  static const std::string source = ModuleSource(kSource);
  return GetKernel(env, "embedding", source, name);
}

std::string BadId(int64_t position, int64_t id, int64_t V, int64_t) {
  return "embedding: id " + std::to_string(id) + " at position " + std::to_string(position) +
         " is outside [0, V) with V = " + std::to_string(V);
}

void CheckIds(const Napi::CallbackInfo& info, uint64_t ids, int64_t n, int64_t V) {
  CheckIndices(info.Env(), ids, n, V, 0, false, BadId);
}

Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t n = GetCount(info, 0, "n");
  uint64_t ids = DeviceOperandAt<int64_t>(info, 1, "ids", "idsOff", n);
  int64_t V = GetCount(info, 3, "V");
  int64_t D = GetCount(info, 4, "D");
  uint64_t table = DeviceOperandAt<float>(info, 5, "table", "tableOff", CountProduct(info, V, D, "V * D"));
  uint64_t out = DeviceOperandAt<float>(info, 7, "out", "outOff", CountProduct(info, n, D, "n * D"));
  CheckIds(info, ids, n, V);
  void* args[] = {&n, &D, &V, &ids, &table, &out};
  Launch(env, Kernel(env, "ft_embedding_forward"), GridFor(n * D), Blocks(kThreads), 0, args);
  return env.Undefined();
}

// The kernel's `struct SummedTable`, member for member.
struct SummedTableParams {
  uint64_t ids;
  int64_t batch, V;
  uint64_t table, record;
};
static_assert(sizeof(SummedTableParams) == 40, "SummedTableParams must match the kernel's declaration");

// embeddingSum(rows, S, D, out, outOff, then per table k of 3: ids, idsOff, idsBatch, V, table, tableOff): see
// ft_embedding_sum. idsBatch is S (ids for every row) or 0 (S ids for every b). The ids are checked first as
// embeddingForward checks them, each table's own (in a capture, recorded by the kernel for the next sync).
Napi::Value EmbeddingSum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t rows = GetCount(info, 0, "rows");
  int64_t S = GetCount(info, 1, "S");
  int64_t D = GetCount(info, 2, "D");
  if (S == 0 || rows % S != 0) throw Napi::RangeError::New(env, "embeddingSum: rows must be a multiple of S (> 0)");
  uint64_t out = DeviceOperandAt<float>(info, 3, "out", "outOff", CountProduct(info, rows, D, "rows * D"));
  SummedTableParams tables[3];
  int64_t id_counts[3];
  for (int k = 0; k < 3; ++k) {
    const int at = 5 + 6 * k;
    const int64_t batch = GetCount(info, at + 2, "idsBatch");
    if (batch != 0 && batch != S) throw Napi::RangeError::New(env, "embeddingSum: idsBatch must be 0 or S");
    id_counts[k] = batch == 0 ? S : rows;
    const uint64_t ids = DeviceOperandAt<int64_t>(info, at, "ids", "idsOff", id_counts[k]);
    const int64_t V = GetCount(info, at + 3, "V");
    const uint64_t table = DeviceOperandAt<float>(info, at + 4, "table", "tableOff", CountProduct(info, V, D, "V * D"));
    tables[k] = SummedTableParams{ids, batch, V, table, 0};
  }
  for (int k = 0; k < 3; ++k) {
    if (Capturing()) tables[k].record = CaptureIndexCheck(env, BadId, tables[k].V, 0);
    else CheckIndices(env, tables[k].ids, id_counts[k], tables[k].V, 0, false, BadId);
  }
  if (rows == 0 || D == 0) return env.Undefined();
  const bool aligned = D % 4 == 0 && out % 16 == 0 && tables[0].table % 16 == 0 && tables[1].table % 16 == 0 &&
                       tables[2].table % 16 == 0;
  int vector = aligned ? 1 : 0;
  void* args[] = {&rows, &S, &D, &tables[0], &tables[1], &tables[2], &out, &vector};
  Launch(env, Kernel(env, "ft_embedding_sum"), ContiguousGrid(rows * D, vector), Blocks(kThreads), 0, args);
  return env.Undefined();
}

Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t n = GetCount(info, 0, "n");
  uint64_t ids = DeviceOperandAt<int64_t>(info, 1, "ids", "idsOff", n);
  int64_t V = GetCount(info, 3, "V");
  int64_t D = GetCount(info, 4, "D");
  uint64_t dy = DeviceOperandAt<float>(info, 5, "dy", "dyOff", CountProduct(info, n, D, "n * D"));
  uint64_t dtable =
      DeviceElements<float>(info, GetDeviceBuffer(info, 7, "dtable"), 0, CountProduct(info, V, D, "V * D"), "dtable");
  int64_t padding = GetInt(info, 8, "paddingIdx");
  uint64_t touched = !NoneGiven(info, 10)
                         ? DeviceElements<uint8_t>(info, GetDeviceBuffer(info, 10, "touched"), 0, V, "touched")
                         : 0;
  // The forward's check covers ids unchanged since (idsChecked); unchecked, an id out of range gets no gradient
  // (ft_embedding_group gives it no run), so the kernels never write outside dtable either way.
  if (!OptionalFlag(info, 9, "idsChecked")) CheckIds(info, ids, n, V);
  if (n == 0 || D == 0) return env.Undefined();
  ScratchBuffer scratch(env, static_cast<size_t>(3 * n) * sizeof(int64_t));
  const uint64_t column = static_cast<uint64_t>(n) * sizeof(int64_t);
  uint64_t order = scratch.ptr(), sorted = order + column, run = sorted + column;
  void* group_args[] = {&n, &V, &padding, &ids, &order, &sorted, &run};
  Launch(env, Kernel(env, "ft_embedding_group"), GridFor(n * 32), Blocks(kThreads), 0, group_args);
  void* args[] = {&n, &D, &order, &sorted, &run, &dy, &dtable, &touched};
  Dim3 grid = RowGrid(n);
  grid.y = static_cast<unsigned>(std::min<int64_t>(65535, (D + kThreads - 1) / kThreads));
  Launch(env, Kernel(env, "ft_embedding_backward"), grid, Blocks(kThreads), 0, args);
  return env.Undefined();
}

}  // namespace

void RegisterEmbedding(Napi::Env env, Napi::Object cuda) {
  cuda.Set("embeddingForward", Napi::Function::New(env, EmbeddingForward, "embeddingForward"));
  cuda.Set("embeddingBackward", Napi::Function::New(env, EmbeddingBackward, "embeddingBackward"));
  cuda.Set("embeddingSum", Napi::Function::New(env, EmbeddingSum, "embeddingSum"));
}

}  // namespace ft::cuda::kernels
