// CUDA torch.optim.AdamW over a list of contiguous float32 tensors in one launch: native/cpu/optim.cc's
// contract. The per-step scalars are computed on the host in double and rounded to float exactly as the CPU
// does, and every float operation is rounded explicitly in the CPU's (torch's) order, so both backends produce
// the same bits. The tensors reach the kernel as one device array of slots (param, grad, exp_avg, exp_avg_sq,
// size, 1 - lr * weight_decay) and, where the parameter has one, its 16-bit copy (autocast's operand), which
// receives the new value rounded to its dtype in the same pass: no cast of the weights at the next forward.
// adamwDevice is the same update with the step's scalars read from a small device buffer that adamwScalars fills
// before each step: a CUDA graph that captured it follows the learning-rate schedule and the bias corrections at
// every replay.
#include <napi.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/args.h"
#include "common/kernel_args.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"

namespace ft::cuda::kernels {
namespace {

constexpr char kSource[] = R"CUDA(
// One element's update: param.mul_(decay = 1 - lr * wd); exp_avg.lerp_(grad, 1 - beta1);
// exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2); denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps;
// param.addcdiv_(exp_avg, denom, -step_size). A clip factor below 1 first scales the gradient as clip_grad_norm_
// would have (grad * factor, rounded once).
struct AdamWStep {
  float decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bias_correction2_sqrt, eps, clip;
};
__device__ __forceinline__ void AdamWElement(const AdamWStep& s, float g, float& p, float& m, float& v) {
  const float gi = s.clip < 1.0f ? __fmul_rn(g, s.clip) : g;
  const float pi = __fmul_rn(p, s.decay);
  m = __fadd_rn(m, __fmul_rn(s.one_minus_beta1, __fsub_rn(gi, m)));
  v = __fadd_rn(__fmul_rn(v, s.beta2), __fmul_rn(__fmul_rn(s.one_minus_beta2, gi), gi));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), s.bias_correction2_sqrt), s.eps);
  p = __fadd_rn(pi, __fdiv_rn(__fmul_rn(s.neg_step_size, m), denom));
}

// Block b's chunk of its tensor: AdamWElement over it; the 16-bit copy, when present, gets the new param rounded as
// a cast would round it. Where the chunk's four arrays are 16-byte aligned (and the copy 8-byte) a thread moves four
// elements per load, so that more bytes are in flight: the update runs at the memory's bandwidth.
__device__ __forceinline__ void AdamWChunk(const Slot& slot, int64 begin, const AdamWStep& s) {
  float* p = (float*)slot.data[0];
  const float* g = (const float*)slot.data[1];
  float* m = (float*)slot.data[2];
  float* v = (float*)slot.data[3];
  uint16* copy = (uint16*)slot.data[4];
  const int64 end = min(slot.size, begin + FT_CHUNK);
  int64 i = begin + threadIdx.x;
  const uint64 at16 = (uint64)(p + begin) | (uint64)(g + begin) | (uint64)(m + begin) | (uint64)(v + begin);
  if (at16 % 16 == 0 && (copy == 0 || (uint64)(copy + begin) % 8 == 0)) {
    const int64 quads = (end - begin) / 4;
    for (int64 q = threadIdx.x; q < quads; q += blockDim.x) {
      const int64 k = begin + 4 * q;
      Float4 pv = *(const Float4*)(p + k), mv = *(const Float4*)(m + k), vv = *(const Float4*)(v + k);
      const Float4 gv = *(const Float4*)(g + k);
#pragma unroll
      for (int j = 0; j < 4; ++j) AdamWElement(s, gv.v[j], pv.v[j], mv.v[j], vv.v[j]);
      *(Float4*)(p + k) = pv;
      *(Float4*)(m + k) = mv;
      *(Float4*)(v + k) = vv;
      if (copy != 0) StoreLowp4(copy + k, slot.code, pv.v[0], pv.v[1], pv.v[2], pv.v[3]);
    }
    i = begin + 4 * quads + threadIdx.x;
  }
  for (; i < end; i += blockDim.x) {
    float pi = p[i], mi = m[i], vi = v[i];
    AdamWElement(s, g[i], pi, mi, vi);
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
    if (copy != 0) copy[i] = F32ToLowp(pi, slot.code);
  }
}

extern "C" __global__ void ft_adamw(const Slot* slots, const int64* first_block, int count, int64 blocks,
                                    float one_minus_beta1, float beta2, float one_minus_beta2, float neg_step_size,
                                    float bias_correction2_sqrt, float eps) {
  AwaitPriorGrid();
  for (int64 b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int t = FindTensor(first_block, count, b);
    const AdamWStep s{slots[t].scalar, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bias_correction2_sqrt,
                      eps, 1.0f};
    AdamWChunk(slots[t], (b - first_block[t]) * FT_CHUNK, s);
  }
}

// scalars = [-step_size, bias_correction2_sqrt, decay of tensor 0, decay of tensor 1, ...] (adamwScalars); clip,
// when not null, is clip_grad_norm_'s factor (clipGradNorm with a factor output), applied here instead.
extern "C" __global__ void ft_adamw_device(const Slot* slots, const int64* first_block, int count, int64 blocks,
                                           float one_minus_beta1, float beta2, float one_minus_beta2,
                                           const float* scalars, float eps, const float* clip) {
  AwaitPriorGrid();
  const float neg_step_size = scalars[0], bias_correction2_sqrt = scalars[1];
  const float factor = clip == 0 ? 1.0f : *clip;
  for (int64 b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int t = FindTensor(first_block, count, b);
    const AdamWStep s{scalars[2 + t], one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bias_correction2_sqrt,
                      eps, factor};
    AdamWChunk(slots[t], (b - first_block[t]) * FT_CHUNK, s);
  }
}
)CUDA";

CUfunction Kernel(Napi::Env env, const char* name) {
  static const std::string source = ModuleSource(kSource);
  return GetKernel(env, "optim", source, name);
}

// The device addresses of list argument `index`, each holding sizes[i] floats from element offs[i] (from 0
// without offsets).
std::vector<uint64_t> Tensors(const Napi::CallbackInfo& info, int index, const char* name,
                              const std::vector<int64_t>& sizes, const std::vector<int64_t>& offs = {}) {
  std::vector<DeviceBuffer> bufs = GetDeviceBufferList(info, index, name);
  CheckListLength(info, bufs.size(), sizes.size(), index, name);
  std::vector<uint64_t> out;
  for (size_t i = 0; i < bufs.size(); ++i) {
    const std::string label = std::string(name) + "[" + std::to_string(i) + "]";
    out.push_back(DeviceElements<float>(info, bufs[i], offs.empty() ? 0 : offs[i], sizes[i], label.c_str()));
  }
  return out;
}

// The weight decays at argument `index`: n numbers.
std::vector<double> WeightDecays(const Napi::CallbackInfo& info, int index, size_t n) {
  Napi::Env env = info.Env();
  Napi::Value value = info[index];
  if (!value.IsArray()) throw Napi::TypeError::New(env, ArgName(index, "weightDecays") + " must be an array");
  Napi::Array array = value.As<Napi::Array>();
  CheckListLength(info, array.Length(), n, index, "weightDecays");
  std::vector<double> out(n);
  for (uint32_t i = 0; i < n; ++i) {
    Napi::Value e = array[i];
    if (!e.IsNumber()) throw Napi::TypeError::New(env, ArgName(index, "weightDecays") + " must hold numbers");
    out[i] = e.As<Napi::Number>().DoubleValue();
  }
  return out;
}

// The step's scalars, computed in double and rounded once, exactly as the CPU does.
struct StepScalars {
  float neg_step_size, bias_correction2_sqrt;
};

// lr, beta1 and beta2 at arguments lr_index.., the step count at step_index.
StepScalars StepScalarsAt(const Napi::CallbackInfo& info, int lr_index, int step_index) {
  const double lr = GetNumber(info, lr_index, "lr");
  const double beta1 = GetNumber(info, lr_index + 1, "beta1");
  const double beta2 = GetNumber(info, lr_index + 2, "beta2");
  const double step = GetNumber(info, step_index, "step");
  if (!(step >= 1)) throw Napi::RangeError::New(info.Env(), ArgName(step_index, "step") + " must be >= 1");
  return StepScalars{static_cast<float>(-(lr / (1.0 - std::pow(beta1, step)))),
                     static_cast<float>(std::sqrt(1.0 - std::pow(beta2, step)))};
}

float Decay(double lr, double weight_decay) { return static_cast<float>(1.0 - lr * weight_decay); }

// The optional argument `index`: each parameter's 16-bit copy or null, sizes[i] elements of the dtype given at
// index + 1 from the element offsets at argument 14 (copyOffs); written to the slots (data[4], code).
void SetCopies(const Napi::CallbackInfo& info, int index, const std::vector<int64_t>& sizes, std::vector<Slot>& slots) {
  if (info.Length() <= static_cast<size_t>(index) || info[index].IsUndefined()) return;
  std::vector<bool> present;
  const std::vector<DeviceBuffer> bufs = GetDeviceBufferList(info, index, "copies", &present);
  CheckListLength(info, bufs.size(), sizes.size(), index, "copies");
  const std::vector<int> dtypes = GetCopyDtypes(info, index + 1, present);
  const std::vector<int64_t> offs = CopyOffsets(info, sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!present[i]) continue;
    const std::string label = "copies[" + std::to_string(i) + "]";
    slots[i].data[4] = DeviceElements<uint16_t>(info, bufs[i], offs.empty() ? 0 : offs[i], sizes[i], label.c_str());
    slots[i].code = dtypes[i];
  }
}

// The four tensor lists at arguments 0..3 with their sizes (argument 4), and the copies at `copies_index`, as
// kernel slots.
TensorList Lists(const Napi::CallbackInfo& info, const std::vector<int64_t>& sizes, int copies_index) {
  const std::vector<uint64_t> params = Tensors(info, 0, "params", sizes);
  const std::vector<uint64_t> grads = Tensors(info, 1, "grads", sizes, GradOffsets(info, sizes.size()));
  const std::vector<uint64_t> exp_avgs = Tensors(info, 2, "exp_avgs", sizes);
  const std::vector<uint64_t> exp_avg_sqs = Tensors(info, 3, "exp_avg_sqs", sizes);
  std::vector<Slot> slots(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i)
    slots[i] = Slot{{params[i], grads[i], exp_avgs[i], exp_avg_sqs[i], 0}, sizes[i], 0.0f};
  SetCopies(info, copies_index, sizes, slots);
  return MakeTensorList(std::move(slots));
}

// adamw(params, grads, exp_avgs, exp_avg_sqs, sizes, weightDecays, lr, beta1, beta2, eps, step, [copies,
// copyDtypes, gradOffs, copyOffs]): native/cpu/optim.cc's adamw.
Napi::Value AdamW(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  const std::vector<int64_t> sizes = GetIntArray(info, 4, "sizes");
  TensorList list = Lists(info, sizes, 11);
  const std::vector<double> weight_decays = WeightDecays(info, 5, sizes.size());
  const double lr = GetNumber(info, 6, "lr");
  const double beta1 = GetNumber(info, 7, "beta1");
  const double beta2 = GetNumber(info, 8, "beta2");
  const double eps = GetNumber(info, 9, "eps");
  StepScalars step = StepScalarsAt(info, 6, 10);
  for (size_t i = 0; i < sizes.size(); ++i) list.slots[i].scalar = Decay(lr, weight_decays[i]);
  float one_minus_beta1 = static_cast<float>(1.0 - beta1);
  float beta2_f = static_cast<float>(beta2);
  float one_minus_beta2 = static_cast<float>(1.0 - beta2);
  float eps_f = static_cast<float>(eps);

  int64_t blocks = list.blocks();
  if (blocks == 0) return env.Undefined();
  DeviceTensorList device(env, list);
  uint64_t slots_ptr = device.slots(), first_block = device.first_block();
  int count = device.count();
  void* args[] = {&slots_ptr,       &first_block,        &count,
                  &blocks,          &one_minus_beta1,    &beta2_f,
                  &one_minus_beta2, &step.neg_step_size, &step.bias_correction2_sqrt,
                  &eps_f};
  Launch(env, Kernel(env, "ft_adamw"), RowGrid(blocks), Blocks(kThreads), 0, args);
  return env.Undefined();
}

// adamwScalars(scalars, lr, beta1, beta2, step, weightDecays): writes adamwDevice's scalars for one step
// ([-step_size, bias_correction2_sqrt, 1 - lr * weightDecays[i]...] as float32) with a copy on the stream.
Napi::Value AdamWScalars(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  DeviceBuffer buffer = GetDeviceBuffer(info, 0, "scalars");
  const double lr = GetNumber(info, 1, "lr");
  StepScalars step = StepScalarsAt(info, 1, 4);
  Napi::Value wd = info[5];
  const std::vector<double> weight_decays =
      WeightDecays(info, 5, wd.IsArray() ? wd.As<Napi::Array>().Length() : 0);
  std::vector<float> values{step.neg_step_size, step.bias_correction2_sqrt};
  for (double w : weight_decays) values.push_back(Decay(lr, w));
  const uint64_t at = DeviceElements<float>(info, buffer, 0, static_cast<int64_t>(values.size()), "scalars");
  CopyHostToDevice(env, at, values.data(), values.size() * sizeof(float));
  return env.Undefined();
}

// adamwDevice(params, grads, exp_avgs, exp_avg_sqs, sizes, scalars, beta1, beta2, eps, [clip, clipOff, copies,
// copyDtypes, gradOffs, copyOffs]): adamw with the step's scalars read from `scalars` (adamwScalars) when the kernel runs, and the
// gradients scaled by the float32 clip factor at clip[clipOff] when it is below 1 (clipGradNorm's factor output).
Napi::Value AdamWDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  const std::vector<int64_t> sizes = GetIntArray(info, 4, "sizes");
  const TensorList list = Lists(info, sizes, 11);
  uint64_t scalars = DeviceElements<float>(info, GetDeviceBuffer(info, 5, "scalars"), 0,
                                           static_cast<int64_t>(sizes.size()) + 2, "scalars");
  const double beta1 = GetNumber(info, 6, "beta1");
  const double beta2 = GetNumber(info, 7, "beta2");
  float one_minus_beta1 = static_cast<float>(1.0 - beta1);
  float beta2_f = static_cast<float>(beta2);
  float one_minus_beta2 = static_cast<float>(1.0 - beta2);
  float eps_f = static_cast<float>(GetNumber(info, 8, "eps"));
  uint64_t clip = info.Length() > 9 && !info[9].IsUndefined() ? DeviceOperandAt<float>(info, 9, "clip", "clipOff", 1) : 0;
  int64_t blocks = list.blocks();
  if (blocks == 0) return env.Undefined();
  DeviceTensorList device(env, list);
  uint64_t slots_ptr = device.slots(), first_block = device.first_block();
  int count = device.count();
  void* args[] = {&slots_ptr,       &first_block, &count, &blocks, &one_minus_beta1, &beta2_f,
                  &one_minus_beta2, &scalars,     &eps_f, &clip};
  Launch(env, Kernel(env, "ft_adamw_device"), RowGrid(blocks), Blocks(kThreads), 0, args);
  return env.Undefined();
}

}  // namespace

void RegisterOptim(Napi::Env env, Napi::Object cuda) {
  cuda.Set("adamw", Napi::Function::New(env, AdamW, "adamw"));
  cuda.Set("adamwScalars", Napi::Function::New(env, AdamWScalars, "adamwScalars"));
  cuda.Set("adamwDevice", Napi::Function::New(env, AdamWDevice, "adamwDevice"));
}

}  // namespace ft::cuda::kernels
