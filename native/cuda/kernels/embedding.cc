// CUDA embedding lookup and its backward: native/cpu/embedding.cc's contract. The ids are checked on the device
// first (index_check.cc; one synchronisation per call), so a bad id throws the CPU's RangeError before any
// kernel reads the table with it, and there is no partial result. In a CUDA graph the check is deferred to the
// next sync, so the kernels skip bad ids themselves: NaN rows forward, no update backward. The backward gives each column to one thread,
// which adds the rows in order: repeated ids never race, and every dtable entry is summed in the CPU's order,
// so the result matches it to the bit without atomics.
#include <napi.h>

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
  for (int64 t = GlobalThread(); t < n * D; t += GridThreads()) {
    const int64 i = t / D;
    const int64 id = ids[i];
    out[t] = id < 0 || id >= V ? FT_NAN : table[id * D + (t - i * D)];
  }
}

// dtable[ids[i], c] += dy[i, c] for i in order, skipping rows whose id is `padding`.
extern "C" __global__ void ft_embedding_backward(int64 n, int64 D, int64 V, const int64* ids, const float* dy,
                                                 float* dtable, int64 padding) {
  for (int64 c = GlobalThread(); c < D; c += GridThreads()) {
    for (int64 i = 0; i < n; ++i) {
      const int64 id = ids[i];
      if (id == padding || id < 0 || id >= V) continue;
      dtable[id * D + c] += dy[i * D + c];
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
  CheckIds(info, ids, n, V);
  if (n == 0) return env.Undefined();
  void* args[] = {&n, &D, &V, &ids, &dy, &dtable, &padding};
  Launch(env, Kernel(env, "ft_embedding_backward"), GridFor(D, 64), Blocks(64), 0, args);
  return env.Undefined();
}

}  // namespace

void RegisterEmbedding(Napi::Env env, Napi::Object cuda) {
  cuda.Set("embeddingForward", Napi::Function::New(env, EmbeddingForward, "embeddingForward"));
  cuda.Set("embeddingBackward", Napi::Function::New(env, EmbeddingBackward, "embeddingBackward"));
}

}  // namespace ft::cuda::kernels
