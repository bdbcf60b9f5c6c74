// Cross-entropy from logits with integer targets: per-row loss and logsumexp forward, softmax-minus-one-hot
// backward. Targets are checked on the calling thread first, so a bad one throws before any work starts.

// No FMA contraction: GCC contracts its vector loop bodies but not always their epilogues, which would make
// results depend on where a thread's chunk starts. Explicitly rounded steps give the same bits everywhere.
#pragma GCC optimize("fp-contract=off")

#include <napi.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "binding/registry.h"
#include "common/args.h"
#include "common/kernel_args.h"
#include "cpu/threadpool.h"
#include "cpu/vec_math.h"

namespace ft {
namespace {

constexpr int64_t kGrain = 32768;
constexpr int kLanes = 16;

FT_VECTORIZE void ForwardRows(int64_t rows, int64_t C, const float* logits, const int64_t* targets, int64_t ignore,
                              float* loss, float* lse) {
  for (int64_t r = 0; r < rows; ++r, logits += C) {
    float mx[kLanes];
    for (int j = 0; j < kLanes; ++j) mx[j] = -std::numeric_limits<float>::infinity();
    int64_t i = 0;
    for (; i + kLanes <= C; i += kLanes)
      for (int j = 0; j < kLanes; ++j) mx[j] = logits[i + j] > mx[j] ? logits[i + j] : mx[j];
    for (; i < C; ++i) mx[0] = logits[i] > mx[0] ? logits[i] : mx[0];
    float m = mx[0];
    for (int j = 1; j < kLanes; ++j) m = mx[j] > m ? mx[j] : m;
    float acc[kLanes] = {};
    for (i = 0; i + kLanes <= C; i += kLanes)
      for (int j = 0; j < kLanes; ++j) acc[j] += Exp(logits[i + j] - m);
    for (; i < C; ++i) acc[0] += Exp(logits[i] - m);
    float s = 0;
    for (int j = 0; j < kLanes; ++j) s += acc[j];
    lse[r] = m + std::log(s);
    loss[r] = targets[r] == ignore ? 0.0f : lse[r] - logits[targets[r]];
  }
}

FT_VECTORIZE void BackwardRows(int64_t rows, int64_t C, const float* logits, const int64_t* targets, int64_t ignore,
                               const float* lse, const float* g, float* dlogits) {
  for (int64_t r = 0; r < rows; ++r, logits += C, dlogits += C) {
    if (targets[r] == ignore) {
      std::fill(dlogits, dlogits + C, 0.0f);
      continue;
    }
    const float scale = g[r], shift = lse[r];
#pragma GCC ivdep
    for (int64_t i = 0; i < C; ++i) dlogits[i] = scale * Exp(logits[i] - shift);
    dlogits[targets[r]] -= scale;
  }
}

void CheckTargets(const Napi::CallbackInfo& info, const int64_t* t, int64_t N, int64_t C, int64_t ignore) {
  for (int64_t i = 0; i < N; ++i) {
    if (t[i] != ignore && (t[i] < 0 || t[i] >= C))
      throw Napi::RangeError::New(info.Env(), "cross entropy: target " + std::to_string(t[i]) + " at row " +
                                                  std::to_string(i) + " is outside [0, C) with C = " +
                                                  std::to_string(C) + " and is not ignore_index " +
                                                  std::to_string(ignore));
  }
}

Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  int64_t N = GetCount(info, 0, "N");
  int64_t C = GetCount(info, 1, "C");
  const float* logits = OperandAt<float>(info, 2, "logits", "lOff", CountProduct(info, N, C, "N * C"));
  const int64_t* targets = OperandAt<int64_t>(info, 4, "targets", "tOff", N);
  int64_t ignore = GetInt(info, 6, "ignoreIndex");
  float* loss = Elements<float>(info, GetBuffer(info, 7, "loss"), 0, N, "loss");
  float* lse = Elements<float>(info, GetBuffer(info, 8, "lse"), 0, N, "lse");
  if (C == 0 && N > 0) throw Napi::RangeError::New(info.Env(), "crossEntropyForward: C must be > 0");
  CheckTargets(info, targets, N, C, ignore);
  ParallelFor(N, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, C)), [&](int64_t begin, int64_t end) {
    ForwardRows(end - begin, C, logits + begin * C, targets + begin, ignore, loss + begin, lse + begin);
  });
  return info.Env().Undefined();
}

Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  int64_t N = GetCount(info, 0, "N");
  int64_t C = GetCount(info, 1, "C");
  const int64_t numel = CountProduct(info, N, C, "N * C");
  const float* logits = OperandAt<float>(info, 2, "logits", "lOff", numel);
  const int64_t* targets = OperandAt<int64_t>(info, 4, "targets", "tOff", N);
  int64_t ignore = GetInt(info, 6, "ignoreIndex");
  const float* lse = Elements<float>(info, GetBuffer(info, 7, "lse"), 0, N, "lse");
  const float* g = Elements<float>(info, GetBuffer(info, 8, "g"), 0, N, "g");
  float* dlogits = Elements<float>(info, GetBuffer(info, 9, "dlogits"), 0, numel, "dlogits");
  CheckTargets(info, targets, N, C, ignore);
  ParallelFor(N, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, C)), [&](int64_t begin, int64_t end) {
    BackwardRows(end - begin, C, logits + begin * C, targets + begin, ignore, lse + begin, g + begin,
                 dlogits + begin * C);
  });
  return info.Env().Undefined();
}

}  // namespace

void RegisterCrossEntropy(Napi::Env env, Napi::Object exports) {
  exports.Set("crossEntropyForward", Napi::Function::New(env, CrossEntropyForward, "crossEntropyForward"));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, CrossEntropyBackward, "crossEntropyBackward"));
}

}  // namespace ft
