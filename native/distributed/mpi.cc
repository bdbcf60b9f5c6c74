// native.mpi: the process group of CPU processes (torch.distributed's "mpi" backend) on the MPI library found at
// run time. The addon dlopens it, so a build without MPI installed runs anywhere and says what is missing; Open
// MPI (libmpi.so.40) and MPICH (libmpi.so.12) differ in their handles' ABI: Open MPI's communicators, datatypes
// and operations are addresses of global objects, MPICH's are integer constants (its ABI fixes their values).
// Both pass a handle in one integer register, so the function pointers below take them as intptr_t.
// Collectives run on the calling (main) thread and block until every process of the world joins them.
#include <dlfcn.h>
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "binding/registry.h"
#include "common/args.h"
#include "common/dtype.h"

namespace ft {
namespace {

using Handle = intptr_t;

struct Mpi {
  void* library = nullptr;
  std::string name;
  std::string implementation;
  std::string error;  // why it could not be loaded
  int (*initialized)(int*) = nullptr;
  int (*finalized)(int*) = nullptr;
  int (*init_thread)(int*, char***, int, int*) = nullptr;
  int (*finalize)() = nullptr;
  int (*comm_rank)(Handle, int*) = nullptr;
  int (*comm_size)(Handle, int*) = nullptr;
  int (*allreduce)(const void*, void*, int, Handle, Handle, Handle) = nullptr;
  int (*bcast)(void*, int, Handle, int, Handle) = nullptr;
  int (*allgather)(const void*, int, Handle, void*, int, Handle, Handle) = nullptr;
  int (*barrier)(Handle) = nullptr;
  Handle world = 0, byte = 0, float32 = 0, int64 = 0, int32 = 0, sum = 0, max = 0, min = 0;
  void* in_place = nullptr;
};

// MPICH's fixed handle values (its mpi.h).
constexpr Handle kMpichWorld = 0x44000000, kMpichByte = 0x4c00010d, kMpichFloat = 0x4c00040a,
                 kMpichInt64 = 0x4c00083b, kMpichInt = 0x4c000405, kMpichMax = 0x58000001, kMpichMin = 0x58000002,
                 kMpichSum = 0x58000003;
constexpr int kThreadFunneled = 1;  // MPI_THREAD_FUNNELED in both
// MPI counts are ints: larger buffers go in parts.
constexpr int64_t kMaxPart = int64_t{1} << 30;

template <typename F>
bool Bind(Mpi& m, F& slot, const char* symbol) {
  slot = reinterpret_cast<F>(dlsym(m.library, symbol));
  if (slot == nullptr) m.error = m.name + " has no " + symbol;
  return slot != nullptr;
}

bool Open(Mpi& m, const char* name) {
  // Open MPI's plugins resolve the library's symbols globally
  m.library = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
  if (m.library == nullptr) return false;
  m.name = name;
  if (!Bind(m, m.initialized, "MPI_Initialized") || !Bind(m, m.finalized, "MPI_Finalized") ||
      !Bind(m, m.init_thread, "MPI_Init_thread") || !Bind(m, m.finalize, "MPI_Finalize") ||
      !Bind(m, m.comm_rank, "MPI_Comm_rank") || !Bind(m, m.comm_size, "MPI_Comm_size") ||
      !Bind(m, m.allreduce, "MPI_Allreduce") || !Bind(m, m.bcast, "MPI_Bcast") ||
      !Bind(m, m.allgather, "MPI_Allgather") || !Bind(m, m.barrier, "MPI_Barrier")) {
    return true;
  }
  if (void* world = dlsym(m.library, "ompi_mpi_comm_world")) {
    m.implementation = "Open MPI";
    m.world = reinterpret_cast<Handle>(world);
    const char* objects[] = {"ompi_mpi_byte", "ompi_mpi_float", "ompi_mpi_int64_t", "ompi_mpi_int",
                             "ompi_mpi_op_sum", "ompi_mpi_op_max", "ompi_mpi_op_min"};
    Handle* slots[] = {&m.byte, &m.float32, &m.int64, &m.int32, &m.sum, &m.max, &m.min};
    for (int i = 0; i < 7; ++i) {
      void* object = dlsym(m.library, objects[i]);
      if (object == nullptr) {
        m.error = m.name + " has no " + objects[i];
        return true;
      }
      *slots[i] = reinterpret_cast<Handle>(object);
    }
    m.in_place = reinterpret_cast<void*>(1);
  } else {
    m.implementation = "MPICH";
    m.world = kMpichWorld, m.byte = kMpichByte, m.float32 = kMpichFloat, m.int64 = kMpichInt64, m.int32 = kMpichInt;
    m.sum = kMpichSum, m.max = kMpichMax, m.min = kMpichMin;
    m.in_place = reinterpret_cast<void*>(-1);
  }
  return true;
}

// The library, loaded on first use: FINETUNE_MPI_LIBRARY, else Open MPI's, MPICH's, the unversioned name.
Mpi& Library() {
  static Mpi m = [] {
    Mpi found;
    const char* chosen = std::getenv("FINETUNE_MPI_LIBRARY");
    if (chosen != nullptr && *chosen != '\0') {
      if (!Open(found, chosen)) found.error = std::string("FINETUNE_MPI_LIBRARY=") + chosen + " could not be loaded: " + dlerror();
      return found;
    }
    for (const char* name : {"libmpi.so.40", "libmpi.so.12", "libmpi.so"}) {
      if (Open(found, name)) return found;
    }
    found.error = "no MPI library (libmpi.so.40 or libmpi.so.12) was found: install Open MPI (apt-get install "
                  "openmpi-bin) or MPICH, or set FINETUNE_MPI_LIBRARY to its libmpi.so";
    return found;
  }();
  return m;
}

Mpi& Loaded(Napi::Env env) {
  Mpi& m = Library();
  if (!m.error.empty()) throw Napi::Error::New(env, m.error);
  return m;
}

// The library once MPI_Init ran: collectives before init_process_group would abort the process inside MPI.
Mpi& Ready(Napi::Env env) {
  Mpi& m = Loaded(env);
  int initialized = 0, finalized = 0;
  m.initialized(&initialized);
  m.finalized(&finalized);
  if (!initialized || finalized)
    throw Napi::Error::New(env, finalized ? "the MPI process group was destroyed" : "call init_process_group first");
  return m;
}

void Check(Napi::Env env, int code, const char* call) {
  if (code != 0) throw Napi::Error::New(env, std::string(call) + " failed with MPI error " + std::to_string(code));
}

Handle DataType(const Napi::CallbackInfo& info, const Mpi& m, int index) {
  switch (GetInt(info, index, "dtype")) {
    case kF32: return m.float32;
    case kI64: return m.int64;
    case kI32: return m.int32;
    default:
      throw Napi::TypeError::New(info.Env(), "MPI collectives reduce float32, int64 or int32 tensors");
  }
}

// load() -> { available, reason, library, implementation }: whether an MPI library loads, without initialising it.
Napi::Value Load(const Napi::CallbackInfo& info) {
  Mpi& m = Library();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("available", m.error.empty());
  o.Set("reason", m.error);
  o.Set("library", m.name);
  o.Set("implementation", m.implementation);
  return o;
}

// init() -> { rank, size } of the world, initialising MPI (funneled: only the main thread calls it) once.
Napi::Value Init(const Napi::CallbackInfo& info) {
  Mpi& m = Loaded(info.Env());
  int initialized = 0, finalized = 0;
  m.initialized(&initialized);
  m.finalized(&finalized);
  if (finalized) throw Napi::Error::New(info.Env(), "MPI was finalized: a process can join one MPI world only");
  if (!initialized) {
    int provided = 0;
    Check(info.Env(), m.init_thread(nullptr, nullptr, kThreadFunneled, &provided), "MPI_Init_thread");
  }
  int rank = 0, size = 0;
  Check(info.Env(), m.comm_rank(m.world, &rank), "MPI_Comm_rank");
  Check(info.Env(), m.comm_size(m.world, &size), "MPI_Comm_size");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("rank", rank);
  o.Set("size", size);
  return o;
}

// allReduce(buffer, byteOffset, count, dtype, op): count elements in place over the world; op 0 sum, 1 max, 2 min.
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Mpi& m = Ready(info.Env());
  const Handle type = DataType(info, m, 3);
  const size_t item = ItemSize(static_cast<int>(GetInt(info, 3, "dtype")));
  const int64_t count = GetCount(info, 2, "count");
  uint8_t* data = OperandAt<uint8_t>(info, 0, "buffer", "byteOffset", count * static_cast<int64_t>(item));
  const int64_t op_code = GetInt(info, 4, "op");
  if (op_code < 0 || op_code > 2) throw Napi::RangeError::New(info.Env(), "op must be 0 (sum), 1 (max) or 2 (min)");
  const Handle op = op_code == 0 ? m.sum : op_code == 1 ? m.max : m.min;
  for (int64_t done = 0; done < count; done += kMaxPart) {
    const int part = static_cast<int>(std::min(kMaxPart, count - done));
    Check(info.Env(), m.allreduce(m.in_place, data + done * item, part, type, op, m.world), "MPI_Allreduce");
  }
  return info.Env().Undefined();
}

// broadcast(buffer, byteOffset, bytes, root): root's bytes to every process.
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  Mpi& m = Ready(info.Env());
  const int64_t bytes = GetCount(info, 2, "bytes");
  uint8_t* data = OperandAt<uint8_t>(info, 0, "buffer", "byteOffset", bytes);
  const int64_t root = GetCount(info, 3, "root");
  int size = 0;
  Check(info.Env(), m.comm_size(m.world, &size), "MPI_Comm_size");
  // MPI's default error handler would end the whole job on a root outside the world
  if (root >= size) throw Napi::RangeError::New(info.Env(), "broadcast: root " + std::to_string(root) + " is not a rank below " + std::to_string(size));
  for (int64_t done = 0; done < bytes; done += kMaxPart) {
    const int part = static_cast<int>(std::min(kMaxPart, bytes - done));
    Check(info.Env(), m.bcast(data + done, part, m.byte, static_cast<int>(root), m.world), "MPI_Bcast");
  }
  return info.Env().Undefined();
}

// allGather(send, sendByteOffset, bytes, recv, recvByteOffset): every process's bytes, in rank order, into recv.
Napi::Value AllGather(const Napi::CallbackInfo& info) {
  Mpi& m = Ready(info.Env());
  int size = 0;
  Check(info.Env(), m.comm_size(m.world, &size), "MPI_Comm_size");
  const int64_t bytes = GetCount(info, 2, "bytes");
  if (bytes > kMaxPart) throw Napi::RangeError::New(info.Env(), "allGather: at most 2^30 bytes a process");
  const uint8_t* send = OperandAt<uint8_t>(info, 0, "send", "sendByteOffset", bytes);
  uint8_t* recv = OperandAt<uint8_t>(info, 3, "recv", "recvByteOffset", bytes * size);
  const int n = static_cast<int>(bytes);
  Check(info.Env(), m.allgather(send, n, m.byte, recv, n, m.byte, m.world), "MPI_Allgather");
  return info.Env().Undefined();
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  Mpi& m = Ready(info.Env());
  Check(info.Env(), m.barrier(m.world), "MPI_Barrier");
  return info.Env().Undefined();
}

// finalize(): ends MPI where it was initialised and not finalized yet (a process leaving the world must).
Napi::Value Finalize(const Napi::CallbackInfo& info) {
  Mpi& m = Library();
  if (!m.error.empty()) return info.Env().Undefined();
  int initialized = 0, finalized = 0;
  m.initialized(&initialized);
  m.finalized(&finalized);
  if (initialized && !finalized) Check(info.Env(), m.finalize(), "MPI_Finalize");
  return info.Env().Undefined();
}

}  // namespace

void RegisterMpi(Napi::Env env, Napi::Object exports) {
  Napi::Object mpi = Napi::Object::New(env);
  mpi.Set("load", Napi::Function::New(env, Load, "load"));
  mpi.Set("init", Napi::Function::New(env, Init, "init"));
  mpi.Set("allReduce", Napi::Function::New(env, AllReduce, "allReduce"));
  mpi.Set("broadcast", Napi::Function::New(env, Broadcast, "broadcast"));
  mpi.Set("allGather", Napi::Function::New(env, AllGather, "allGather"));
  mpi.Set("barrier", Napi::Function::New(env, Barrier, "barrier"));
  mpi.Set("finalize", Napi::Function::New(env, Finalize, "finalize"));
  exports.Set("mpi", mpi);
}

}  // namespace ft
