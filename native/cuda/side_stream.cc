// A second stream for work that may run beside the main stream's: a linear layer's backward puts its weight
// gradient's GEMM there while its input gradient's runs on the main stream (src/ops/matmul.ts). At BERT's few
// hundred tokens each of those GEMMs has fewer output tiles than a GPU has SMs, so side by side they can share
// them. By default ("auto") a pair of GEMM shapes goes side by side where timing the pair both ways at its first
// eager run showed it pays (src/ops/side_stream_choice.ts); FINETUNE_CUDA_SIDE_STREAM=1 (or sideStreamGemms("on"))
// puts every pair there, =0 ("off") none.
//
// A fork makes the side stream wait for the main stream's work so far and makes it the current stream (runtime.h's
// Stream(), where launches and GEMMs go); mainStream() makes the main stream current again; a join makes the main
// stream wait for the side's work. From the fork to the join, blocks given back to the allocator that the side's
// work uses (those the fork lists, or all) are held, not reused (allocator.cc's HoldFreedMemory), so the allocator's
// one-stream order still holds: memory that side work may still use is listed free only once the main stream waits
// for that work. A join may be deferred (sideStreamJoin(true)): the side's work then also runs beside what the main
// stream does next, until the next fork, a join, a large allocation or a capture's end makes the join
// (src/backend/side_stream.ts says when the main stream must wait for what the side wrote). In a CUDA graph capture
// the events become the graph's edges (the side stream joins the capture at the fork and leaves it at the join).
#include <napi.h>

#include "common/args.h"
#include "cuda/runtime.h"

namespace ft {
namespace {

using cuda::CUevent;
using cuda::CUstream;

constexpr unsigned kStreamNonBlocking = 0x1;
constexpr unsigned kEventDisableTiming = 0x2;

// The side stream and the fork and join events, made on first use; `forked`: between a fork and its return to the
// main stream; `deferred`: back on the main stream with the join deferred.
struct Side {
  CUstream stream = nullptr;
  CUevent fork = nullptr, join = nullptr;
  bool forked = false;
  bool deferred = false;
};

Side g_side;

Side& GetSide(Napi::Env env) {
  Side& side = g_side;
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

// The main stream waits for the side stream's work so far; memory given back since the fork is free again. The
// state is reset even where the driver refuses (an invalidated capture, which is dropped).
void JoinNow(Napi::Env env, Side& side) {
  cuda::SetCurrentStream(nullptr);
  side.forked = false;
  side.deferred = false;
  const cuda::EventApi& api = cuda::Events(env);
  cuda::CUresult result = api.cuEventRecord(side.join, side.stream);
  const char* what = "cuEventRecord";
  if (result == cuda::kCudaSuccess) {
    result = api.cuStreamWaitEvent(cuda::MainStream(), side.join, 0);
    what = "cuStreamWaitEvent";
  }
  cuda::ReleaseHeldMemory();
  cuda::Check(env, result, what);
}

// sideStreamFork(uses?): the side stream waits for the main stream's work so far (a deferred join is made first) and
// becomes the current stream. `uses`: the device buffers the side's work will read or write, the only memory then
// held when given back before the join; without it all of it is.
Napi::Value Fork(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Side& side = GetSide(env);
  if (side.forked) throw Napi::Error::New(env, "sideStreamFork: the side stream is already forked (join it first)");
  const bool listed = !NoneGiven(info, 0);
  const std::vector<cuda::DeviceBuffer> uses = listed ? cuda::GetDeviceBufferList(info, 0, "uses") : std::vector<cuda::DeviceBuffer>{};
  if (side.deferred) JoinNow(env, side);
  const cuda::EventApi& api = cuda::Events(env);
  cuda::Check(env, api.cuEventRecord(side.fork, cuda::MainStream()), "cuEventRecord");
  cuda::Check(env, api.cuStreamWaitEvent(side.stream, side.fork, 0), "cuStreamWaitEvent");
  side.forked = true;
  cuda::HoldFreedMemory(!listed);
  // (a buffer that is not a block of the cache's start: hold all)
  for (const cuda::DeviceBuffer& b : uses)
    if (!cuda::MarkSideUse(b.ptr)) cuda::HoldFreedMemory(true);
  cuda::SetCurrentStream(side.stream);
  return env.Undefined();
}

// sideStreamMain(): the main stream is the current stream again (the side stream's work still runs beside it).
Napi::Value Main(const Napi::CallbackInfo& info) {
  cuda::EnsureContext(info.Env());
  cuda::SetCurrentStream(nullptr);
  return info.Env().Undefined();
}

// sideStreamJoin(later?): the main stream waits for the side stream's work so far and is the current stream; with
// `later` true only the latter, the wait deferred (see the top). Joins a deferred join when not forked.
Napi::Value Join(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Side& side = GetSide(env);
  const bool later = OptionalFlag(info, 0, "later");
  if (!side.forked && !side.deferred) throw Napi::Error::New(env, "sideStreamJoin: the side stream is not forked");
  if (later) {
    cuda::SetCurrentStream(nullptr);
    side.forked = false;
    side.deferred = true;
  } else {
    JoinNow(env, side);
  }
  return env.Undefined();
}

// sideStreamJoinDeferred(): whether a join was deferred and not yet made.
Napi::Value JoinDeferred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Napi::Boolean::New(env, GetSide(env).deferred);
}

}  // namespace

void cuda::JoinDeferredSideWork(Napi::Env env) {
  if (g_side.deferred) JoinNow(env, g_side);
}

void cuda::ResetSideStream() noexcept {
  g_side.forked = false;
  g_side.deferred = false;
  SetCurrentStream(nullptr);
  ReleaseHeldMemory();
}

void RegisterCudaSideStream(Napi::Env env, Napi::Object cuda) {
  cuda.Set("sideStreamGemms", Napi::Function::New(env, SideStreamGemms, "sideStreamGemms"));
  cuda.Set("sideStreamFork", Napi::Function::New(env, Fork, "sideStreamFork"));
  cuda.Set("sideStreamMain", Napi::Function::New(env, Main, "sideStreamMain"));
  cuda.Set("sideStreamJoin", Napi::Function::New(env, Join, "sideStreamJoin"));
  cuda.Set("sideStreamJoinDeferred", Napi::Function::New(env, JoinDeferred, "sideStreamJoinDeferred"));
}

}  // namespace ft
