// native.cuda's kernels: every family's entry points, under the CPU contract's names.
#include <napi.h>

#include "binding/registry.h"
#include "cuda/kernels/register.h"

namespace ft {

void RegisterCudaKernels(Napi::Env env, Napi::Object cuda) {
  cuda::kernels::RegisterCopy(env, cuda);
  cuda::kernels::RegisterElementwise(env, cuda);
  cuda::kernels::RegisterReduce(env, cuda);
  cuda::kernels::RegisterSoftmax(env, cuda);
  cuda::kernels::RegisterLayerNorm(env, cuda);
  cuda::kernels::RegisterEmbedding(env, cuda);
  cuda::kernels::RegisterCrossEntropy(env, cuda);
  cuda::kernels::RegisterOptim(env, cuda);
  cuda::kernels::RegisterRandom(env, cuda);
  cuda::kernels::RegisterAttention(env, cuda);
}

}  // namespace ft
