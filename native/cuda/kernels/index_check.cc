// Validation of integer indices that live in device memory (embedding ids, cross-entropy targets): a kernel
// finds the first invalid position, the host reads it back (one synchronisation) and throws the CPU backend's
// RangeError before any kernel could index out of bounds with it. While a CUDA graph is captured nothing may
// wait, so the check records a bad index in the graph's constants instead and the first sync after the replay
// throws (graphs.cc); the kernels that index skip bad indices themselves, so a replay never reads out of bounds.
#include <napi.h>

#include <cstdint>
#include <string>

#include "cuda/kernels/common.h"

namespace ft::cuda::kernels {
namespace {

constexpr char kSource[] = R"CUDA(
// *first = the smallest i with ids[i] outside [0, limit) (unless has_allowed and ids[i] == allowed); *first must
// start at ~0.
extern "C" __global__ void ft_first_invalid_index(int64 n, const int64* ids, int64 limit, int64 allowed,
                                                  int has_allowed, uint64* first) {
  AwaitPriorGrid();
  for (int64 i = GlobalThread(); i < n; i += GridThreads()) {
    const int64 v = ids[i];
    if ((v < 0 || v >= limit) && !(has_allowed && v == allowed)) atomicMin(first, (uint64)i);
  }
}

// A bad index goes to `record` (RecordBadIndex).
extern "C" __global__ void ft_record_invalid_index(int64 n, const int64* ids, int64 limit, int64 allowed,
                                                   int has_allowed, int64* record) {
  AwaitPriorGrid();
  for (int64 i = GlobalThread(); i < n; i += GridThreads()) {
    const int64 v = ids[i];
    if ((v < 0 || v >= limit) && !(has_allowed && v == allowed)) RecordBadIndex(record, i, v);
  }
}
)CUDA";

}  // namespace

void CheckIndices(Napi::Env env, uint64_t ids, int64_t n, int64_t limit, int64_t allowed, bool has_allowed,
                  IndexMessage message) {
  if (n == 0) return;
  static const std::string source = ModuleSource(kSource);
  int has = has_allowed ? 1 : 0;
  if (Capturing()) {
    uint64_t record = CaptureIndexCheck(env, message, limit, allowed);
    void* args[] = {&n, &ids, &limit, &allowed, &has, &record};
    Launch(env, GetKernel(env, "index_check", source, "ft_record_invalid_index"), GridFor(n), Blocks(kThreads), 0,
           args);
    return;
  }
  CUfunction fn = GetKernel(env, "index_check", source, "ft_first_invalid_index");
  ScratchBuffer first(env, sizeof(uint64_t));
  MemsetBytes(env, first.ptr(), 0xff, sizeof(uint64_t));
  uint64_t first_ptr = first.ptr();
  void* args[] = {&n, &ids, &limit, &allowed, &has, &first_ptr};
  Launch(env, fn, GridFor(n), Blocks(kThreads), 0, args);
  uint64_t position = 0;
  CopyDeviceToHost(env, &position, first.ptr(), sizeof(position));
  if (position == ~uint64_t{0}) return;
  int64_t value = 0;
  CopyDeviceToHost(env, &value, ids + position * sizeof(int64_t), sizeof(int64_t));
  throw Napi::RangeError::New(env, message(static_cast<int64_t>(position), value, limit, allowed));
}

}  // namespace ft::cuda::kernels
