// Embedding lookup and its backward. Ids are checked on the calling thread before any work starts, so a bad
// id throws (naming it) without a partial result. The backward splits columns, not rows, across threads:
// repeated ids then never race, and each dtable entry's sum has a fixed order.

// No FMA contraction: GCC contracts its vector loop bodies but not always their epilogues, which would make
// results depend on where a thread's chunk starts. Explicitly rounded steps give the same bits everywhere.
#pragma GCC optimize("fp-contract=off")

#include <napi.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "binding/registry.h"
#include "common/args.h"
#include "common/kernel_args.h"
#include "cpu/threadpool.h"
#include "cpu/vec_math.h"

namespace ft {
namespace {

constexpr int64_t kGrain = 32768;

void CheckIds(const Napi::CallbackInfo& info, const int64_t* ids, int64_t n, int64_t V) {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= V)
      throw Napi::RangeError::New(info.Env(), "embedding: id " + std::to_string(ids[i]) + " at position " +
                                                  std::to_string(i) + " is outside [0, V) with V = " +
                                                  std::to_string(V));
  }
}

FT_VECTORIZE void AccumulateColumns(int64_t n, const int64_t* ids, int64_t D, const float* dy, float* dtable,
                                    int64_t padding, int64_t c0, int64_t c1) {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] == padding) continue;
    float* dst = dtable + ids[i] * D;
    const float* src = dy + i * D;
    for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
  }
}

Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  int64_t n = GetCount(info, 0, "n");
  const int64_t* ids = OperandAt<int64_t>(info, 1, "ids", "idsOff", n);
  int64_t V = GetCount(info, 3, "V");
  int64_t D = GetCount(info, 4, "D");
  const float* table = OperandAt<float>(info, 5, "table", "tableOff", CountProduct(info, V, D, "V * D"));
  float* out = OperandAt<float>(info, 7, "out", "outOff", CountProduct(info, n, D, "n * D"));
  CheckIds(info, ids, n, V);
  ParallelFor(n, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, D)), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) std::memcpy(out + i * D, table + ids[i] * D, D * sizeof(float));
  });
  return info.Env().Undefined();
}

Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  int64_t n = GetCount(info, 0, "n");
  const int64_t* ids = OperandAt<int64_t>(info, 1, "ids", "idsOff", n);
  int64_t V = GetCount(info, 3, "V");
  int64_t D = GetCount(info, 4, "D");
  const float* dy = OperandAt<float>(info, 5, "dy", "dyOff", CountProduct(info, n, D, "n * D"));
  float* dtable = Elements<float>(info, GetBuffer(info, 7, "dtable"), 0, CountProduct(info, V, D, "V * D"), "dtable");
  int64_t padding = GetInt(info, 8, "paddingIdx");
  CheckIds(info, ids, n, V);
  // Columns per chunk: enough work per thread, and whole cache lines so threads do not share them.
  const int64_t grain = std::max<int64_t>(16, (kGrain / std::max<int64_t>(1, n) + 15) / 16 * 16);
  ParallelFor(D, grain, [&](int64_t c0, int64_t c1) { AccumulateColumns(n, ids, D, dy, dtable, padding, c0, c1); });
  return info.Env().Undefined();
}

}  // namespace

void RegisterEmbedding(Napi::Env env, Napi::Object exports) {
  exports.Set("embeddingForward", Napi::Function::New(env, EmbeddingForward, "embeddingForward"));
  exports.Set("embeddingBackward", Napi::Function::New(env, EmbeddingBackward, "embeddingBackward"));
}

}  // namespace ft
