// Host-side helpers shared by the CUDA kernel families: launch shapes, the modules' sources, dimension
// coalescing for strided views (the CPU's, so a contiguous view becomes one dimension and its kernel divides
// nothing), and the multi-tensor lists (grad norm, clipping, AdamW) described to the device in one array.
#pragma once
#include <napi.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/args.h"
#include "common/kernel_args.h"
#include "cuda/kernels/device_common.h"
#include "cuda/runtime.h"

namespace ft::cuda::kernels {

constexpr int kThreads = 256;
// Grid-stride loops do the rest: this many blocks of kThreads keep every SM of an H100 busy many times over.
constexpr int64_t kMaxBlocks = int64_t{1} << 16;
// Row kernels (one block per row) loop over rows beyond this grid.
constexpr int64_t kMaxRowBlocks = int64_t{1} << 20;
// Elements per block of the multi-tensor kernels; FT_CHUNK in device_common.h.
constexpr int64_t kChunk = 4096;

inline Dim3 Blocks(int64_t count) {
  Dim3 d;
  d.x = static_cast<unsigned>(count);
  return d;
}

// Blocks of `threads` covering n elements, capped (grid-stride loops cover the rest); 0 for n == 0.
inline Dim3 GridFor(int64_t n, int threads = kThreads) {
  return Blocks(std::min<int64_t>(kMaxBlocks, (n + threads - 1) / threads));
}

inline Dim3 RowGrid(int64_t rows) { return Blocks(std::min<int64_t>(kMaxRowBlocks, rows)); }

// Every view one dimension of unit stride after Coalesce: the *_contiguous kernels apply.
template <size_t N>
bool Contiguous(const std::array<Layout, N>& layouts) {
  return std::all_of(layouts.begin(), layouts.end(), [](const Layout& l) { return l.rank == 1 && l.strides[0] == 1; });
}

// The vectorised kernels' `vector` flag: every address a multiple of its byte count (four elements of its type;
// a null operand counts as aligned).
inline int Aligned(std::initializer_list<std::pair<uint64_t, uint64_t>> address_bytes) {
  return std::all_of(address_bytes.begin(), address_bytes.end(), [](auto p) { return p.first % p.second == 0; });
}

// A thread for every four elements when vectorised, else one for every element.
inline Dim3 ContiguousGrid(int64_t n, int vector) { return GridFor(vector ? (n + 3) / 4 : n); }

// Threads for a row kernel: a warp multiple up to 1024 (the block reductions need whole warps), enough for
// one element per thread on short rows.
inline Dim3 RowThreads(int64_t cols, int64_t max_threads = 1024) {
  return Blocks(std::clamp<int64_t>((cols + 31) / 32 * 32, 32, max_threads));
}

// A family's module: the shared device code, then the family's own.
inline std::string ModuleSource(const char* family_source) { return std::string(kDeviceCommon) + family_source; }

// The CPU's Coalesce (cpu/strided.h) producing one device Layout per operand: size-1 dimensions dropped,
// neighbours merged where every operand is contiguous across them; a scalar becomes shape [1].
template <size_t N>
std::array<Layout, N> Coalesce(const std::vector<int64_t>& shape,
                               const std::array<const std::vector<int64_t>*, N>& strides) {
  std::array<Layout, N> l{};
  int rank = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (rank > 0) {
      bool mergeable = true;
      for (size_t k = 0; k < N; ++k) mergeable = mergeable && l[k].strides[rank - 1] == (*strides[k])[d] * shape[d];
      if (mergeable) {
        for (size_t k = 0; k < N; ++k) {
          l[k].shape[rank - 1] *= shape[d];
          l[k].strides[rank - 1] = (*strides[k])[d];
        }
        continue;
      }
    }
    for (size_t k = 0; k < N; ++k) {
      l[k].shape[rank] = shape[d];
      l[k].strides[rank] = (*strides[k])[d];
    }
    ++rank;
  }
  if (rank == 0) {
    for (size_t k = 0; k < N; ++k) {
      l[k].shape[0] = 1;
      l[k].strides[0] = 1;
    }
    rank = 1;
  }
  for (size_t k = 0; k < N; ++k) l[k].rank = rank;
  return l;
}

// The optional 16-bit copy of a kernel's float32 result that autocast's products read (src/amp/lowp_copy.ts):
// the dtype code (F16 or BF16) at argument `index` (named `name`; -1 where null or absent), then one or more
// outputs, each a device buffer of `count` 16-bit elements from offset 0, or null / absent for none.
inline int LowpDtypeAt(const Napi::CallbackInfo& info, int index, const char* name = "lowpDtype") {
  if (NoneGiven(info, index)) return -1;
  const int64_t dt = GetInt(info, index, name);
  if (dt != kF16 && dt != kBF16) throw Napi::RangeError::New(info.Env(), ArgName(index, name) + " must be float16 or bfloat16");
  return static_cast<int>(dt);
}

inline uint64_t LowpOutputAt(const Napi::CallbackInfo& info, int index, const char* name, int lowp_dtype, int64_t count) {
  if (NoneGiven(info, index)) return 0;
  if (lowp_dtype < 0) throw Napi::TypeError::New(info.Env(), ArgName(index, name) + " needs a lowpDtype");
  return DeviceElements<uint16_t>(info, GetDeviceBuffer(info, index, name), 0, count, name);
}

// A strided float32 (or T) view read from arguments index (buffer), index + 1 (offset), index + 2 (strides),
// bounds-checked against `shape`; returns its device address and fills `strides`.
template <typename T = float>
uint64_t DeviceView(const Napi::CallbackInfo& info, int index, const char* name, const std::vector<int64_t>& shape,
                    std::vector<int64_t>* strides) {
  DeviceBuffer b = GetDeviceBuffer(info, index, name);
  const int64_t off = GetInt(info, index + 1, name);
  *strides = GetIntArray(info, index + 2, name);
  return DeviceElements<T>(info, b, off, StridedExtent(info, shape, *strides, name), name);
}

// A list of contiguous float32 device tensors, as the multi-tensor kernels see it: tensor t owns blocks
// [first_block[t], first_block[t + 1]) of kChunk elements. Written to device memory as `count` Slots and then
// count + 1 block starts.
struct Slot {
  uint64_t data[5];  // the tensor's device addresses (AdamW: param, grad, exp_avg, exp_avg_sq, 16-bit copy or 0)
  int64_t size;
  float scalar;  // per-tensor scalar (AdamW: 1 - lr * weight_decay)
  int32_t code = 0;  // per-tensor code (AdamW: the copy's dtype, kF16 or kBF16)
  // AdamW with deferred rows: the step each row was last brought to (int32 a row) and the row length; 0 for none
  uint64_t last_steps = 0;
  int64_t row_length = 0;
  // the gradient's rows that may be nonzero, a byte a row (0: all zeros), where its maker knew them; 0 for none
  uint64_t row_flags = 0;
};
static_assert(sizeof(Slot) == 80, "Slot must match the kernels' declaration");

struct TensorList {
  std::vector<Slot> slots;
  std::vector<int64_t> first_block;  // slots.size() + 1 entries
  int64_t blocks() const { return first_block.back(); }
};

inline TensorList MakeTensorList(std::vector<Slot> slots) {
  TensorList list;
  list.first_block.push_back(0);
  for (const Slot& s : slots) list.first_block.push_back(list.first_block.back() + (s.size + kChunk - 1) / kChunk);
  list.slots = std::move(slots);
  return list;
}

// bufs, offs and sizes at argument indices 0, 1, 2: contiguous float32 tensors (data[0]), as the list the kernels
// read.
inline TensorList GetList(const Napi::CallbackInfo& info) {
  std::vector<DeviceBuffer> bufs = GetDeviceBufferList(info, 0, "bufs");
  std::vector<int64_t> offs = GetIntArray(info, 1, "offs");
  std::vector<int64_t> sizes = GetIntArray(info, 2, "sizes");
  CheckListLength(info, offs.size(), bufs.size(), 1, "offs");
  CheckListLength(info, sizes.size(), bufs.size(), 2, "sizes");
  std::vector<Slot> slots(bufs.size());
  for (size_t i = 0; i < bufs.size(); ++i) {
    const std::string name = "bufs[" + std::to_string(i) + "]";
    slots[i].data[0] = DeviceElements<float>(info, bufs[i], offs[i], sizes[i], name.c_str());
    slots[i].size = sizes[i];
  }
  return MakeTensorList(std::move(slots));
}

// The gradients' row flags at argument `index` (per tensor a device buffer of a byte a row, 0 where the row is all
// zeros, or null for none; the argument may be absent) for tensors whose slot has its row length: slot row_flags.
inline void SetRowFlags(const Napi::CallbackInfo& info, int index, std::vector<Slot>& slots) {
  if (Omitted(info, index)) return;
  std::vector<bool> present;
  const std::vector<DeviceBuffer> flags = GetDeviceBufferList(info, index, "rowFlags", &present);
  CheckListLength(info, flags.size(), slots.size(), index, "rowFlags");
  for (size_t i = 0; i < slots.size(); ++i) {
    if (!present[i]) continue;
    const std::string label = ArgName(index, "rowFlags") + "[" + std::to_string(i) + "]";
    if (slots[i].row_length <= 0 || slots[i].size % slots[i].row_length != 0)
      throw Napi::RangeError::New(info.Env(), label + ": the tensor has no row length that divides it");
    slots[i].row_flags = DeviceElements<uint8_t>(info, flags[i], 0, slots[i].size / slots[i].row_length, label.c_str());
  }
}

// The list in device memory: the slots, then the block starts (8-byte aligned after 72-byte slots). Scratch
// memory written by a copy on the stream; while capturing a CUDA graph, the graph's constants (a captured copy
// would read the host vector again at every replay).
class DeviceTensorList {
 public:
  DeviceTensorList(Napi::Env env, const TensorList& list) : count_(static_cast<int32_t>(list.slots.size())) {
    const size_t slot_bytes = list.slots.size() * sizeof(Slot);
    std::vector<uint8_t> bytes(slot_bytes + list.first_block.size() * sizeof(int64_t));
    std::memcpy(bytes.data(), list.slots.data(), slot_bytes);
    std::memcpy(bytes.data() + slot_bytes, list.first_block.data(), bytes.size() - slot_bytes);
    if (Capturing()) {
      ptr_ = CaptureConstant(env, bytes.data(), bytes.size());
    } else {
      scratch_.emplace(env, bytes.size());
      ptr_ = scratch_->ptr();
      CopyHostToDevice(env, ptr_, bytes.data(), bytes.size());
    }
  }
  uint64_t slots() const { return ptr_; }
  uint64_t first_block() const { return ptr_ + static_cast<uint64_t>(count_) * sizeof(Slot); }
  int32_t count() const { return count_; }

 private:
  int32_t count_;
  uint64_t ptr_ = 0;
  std::optional<ScratchBuffer> scratch_;
};

// Whether the GELU kernels copy the hot part of a bfloat16 table into shared memory (device_common.h's
// LoadHotTable; FINETUNE_CUDA_HOT_TABLES=0: they look every value up in the table in global memory).
inline bool& HotTablesEnabled() {
  static bool enabled = EnvSwitch("FINETUNE_CUDA_HOT_TABLES", true);
  return enabled;
}

// A float for each bit pattern of a 16-bit dtype (65536 values, 256 KB), one table per dtype, written by the
// family's kernel `build` (arguments: dtype code, table) at the first call and then kept for the life of the
// process. 0 while a CUDA graph is being captured before it exists: a captured build would only run at replay (the
// kernels that look values up compute them where there is no table).
struct LowpTables {
  RawBlock by_dtype[2];  // bfloat16, float16
};
inline uint64_t LowpTable(Napi::Env env, LowpTables& tables, int dt, CUfunction (*kernel)(Napi::Env, const char*),
                          const char* build) {
  RawBlock& table = tables.by_dtype[dt == kF16 ? 1 : 0];
  if (table.ptr != 0 || Capturing()) return table.ptr;
  RawBlock block = TakeDeviceMemory(env, 65536 * sizeof(float));
  uint64_t ptr = block.ptr;
  void* args[] = {&dt, &ptr};
  try {
    Launch(env, kernel(env, build), GridFor(65536), Blocks(kThreads), 0, args);
  } catch (...) {
    GiveDeviceMemory(block);
    throw;
  }
  table = block;
  return table.ptr;
}

// Throws RangeError(message(position, value, limit, allowed)) for the first of n int64 indices at device
// address `ids` outside [0, limit) and, when has_allowed, not equal to `allowed` (index_check.cc).
// Synchronises, except while capturing a CUDA graph: then a replay records the error for the next sync.
void CheckIndices(Napi::Env env, uint64_t ids, int64_t n, int64_t limit, int64_t allowed, bool has_allowed,
                  IndexMessage message);

}  // namespace ft::cuda::kernels
