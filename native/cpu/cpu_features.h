// What the processor supports, read once; kernels pick their AVX-512 / AVX2 / scalar variant from it.
#pragma once

namespace ft {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bf16 = false;
};

inline const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.avx512f = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    f.avx512bf16 = f.avx512f && __builtin_cpu_supports("avx512bf16");
    return f;
  }();
  return features;
}

}  // namespace ft
