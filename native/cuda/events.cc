// torch.cuda.Event and the stream's query (src/backend/cuda_streams.ts) on the one stream all work goes to.
//
// A JS Event holds a driver event in an External, tagged so that no other External passes for one, and the
// garbage collector destroys it: the driver keeps an event that is destroyed while pending until its work has
// run, so no finalizer waits for the GPU. Recording is refused during a capture: the driver would record it as a
// graph node, and a replay's events are not the timing events the user holds.
#include <napi.h>

#include <functional>
#include <string>

#include "common/args.h"
#include "cuda/runtime.h"

namespace ft {
namespace {

using cuda::CUevent;
using cuda::CUresult;
using cuda::CUstream;
using cuda::EventApi;

constexpr unsigned kEventBlockingSync = 0x1;
constexpr unsigned kEventDisableTiming = 0x2;
constexpr CUresult kNotReady = 600;

constexpr napi_type_tag kEventTag = {0x7a1c3e5b9d2f4a60ull, 0x8e4b2d6f1c3a5e79ull};

struct Event {
  CUevent handle = nullptr;
  CUresult (*destroy)(CUevent event) = nullptr;  // for the finalizer, which must not throw
};

Event& EventArg(const Napi::CallbackInfo& info, int index) {
  Napi::Value value = info[index];
  if (!value.IsExternal() || !value.As<Napi::External<Event>>().CheckTypeTag(&kEventTag))
    throw Napi::TypeError::New(info.Env(), ArgName(index, "event") + " must be an event from eventCreate");
  return *value.As<Napi::External<Event>>().Data();
}

// Whether `result` says done (true) or not yet (false); other results throw.
bool Ready(Napi::Env env, CUresult result, const char* what) {
  if (result == kNotReady) return false;
  cuda::Check(env, result, what);
  return true;
}

// eventCreate(enableTiming, blocking): a new event; `blocking` makes eventSynchronize sleep instead of spinning.
Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const EventApi& api = cuda::Events(env);
  const bool timing = GetBool(info, 0, "enableTiming");
  const bool blocking = GetBool(info, 1, "blocking");
  auto* event = new Event{nullptr, api.cuEventDestroy_v2};
  const unsigned flags = (timing ? 0 : kEventDisableTiming) | (blocking ? kEventBlockingSync : 0);
  const CUresult result = api.cuEventCreate(&event->handle, flags);
  if (result != cuda::kCudaSuccess) {
    delete event;
    cuda::Check(env, result, "cuEventCreate");
  }
  auto external = Napi::External<Event>::New(env, event, [](Napi::Env, Event* e) {
    e->destroy(e->handle);
    delete e;
  });
  external.TypeTag(&kEventTag);
  return external;
}

// eventRecord(event): the event completes once the work queued so far has run.
Napi::Value Record(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const EventApi& api = cuda::Events(env);
  Event& event = EventArg(info, 0);
  cuda::ForbidDuringCapture(env, "recording a CUDA event");
  cuda::Check(env, api.cuEventRecord(event.handle, cuda::Stream()), "cuEventRecord");
  return env.Undefined();
}

Napi::Value Query(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const EventApi& api = cuda::Events(env);
  Event& event = EventArg(info, 0);
  return Napi::Boolean::New(env, Ready(env, api.cuEventQuery(event.handle), "cuEventQuery"));
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const EventApi& api = cuda::Events(env);
  Event& event = EventArg(info, 0);
  cuda::ForbidDuringCapture(env, "waiting for a CUDA event");
  cuda::Check(env, api.cuEventSynchronize(event.handle), "cuEventSynchronize");
  return env.Undefined();
}

// eventElapsedTime(start, end): milliseconds from start to end, both recorded with timing and completed.
Napi::Value ElapsedTime(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const EventApi& api = cuda::Events(env);
  Event& start = EventArg(info, 0);
  Event& end = EventArg(info, 1);
  float ms = 0;
  if (!Ready(env, api.cuEventElapsedTime(&ms, start.handle, end.handle), "cuEventElapsedTime"))
    throw Napi::Error::New(env, "elapsed_time: the events have not completed yet: call synchronize() on the end event first");
  return Napi::Number::New(env, ms);
}

// streamQuery(): whether all work queued on the stream has run.
Napi::Value StreamQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const EventApi& api = cuda::Events(env);
  cuda::ForbidDuringCapture(env, "querying the CUDA stream");
  return Napi::Boolean::New(env, Ready(env, api.cuStreamQuery(cuda::Stream()), "cuStreamQuery"));
}

}  // namespace

const cuda::EventApi& cuda::Events(Napi::Env env) {
  static EventApi api;
  static bool complete = false;
  EnsureContext(env);
  if (!complete) {
    EventApi a;
    complete = ResolveDriverSymbol("cuEventCreate", a.cuEventCreate) && ResolveDriverSymbol("cuEventRecord", a.cuEventRecord) &&
               ResolveDriverSymbol("cuEventQuery", a.cuEventQuery) && ResolveDriverSymbol("cuEventSynchronize", a.cuEventSynchronize) &&
               ResolveDriverSymbol("cuEventElapsedTime", a.cuEventElapsedTime) &&
               ResolveDriverSymbol("cuEventDestroy_v2", a.cuEventDestroy_v2) && ResolveDriverSymbol("cuStreamQuery", a.cuStreamQuery) &&
               ResolveDriverSymbol("cuStreamWaitEvent", a.cuStreamWaitEvent);
    if (!complete) throw Napi::Error::New(env, "the CUDA driver lacks the event functions (cuEventElapsedTime, cuStreamWaitEvent ...): update the NVIDIA driver");
    api = a;
  }
  return api;
}

double cuda::StreamMilliseconds(Napi::Env env, const std::function<void()>& work) {
  const EventApi& api = Events(env);
  ForbidDuringCapture(env, "timing work on the CUDA stream");
  CUevent start = nullptr, end = nullptr;
  CUresult result = api.cuEventCreate(&start, kEventBlockingSync);
  if (result == kCudaSuccess) result = api.cuEventCreate(&end, kEventBlockingSync);
  const auto destroy = [&] {
    if (start != nullptr) api.cuEventDestroy_v2(start);
    if (end != nullptr) api.cuEventDestroy_v2(end);
  };
  float ms = 0;
  try {
    Check(env, result, "cuEventCreate");
    Check(env, api.cuEventRecord(start, Stream()), "cuEventRecord");
    work();
    Check(env, api.cuEventRecord(end, Stream()), "cuEventRecord");
    Check(env, api.cuEventSynchronize(end), "cuEventSynchronize");
    Check(env, api.cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime");
  } catch (...) {
    destroy();
    throw;
  }
  destroy();
  return ms;
}

void RegisterCudaEvents(Napi::Env env, Napi::Object cuda) {
  cuda.Set("eventCreate", Napi::Function::New(env, Create, "eventCreate"));
  cuda.Set("eventRecord", Napi::Function::New(env, Record, "eventRecord"));
  cuda.Set("eventQuery", Napi::Function::New(env, Query, "eventQuery"));
  cuda.Set("eventSynchronize", Napi::Function::New(env, Synchronize, "eventSynchronize"));
  cuda.Set("eventElapsedTime", Napi::Function::New(env, ElapsedTime, "eventElapsedTime"));
  cuda.Set("streamQuery", Napi::Function::New(env, StreamQuery, "streamQuery"));
}

}  // namespace ft
