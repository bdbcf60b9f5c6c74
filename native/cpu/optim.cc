// torch.optim.AdamW (the single-tensor, non-amsgrad path) over a list of contiguous float32 tensors, in one
// call per step. The per-step scalars are computed in double and rounded to float, as torch does with Python
// floats, and the tensor math is float32 in torch's operation order, each step rounded. A parameter may come
// with a 16-bit copy (autocast's operand), which receives the new values rounded to its dtype as a cast rounds.

// No FMA contraction: GCC contracts its vector loop bodies but not always their epilogues, which would make
// results depend on where a thread's chunk starts. Explicitly rounded steps give the same bits everywhere.
#pragma GCC optimize("fp-contract=off")

#include <napi.h>

#include <cmath>
#include <string>
#include <vector>

#include "binding/registry.h"
#include "common/args.h"
#include "common/dtype.h"
#include "common/kernel_args.h"
#include "cpu/threadpool.h"
#include "cpu/vec_math.h"

namespace ft {
namespace {

constexpr int64_t kGrain = 32768;

struct AdamScalars {
  float decay;            // 1 - lr * weight_decay
  float one_minus_beta1;
  float beta2, one_minus_beta2;
  float neg_step_size;    // -lr / (1 - beta1^step)
  float bias_correction2_sqrt;
  float eps;
};

// torch's _single_tensor_adam(w) with decoupled weight decay, one op at a time:
//   param.mul_(1 - lr * wd); exp_avg.lerp_(grad, 1 - beta1);
//   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2);
//   denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps); param.addcdiv_(exp_avg, denom, value=-step_size)
// lerp_ with a weight below 0.5 is exp_avg + w * (grad - exp_avg) (the contract's b1*m + (1-b1)*g up to
// rounding); addcmul_ is self + (value * t1) * t2 and addcdiv_ is self + (value * t1) / t2, as in ATen.
FT_VECTORIZE void AdamWRange(float* p, const float* g, float* m, float* v, int64_t n, AdamScalars s) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float pi = p[i] * s.decay;
    const float mi = m[i] + s.one_minus_beta1 * (gi - m[i]);
    const float vi = v[i] * s.beta2 + s.one_minus_beta2 * gi * gi;
    const float denom = std::sqrt(vi) / s.bias_correction2_sqrt + s.eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + s.neg_step_size * mi / denom;
  }
}

// p[0, n) rounded into the 16-bit copy, while the chunk AdamWRange just wrote is in cache.
void WriteCopy(const float* p, uint16_t* copy, int64_t n, int dtype) {
  if (dtype == kBF16) {
    for (int64_t i = 0; i < n; ++i) copy[i] = F32ToBf16(p[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) copy[i] = F32ToF16(p[i]);
  }
}

// The list at `index`, each holding sizes[i] floats from element offs[i] (from 0 without offsets).
std::vector<float*> Tensors(const Napi::CallbackInfo& info, int index, const char* name,
                            const std::vector<int64_t>& sizes, const std::vector<int64_t>& offs = {}) {
  std::vector<Buffer> bufs = GetBufferList(info, index, name);
  CheckListLength(info, bufs.size(), sizes.size(), index, name);
  std::vector<float*> out;
  for (size_t i = 0; i < bufs.size(); ++i) {
    const std::string label = std::string(name) + "[" + std::to_string(i) + "]";
    out.push_back(Elements<float>(info, bufs[i], offs.empty() ? 0 : offs[i], sizes[i], label.c_str()));
  }
  return out;
}

// Each parameter's 16-bit copy (argument 11, optional: null where none) with their dtypes (argument 12) and
// element offsets (argument 14): the copies' addresses, nullptr where none, and their dtypes.
std::vector<uint16_t*> Copies(const Napi::CallbackInfo& info, const std::vector<int64_t>& sizes, std::vector<int>* dtypes) {
  std::vector<uint16_t*> out(sizes.size(), nullptr);
  if (Omitted(info, 11)) return out;
  std::vector<bool> present;
  const std::vector<Buffer> bufs = GetBufferList(info, 11, "copies", &present);
  CheckListLength(info, bufs.size(), sizes.size(), 11, "copies");
  *dtypes = GetCopyDtypes(info, 12, present);
  const std::vector<int64_t> offs = CopyOffsets(info, sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!present[i]) continue;
    const std::string label = "copies[" + std::to_string(i) + "]";
    out[i] = Elements<uint16_t>(info, bufs[i], offs.empty() ? 0 : offs[i], sizes[i], label.c_str());
  }
  return out;
}

// adamw(params, grads, exp_avgs, exp_avg_sqs, sizes, weightDecays, lr, beta1, beta2, eps, step, [copies,
// copyDtypes, gradOffs, copyOffs])
Napi::Value AdamW(const Napi::CallbackInfo& info) {
  std::vector<int64_t> sizes = GetIntArray(info, 4, "sizes");
  std::vector<float*> params = Tensors(info, 0, "params", sizes);
  std::vector<float*> grads = Tensors(info, 1, "grads", sizes, GradOffsets(info, sizes.size()));
  std::vector<float*> exp_avgs = Tensors(info, 2, "exp_avgs", sizes);
  std::vector<float*> exp_avg_sqs = Tensors(info, 3, "exp_avg_sqs", sizes);
  Napi::Value wd_value = info[5];
  std::vector<double> weight_decays;
  if (!wd_value.IsArray()) throw Napi::TypeError::New(info.Env(), ArgName(5, "weightDecays") + " must be an array");
  Napi::Array wd_array = wd_value.As<Napi::Array>();
  CheckListLength(info, wd_array.Length(), sizes.size(), 5, "weightDecays");
  for (uint32_t i = 0; i < wd_array.Length(); ++i) {
    Napi::Value e = wd_array[i];
    if (!e.IsNumber()) throw Napi::TypeError::New(info.Env(), ArgName(5, "weightDecays") + " must hold numbers");
    weight_decays.push_back(e.As<Napi::Number>().DoubleValue());
  }
  const double lr = GetNumber(info, 6, "lr");
  const double beta1 = GetNumber(info, 7, "beta1");
  const double beta2 = GetNumber(info, 8, "beta2");
  const double eps = GetNumber(info, 9, "eps");
  const double step = GetNumber(info, 10, "step");
  if (!(step >= 1)) throw Napi::RangeError::New(info.Env(), ArgName(10, "step") + " must be >= 1");
  std::vector<int> dtypes(sizes.size(), kBF16);
  const std::vector<uint16_t*> copies = Copies(info, sizes, &dtypes);

  AdamScalars s;
  s.one_minus_beta1 = static_cast<float>(1.0 - beta1);
  s.beta2 = static_cast<float>(beta2);
  s.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  s.neg_step_size = static_cast<float>(-(lr / (1.0 - std::pow(beta1, step))));
  s.bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, step)));
  s.eps = static_cast<float>(eps);
  for (size_t t = 0; t < sizes.size(); ++t) {
    s.decay = static_cast<float>(1.0 - lr * weight_decays[t]);
    float *p = params[t], *g = grads[t], *m = exp_avgs[t], *v = exp_avg_sqs[t];
    uint16_t* copy = copies[t];
    const int copy_dtype = dtypes[t];
    ParallelFor(sizes[t], kGrain, [&](int64_t begin, int64_t end) {
      AdamWRange(p + begin, g + begin, m + begin, v + begin, end - begin, s);
      if (copy != nullptr) WriteCopy(p + begin, copy + begin, end - begin, copy_dtype);
    });
  }
  return info.Env().Undefined();
}

}  // namespace

void RegisterOptim(Napi::Env env, Napi::Object exports) {
  exports.Set("adamw", Napi::Function::New(env, AdamW, "adamw"));
}

}  // namespace ft
