// A fixed pool of worker threads for data-parallel kernels. parallel_for splits [0, n) into contiguous chunks
// of at least `grain` items; the calling thread takes part, so one thread means a plain loop.
#pragma once
#include <cstdint>
#include <functional>

namespace ft {

void SetNumThreads(int n);
int GetNumThreads();
void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

}  // namespace ft
