// Validation of integer indices that live in device memory (embedding ids, cross-entropy targets): a kernel
// finds the first invalid position, the host reads it back (one synchronisation) and throws the CPU backend's
// RangeError before any kernel could index out of bounds with it.
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
  for (int64 i = GlobalThread(); i < n; i += GridThreads()) {
    const int64 v = ids[i];
    if ((v < 0 || v >= limit) && !(has_allowed && v == allowed)) atomicMin(first, (uint64)i);
  }
}
)CUDA";

}  // namespace

InvalidIndex FindInvalidIndex(Napi::Env env, uint64_t ids, int64_t n, int64_t limit, int64_t allowed,
                              bool has_allowed) {
  InvalidIndex result;
  if (n == 0) return result;
  static const std::string source = ModuleSource(kSource);
  CUfunction fn = GetKernel(env, "index_check", source, "ft_first_invalid_index");
  ScratchBuffer first(env, sizeof(uint64_t));
  MemsetBytes(env, first.ptr(), 0xff, sizeof(uint64_t));
  uint64_t first_ptr = first.ptr();
  int has = has_allowed ? 1 : 0;
  void* args[] = {&n, &ids, &limit, &allowed, &has, &first_ptr};
  Launch(env, fn, GridFor(n), Blocks(kThreads), 0, args);
  uint64_t position = 0;
  CopyDeviceToHost(env, &position, first.ptr(), sizeof(position));
  if (position == ~uint64_t{0}) return result;
  result.position = static_cast<int64_t>(position);
  CopyDeviceToHost(env, &result.value, ids + position * sizeof(int64_t), sizeof(int64_t));
  return result;
}

}  // namespace ft::cuda::kernels
