// native.nccl: the GPU processes' collectives (torch.distributed's "nccl" backend) on NVIDIA's NCCL, loaded at run
// time as the CUDA libraries are (CUDA_HOME, the system loader, Python's nvidia-nccl wheel), so a build without it
// runs anywhere. Each process drives its one visible GPU (device 0, as the rest of native.cuda); the processes meet
// through MPI first (process_group.ts broadcasts the communicator's id from process 0). Collectives are queued on
// the current stream, in order with the kernels around them, on device handles bounded as every kernel's are.
#include <dlfcn.h>
#include <napi.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "binding/registry.h"
#include "common/args.h"
#include "common/dtype.h"
#include "cuda/runtime.h"
#include "cuda/search.h"

namespace ft {
namespace {

using cuda::CUstream;

struct UniqueId {
  char internal[128];
};
using Comm = struct NcclComm*;

// ncclDataType_t and ncclRedOp_t values (nccl.h).
constexpr int kNcclInt8 = 0, kNcclInt32 = 2, kNcclInt64 = 4, kNcclFloat16 = 6, kNcclFloat32 = 7, kNcclBfloat16 = 9;

struct Nccl {
  cuda::Library library;
  int version = 0;
  int (*get_version)(int*) = nullptr;
  int (*get_unique_id)(UniqueId*) = nullptr;
  int (*comm_init_rank)(Comm*, int, UniqueId, int) = nullptr;
  int (*comm_destroy)(Comm) = nullptr;
  int (*all_reduce)(const void*, void*, size_t, int, int, Comm, CUstream) = nullptr;
  int (*broadcast)(const void*, void*, size_t, int, int, Comm, CUstream) = nullptr;
  int (*all_gather)(const void*, void*, size_t, int, Comm, CUstream) = nullptr;
  const char* (*error_string)(int) = nullptr;
  Comm comm = nullptr;
  int rank = 0, size = 0;
};

template <typename F>
bool Bind(Nccl& n, F& slot, const char* symbol) {
  slot = reinterpret_cast<F>(dlsym(n.library.handle, symbol));
  if (slot == nullptr) n.library.error = n.library.path + " has no " + symbol;
  return slot != nullptr;
}

// The library, opened on first use.
Nccl& Library() {
  static Nccl n = [] {
    Nccl found;
    found.library = cuda::OpenFirst({"libnccl.so.2", "libnccl.so"}, cuda::FindSearchFolders());
    if (found.library.handle == nullptr) {
      found.library.error = "NCCL (libnccl.so.2) was not found: install it (the nvidia-nccl-cu13 wheel, or NVIDIA's "
                            "libnccl2 package), or put its folder in LD_LIBRARY_PATH. " + found.library.error;
      return found;
    }
    if (Bind(found, found.get_version, "ncclGetVersion") && Bind(found, found.get_unique_id, "ncclGetUniqueId") &&
        Bind(found, found.comm_init_rank, "ncclCommInitRank") && Bind(found, found.comm_destroy, "ncclCommDestroy") &&
        Bind(found, found.all_reduce, "ncclAllReduce") && Bind(found, found.broadcast, "ncclBroadcast") &&
        Bind(found, found.all_gather, "ncclAllGather") && Bind(found, found.error_string, "ncclGetErrorString")) {
      found.get_version(&found.version);
    }
    return found;
  }();
  return n;
}

Nccl& Loaded(Napi::Env env) {
  Nccl& n = Library();
  if (!n.library.error.empty()) throw Napi::Error::New(env, n.library.error);
  return n;
}

void Check(Napi::Env env, const Nccl& n, int code, const char* call) {
  if (code != 0) throw Napi::Error::New(env, std::string(call) + " failed: " + n.error_string(code) + " (NCCL error " + std::to_string(code) + ")");
}

// The communicator, once init() made it.
Nccl& Joined(Napi::Env env) {
  Nccl& n = Loaded(env);
  if (n.comm == nullptr) throw Napi::Error::New(env, "the NCCL communicator is not made: call init_process_group(\"nccl\") first");
  cuda::EnsureContext(env);
  return n;
}

int DataType(const Napi::CallbackInfo& info, int index) {
  switch (GetInt(info, index, "dtype")) {
    case kF32: return kNcclFloat32;
    case kF16: return kNcclFloat16;
    case kBF16: return kNcclBfloat16;
    case kI64: return kNcclInt64;
    case kI32: return kNcclInt32;
    default: throw Napi::TypeError::New(info.Env(), "NCCL reduces float32, float16, bfloat16, int64 or int32 tensors");
  }
}

// load() -> { available, reason, library, version }
Napi::Value Load(const Napi::CallbackInfo& info) {
  Nccl& n = Library();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("available", n.library.error.empty());
  o.Set("reason", n.library.error);
  o.Set("library", n.library.path);
  o.Set("version", n.version);
  return o;
}

// uniqueId() -> a 128-byte ArrayBuffer: the id process 0 makes and every process passes to init().
Napi::Value GetUniqueId(const Napi::CallbackInfo& info) {
  Nccl& n = Loaded(info.Env());
  cuda::EnsureContext(info.Env());
  Napi::ArrayBuffer id = Napi::ArrayBuffer::New(info.Env(), sizeof(UniqueId));
  Check(info.Env(), n, n.get_unique_id(static_cast<UniqueId*>(id.Data())), "ncclGetUniqueId");
  return id;
}

// init(id, size, rank): joins the communicator of `size` processes on this process's GPU (blocks until all join).
Napi::Value Init(const Napi::CallbackInfo& info) {
  Nccl& n = Loaded(info.Env());
  Buffer id = GetBuffer(info, 0, "id");
  if (id.bytes != sizeof(UniqueId)) throw Napi::RangeError::New(info.Env(), "init: the id must be the 128 bytes uniqueId() made");
  const int64_t size = GetInt(info, 1, "size"), rank = GetInt(info, 2, "rank");
  if (size < 1 || rank < 0 || rank >= size) throw Napi::RangeError::New(info.Env(), "init: rank must be below size");
  if (n.comm != nullptr) throw Napi::Error::New(info.Env(), "init: this process has joined an NCCL communicator already");
  cuda::EnsureContext(info.Env());
  UniqueId unique;
  std::memcpy(&unique, id.data, sizeof(unique));
  Check(info.Env(), n, n.comm_init_rank(&n.comm, static_cast<int>(size), unique, static_cast<int>(rank)), "ncclCommInitRank");
  n.size = static_cast<int>(size);
  n.rank = static_cast<int>(rank);
  return info.Env().Undefined();
}

// allReduce(buffer, offset, count, dtype, op): count elements at element `offset`, in place; op 0 sum, 1 max, 2 min.
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Nccl& n = Joined(info.Env());
  const int dtype = DataType(info, 3);
  const int64_t count = GetCount(info, 2, "count");
  const uint64_t data = cuda::DeviceElementsBytes(info, cuda::GetDeviceBuffer(info, 0, "buffer"), GetInt(info, 1, "offset"), count,
                                                  ItemSize(static_cast<int>(GetInt(info, 3, "dtype"))), "buffer");
  const int64_t op = GetInt(info, 4, "op");
  if (op < 0 || op > 2) throw Napi::RangeError::New(info.Env(), "op must be 0 (sum), 1 (max) or 2 (min)");
  constexpr int kOps[] = {0, 2, 3};  // ncclSum, ncclMax, ncclMin
  void* p = reinterpret_cast<void*>(data);
  Check(info.Env(), n, n.all_reduce(p, p, static_cast<size_t>(count), dtype, kOps[op], n.comm, cuda::Stream()), "ncclAllReduce");
  return info.Env().Undefined();
}

// broadcast(buffer, byteOffset, bytes, root): process root's bytes to every process, in place.
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  Nccl& n = Joined(info.Env());
  const int64_t bytes = GetCount(info, 2, "bytes");
  void* p = reinterpret_cast<void*>(cuda::DeviceOperandAt<uint8_t>(info, 0, "buffer", "byteOffset", bytes));
  const int64_t root = GetCount(info, 3, "root");
  if (root >= n.size) throw Napi::RangeError::New(info.Env(), "broadcast: root " + std::to_string(root) + " is not a rank below " + std::to_string(n.size));
  Check(info.Env(), n, n.broadcast(p, p, static_cast<size_t>(bytes), kNcclInt8, static_cast<int>(root), n.comm, cuda::Stream()), "ncclBroadcast");
  return info.Env().Undefined();
}

// allGather(send, sendByteOffset, bytes, recv, recvByteOffset): every process's bytes into recv, in rank order.
Napi::Value AllGather(const Napi::CallbackInfo& info) {
  Nccl& n = Joined(info.Env());
  const int64_t bytes = GetCount(info, 2, "bytes");
  const void* send = reinterpret_cast<void*>(cuda::DeviceOperandAt<uint8_t>(info, 0, "send", "sendByteOffset", bytes));
  void* recv = reinterpret_cast<void*>(cuda::DeviceOperandAt<uint8_t>(info, 3, "recv", "recvByteOffset", bytes * n.size));
  Check(info.Env(), n, n.all_gather(send, recv, static_cast<size_t>(bytes), kNcclInt8, n.comm, cuda::Stream()), "ncclAllGather");
  return info.Env().Undefined();
}

// destroy(): leaves the communicator (after this process's queued collectives).
Napi::Value Destroy(const Napi::CallbackInfo& info) {
  Nccl& n = Library();
  if (n.comm != nullptr) {
    Comm comm = n.comm;
    n.comm = nullptr;
    Check(info.Env(), n, n.comm_destroy(comm), "ncclCommDestroy");
  }
  return info.Env().Undefined();
}

}  // namespace

void RegisterNccl(Napi::Env env, Napi::Object exports) {
  Napi::Object nccl = Napi::Object::New(env);
  nccl.Set("load", Napi::Function::New(env, Load, "load"));
  nccl.Set("uniqueId", Napi::Function::New(env, GetUniqueId, "uniqueId"));
  nccl.Set("init", Napi::Function::New(env, Init, "init"));
  nccl.Set("allReduce", Napi::Function::New(env, AllReduce, "allReduce"));
  nccl.Set("broadcast", Napi::Function::New(env, Broadcast, "broadcast"));
  nccl.Set("allGather", Napi::Function::New(env, AllGather, "allGather"));
  nccl.Set("destroy", Napi::Function::New(env, Destroy, "destroy"));
  exports.Set("nccl", nccl);
}

}  // namespace ft
