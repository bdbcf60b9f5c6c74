// N-d strided iteration shared by the copy and elementwise kernels. Dimensions are coalesced first (size-1
// dims dropped, neighbours merged where every operand is contiguous across them), so a contiguous view becomes
// one long row and kernels spend their time in a simple inner loop over a row: a length and one stride per
// operand. Work is split by flat element index, so one huge row is still spread over the threads.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "common/args.h"
#include "cpu/threadpool.h"

namespace ft {

// Below this many elements per chunk the pool's wake-up costs more than the work.
constexpr int64_t kElementwiseGrain = 32768;

template <int N>
struct StridedLayout {
  int rank = 0;  // >= 1 after coalescing; dimension rank - 1 is the row
  int64_t numel = 0;
  int64_t shape[kMaxRank] = {};
  int64_t strides[N][kMaxRank] = {};
};

template <int N>
StridedLayout<N> Coalesce(const std::vector<int64_t>& shape,
                          const std::array<const std::vector<int64_t>*, N>& strides) {
  StridedLayout<N> l;
  l.numel = Numel(shape);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (l.rank > 0) {
      bool mergeable = true;
      for (int k = 0; k < N; ++k)
        mergeable = mergeable && l.strides[k][l.rank - 1] == (*strides[k])[d] * shape[d];
      if (mergeable) {
        l.shape[l.rank - 1] *= shape[d];
        for (int k = 0; k < N; ++k) l.strides[k][l.rank - 1] = (*strides[k])[d];
        continue;
      }
    }
    l.shape[l.rank] = shape[d];
    for (int k = 0; k < N; ++k) l.strides[k][l.rank] = (*strides[k])[d];
    ++l.rank;
  }
  if (l.rank == 0) {  // a scalar, or all dims of size 1
    l.rank = 1;
    l.shape[0] = 1;
    for (int k = 0; k < N; ++k) l.strides[k][0] = 1;
  }
  return l;
}

// Calls row(offsets, n) for consecutive runs of elements along the last dimension; offsets[k] is operand k's
// element offset of the run's first element and the run continues with stride l.strides[k][l.rank - 1].
template <int N, typename Row>
void ForEachRow(const StridedLayout<N>& l, const Row& row) {
  if (l.numel == 0) return;
  const int r = l.rank;
  const int64_t len = l.shape[r - 1];
  ParallelFor(l.numel, kElementwiseGrain, [&](int64_t begin, int64_t end) {
    int64_t idx[kMaxRank];
    int64_t off[N] = {};
    int64_t rem = begin;
    for (int d = r - 1; d >= 0; --d) {
      idx[d] = rem % l.shape[d];
      rem /= l.shape[d];
      for (int k = 0; k < N; ++k) off[k] += idx[d] * l.strides[k][d];
    }
    for (int64_t pos = begin; pos < end;) {
      int64_t n = std::min(end - pos, len - idx[r - 1]);
      row(static_cast<const int64_t*>(off), n);
      pos += n;
      idx[r - 1] += n;
      for (int k = 0; k < N; ++k) off[k] += n * l.strides[k][r - 1];
      for (int d = r - 1; d > 0 && idx[d] == l.shape[d]; --d) {
        for (int k = 0; k < N; ++k) off[k] += l.strides[k][d - 1] - idx[d] * l.strides[k][d];
        idx[d] = 0;
        ++idx[d - 1];
      }
    }
  });
}

}  // namespace ft
