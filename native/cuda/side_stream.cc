// A second stream for work that may run beside the main stream's: a linear layer's backward puts its weight
// gradient's GEMM there while its input gradient's runs on the main stream (src/ops/matmul.ts). At BERT's few
// hundred tokens each of those GEMMs has fewer output tiles than a GPU has SMs, so side by side they can share
// them. By default ("auto") a pair of GEMM shapes goes side by side where timing the pair both ways at its first
// eager run showed it pays (src/ops/side_stream_choice.ts); FINETUNE_CUDA_SIDE_STREAM=1 (or sideStreamGemms("on"))
// puts every pair there, =0 ("off") none.
//
// A fork makes the side stream wait for the main stream's work so far and makes it the current stream (runtime.h's
// Stream(), where launches and GEMMs go); mainStream() makes the main stream current again; a join makes the main
// stream wait for the side's work. Each fork is joined before anything that either stream's work reads is freed,
// so the allocator's one-stream order still holds: what the main stream frees after a join, no side work still
// uses. In a CUDA graph capture the events become the graph's edges (the side stream joins the capture at the fork
// and leaves it at the join).
#include <napi.h>

#include "common/args.h"
#include "cuda/runtime.h"

namespace ft {
namespace {

using cuda::CUevent;
using cuda::CUstream;

constexpr unsigned kStreamNonBlocking = 0x1;
constexpr unsigned kEventDisableTiming = 0x2;

// The side stream and the fork and join events, made on first use; `forked`: between a fork and its join.
struct Side {
  CUstream stream = nullptr;
  CUevent fork = nullptr, join = nullptr;
  bool forked = false;
};

Side& GetSide(Napi::Env env) {
  static Side side;
  const cuda::EventApi& api = cuda::Events(env);
  if (side.stream == nullptr) {
    CUstream stream = nullptr;
    cuda::Check(env, cuda::Api().cuStreamCreate(&stream, kStreamNonBlocking), "cuStreamCreate");
    cuda::Check(env, api.cuEventCreate(&side.fork, kEventDisableTiming), "cuEventCreate");
    cuda::Check(env, api.cuEventCreate(&side.join, kEventDisableTiming), "cuEventCreate");
    side.stream = stream;
  }
  return side;
}

// 0 off, 1 on, 2 auto (cuda::ModeSetting).
int& GemmsMode() {
  static int mode = cuda::EnvMode("FINETUNE_CUDA_SIDE_STREAM");
  return mode;
}

// sideStreamGemms(mode?): whether linear layers' backward puts the weight gradient's GEMM on the side stream: "on",
// "off", or "auto" (where it was timed to pay), after setting it when given.
Napi::Value SideStreamGemms(const Napi::CallbackInfo& info) {
  cuda::EnsureContext(info.Env());
  return cuda::ModeSetting(info, GemmsMode(), "sideStreamGemms");
}

// sideStreamFork(): the side stream waits for the main stream's work so far and becomes the current stream.
Napi::Value Fork(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Side& side = GetSide(env);
  if (side.forked) throw Napi::Error::New(env, "sideStreamFork: the side stream is already forked (join it first)");
  const cuda::EventApi& api = cuda::Events(env);
  cuda::Check(env, api.cuEventRecord(side.fork, cuda::MainStream()), "cuEventRecord");
  cuda::Check(env, api.cuStreamWaitEvent(side.stream, side.fork, 0), "cuStreamWaitEvent");
  side.forked = true;
  cuda::SetCurrentStream(side.stream);
  return env.Undefined();
}

// sideStreamMain(): the main stream is the current stream again (the side stream's work still runs beside it).
Napi::Value Main(const Napi::CallbackInfo& info) {
  cuda::EnsureContext(info.Env());
  cuda::SetCurrentStream(nullptr);
  return info.Env().Undefined();
}

// sideStreamJoin(): the main stream waits for the side stream's work so far and is the current stream.
Napi::Value Join(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Side& side = GetSide(env);
  if (!side.forked) throw Napi::Error::New(env, "sideStreamJoin: the side stream is not forked");
  cuda::SetCurrentStream(nullptr);
  side.forked = false;
  const cuda::EventApi& api = cuda::Events(env);
  cuda::Check(env, api.cuEventRecord(side.join, side.stream), "cuEventRecord");
  cuda::Check(env, api.cuStreamWaitEvent(cuda::MainStream(), side.join, 0), "cuStreamWaitEvent");
  return env.Undefined();
}

}  // namespace

void RegisterCudaSideStream(Napi::Env env, Napi::Object cuda) {
  cuda.Set("sideStreamGemms", Napi::Function::New(env, SideStreamGemms, "sideStreamGemms"));
  cuda.Set("sideStreamFork", Napi::Function::New(env, Fork, "sideStreamFork"));
  cuda.Set("sideStreamMain", Napi::Function::New(env, Main, "sideStreamMain"));
  cuda.Set("sideStreamJoin", Napi::Function::New(env, Join, "sideStreamJoin"));
}

}  // namespace ft
