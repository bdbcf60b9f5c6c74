// native.cuda's kernels: every family's entry points, under the CPU contract's names, and how kernels load and
// launch.
#include <napi.h>

#include "binding/registry.h"
#include "common/args.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"
#include "cuda/runtime.h"

namespace ft {
namespace {

// Whether each kernel may start while the one before it in the stream finishes (runtime.h): how the nodes of a
// graph captured from now on follow each other. With a boolean argument, turns that on (where supported) or off.
Napi::Value ProgrammaticLaunch(const Napi::CallbackInfo& info) {
  cuda::EnsureContext(info.Env());
  if (!Omitted(info, 0)) {
    if (!info[0].IsBoolean()) throw Napi::TypeError::New(info.Env(), ArgName(0, "on") + " must be a boolean");
    cuda::SetProgrammaticLaunch(info[0].As<Napi::Boolean>().Value());
  }
  return Napi::Boolean::New(info.Env(), cuda::ProgrammaticLaunch());
}

// The kernel modules loaded since the process started (from NVRTC or its disk cache) and the host seconds that took.
Napi::Value KernelStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::EnsureContext(env);
  const cuda::ModuleLoads loads = cuda::ModuleLoadStats();
  Napi::Object out = Napi::Object::New(env);
  out.Set("modules_loaded", Napi::Number::New(env, static_cast<double>(loads.modules)));
  out.Set("module_load_s", Napi::Number::New(env, loads.seconds));
  return out;
}

// hotTables(enabled?): whether the GELU kernels take the hot part of their tables from shared memory
// (HotTablesEnabled), after setting it when given.
Napi::Value HotTables(const Napi::CallbackInfo& info) {
  cuda::EnsureContext(info.Env());
  return cuda::FlagSetting(info, cuda::kernels::HotTablesEnabled());
}

}  // namespace

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
  cuda.Set("programmaticLaunch", Napi::Function::New(env, ProgrammaticLaunch, "programmaticLaunch"));
  cuda.Set("kernelStats", Napi::Function::New(env, KernelStats, "kernelStats"));
  cuda.Set("hotTables", Napi::Function::New(env, HotTables, "hotTables"));
}

}  // namespace ft
