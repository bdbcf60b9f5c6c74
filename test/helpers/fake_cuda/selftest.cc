// Checks the emulator itself through the driver and NVRTC entry points native.cuda uses: barriers and shuffles,
// dynamic shared memory, a barrier in divergent code and a host pointer argument (both refused), a race made
// visible, a misaligned vector load, an index past a shared array and a read past the dynamic shared memory (each
// stops the process), compile errors in the program log, direction checks on copies, graph capture and replay, and a
// second stream's work run at the join.
// Prints one line per failed check and exits with their count. Usage: selftest <CUDA_HOME>
#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

int failures = 0;

void Expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

template <typename Fn>
Fn Get(void* lib, const char* name) {
  void* p = dlsym(lib, name);
  if (p == nullptr) std::printf("missing %s\n", name);
  return reinterpret_cast<Fn>(p);
}

constexpr const char* kSource = R"CUDA(
extern "C" __global__ void reverse_block(const float* in, float* out) {
  __shared__ float tile[256];
  tile[threadIdx.x] = in[blockIdx.x * blockDim.x + threadIdx.x];
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = tile[blockDim.x - 1 - threadIdx.x];
}
extern "C" __global__ __launch_bounds__(64) void warp_sums(const float* in, float* out) {
  extern __shared__ float partial[];
  float v = in[threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) out[0] = partial[0] + partial[1];
}
extern "C" __global__ void divergent(float* out) {
  if (threadIdx.x < 16) __syncthreads();
  else out[threadIdx.x] = __shfl_sync(0xffffffffu, 1.0f, 16);
}
struct __align__(16) Vector4 {
  float x, y, z, w;
};
extern "C" __global__ void misaligned(const float* in, float* out) { out[0] = ((const Vector4*)(in + 1))->x; }
extern "C" __global__ void past_the_end(float* out) {
  __shared__ float tile[32];
  tile[threadIdx.x] = 1.0f;
  __syncthreads();
  out[0] = tile[0];
}
extern "C" __global__ void past_dynamic(float* out) {
  extern __shared__ float dynamic[];
  out[0] = dynamic[blockDim.x];
}
extern "C" __global__ void racy(float* out) {
  __shared__ float slot;
  if (threadIdx.x == 0) slot = (float)blockIdx.x;
  out[blockIdx.x * blockDim.x + threadIdx.x] = slot;  // no barrier after the write
}
)CUDA";

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string lib64 = std::string(argv[1]) + "/lib64/";
  void* cuda = dlopen((lib64 + "libcuda.so.1").c_str(), RTLD_NOW | RTLD_LOCAL);
  void* nvrtc = dlopen((lib64 + "libnvrtc.so.13").c_str(), RTLD_NOW | RTLD_LOCAL);
  if (cuda == nullptr || nvrtc == nullptr) return 2;
  using Ptr = std::uint64_t;
  auto cuMemAlloc = Get<int (*)(Ptr*, size_t)>(cuda, "cuMemAlloc_v2");
  auto cuStreamCreate = Get<int (*)(void**, unsigned)>(cuda, "cuStreamCreate");
  auto cuHtoD = Get<int (*)(Ptr, const void*, size_t, void*)>(cuda, "cuMemcpyHtoDAsync_v2");
  auto cuDtoH = Get<int (*)(void*, Ptr, size_t, void*)>(cuda, "cuMemcpyDtoHAsync_v2");
  auto cuMemset = Get<int (*)(Ptr, unsigned char, size_t, void*)>(cuda, "cuMemsetD8Async");
  auto cuModuleLoadData = Get<int (*)(void**, const void*)>(cuda, "cuModuleLoadData");
  auto cuModuleGetFunction = Get<int (*)(void**, void*, const char*)>(cuda, "cuModuleGetFunction");
  auto cuLaunch = Get<int (*)(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void*,
                              void**, void**)>(cuda, "cuLaunchKernel");
  auto cuBeginCapture = Get<int (*)(void*, int)>(cuda, "cuStreamBeginCapture_v2");
  auto cuEndCapture = Get<int (*)(void*, void**)>(cuda, "cuStreamEndCapture");
  auto cuIsCapturing = Get<int (*)(void*, int*)>(cuda, "cuStreamIsCapturing");
  auto cuInstantiate = Get<int (*)(void**, void*, unsigned long long)>(cuda, "cuGraphInstantiateWithFlags");
  auto cuGraphLaunch = Get<int (*)(void*, void*)>(cuda, "cuGraphLaunch");
  auto cuGraphExecDestroy = Get<int (*)(void*)>(cuda, "cuGraphExecDestroy");
  auto cuGraphDestroy = Get<int (*)(void*)>(cuda, "cuGraphDestroy");
  auto cuStreamSynchronize = Get<int (*)(void*)>(cuda, "cuStreamSynchronize");
  auto nvrtcCreateProgram =
      Get<int (*)(void**, const char*, const char*, int, const char* const*, const char* const*)>(nvrtc,
                                                                                                 "nvrtcCreateProgram");
  auto nvrtcCompileProgram = Get<int (*)(void*, int, const char* const*)>(nvrtc, "nvrtcCompileProgram");
  auto nvrtcGetProgramLogSize = Get<int (*)(void*, size_t*)>(nvrtc, "nvrtcGetProgramLogSize");
  auto nvrtcGetProgramLog = Get<int (*)(void*, char*)>(nvrtc, "nvrtcGetProgramLog");
  auto nvrtcGetCUBINSize = Get<int (*)(void*, size_t*)>(nvrtc, "nvrtcGetCUBINSize");
  auto nvrtcGetCUBIN = Get<int (*)(void*, char*)>(nvrtc, "nvrtcGetCUBIN");
  const char* options[] = {"--gpu-architecture=sm_90", "-std=c++17"};

  // A compile error comes back in the log, as NVRTC's would.
  void* bad = nullptr;
  nvrtcCreateProgram(&bad, "extern \"C\" __global__ void f() { undeclared(); }", "broken", 0, nullptr, nullptr);
  Expect(nvrtcCompileProgram(bad, 2, options) == 6, "a compile error is NVRTC_ERROR_COMPILATION");
  size_t log_size = 0;
  nvrtcGetProgramLogSize(bad, &log_size);
  std::string log(log_size, '\0');
  nvrtcGetProgramLog(bad, log.data());
  Expect(log.find("undeclared") != std::string::npos, "the log names the error");

  void* program = nullptr;
  nvrtcCreateProgram(&program, kSource, "selftest", 0, nullptr, nullptr);
  if (nvrtcCompileProgram(program, 2, options) != 0) {
    nvrtcGetProgramLogSize(program, &log_size);
    log.assign(log_size, '\0');
    nvrtcGetProgramLog(program, log.data());
    std::printf("FAILED: compile\n%s\n", log.c_str());
    return 1;
  }
  size_t size = 0;
  nvrtcGetCUBINSize(program, &size);
  std::vector<char> image(size);
  nvrtcGetCUBIN(program, image.data());
  void* module = nullptr;
  Expect(cuModuleLoadData(&module, image.data()) == 0, "the module loads");
  void *reverse = nullptr, *sums = nullptr, *divergent = nullptr, *racy = nullptr, *misaligned = nullptr;
  void *past_the_end = nullptr, *past_dynamic = nullptr;
  cuModuleGetFunction(&misaligned, module, "misaligned");
  cuModuleGetFunction(&past_dynamic, module, "past_dynamic");
  cuModuleGetFunction(&past_the_end, module, "past_the_end");
  cuModuleGetFunction(&reverse, module, "reverse_block");
  cuModuleGetFunction(&sums, module, "warp_sums");
  cuModuleGetFunction(&divergent, module, "divergent");
  cuModuleGetFunction(&racy, module, "racy");
  void* missing = nullptr;
  Expect(cuModuleGetFunction(&missing, module, "nothing") != 0, "an unknown kernel is not found");

  void* stream = nullptr;
  cuStreamCreate(&stream, 1);
  constexpr int kBlocks = 3, kThreads = 256;
  std::vector<float> host(kBlocks * kThreads), back(kBlocks * kThreads);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i);
  Ptr in = 0, out = 0;
  cuMemAlloc(&in, host.size() * 4);
  cuMemAlloc(&out, host.size() * 4);
  Expect(cuHtoD(out, &host[0], 8, stream) == 0, "a host-to-device copy");
  Expect(cuHtoD(in, reinterpret_cast<void*>(out), 8, stream) != 0, "a device source of a host-to-device copy is refused");
  Expect(cuDtoH(back.data(), in + host.size() * 4 - 4, 8, stream) != 0, "a copy past the allocation is refused");
  cuHtoD(in, host.data(), host.size() * 4, stream);

  void* args[] = {&in, &out};
  Expect(cuLaunch(reverse, kBlocks, 1, 1, kThreads, 1, 1, 0, stream, args, nullptr) == 0, "reverse_block runs");
  cuDtoH(back.data(), out, back.size() * 4, stream);
  bool reversed = true;
  for (int b = 0; b < kBlocks; ++b)
    for (int t = 0; t < kThreads; ++t) reversed = reversed && back[b * kThreads + t] == host[b * kThreads + kThreads - 1 - t];
  Expect(reversed, "__syncthreads orders shared memory");

  Expect(cuLaunch(sums, 1, 1, 1, 64, 1, 1, 2 * sizeof(float), stream, args, nullptr) == 0, "warp_sums runs");
  float sum = 0;
  cuDtoH(&sum, out, 4, stream);
  Expect(sum == 63.0f * 64.0f / 2.0f, "shuffles and dynamic shared memory sum 0..63");

  void* out_only[] = {&out};
  Expect(cuLaunch(divergent, 1, 1, 1, 32, 1, 1, 0, stream, out_only, nullptr) != 0, "a divergent barrier fails");
  float* host_pointer = host.data();
  void* host_args[] = {&host_pointer};
  Expect(cuLaunch(divergent, 1, 1, 1, 32, 1, 1, 0, stream, host_args, nullptr) != 0, "a host pointer is refused");
  Expect(cuLaunch(reverse, 1, 70000, 1, 32, 1, 1, 0, stream, args, nullptr) != 0, "grid.y above 65535 is refused");

  // The race shows: threads before thread 0 (every thread on odd blocks, which run in reverse) read the slot
  // before thread 0 writes it.
  cuLaunch(racy, 2, 1, 1, 32, 1, 1, 0, stream, out_only, nullptr);
  cuDtoH(back.data(), out, 64 * 4, stream);
  bool consistent = true;
  for (int i = 0; i < 64; ++i) consistent = consistent && back[i] == static_cast<float>(i / 32);
  Expect(!consistent, "a read before the writer's barrier sees another value");

  // A 16-byte load at an address 4 bytes past one (a GPU faults), 64 threads writing a 32-float shared array (UBSan)
  // and a read just past the launch's dynamic shared memory (its guard page): the emulator stops the process.
  const auto stops = [&](void* kernel, unsigned threads, void** kernel_args, unsigned shared = 0) {
    const pid_t child = fork();
    if (child == 0) {
      std::freopen("/dev/null", "w", stderr);
      cuLaunch(kernel, 1, 1, 1, threads, 1, 1, shared, stream, kernel_args, nullptr);
      cuStreamSynchronize(stream);
      _exit(0);
    }
    int child_status = 0;
    waitpid(child, &child_status, 0);
    return !(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0);
  };
  Expect(stops(misaligned, 1, args), "a misaligned vector load stops the process");
  Expect(stops(past_the_end, 64, out_only), "an index past a shared array stops the process");
  Expect(stops(past_dynamic, 32, out_only, 32 * sizeof(float)), "a read past the dynamic shared memory stops the process");

  // Capture: work is recorded, not run, until the graph is launched; a synchronisation invalidates a capture.
  float seven = 7.0f;
  cuMemset(out, 0, 4, stream);
  Expect(cuBeginCapture(stream, 0) == 0, "capture begins");
  int status = 0;
  cuIsCapturing(stream, &status);
  Expect(status == 1, "the stream reports capturing");
  cuHtoD(out, &seven, 4, stream);
  cuLaunch(sums, 1, 1, 1, 64, 1, 1, 2 * sizeof(float), stream, args, nullptr);
  cuMemset(in, 0, 4, stream);
  void* graph = nullptr;
  Expect(cuEndCapture(stream, &graph) == 0 && graph != nullptr, "capture ends with a graph");
  float first = -1;
  cuDtoH(&first, out, 4, stream);
  Expect(first == 0.0f, "captured work does not run");
  void* exec = nullptr;
  Expect(cuInstantiate(&exec, graph, 0) == 0, "the graph instantiates");
  Expect(cuGraphLaunch(exec, stream) == 0, "the graph launches");
  cuDtoH(&sum, out, 4, stream);
  Expect(sum == 63.0f * 64.0f / 2.0f, "the replay ran the kernel after the copy");
  float zero = -1;
  cuDtoH(&zero, in, 4, stream);
  Expect(zero == 0.0f, "the replay ran the memset");
  cuGraphExecDestroy(exec);
  cuGraphDestroy(graph);
  cuBeginCapture(stream, 0);
  Expect(cuStreamSynchronize(stream) != 0, "synchronising a capturing stream is refused");
  graph = nullptr;
  Expect(cuEndCapture(stream, &graph) == 901 && graph == nullptr, "the invalidated capture gives no graph");

  // A second stream: its work only between a fork (it waits for an event of the first) and a join (the first
  // waits for one of it); a capture must not end with it forked.
  auto cuEventCreate = Get<int (*)(void**, unsigned)>(cuda, "cuEventCreate");
  auto cuEventRecord = Get<int (*)(void*, void*)>(cuda, "cuEventRecord");
  auto cuStreamWaitEvent = Get<int (*)(void*, void*, unsigned)>(cuda, "cuStreamWaitEvent");
  void *side = nullptr, *fork = nullptr, *join = nullptr;
  Expect(cuStreamCreate(&side, 1) == 0 && side != stream, "a second stream");
  cuEventCreate(&fork, 2);
  cuEventCreate(&join, 2);
  Expect(cuMemset(in, 0, 4, side) != 0, "work on the second stream before a fork is refused");
  cuBeginCapture(stream, 0);
  cuEventRecord(fork, stream);
  cuStreamWaitEvent(side, fork, 0);
  Expect(cuMemset(in, 1, 4, side) == 0, "forked, the second stream's work is captured");
  graph = nullptr;
  Expect(cuEndCapture(stream, &graph) == 904 && graph == nullptr, "a capture ending with the second stream forked fails");
  cuBeginCapture(stream, 0);
  cuEventRecord(fork, stream);
  cuStreamWaitEvent(side, fork, 0);
  cuMemset(in, 1, 4, side);
  cuEventRecord(join, side);
  cuStreamWaitEvent(stream, join, 0);
  Expect(cuEndCapture(stream, &graph) == 0 && graph != nullptr, "joined, the capture ends with a graph");
  Expect(cuMemset(in, 0, 4, side) != 0, "after the join, the second stream's work is refused again");
  cuGraphDestroy(graph);
  // Outside a capture the second stream's work runs at the join, after the first's since the fork.
  unsigned char byte = 0;
  cuEventRecord(fork, stream);
  cuStreamWaitEvent(side, fork, 0);
  cuMemset(in, 1, 1, side);
  cuMemset(in, 2, 1, stream);
  cuDtoH(&byte, in, 1, stream);
  Expect(byte == 2, "before the join, the second stream's work has not run");
  cuEventRecord(join, side);
  cuStreamWaitEvent(stream, join, 0);
  cuDtoH(&byte, in, 1, stream);
  Expect(byte == 1, "at the join, the second stream's work runs after the first's");
  return failures;
}
