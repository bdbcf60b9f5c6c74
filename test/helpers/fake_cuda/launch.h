// What the fake driver (driver.cc) and a module built by the fake NVRTC (device.h) share.
#pragma once

namespace ftemu {

// What the fake driver passes to a launch; fields the driver reads back are filled on failure.
struct LaunchConfig {
  unsigned grid[3];
  unsigned block[3];
  void* dynamic_shared;  // ends at a guard page (driver.cc)
  unsigned dynamic_shared_bytes;
  unsigned long long launch_index;
  bool (*is_device_pointer)(const void*);
  char error[512];
  // Launched with programmatic dependent launch: every thread must call AwaitPriorGrid (device_common.h).
  bool programmatic;
};

// One kernel as the driver sees it: bind copies the arguments (cuLaunchKernel's `void** params`) into a heap
// tuple, so a launch captured into a graph keeps them; run executes a bound launch; release frees the tuple.
struct KernelEntry {
  void* (*bind)(void** params);
  int (*run)(void* bound, LaunchConfig* config);
  void (*release)(void* bound);
};

}  // namespace ftemu
