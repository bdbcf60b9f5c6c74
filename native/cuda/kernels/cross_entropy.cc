// CUDA cross-entropy from logits with int64 targets: native/cpu/cross_entropy.cc's contract. Targets are
// checked on the device first (index_check.cc; one synchronisation per call), so a bad one throws the CPU's
// RangeError before a kernel indexes a row with it; in a CUDA graph the check is deferred to the next sync and
// the forward gives such a row a NaN loss instead of reading outside it. The forward takes one block per row (max, sum of exps,
// logsumexp); the backward is elementwise.
#include <napi.h>

#include <string>

#include "common/args.h"
#include "common/kernel_args.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"

namespace ft::cuda::kernels {
namespace {

constexpr char kSource[] = R"CUDA(
extern "C" __global__ __launch_bounds__(1024) void ft_cross_entropy_forward(int64 N, int64 C, const float* logits, const int64* targets,
                                                    int64 ignore, float* loss, float* lse) {
  AwaitPriorGrid();
  __shared__ float scratch[32];
  for (int64 r = blockIdx.x; r < N; r += gridDim.x) {
    const float* x = logits + r * C;
    float m = -FT_INF;
    for (int64 k = threadIdx.x; k < C; k += blockDim.x) m = fmaxf(m, x[k]);
    m = BlockMax(m, scratch);
    float s = 0.0f;
    for (int64 k = threadIdx.x; k < C; k += blockDim.x) s += Exp(x[k] - m);
    s = BlockSum(s, scratch);
    if (threadIdx.x == 0) {
      const float l = m + logf(s);
      const int64 t = targets[r];
      lse[r] = l;
      loss[r] = t == ignore ? 0.0f : t < 0 || t >= C ? FT_NAN : l - x[t];
    }
  }
}

// cross_entropy's "mean": out = sum(loss) * (1 / the number of targets that are not `ignore`) in one block of
// 256 threads, the sums in ft_reduce_rows' order (so the bits of sum(), div() and mul() one after another), and
// that factor in `inverse` for the backward. No target gives 0 * inf, NaN, as in torch.
extern "C" __global__ __launch_bounds__(256) void ft_cross_entropy_mean(int64 N, const float* loss,
                                                                       const int64* targets, int64 ignore,
                                                                       float* out, float* inverse) {
  AwaitPriorGrid();
  __shared__ double scratch[32];
  double s = 0.0, kept = 0.0;
  for (int64 r = threadIdx.x; r < N; r += blockDim.x) {
    s += (double)loss[r];
    kept += targets[r] != ignore ? 1.0 : 0.0;
  }
  s = BlockSumDouble(s, scratch);
  kept = BlockSumDouble(kept, scratch);
  if (threadIdx.x == 0) {
    const float factor = __fdiv_rn(1.0f, (float)kept);
    *inverse = factor;
    *out = __fmul_rn((float)s, factor);
  }
}

// dlogits[r, k] = g[r] * (exp(logits[r, k] - lse[r]) - (k == t_r)), zero for ignored rows; the product and the
// subtraction are rounded separately, as on the CPU.
extern "C" __global__ void ft_cross_entropy_backward(int64 N, int64 C, const float* logits, const int64* targets,
                                                     int64 ignore, const float* lse, const float* g,
                                                     float* dlogits) {
  AwaitPriorGrid();
  for (int64 t = GlobalThread(); t < N * C; t += GridThreads()) {
    const int64 r = t / C, k = t - r * C;
    const int64 target = targets[r];
    if (target == ignore) {
      dlogits[t] = 0.0f;
      continue;
    }
    const float scale = g[r];
    const float v = __fmul_rn(scale, Exp(logits[t] - lse[r]));
    dlogits[t] = k == target ? __fsub_rn(v, scale) : v;
  }
}
)CUDA";

CUfunction Kernel(Napi::Env env, const char* name) {
  static const std::string source = ModuleSource(kSource);
  return GetKernel(env, "cross_entropy", source, name);
}

std::string BadTarget(int64_t row, int64_t target, int64_t C, int64_t ignore) {
  return "cross entropy: target " + std::to_string(target) + " at row " + std::to_string(row) +
         " is outside [0, C) with C = " + std::to_string(C) + " and is not ignore_index " + std::to_string(ignore);
}

void CheckTargets(const Napi::CallbackInfo& info, uint64_t targets, int64_t N, int64_t C, int64_t ignore) {
  CheckIndices(info.Env(), targets, N, C, ignore, true, BadTarget);
}

Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t N = GetCount(info, 0, "N");
  int64_t C = GetCount(info, 1, "C");
  uint64_t logits = DeviceOperandAt<float>(info, 2, "logits", "lOff", CountProduct(info, N, C, "N * C"));
  uint64_t targets =
      DeviceOperandAt<int64_t>(info, 4, "targets", "tOff", N);
  int64_t ignore = GetInt(info, 6, "ignoreIndex");
  uint64_t loss = DeviceElements<float>(info, GetDeviceBuffer(info, 7, "loss"), 0, N, "loss");
  uint64_t lse = DeviceElements<float>(info, GetDeviceBuffer(info, 8, "lse"), 0, N, "lse");
  if (C == 0 && N > 0) throw Napi::RangeError::New(env, "crossEntropyForward: C must be > 0");
  CheckTargets(info, targets, N, C, ignore);
  void* args[] = {&N, &C, &logits, &targets, &ignore, &loss, &lse};
  Launch(env, Kernel(env, "ft_cross_entropy_forward"), RowGrid(N), RowThreads(C), 0, args);
  return env.Undefined();
}

// crossEntropyMean(N, loss, targets, tOff, ignoreIndex, out, inverse): the mean of crossEntropyForward's losses
// over the targets that are not ignoreIndex into out[0], and 1 / their count into inverse[0], in one launch.
Napi::Value CrossEntropyMean(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t N = GetCount(info, 0, "N");
  uint64_t loss = DeviceElements<float>(info, GetDeviceBuffer(info, 1, "loss"), 0, N, "loss");
  uint64_t targets = DeviceOperandAt<int64_t>(info, 2, "targets", "tOff", N);
  int64_t ignore = GetInt(info, 4, "ignoreIndex");
  uint64_t out = DeviceElements<float>(info, GetDeviceBuffer(info, 5, "out"), 0, 1, "out");
  uint64_t inverse = DeviceElements<float>(info, GetDeviceBuffer(info, 6, "inverse"), 0, 1, "inverse");
  void* args[] = {&N, &loss, &targets, &ignore, &out, &inverse};
  Launch(env, Kernel(env, "ft_cross_entropy_mean"), Blocks(1), Blocks(kThreads), 0, args);
  return env.Undefined();
}

Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t N = GetCount(info, 0, "N");
  int64_t C = GetCount(info, 1, "C");
  const int64_t numel = CountProduct(info, N, C, "N * C");
  uint64_t logits =
      DeviceOperandAt<float>(info, 2, "logits", "lOff", numel);
  uint64_t targets =
      DeviceOperandAt<int64_t>(info, 4, "targets", "tOff", N);
  int64_t ignore = GetInt(info, 6, "ignoreIndex");
  uint64_t lse = DeviceElements<float>(info, GetDeviceBuffer(info, 7, "lse"), 0, N, "lse");
  uint64_t g = DeviceElements<float>(info, GetDeviceBuffer(info, 8, "g"), 0, N, "g");
  uint64_t dlogits = DeviceElements<float>(info, GetDeviceBuffer(info, 9, "dlogits"), 0, numel, "dlogits");
  // The forward's check covers targets unchanged since (targetsChecked); the kernel only compares a target with
  // the column, never reads at it.
  if (!OptionalFlag(info, 10, "targetsChecked")) CheckTargets(info, targets, N, C, ignore);
  void* args[] = {&N, &C, &logits, &targets, &ignore, &lse, &g, &dlogits};
  Launch(env, Kernel(env, "ft_cross_entropy_backward"), GridFor(numel), Blocks(kThreads), 0, args);
  return env.Undefined();
}

}  // namespace

void RegisterCrossEntropy(Napi::Env env, Napi::Object cuda) {
  cuda.Set("crossEntropyForward", Napi::Function::New(env, CrossEntropyForward, "crossEntropyForward"));
  cuda.Set("crossEntropyBackward", Napi::Function::New(env, CrossEntropyBackward, "crossEntropyBackward"));
  cuda.Set("crossEntropyMean", Napi::Function::New(env, CrossEntropyMean, "crossEntropyMean"));
}

}  // namespace ft::cuda::kernels
