// CUDA torch.optim.AdamW over a list of contiguous float32 tensors in one launch: native/cpu/optim.cc's
// contract. The per-step scalars are computed on the host in double and rounded to float exactly as the CPU
// does, and every float operation is rounded explicitly in the CPU's (torch's) order, so both backends produce
// the same bits. The tensors reach the kernel as one device array of slots (param, grad, exp_avg, exp_avg_sq,
// size, 1 - lr * weight_decay) and, where the parameter has one, its 16-bit copy (autocast's operand), which
// receives the new value rounded to its dtype in the same pass: no cast of the weights at the next forward.
// adamwDevice is the same update with the step's scalars read from a small device buffer that adamwScalars fills
// before each step: a CUDA graph that captured it follows the learning-rate schedule and the bias corrections at
// every replay.
//
// Deferred rows (an embedding table's: a batch's gradient is zero in all rows but its tokens'): a tensor given a
// row length updates only the rows whose gradient has a nonzero (or NaN) value; each row keeps the step it was last
// brought to, and when its gradient is next nonzero, or at adamwCatchUp, it first takes the zero-gradient updates
// of the steps it missed, with each step's scalars from a ring the kernel writes as it runs. The same float
// operations in the same order as the dense update: the same bits, where an untouched row's 30 bytes a value of
// traffic each step (a third of bert-base's word embeddings' 0.7 GB) becomes the 4 of reading its gradient.
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/args.h"
#include "common/kernel_args.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"

namespace ft::cuda::kernels {
namespace {

constexpr char kSource[] = R"CUDA(
// One element's update: param.mul_(decay = 1 - lr * wd); exp_avg.lerp_(grad, 1 - beta1);
// exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2); denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps;
// param.addcdiv_(exp_avg, denom, -step_size). A clip factor below 1 first scales the gradient as clip_grad_norm_
// would have (grad * factor, rounded once).
struct AdamWStep {
  float decay, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bias_correction2_sqrt, eps, clip;
};
__device__ __forceinline__ void AdamWElement(const AdamWStep& s, float g, float& p, float& m, float& v) {
  const float gi = s.clip < 1.0f ? __fmul_rn(g, s.clip) : g;
  const float pi = __fmul_rn(p, s.decay);
  m = __fadd_rn(m, __fmul_rn(s.one_minus_beta1, __fsub_rn(gi, m)));
  v = __fadd_rn(__fmul_rn(v, s.beta2), __fmul_rn(__fmul_rn(s.one_minus_beta2, gi), gi));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), s.bias_correction2_sqrt), s.eps);
  p = __fadd_rn(pi, __fdiv_rn(__fmul_rn(s.neg_step_size, m), denom));
}

// Block b's chunk of its tensor: AdamWElement over it; the 16-bit copy, when present, gets the new param rounded as
// a cast would round it. Where the chunk's four arrays are 16-byte aligned (and the copy 8-byte) a thread moves four
// elements per load, so that more bytes are in flight: the update runs at the memory's bandwidth.
__device__ __forceinline__ void AdamWChunk(const Slot& slot, int64 begin, const AdamWStep& s) {
  float* p = (float*)slot.data[0];
  const float* g = (const float*)slot.data[1];
  float* m = (float*)slot.data[2];
  float* v = (float*)slot.data[3];
  uint16* copy = (uint16*)slot.data[4];
  const int64 end = min(slot.size, begin + FT_CHUNK);
  int64 i = begin + threadIdx.x;
  const uint64 at16 = (uint64)(p + begin) | (uint64)(g + begin) | (uint64)(m + begin) | (uint64)(v + begin);
  if (at16 % 16 == 0 && (copy == 0 || (uint64)(copy + begin) % 8 == 0)) {
    const int64 quads = (end - begin) / 4;
    for (int64 q = threadIdx.x; q < quads; q += blockDim.x) {
      const int64 k = begin + 4 * q;
      Float4 pv = *(const Float4*)(p + k), mv = *(const Float4*)(m + k), vv = *(const Float4*)(v + k);
      const Float4 gv = *(const Float4*)(g + k);
#pragma unroll
      for (int j = 0; j < 4; ++j) AdamWElement(s, gv.v[j], pv.v[j], mv.v[j], vv.v[j]);
      *(Float4*)(p + k) = pv;
      *(Float4*)(m + k) = mv;
      *(Float4*)(v + k) = vv;
      if (copy != 0) StoreLowp4(copy + k, slot.code, pv.v[0], pv.v[1], pv.v[2], pv.v[3]);
    }
    i = begin + 4 * quads + threadIdx.x;
  }
  for (; i < end; i += blockDim.x) {
    float pi = p[i], mi = m[i], vi = v[i];
    AdamWElement(s, g[i], pi, mi, vi);
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
    if (copy != 0) copy[i] = F32ToLowp(pi, slot.code);
  }
}

// A step's scalars as the ring of deferred rows keeps them (written by ft_adamw_device as it runs step k, at
// k % ring_steps): what AdamWStep needs beyond the betas and eps.
struct RingEntry {
  float neg_step_size, bias_correction2_sqrt, decay;
};

// The zero-gradient updates of steps from..to (inclusive) of one element, with their scalars from the ring.
__device__ __forceinline__ void CatchUp(AdamWStep s, const RingEntry* ring, int ring_steps, int from, int to, float& p,
                                        float& m, float& v) {
  s.clip = 1.0f;
  for (int k = from; k <= to; ++k) {
    const RingEntry e = ring[k % ring_steps];
    s.neg_step_size = e.neg_step_size;
    s.bias_correction2_sqrt = e.bias_correction2_sqrt;
    s.decay = e.decay;
    AdamWElement(s, 0.0f, p, m, v);
  }
}

// Element e of p, m, v (and the 16-bit copy) brought from step `from` to `to` with zero gradients and then, where g
// is given, through this step's update with g[e]; stored back.
__device__ __forceinline__ void CatchUpElement(const AdamWStep& s, const RingEntry* ring, int ring_steps, int from,
                                               int to, const float* g, int64 e, float* p, float* m, float* v,
                                               uint16* copy, int copy_code) {
  float pi = p[e], mi = m[e], vi = v[e];
  CatchUp(s, ring, ring_steps, from, to, pi, mi, vi);
  if (g != 0) AdamWElement(s, g[e], pi, mi, vi);
  p[e] = pi;
  m[e] = mi;
  v[e] = vi;
  if (copy != 0) copy[e] = F32ToLowp(pi, copy_code);
}

// The rows of a deferred-row tensor that start in the chunk at `begin` (rows of at least 32 values: at most
// DEFERRED_ROWS of them). With `step` > 0 (ft_adamw_device) the rows with a nonzero gradient catch up to step - 1
// and take this step; with step == 0 (ft_adamw_catch_up) the rows behind `target` catch up to it. A row's last step
// is written after every thread has read it. Threads walk the rows' values keeping their row index (no division).
// With the gradient's row flags the rows flagged take the step and no gradient is scanned: a flagged row whose
// gradient is all zeros gets the bits of the zero-gradient updates it would otherwise catch up on later.
#define DEFERRED_ROWS (FT_CHUNK / 32 + 1)
__device__ void DeferredRowsChunk(const Slot& slot, int64 begin, const AdamWStep& s, int step, int target,
                                  const RingEntry* ring, int ring_steps) {
  __shared__ int taken[DEFERRED_ROWS];
  const int64 cols = slot.row_length;
  const int64 r0 = (begin + cols - 1) / cols, r1 = min(slot.size / cols, (begin + FT_CHUNK + cols - 1) / cols);
  const int rows = r1 > r0 ? (int)(r1 - r0) : 0;
  float* p = (float*)slot.data[0];
  const float* g = (const float*)slot.data[1];
  float* m = (float*)slot.data[2];
  float* v = (float*)slot.data[3];
  uint16* copy = (uint16*)slot.data[4];
  int* last = (int*)slot.last_steps + r0;
  const int64 e0 = r0 * cols, e1 = r1 * cols;
  const int first_row = (int)(threadIdx.x / cols);
  const int64 first_col = threadIdx.x % cols;
  const unsigned char* flags = (const unsigned char*)slot.row_flags;
  for (int i = threadIdx.x; i < rows; i += blockDim.x)
    taken[i] = step > 0 ? flags != 0 && flags[r0 + i] != 0 : last[i] < target;
  __syncthreads();
  if (step > 0 && flags == 0) {
    int i = first_row;
    for (int64 e = e0 + threadIdx.x, c = first_col; e < e1; e += blockDim.x) {
      if (g[e] != 0.0f) taken[i] = 1;
      for (c += blockDim.x; c >= cols; c -= cols) ++i;
    }
    __syncthreads();
  }
  const int upto = step > 0 ? step - 1 : target;
  int i = first_row;
  for (int64 e = e0 + threadIdx.x, c = first_col; e < e1; e += blockDim.x) {
    if (taken[i]) CatchUpElement(s, ring, ring_steps, last[i] + 1, upto, step > 0 ? g : 0, e, p, m, v, copy, slot.code);
    for (c += blockDim.x; c >= cols; c -= cols) ++i;
  }
  __syncthreads();
  for (int k = threadIdx.x; k < rows; k += blockDim.x) {
    if (taken[k]) last[k] = step > 0 ? step : target;
  }
  __syncthreads();  // taken[] serves the block's next chunk
}

extern "C" __global__ void ft_adamw(const Slot* slots, const int64* first_block, int count, int64 blocks,
                                    float one_minus_beta1, float beta2, float one_minus_beta2, float neg_step_size,
                                    float bias_correction2_sqrt, float eps) {
  AwaitPriorGrid();
  for (int64 b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int t = FindTensor(first_block, count, b);
    const AdamWStep s{slots[t].scalar, one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bias_correction2_sqrt,
                      eps, 1.0f};
    AdamWChunk(slots[t], (b - first_block[t]) * FT_CHUNK, s);
  }
}

// scalars = [-step_size, bias_correction2_sqrt, decay of tensor 0, decay of tensor 1, ..., the step (int32 bits)]
// (adamwScalars); clip, when not null, is clip_grad_norm_'s factor (clipGradNorm with a factor output), applied
// here instead. ring (null without deferred rows): ring_steps RingEntry, then the last step run (int32), which
// block 0 writes, with this step's entry from the decay of tensor `deferred` (one group's tensors share it); the
// other blocks read only earlier steps' entries.
extern "C" __global__ void ft_adamw_device(const Slot* slots, const int64* first_block, int count, int64 blocks,
                                           float one_minus_beta1, float beta2, float one_minus_beta2,
                                           const float* scalars, float eps, const float* clip, RingEntry* ring,
                                           int ring_steps, int deferred) {
  AwaitPriorGrid();
  const float neg_step_size = scalars[0], bias_correction2_sqrt = scalars[1];
  const float factor = clip == 0 ? 1.0f : *clip;
  const int step = __float_as_int(scalars[2 + count]);
  if (ring != 0 && blockIdx.x == 0 && threadIdx.x == 0) {
    ring[step % ring_steps] = RingEntry{neg_step_size, bias_correction2_sqrt, scalars[2 + deferred]};
    *(int*)(ring + ring_steps) = step;
  }
  for (int64 b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int t = FindTensor(first_block, count, b);
    const AdamWStep s{scalars[2 + t], one_minus_beta1, beta2, one_minus_beta2, neg_step_size, bias_correction2_sqrt,
                      eps, factor};
    const int64 begin = (b - first_block[t]) * FT_CHUNK;
    if (slots[t].row_length > 0) DeferredRowsChunk(slots[t], begin, s, step, 0, ring, ring_steps);
    else AdamWChunk(slots[t], begin, s);
  }
}

// The rows an embedding lookup is about to read (ids[0..n), rows outside [0, rows) skipped: the lookup refuses
// them) brought to the last step run (the ring's last int): the block of an id that first raises its row's last
// step catches the row up; other ids of the same row find it raised.
extern "C" __global__ void ft_adamw_catch_up_rows(const int64* ids, int64 n, int64 rows, int64 cols, float* p, float* m,
                                                  float* v, uint16* copy, int copy_code, int* last,
                                                  const RingEntry* ring, int ring_steps, float one_minus_beta1,
                                                  float beta2, float one_minus_beta2, float eps) {
  AwaitPriorGrid();
  __shared__ int from;
  const int target = *(const int*)(ring + ring_steps);
  const AdamWStep s{1.0f, one_minus_beta1, beta2, one_minus_beta2, 0.0f, 1.0f, eps, 1.0f};
  for (int64 i = blockIdx.x; i < n; i += gridDim.x) {
    const int64 r = ids[i];
    if (r < 0 || r >= rows) continue;
    if (threadIdx.x == 0) from = atomicMax(last + r, target) + 1;
    __syncthreads();
    const int first = from;
    __syncthreads();  // `from` serves the next id
    if (first > target) continue;
    for (int64 c = threadIdx.x; c < cols; c += blockDim.x) {
      CatchUpElement(s, ring, ring_steps, first, target, 0, r * cols + c, p, m, v, copy, copy_code);
    }
  }
}

// Every row of the deferred-row tensors brought to step `target`: the zero-gradient updates of the steps since
// its last, with the ring's scalars (adamwCatchUp).
extern "C" __global__ void ft_adamw_catch_up(const Slot* slots, const int64* first_block, int count, int64 blocks,
                                             float one_minus_beta1, float beta2, float one_minus_beta2, float eps,
                                             const RingEntry* ring, int ring_steps, int target) {
  AwaitPriorGrid();
  const AdamWStep s{1.0f, one_minus_beta1, beta2, one_minus_beta2, 0.0f, 1.0f, eps, 1.0f};
  for (int64 b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int t = FindTensor(first_block, count, b);
    DeferredRowsChunk(slots[t], (b - first_block[t]) * FT_CHUNK, s, 0, target, ring, ring_steps);
  }
}
)CUDA";

CUfunction Kernel(Napi::Env env, const char* name) {
  static const std::string source = ModuleSource(kSource);
  return GetKernel(env, "optim", source, name);
}

// The device addresses of list argument `index`, each holding sizes[i] floats from element offs[i] (from 0
// without offsets).
std::vector<uint64_t> Tensors(const Napi::CallbackInfo& info, int index, const char* name,
                              const std::vector<int64_t>& sizes, const std::vector<int64_t>& offs = {}) {
  std::vector<DeviceBuffer> bufs = GetDeviceBufferList(info, index, name);
  CheckListLength(info, bufs.size(), sizes.size(), index, name);
  std::vector<uint64_t> out;
  for (size_t i = 0; i < bufs.size(); ++i) {
    const std::string label = std::string(name) + "[" + std::to_string(i) + "]";
    out.push_back(DeviceElements<float>(info, bufs[i], offs.empty() ? 0 : offs[i], sizes[i], label.c_str()));
  }
  return out;
}

// The weight decays at argument `index`: n numbers.
std::vector<double> WeightDecays(const Napi::CallbackInfo& info, int index, size_t n) {
  Napi::Env env = info.Env();
  Napi::Value value = info[index];
  if (!value.IsArray()) throw Napi::TypeError::New(env, ArgName(index, "weightDecays") + " must be an array");
  Napi::Array array = value.As<Napi::Array>();
  CheckListLength(info, array.Length(), n, index, "weightDecays");
  std::vector<double> out(n);
  for (uint32_t i = 0; i < n; ++i) {
    Napi::Value e = array[i];
    if (!e.IsNumber()) throw Napi::TypeError::New(env, ArgName(index, "weightDecays") + " must hold numbers");
    out[i] = e.As<Napi::Number>().DoubleValue();
  }
  return out;
}

// The step's scalars, computed in double and rounded once, exactly as the CPU does.
struct StepScalars {
  float neg_step_size, bias_correction2_sqrt;
};

// lr, beta1 and beta2 at arguments lr_index.., the step count at step_index.
StepScalars StepScalarsAt(const Napi::CallbackInfo& info, int lr_index, int step_index) {
  const double lr = GetNumber(info, lr_index, "lr");
  const double beta1 = GetNumber(info, lr_index + 1, "beta1");
  const double beta2 = GetNumber(info, lr_index + 2, "beta2");
  const double step = GetNumber(info, step_index, "step");
  if (!(step >= 1)) throw Napi::RangeError::New(info.Env(), ArgName(step_index, "step") + " must be >= 1");
  return StepScalars{static_cast<float>(-(lr / (1.0 - std::pow(beta1, step)))),
                     static_cast<float>(std::sqrt(1.0 - std::pow(beta2, step)))};
}

float Decay(double lr, double weight_decay) { return static_cast<float>(1.0 - lr * weight_decay); }

// beta1, beta2 and eps at arguments index.. as the kernels take them (rounded once from double, as on the CPU).
struct Moments {
  float one_minus_beta1, beta2, one_minus_beta2, eps;
};
Moments MomentsAt(const Napi::CallbackInfo& info, int index) {
  const double beta1 = GetNumber(info, index, "beta1");
  const double beta2 = GetNumber(info, index + 1, "beta2");
  return Moments{static_cast<float>(1.0 - beta1), static_cast<float>(beta2), static_cast<float>(1.0 - beta2),
                 static_cast<float>(GetNumber(info, index + 2, "eps"))};
}

// The optional argument `index`: each parameter's 16-bit copy or null, sizes[i] elements of the dtype given at
// index + 1 from the element offsets at argument offs_index (copyOffs); written to the slots (data[4], code).
void SetCopies(const Napi::CallbackInfo& info, int index, int offs_index, const std::vector<int64_t>& sizes,
               std::vector<Slot>& slots) {
  if (Omitted(info, index)) return;
  std::vector<bool> present;
  const std::vector<DeviceBuffer> bufs = GetDeviceBufferList(info, index, "copies", &present);
  CheckListLength(info, bufs.size(), sizes.size(), index, "copies");
  const std::vector<int> dtypes = GetCopyDtypes(info, index + 1, present);
  const std::vector<int64_t> offs = OptionalOffsets(info, offs_index, "copyOffs", sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!present[i]) continue;
    const std::string label = "copies[" + std::to_string(i) + "]";
    slots[i].data[4] = DeviceElements<uint16_t>(info, bufs[i], offs.empty() ? 0 : offs[i], sizes[i], label.c_str());
    slots[i].code = dtypes[i];
  }
}

// The four tensor lists at arguments 0..3 with their sizes (argument 4), and the copies at `copies_index`, as
// kernel slots.
TensorList Lists(const Napi::CallbackInfo& info, const std::vector<int64_t>& sizes, int copies_index) {
  const std::vector<uint64_t> params = Tensors(info, 0, "params", sizes);
  const std::vector<uint64_t> grads = Tensors(info, 1, "grads", sizes, GradOffsets(info, sizes.size()));
  const std::vector<uint64_t> exp_avgs = Tensors(info, 2, "exp_avgs", sizes);
  const std::vector<uint64_t> exp_avg_sqs = Tensors(info, 3, "exp_avg_sqs", sizes);
  std::vector<Slot> slots(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i)
    slots[i] = Slot{{params[i], grads[i], exp_avgs[i], exp_avg_sqs[i], 0}, sizes[i], 0.0f};
  SetCopies(info, copies_index, 14, sizes, slots);
  return MakeTensorList(std::move(slots));
}

// Rows shorter than this are not deferred: a chunk then holds at most DEFERRED_ROWS (the kernel's shared flags).
constexpr int64_t kMinDeferredRow = 32;

// The deferred rows at arguments index (rowLengths: a row length per tensor, 0 for a dense update) and index + 1
// (lastSteps: per deferred tensor an int32 a row, null for the others), written to the slots. Returns the first
// deferred tensor's index, or -1 when there is none (the argument absent or all lengths 0).
int SetDeferredRows(const Napi::CallbackInfo& info, int index, std::vector<Slot>& slots) {
  if (Omitted(info, index)) return -1;
  const std::vector<int64_t> lengths = GetIntArray(info, index, "rowLengths");
  CheckListLength(info, lengths.size(), slots.size(), index, "rowLengths");
  std::vector<bool> present;
  const std::vector<DeviceBuffer> lasts = GetDeviceBufferList(info, index + 1, "lastSteps", &present);
  CheckListLength(info, lasts.size(), slots.size(), index + 1, "lastSteps");
  int first = -1;
  for (size_t i = 0; i < slots.size(); ++i) {
    const int64_t cols = lengths[i];
    if (cols == 0) continue;
    const std::string label = ArgName(index, "rowLengths") + "[" + std::to_string(i) + "]";
    if (cols < kMinDeferredRow || slots[i].size % cols != 0)
      throw Napi::RangeError::New(info.Env(), label + " = " + std::to_string(cols) + " must be at least " +
                                                  std::to_string(kMinDeferredRow) + " and divide the tensor's " +
                                                  std::to_string(slots[i].size) + " elements");
    if (!present[i])
      throw Napi::TypeError::New(info.Env(), ArgName(index + 1, "lastSteps") + "[" + std::to_string(i) +
                                                 "] must be a CUDA device buffer: the tensor has deferred rows");
    const std::string last_label = "lastSteps[" + std::to_string(i) + "]";
    slots[i].last_steps = DeviceElements<int32_t>(info, lasts[i], 0, slots[i].size / cols, last_label.c_str());
    slots[i].row_length = cols;
    if (first < 0) first = static_cast<int>(i);
  }
  return first;
}

// The ring of the deferred rows' step scalars at argument `index`: three floats a step, ring_steps steps, then the
// last step run (int32).
struct Ring {
  uint64_t ptr;
  int ring_steps;
};
Ring RingAt(const Napi::CallbackInfo& info, int index) {
  const DeviceBuffer buffer = GetDeviceBuffer(info, index, "ring");
  const int64_t words = static_cast<int64_t>(buffer.bytes / sizeof(float));
  const int64_t steps = (words - 1) / 3;
  if (words < 4 || (words - 1) % 3 != 0 || steps > (int64_t{1} << 30))
    throw Napi::RangeError::New(info.Env(), ArgName(index, "ring") + " must hold 3 float32 a step (1 to 2^30 steps), then one int32");
  return Ring{DeviceElements<float>(info, buffer, 0, words, "ring"), static_cast<int>(steps)};
}

// adamw(params, grads, exp_avgs, exp_avg_sqs, sizes, weightDecays, lr, beta1, beta2, eps, step, [copies,
// copyDtypes, gradOffs, copyOffs]): native/cpu/optim.cc's adamw.
Napi::Value AdamW(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  const std::vector<int64_t> sizes = GetIntArray(info, 4, "sizes");
  TensorList list = Lists(info, sizes, 11);
  const std::vector<double> weight_decays = WeightDecays(info, 5, sizes.size());
  const double lr = GetNumber(info, 6, "lr");
  Moments b = MomentsAt(info, 7);
  StepScalars step = StepScalarsAt(info, 6, 10);
  for (size_t i = 0; i < sizes.size(); ++i) list.slots[i].scalar = Decay(lr, weight_decays[i]);

  int64_t blocks = list.blocks();
  if (blocks == 0) return env.Undefined();
  DeviceTensorList device(env, list);
  uint64_t slots_ptr = device.slots(), first_block = device.first_block();
  int count = device.count();
  void* args[] = {&slots_ptr,         &first_block,        &count,
                  &blocks,            &b.one_minus_beta1,  &b.beta2,
                  &b.one_minus_beta2, &step.neg_step_size, &step.bias_correction2_sqrt,
                  &b.eps};
  Launch(env, Kernel(env, "ft_adamw"), RowGrid(blocks), Blocks(kThreads), 0, args);
  return env.Undefined();
}

// adamwScalars(scalars, lr, beta1, beta2, step, weightDecays): writes adamwDevice's scalars for one step
// ([-step_size, bias_correction2_sqrt, 1 - lr * weightDecays[i]..., as float32, then the step as int32]) with a
// copy on the stream.
Napi::Value AdamWScalars(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  DeviceBuffer buffer = GetDeviceBuffer(info, 0, "scalars");
  const double lr = GetNumber(info, 1, "lr");
  StepScalars step = StepScalarsAt(info, 1, 4);
  Napi::Value wd = info[5];
  const std::vector<double> weight_decays =
      WeightDecays(info, 5, wd.IsArray() ? wd.As<Napi::Array>().Length() : 0);
  const double step_count = GetNumber(info, 4, "step");
  if (step_count > INT32_MAX) throw Napi::RangeError::New(env, ArgName(4, "step") + " must be below 2^31");
  std::vector<float> values{step.neg_step_size, step.bias_correction2_sqrt};
  for (double w : weight_decays) values.push_back(Decay(lr, w));
  const int32_t step_bits = static_cast<int32_t>(step_count);
  values.push_back(0.0f);
  std::memcpy(&values.back(), &step_bits, sizeof(step_bits));
  const uint64_t at = DeviceElements<float>(info, buffer, 0, static_cast<int64_t>(values.size()), "scalars");
  CopyHostToDevice(env, at, values.data(), values.size() * sizeof(float));
  return env.Undefined();
}

// adamwDevice(params, grads, exp_avgs, exp_avg_sqs, sizes, scalars, beta1, beta2, eps, [clip, clipOff, copies,
// copyDtypes, gradOffs, copyOffs, rowLengths, lastSteps, ring, rowFlags]): adamw with the step's scalars read from
// `scalars` (adamwScalars) when the kernel runs, and the gradients scaled by the float32 clip factor at clip[clipOff]
// when it is below 1 (clipGradNorm's factor output). Tensors with a row length defer their zero-gradient rows (the
// kernels' note above), with `ring`, and with their gradient's row flags (a byte a row) read no gradient to find
// them; the tensors of a call share one weight decay.
Napi::Value AdamWDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  const std::vector<int64_t> sizes = GetIntArray(info, 4, "sizes");
  TensorList list = Lists(info, sizes, 11);
  int deferred = SetDeferredRows(info, 15, list.slots);
  Ring ring{0, 0};
  if (deferred >= 0) ring = RingAt(info, 17);
  SetRowFlags(info, 18, list.slots);
  uint64_t scalars = DeviceElements<float>(info, GetDeviceBuffer(info, 5, "scalars"), 0,
                                           static_cast<int64_t>(sizes.size()) + 3, "scalars");
  Moments b = MomentsAt(info, 6);
  uint64_t clip = Omitted(info, 9) ? 0 : DeviceOperandAt<float>(info, 9, "clip", "clipOff", 1);
  int64_t blocks = list.blocks();
  if (blocks == 0) return env.Undefined();
  DeviceTensorList device(env, list);
  uint64_t slots_ptr = device.slots(), first_block = device.first_block();
  int count = device.count();
  void* args[] = {&slots_ptr, &first_block, &count, &blocks,   &b.one_minus_beta1, &b.beta2,        &b.one_minus_beta2,
                  &scalars,   &b.eps,       &clip,  &ring.ptr, &ring.ring_steps,   &deferred};
  Launch(env, Kernel(env, "ft_adamw_device"), RowGrid(blocks), Blocks(kThreads), 0, args);
  return env.Undefined();
}

// adamwCatchUp(params, exp_avgs, exp_avg_sqs, sizes, rowLengths, lastSteps, ring, target, beta1, beta2, eps,
// [copies, copyDtypes, copyOffs]): the deferred rows of adamwDevice's tensors brought to step `target` (the last
// step adamwDevice ran), as the dense update would have left them; tensors without a row length are not read.
Napi::Value AdamWCatchUp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  const std::vector<int64_t> sizes = GetIntArray(info, 3, "sizes");
  const std::vector<uint64_t> params = Tensors(info, 0, "params", sizes);
  const std::vector<uint64_t> exp_avgs = Tensors(info, 1, "exp_avgs", sizes);
  const std::vector<uint64_t> exp_avg_sqs = Tensors(info, 2, "exp_avg_sqs", sizes);
  std::vector<Slot> slots(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) slots[i] = Slot{{params[i], 0, exp_avgs[i], exp_avg_sqs[i], 0}, sizes[i], 0.0f};
  SetCopies(info, 11, 13, sizes, slots);
  if (SetDeferredRows(info, 4, slots) < 0) return env.Undefined();
  Ring ring = RingAt(info, 6);
  const double target_number = GetNumber(info, 7, "target");
  if (!(target_number >= 0 && target_number <= INT32_MAX && target_number == static_cast<int32_t>(target_number)))
    throw Napi::RangeError::New(env, ArgName(7, "target") + " must be a step count (an integer from 0 to 2^31 - 1)");
  int target = static_cast<int>(target_number);
  Moments b = MomentsAt(info, 8);
  // Dense tensors take no blocks
  std::vector<Slot> deferred;
  for (const Slot& s : slots) if (s.row_length > 0) deferred.push_back(s);
  const TensorList list = MakeTensorList(std::move(deferred));
  int64_t blocks = list.blocks();
  if (blocks == 0) return env.Undefined();
  DeviceTensorList device(env, list);
  uint64_t slots_ptr = device.slots(), first_block = device.first_block();
  int count = device.count();
  void* args[] = {&slots_ptr,         &first_block, &count,    &blocks,          &b.one_minus_beta1, &b.beta2,
                  &b.one_minus_beta2, &b.eps,       &ring.ptr, &ring.ring_steps, &target};
  Launch(env, Kernel(env, "ft_adamw_catch_up"), RowGrid(blocks), Blocks(kThreads), 0, args);
  return env.Undefined();
}

// adamwCatchUpRows(ids, idsOff, n, param, exp_avg, exp_avg_sq, cols, lastSteps, ring, beta1, beta2, eps, [copy,
// copyDtype]): the rows of one deferred-row tensor (int64 ids, contiguous from idsOff) brought to the last step
// adamwDevice ran, before a lookup reads them.
Napi::Value AdamWCatchUpRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t n = GetCount(info, 2, "n");
  uint64_t ids = DeviceOperandAt<int64_t>(info, 0, "ids", "idsOff", n);
  int64_t cols = GetCount(info, 6, "cols");
  const DeviceBuffer last_buffer = GetDeviceBuffer(info, 7, "lastSteps");
  int64_t rows = static_cast<int64_t>(last_buffer.bytes / sizeof(int32_t));
  uint64_t last = DeviceElements<int32_t>(info, last_buffer, 0, rows, "lastSteps");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  uint64_t p = DeviceElements<float>(info, GetDeviceBuffer(info, 3, "param"), 0, numel, "param");
  uint64_t m = DeviceElements<float>(info, GetDeviceBuffer(info, 4, "exp_avg"), 0, numel, "exp_avg");
  uint64_t v = DeviceElements<float>(info, GetDeviceBuffer(info, 5, "exp_avg_sq"), 0, numel, "exp_avg_sq");
  Ring ring = RingAt(info, 8);
  Moments b = MomentsAt(info, 9);
  int copy_code = LowpDtypeAt(info, 13, "copyDtype");
  uint64_t copy = LowpOutputAt(info, 12, "copy", copy_code, numel);
  if (n == 0) return env.Undefined();
  void* args[] = {&ids, &n, &rows, &cols, &p, &m, &v, &copy, &copy_code, &last, &ring.ptr, &ring.ring_steps,
                  &b.one_minus_beta1, &b.beta2, &b.one_minus_beta2, &b.eps};
  Launch(env, Kernel(env, "ft_adamw_catch_up_rows"), RowGrid(n), Blocks(kThreads), 0, args);
  return env.Undefined();
}

}  // namespace

void RegisterOptim(Napi::Env env, Napi::Object cuda) {
  cuda.Set("adamw", Napi::Function::New(env, AdamW, "adamw"));
  cuda.Set("adamwScalars", Napi::Function::New(env, AdamWScalars, "adamwScalars"));
  cuda.Set("adamwDevice", Napi::Function::New(env, AdamWDevice, "adamwDevice"));
  cuda.Set("adamwCatchUp", Napi::Function::New(env, AdamWCatchUp, "adamwCatchUp"));
  cuda.Set("adamwCatchUpRows", Napi::Function::New(env, AdamWCatchUpRows, "adamwCatchUpRows"));
}

}  // namespace ft::cuda::kernels
