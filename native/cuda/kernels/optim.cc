// CUDA torch.optim.AdamW over a list of contiguous float32 tensors in one launch: native/cpu/optim.cc's
// contract. The per-step scalars are computed on the host in double and rounded to float exactly as the CPU
// does, and every float operation is rounded explicitly in the CPU's (torch's) order, so both backends produce
// the same bits. The tensors reach the kernel as one device array of slots (param, grad, exp_avg, exp_avg_sq,
// size, 1 - lr * weight_decay).
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
// param.mul_(1 - lr * wd); exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
// denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps; param.addcdiv_(exp_avg, denom, -step_size).
extern "C" __global__ void ft_adamw(const Slot* slots, const int64* first_block, int count, int64 blocks,
                                    float one_minus_beta1, float beta2, float one_minus_beta2, float neg_step_size,
                                    float bias_correction2_sqrt, float eps) {
  for (int64 b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int t = FindTensor(first_block, count, b);
    const Slot& s = slots[t];
    float* p = (float*)s.data[0];
    const float* g = (const float*)s.data[1];
    float* m = (float*)s.data[2];
    float* v = (float*)s.data[3];
    const int64 begin = (b - first_block[t]) * FT_CHUNK, end = min(s.size, begin + FT_CHUNK);
    for (int64 i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const float gi = g[i];
      const float pi = __fmul_rn(p[i], s.scalar);
      const float mi = __fadd_rn(m[i], __fmul_rn(one_minus_beta1, __fsub_rn(gi, m[i])));
      const float vi = __fadd_rn(__fmul_rn(v[i], beta2), __fmul_rn(__fmul_rn(one_minus_beta2, gi), gi));
      const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bias_correction2_sqrt), eps);
      m[i] = mi;
      v[i] = vi;
      p[i] = __fadd_rn(pi, __fdiv_rn(__fmul_rn(neg_step_size, mi), denom));
    }
  }
}
)CUDA";

CUfunction Kernel(Napi::Env env, const char* name) {
  static const std::string source = ModuleSource(kSource);
  return GetKernel(env, "optim", source, name);
}

// The device addresses of list argument `index`, each holding sizes[i] floats.
std::vector<uint64_t> Tensors(const Napi::CallbackInfo& info, int index, const char* name,
                              const std::vector<int64_t>& sizes) {
  std::vector<DeviceBuffer> bufs = GetDeviceBufferList(info, index, name);
  CheckListLength(info, bufs.size(), sizes.size(), index, name);
  std::vector<uint64_t> out;
  for (size_t i = 0; i < bufs.size(); ++i) {
    const std::string label = std::string(name) + "[" + std::to_string(i) + "]";
    out.push_back(DeviceElements<float>(info, bufs[i], 0, sizes[i], label.c_str()));
  }
  return out;
}

Napi::Value AdamW(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  const std::vector<int64_t> sizes = GetIntArray(info, 4, "sizes");
  const std::vector<uint64_t> params = Tensors(info, 0, "params", sizes);
  const std::vector<uint64_t> grads = Tensors(info, 1, "grads", sizes);
  const std::vector<uint64_t> exp_avgs = Tensors(info, 2, "exp_avgs", sizes);
  const std::vector<uint64_t> exp_avg_sqs = Tensors(info, 3, "exp_avg_sqs", sizes);
  Napi::Value wd_value = info[5];
  if (!wd_value.IsArray()) throw Napi::TypeError::New(env, ArgName(5, "weightDecays") + " must be an array");
  Napi::Array wd_array = wd_value.As<Napi::Array>();
  CheckListLength(info, wd_array.Length(), sizes.size(), 5, "weightDecays");
  const double lr = GetNumber(info, 6, "lr");
  const double beta1 = GetNumber(info, 7, "beta1");
  const double beta2 = GetNumber(info, 8, "beta2");
  const double eps = GetNumber(info, 9, "eps");
  const double step = GetNumber(info, 10, "step");
  if (!(step >= 1)) throw Napi::RangeError::New(env, ArgName(10, "step") + " must be >= 1");

  std::vector<Slot> slots(sizes.size());
  for (uint32_t i = 0; i < wd_array.Length(); ++i) {
    Napi::Value e = wd_array[i];
    if (!e.IsNumber()) throw Napi::TypeError::New(env, ArgName(5, "weightDecays") + " must hold numbers");
    slots[i] = Slot{{params[i], grads[i], exp_avgs[i], exp_avg_sqs[i]},
                    sizes[i],
                    static_cast<float>(1.0 - lr * e.As<Napi::Number>().DoubleValue())};
  }
  float one_minus_beta1 = static_cast<float>(1.0 - beta1);
  float beta2_f = static_cast<float>(beta2);
  float one_minus_beta2 = static_cast<float>(1.0 - beta2);
  float neg_step_size = static_cast<float>(-(lr / (1.0 - std::pow(beta1, step))));
  float bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, step)));
  float eps_f = static_cast<float>(eps);

  const TensorList list = MakeTensorList(std::move(slots));
  int64_t blocks = list.blocks();
  if (blocks == 0) return env.Undefined();
  DeviceTensorList device(env, list);
  uint64_t slots_ptr = device.slots(), first_block = device.first_block();
  int count = device.count();
  void* args[] = {&slots_ptr,       &first_block,   &count,
                  &blocks,          &one_minus_beta1, &beta2_f,
                  &one_minus_beta2, &neg_step_size, &bias_correction2_sqrt,
                  &eps_f};
  Launch(env, Kernel(env, "ft_adamw"), RowGrid(blocks), Blocks(kThreads), 0, args);
  return env.Undefined();
}

}  // namespace

void RegisterOptim(Napi::Env env, Napi::Object cuda) { cuda.Set("adamw", Napi::Function::New(env, AdamW, "adamw")); }

}  // namespace ft::cuda::kernels
