// CUDA layer norm over the last `cols` values of each row: native/cpu/layer_norm.cc's contract and numerics.
// Statistics accumulate in double (biased variance, rstd = 1 / sqrt(var + eps)), one block per row. The
// backward's dw / db are the CPU's two-pass column reduction: per block of 32 rows a float partial sum in row
// order, then the partials added in block order in double, each step rounded as on the CPU, so dw and db match
// it to the bit without atomics. They are computed before dx, which may alias dy.
#include <napi.h>

#include <string>

#include "common/args.h"
#include "common/kernel_args.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"

namespace ft::cuda::kernels {
namespace {

// Rows per partial sum of dw / db: the CPU's kRowsPerBlock.
constexpr int64_t kRowsPerBlock = 32;

constexpr char kSource[] = R"CUDA(
#define ROWS_PER_BLOCK 32

extern "C" __global__ __launch_bounds__(1024) void ft_layer_norm_forward(int64 rows, int64 cols, const float* x, const float* w,
                                                 const float* b, float eps, float* y, float* mean, float* rstd) {
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
    }
  }
}

// Thread (block, c): the sums over the block's rows of dy * xhat (dw_part) and dy (db_part) for column c.
extern "C" __global__ void ft_layer_norm_param_partial(int64 rows, int64 cols, const float* x, const float* dy,
                                                       const float* mean, const float* rstd, float* dw_part,
                                                       float* db_part) {
  const int64 blocks = (rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
  for (int64 t = GlobalThread(); t < blocks * cols; t += GridThreads()) {
    const int64 blk = t / cols, c = t % cols;
    const int64 r1 = min(rows, (blk + 1) * ROWS_PER_BLOCK);
    float dw = 0.0f, db = 0.0f;
    for (int64 r = blk * ROWS_PER_BLOCK; r < r1; ++r) {
      const float g = dy[r * cols + c];
      dw = __fadd_rn(dw, __fmul_rn(g, __fmul_rn(__fsub_rn(x[r * cols + c], mean[r]), rstd[r])));
      db = __fadd_rn(db, g);
    }
    if (dw_part != 0) dw_part[t] = dw;
    if (db_part != 0) db_part[t] = db;
  }
}

// out[c] = the partials of column c added in block order, in double.
extern "C" __global__ void ft_layer_norm_param_finish(int64 blocks, int64 cols, const float* part, float* out) {
  for (int64 c = GlobalThread(); c < cols; c += GridThreads()) {
    double s = 0.0;
    for (int64 b = 0; b < blocks; ++b) s += part[b * cols + c];
    out[c] = (float)s;
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w, xhat = (x - mean) * rstd; one block per row.
extern "C" __global__ __launch_bounds__(1024) void ft_layer_norm_backward(int64 rows, int64 cols, const float* x, const float* dy,
                                                  const float* w, const float* mean, const float* rstd, float* dx) {
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
      dxr[k] = (g - a - (xr[k] - m) * rs * c) * rs;
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
  if (info[index].IsNull() || info[index].IsUndefined()) return 0;
  return DeviceOperandAt<float>(info, index, name, name, count);
}

uint64_t OptionalOutput(const Napi::CallbackInfo& info, int index, const char* name, int64_t count) {
  if (info[index].IsNull() || info[index].IsUndefined()) return 0;
  return DeviceElements<float>(info, GetDeviceBuffer(info, index, name), 0, count, name);
}

Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t rows = GetCount(info, 0, "rows");
  int64_t cols = GetCount(info, 1, "cols");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  uint64_t x = DeviceOperandAt<float>(info, 2, "x", "xOff", numel);
  uint64_t w = OptionalFloats(info, 4, "w", cols);
  uint64_t b = OptionalFloats(info, 6, "b", cols);
  float eps = static_cast<float>(GetNumber(info, 8, "eps"));
  uint64_t y = DeviceOperandAt<float>(info, 9, "y", "yOff", numel);
  uint64_t mean = DeviceElements<float>(info, GetDeviceBuffer(info, 11, "mean"), 0, rows, "mean");
  uint64_t rstd = DeviceElements<float>(info, GetDeviceBuffer(info, 12, "rstd"), 0, rows, "rstd");
  if (cols == 0) throw Napi::RangeError::New(env, "layerNormForward: cols must be > 0");
  void* args[] = {&rows, &cols, &x, &w, &b, &eps, &y, &mean, &rstd};
  Launch(env, Kernel(env, "ft_layer_norm_forward"), RowGrid(rows), RowThreads(cols), 0, args);
  return env.Undefined();
}

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
  if (cols == 0) throw Napi::RangeError::New(env, "layerNormBackward: cols must be > 0");
  int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  const size_t part_bytes = static_cast<size_t>(blocks * cols) * sizeof(float);
  ScratchBuffer dw_part(env, dw != 0 ? part_bytes : 0), db_part(env, db != 0 ? part_bytes : 0);
  uint64_t dw_part_ptr = dw != 0 ? dw_part.ptr() : 0, db_part_ptr = db != 0 ? db_part.ptr() : 0;
  if (dw != 0 || db != 0) {
    void* args[] = {&rows, &cols, &x, &dy, &mean, &rstd, &dw_part_ptr, &db_part_ptr};
    Launch(env, Kernel(env, "ft_layer_norm_param_partial"), GridFor(blocks * cols), Blocks(kThreads), 0, args);
    for (const auto& [part_ptr, out_ptr] : {std::pair{dw_part_ptr, dw}, std::pair{db_part_ptr, db}}) {
      if (out_ptr == 0) continue;
      uint64_t part = part_ptr, out = out_ptr;
      void* finish_args[] = {&blocks, &cols, &part, &out};
      Launch(env, Kernel(env, "ft_layer_norm_param_finish"), GridFor(cols), Blocks(kThreads), 0, finish_args);
    }
  }
  void* args[] = {&rows, &cols, &x, &dy, &w, &mean, &rstd, &dx};
  Launch(env, Kernel(env, "ft_layer_norm_backward"), RowGrid(rows), RowThreads(cols), 0, args);
  return env.Undefined();
}

}  // namespace

void RegisterLayerNorm(Napi::Env env, Napi::Object cuda) {
  cuda.Set("layerNormForward", Napi::Function::New(env, LayerNormForward, "layerNormForward"));
  cuda.Set("layerNormBackward", Napi::Function::New(env, LayerNormBackward, "layerNormBackward"));
}

}  // namespace ft::cuda::kernels
