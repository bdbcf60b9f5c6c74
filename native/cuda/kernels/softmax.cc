// CUDA softmax and log-softmax over contiguous rows, their backward, and the fused attention softmax (scale +
// additive [B, T] mask + softmax): native/cpu/softmax.cc's contract, one block per row. The row maximum ignores
// NaN as the CPU's does (a NaN still reaches the sum and so the whole row). Every pass reads an element in the
// thread that later writes it, and the block reductions sit between the reading and the writing passes, so an
// output may alias its input.
#include <napi.h>

#include <string>

#include "common/args.h"
#include "common/kernel_args.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"

namespace ft::cuda::kernels {
namespace {

constexpr char kSource[] = R"CUDA(
extern "C" __global__ __launch_bounds__(1024) void ft_softmax_forward(int64 rows, int64 cols, const float* x, float* y, int log) {
  AwaitPriorGrid();
  __shared__ float scratch[32];
  for (int64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float m = -FT_INF;
    for (int64 k = threadIdx.x; k < cols; k += blockDim.x) m = fmaxf(m, xr[k]);
    m = BlockMax(m, scratch);
    float s = 0.0f;
    if (log) {
      for (int64 k = threadIdx.x; k < cols; k += blockDim.x) s += Exp(xr[k] - m);
      const float shift = m + logf(BlockSum(s, scratch));
      for (int64 k = threadIdx.x; k < cols; k += blockDim.x) yr[k] = xr[k] - shift;
    } else {
      for (int64 k = threadIdx.x; k < cols; k += blockDim.x) {
        const float e = Exp(xr[k] - m);
        yr[k] = e;
        s += e;
      }
      const float inv = 1.0f / BlockSum(s, scratch);
      for (int64 k = threadIdx.x; k < cols; k += blockDim.x) yr[k] *= inv;
    }
  }
}

// dx = y * (dy - sum(dy * y)), or for log-softmax dx = dy - exp(y) * sum(dy).
extern "C" __global__ __launch_bounds__(1024) void ft_softmax_backward(int64 rows, int64 cols, const float* y, const float* dy, float* dx,
                                               int log) {
  AwaitPriorGrid();
  __shared__ float scratch[32];
  for (int64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* yr = y + r * cols;
    const float* dyr = dy + r * cols;
    float* dxr = dx + r * cols;
    float s = 0.0f;
    for (int64 k = threadIdx.x; k < cols; k += blockDim.x) s += log ? dyr[k] : dyr[k] * yr[k];
    s = BlockSum(s, scratch);
    for (int64 k = threadIdx.x; k < cols; k += blockDim.x)
      dxr[k] = log ? dyr[k] - Exp(yr[k]) * s : yr[k] * (dyr[k] - s);
  }
}

// Row r of the [B*H*S, T] scores belongs to batch r / rows_per_batch. z = scores * scale + mask is rounded in
// the CPU's two steps (no FMA), so the same z gives the same masked-out rows. A row whose maximum is -inf (all
// masked with -inf, or overflowed) is uniform, as in PyTorch with its large finite mask.
__device__ __forceinline__ float MaskedScore(const float* sr, const float* mr, float scale, int64 t) {
  const float z = __fmul_rn(sr[t], scale);
  return mr != 0 ? __fadd_rn(z, mr[t]) : z;
}

extern "C" __global__ __launch_bounds__(1024) void ft_masked_softmax(int64 rows, int64 rows_per_batch, int64 T, const float* scores,
                                             float scale, const float* mask, float* y) {
  AwaitPriorGrid();
  __shared__ float scratch[32];
  for (int64 r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* sr = scores + r * T;
    const float* mr = mask != 0 ? mask + (r / rows_per_batch) * T : 0;
    float* yr = y + r * T;
    float m = -FT_INF;
    for (int64 t = threadIdx.x; t < T; t += blockDim.x) m = fmaxf(m, MaskedScore(sr, mr, scale, t));
    m = BlockMax(m, scratch);
    if (m == -FT_INF) {
      for (int64 t = threadIdx.x; t < T; t += blockDim.x) yr[t] = 1.0f / (float)T;
      continue;
    }
    float s = 0.0f;
    for (int64 t = threadIdx.x; t < T; t += blockDim.x) {
      const float e = Exp(MaskedScore(sr, mr, scale, t) - m);
      yr[t] = e;
      s += e;
    }
    const float inv = 1.0f / BlockSum(s, scratch);
    for (int64 t = threadIdx.x; t < T; t += blockDim.x) yr[t] *= inv;
  }
}
)CUDA";

CUfunction Kernel(Napi::Env env, const char* name) {
  static const std::string source = ModuleSource(kSource);
  return GetKernel(env, "softmax", source, name);
}

Napi::Value SoftmaxForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t rows = GetCount(info, 0, "rows");
  int64_t cols = GetCount(info, 1, "cols");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  uint64_t x = DeviceOperandAt<float>(info, 2, "x", "xOff", numel);
  uint64_t y = DeviceOperandAt<float>(info, 4, "y", "yOff", numel);
  int log = GetBool(info, 6, "log") ? 1 : 0;
  if (cols == 0) return env.Undefined();
  void* args[] = {&rows, &cols, &x, &y, &log};
  Launch(env, Kernel(env, "ft_softmax_forward"), RowGrid(rows), RowThreads(cols), 0, args);
  return env.Undefined();
}

Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t rows = GetCount(info, 0, "rows");
  int64_t cols = GetCount(info, 1, "cols");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  uint64_t y = DeviceOperandAt<float>(info, 2, "y", "yOff", numel);
  uint64_t dy = DeviceOperandAt<float>(info, 4, "dy", "dyOff", numel);
  uint64_t dx = DeviceOperandAt<float>(info, 6, "dx", "dxOff", numel);
  int log = GetBool(info, 8, "log") ? 1 : 0;
  if (cols == 0) return env.Undefined();
  void* args[] = {&rows, &cols, &y, &dy, &dx, &log};
  Launch(env, Kernel(env, "ft_softmax_backward"), RowGrid(rows), RowThreads(cols), 0, args);
  return env.Undefined();
}

Napi::Value MaskedSoftmaxForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t B = GetCount(info, 0, "B");
  int64_t H = GetCount(info, 1, "H");
  int64_t S = GetCount(info, 2, "S");
  int64_t T = GetCount(info, 3, "T");
  int64_t rows_per_batch = CountProduct(info, H, S, "H * S");
  int64_t rows = CountProduct(info, B, rows_per_batch, "B * H * S");
  const int64_t numel = CountProduct(info, rows, T, "B * H * S * T");
  uint64_t scores =
      DeviceOperandAt<float>(info, 4, "scores", "sOff", numel);
  float scale = static_cast<float>(GetNumber(info, 6, "scale"));
  uint64_t mask = 0;
  if (!NoneGiven(info, 7))
    mask = DeviceOperandAt<float>(info, 7, "mask", "maskOff", CountProduct(info, B, T, "B * T"));
  uint64_t y = DeviceOperandAt<float>(info, 9, "y", "yOff", numel);
  if (T == 0) return env.Undefined();
  void* args[] = {&rows, &rows_per_batch, &T, &scores, &scale, &mask, &y};
  Launch(env, Kernel(env, "ft_masked_softmax"), RowGrid(rows), RowThreads(T), 0, args);
  return env.Undefined();
}

}  // namespace

void RegisterSoftmax(Napi::Env env, Napi::Object cuda) {
  cuda.Set("softmaxForward", Napi::Function::New(env, SoftmaxForward, "softmaxForward"));
  cuda.Set("softmaxBackward", Napi::Function::New(env, SoftmaxBackward, "softmaxBackward"));
  cuda.Set("maskedSoftmaxForward", Napi::Function::New(env, MaskedSoftmaxForward, "maskedSoftmaxForward"));
}

}  // namespace ft::cuda::kernels
