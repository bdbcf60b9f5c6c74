// Each CUDA kernel family registers its entry points on native.cuda under the CPU contract's names
// (src/backend/native.ts); register.cc calls them all.
#pragma once
#include <napi.h>

namespace ft::cuda::kernels {

void RegisterCopy(Napi::Env env, Napi::Object cuda);
void RegisterElementwise(Napi::Env env, Napi::Object cuda);
void RegisterReduce(Napi::Env env, Napi::Object cuda);
void RegisterSoftmax(Napi::Env env, Napi::Object cuda);
void RegisterLayerNorm(Napi::Env env, Napi::Object cuda);
void RegisterEmbedding(Napi::Env env, Napi::Object cuda);
void RegisterCrossEntropy(Napi::Env env, Napi::Object cuda);
void RegisterOptim(Napi::Env env, Napi::Object cuda);
void RegisterRandom(Napi::Env env, Napi::Object cuda);
void RegisterAttention(Napi::Env env, Napi::Object cuda);

}  // namespace ft::cuda::kernels
