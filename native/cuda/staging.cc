// Host-to-device copies through pinned staging memory (runtime.h: StageHostToDevice).
//
// From pageable memory, cuMemcpyHtoDAsync may wait for the stream before it returns: the driver stages the bytes
// itself, in stream order. A training step's input copies would then make the host wait for the previous step's
// kernels (or graph), and the GPU wait for the host's next step: their times add up instead of overlapping. So a
// small copy's bytes are first copied on the host into a ring of pinned memory, from which the copy really is
// asynchronous; an event recorded after it tells when its part of the ring may be written again (PyTorch's pinned
// host allocator records events the same way). The caller may free its buffer as soon as this returns.
// Large copies (loading weights) go straight from the caller's memory: they are rare and the ring stays small.
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "cuda/runtime.h"

namespace ft::cuda {
namespace {

using CUevent = struct CUevent_st*;
constexpr unsigned kEventDisableTiming = 0x2;
constexpr size_t kRingBytes = size_t{4} << 20;
constexpr size_t kLargestStaged = kRingBytes / 4;
constexpr size_t kAlignment = 256;

struct StagingApi {
  CUresult (*cuMemHostAlloc)(void** p, size_t bytes, unsigned flags) = nullptr;
  CUresult (*cuEventCreate)(CUevent* event, unsigned flags) = nullptr;
  CUresult (*cuEventRecord)(CUevent event, CUstream stream) = nullptr;
  CUresult (*cuEventSynchronize)(CUevent event) = nullptr;
};

// A staged copy still in flight: its bytes sit at ring offsets [start, start + bytes) of lap `start / kRingBytes`
// (starts count up for good; the ring position is start % kRingBytes).
struct InFlight {
  uint64_t start;
  CUevent done;
};

struct Ring {
  bool tried = false;
  StagingApi api;
  char* memory = nullptr;  // null: no pinned memory could be had, every copy goes direct
  uint64_t next = 0;       // where the next copy's bytes go, counted like InFlight::start
  std::deque<InFlight> in_flight;  // oldest first
  std::vector<CUevent> idle_events;
};

Ring g_ring;

// Pinned memory is an optimisation: a driver without it, or a machine out of lockable memory, copies directly.
void StartRing() {
  Ring& r = g_ring;
  r.tried = true;
  StagingApi& a = r.api;
  if (!ResolveDriverSymbol("cuMemHostAlloc", a.cuMemHostAlloc) || !ResolveDriverSymbol("cuEventCreate", a.cuEventCreate) ||
      !ResolveDriverSymbol("cuEventRecord", a.cuEventRecord) || !ResolveDriverSymbol("cuEventSynchronize", a.cuEventSynchronize))
    return;
  void* memory = nullptr;
  if (a.cuMemHostAlloc(&memory, kRingBytes, 0) == kCudaSuccess) r.memory = static_cast<char*>(memory);
}

// Room for `bytes` in one piece of the ring, once the copies that last read it have finished.
uint64_t Reserve(Napi::Env env, size_t bytes) {
  Ring& r = g_ring;
  uint64_t start = r.next;
  if (start % kRingBytes + bytes > kRingBytes) start += kRingBytes - start % kRingBytes;
  // The copies from the last lap's [start, start + bytes) started before start + bytes - kRingBytes; in-flight
  // copies are in order, so waiting for the newest of those waits for them all.
  while (!r.in_flight.empty() && r.in_flight.front().start + kRingBytes < start + bytes) {
    const InFlight oldest = r.in_flight.front();
    r.in_flight.pop_front();
    r.idle_events.push_back(oldest.done);
    Check(env, r.api.cuEventSynchronize(oldest.done), "cuEventSynchronize (staging memory)");
  }
  r.next = start + (bytes + kAlignment - 1) / kAlignment * kAlignment;
  return start;
}

CUevent TakeEvent(Napi::Env env) {
  Ring& r = g_ring;
  if (!r.idle_events.empty()) {
    CUevent event = r.idle_events.back();
    r.idle_events.pop_back();
    return event;
  }
  CUevent event = nullptr;
  Check(env, r.api.cuEventCreate(&event, kEventDisableTiming), "cuEventCreate (staging memory)");
  return event;
}

}  // namespace

void StageHostToDevice(Napi::Env env, CUdeviceptr dst, const void* src, size_t bytes) {
  Ring& r = g_ring;
  if (!r.tried) StartRing();
  if (r.memory == nullptr || bytes > kLargestStaged) {
    Check(env, Api().cuMemcpyHtoDAsync_v2(dst, src, bytes, Stream()), "cuMemcpyHtoDAsync");
    return;
  }
  const uint64_t start = Reserve(env, bytes);
  CUevent done = TakeEvent(env);
  char* staged = r.memory + start % kRingBytes;
  std::memcpy(staged, src, bytes);
  Check(env, Api().cuMemcpyHtoDAsync_v2(dst, staged, bytes, Stream()), "cuMemcpyHtoDAsync (staging memory)");
  const CUresult recorded = r.api.cuEventRecord(done, Stream());
  if (recorded != kCudaSuccess) {
    // Without its event the copy's bytes must not be overwritten before it ran: wait for it here.
    Api().cuStreamSynchronize(Stream());
    r.idle_events.push_back(done);
    Check(env, recorded, "cuEventRecord (staging memory)");
  }
  r.in_flight.push_back(InFlight{start, done});
}

}  // namespace ft::cuda
