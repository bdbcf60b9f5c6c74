// cuda.h's CUlaunchAttribute and CUlaunchConfig, cuLaunchKernelEx's arguments, laid out as the driver reads them,
// without cuda.h: the addon fills them (runtime.cc's Launch) and the fake driver reads them (test/helpers/fake_cuda).
#pragma once

namespace ft::cuda {

constexpr int kLaunchAttributeProgrammaticStreamSerialization = 6;  // CU_LAUNCH_ATTRIBUTE_..._SERIALIZATION

// An id, then (8-byte aligned) a 64-byte union of which programmatic stream serialization reads an int.
struct LaunchAttribute {
  int id;
  char pad[4];
  union {
    char bytes[64];
    int programmatic_stream_serialization;
  } value;
};
static_assert(sizeof(LaunchAttribute) == 72, "CUlaunchAttribute is 72 bytes");

struct LaunchConfigEx {
  unsigned grid_x, grid_y, grid_z, block_x, block_y, block_z, shared_bytes;
  void* stream;
  LaunchAttribute* attributes;
  unsigned attribute_count;
};
static_assert(sizeof(LaunchConfigEx) == 56, "CUlaunchConfig is 56 bytes");

}  // namespace ft::cuda
