// Each kernel family registers its entry points on the addon's exports.
#pragma once
#include <napi.h>

namespace ft {

void RegisterMemory(Napi::Env env, Napi::Object exports);
void RegisterGemm(Napi::Env env, Napi::Object exports);
void RegisterCopy(Napi::Env env, Napi::Object exports);
void RegisterElementwise(Napi::Env env, Napi::Object exports);
void RegisterReduce(Napi::Env env, Napi::Object exports);
void RegisterSoftmax(Napi::Env env, Napi::Object exports);
void RegisterLayerNorm(Napi::Env env, Napi::Object exports);
void RegisterEmbedding(Napi::Env env, Napi::Object exports);
void RegisterCrossEntropy(Napi::Env env, Napi::Object exports);
void RegisterOptim(Napi::Env env, Napi::Object exports);
void RegisterRandom(Napi::Env env, Napi::Object exports);
void RegisterCuda(Napi::Env env, Napi::Object exports);
// native.mpi: the CPU processes' process group on the MPI library loaded at run time (native/distributed/mpi.cc).
void RegisterMpi(Napi::Env env, Napi::Object exports);
// native.nccl: the GPU processes' collectives on NCCL loaded at run time (native/distributed/nccl.cc).
void RegisterNccl(Napi::Env env, Napi::Object exports);

// native.cuda: the same kernel contract on device handles. The addon creates the `cuda` object once; each family
// adds its functions to it (native/cuda/memory.cc, graphs.cc, events.cc, gemm.cc, kernels/register.cc).
void RegisterCudaMemory(Napi::Env env, Napi::Object cuda);
void RegisterCudaGraphs(Napi::Env env, Napi::Object cuda);
void RegisterCudaEvents(Napi::Env env, Napi::Object cuda);
void RegisterCudaSideStream(Napi::Env env, Napi::Object cuda);
void RegisterCudaGemm(Napi::Env env, Napi::Object cuda);
void RegisterCudaKernels(Napi::Env env, Napi::Object cuda);

}  // namespace ft
