// The fake libnccl.so.2 of the emulated toolkit: the NCCL calls the addon makes, done by the processes' MPI world
// (which the addon joins first, its libmpi loaded with global symbols; Open MPI's handles) on the fake device memory,
// queued on the fake stream so that they run in order with the kernels around them. ncclCommInitRank checks that
// every process passed the same id and its MPI rank, so a broken exchange of the id fails here as on NCCL.
#include <dlfcn.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/half_bits.h"

namespace {

FT_HALF_BITS(inline, std::uint16_t, std::uint32_t)

constexpr int kSuccess = 0, kSystemError = 2, kInvalidArgument = 4, kInvalidUsage = 5;
constexpr int kInt8 = 0, kUint8 = 1, kInt32 = 2, kUint32 = 3, kInt64 = 4, kUint64 = 5, kFloat16 = 6, kFloat32 = 7,
              kFloat64 = 8, kBfloat16 = 9;

using Handle = void*;
struct Mpi {
  int (*allreduce)(const void*, void*, int, Handle, Handle, Handle) = nullptr;
  int (*bcast)(void*, int, Handle, int, Handle) = nullptr;
  int (*allgather)(const void*, int, Handle, void*, int, Handle, Handle) = nullptr;
  int (*comm_rank)(Handle, int*) = nullptr;
  int (*comm_size)(Handle, int*) = nullptr;
  Handle world = nullptr, byte = nullptr, float32 = nullptr, int64 = nullptr, int32 = nullptr;
  Handle ops[4] = {};  // sum, prod (unused), max, min: indexed by ncclRedOp_t
};

// MPI as the addon loaded it, or null where it is not loaded.
const Mpi* World() {
  static Mpi m;
  static bool ok = [] {
    const auto sym = [](const char* name) { return dlsym(RTLD_DEFAULT, name); };
    m.allreduce = reinterpret_cast<decltype(m.allreduce)>(sym("MPI_Allreduce"));
    m.bcast = reinterpret_cast<decltype(m.bcast)>(sym("MPI_Bcast"));
    m.allgather = reinterpret_cast<decltype(m.allgather)>(sym("MPI_Allgather"));
    m.comm_rank = reinterpret_cast<decltype(m.comm_rank)>(sym("MPI_Comm_rank"));
    m.comm_size = reinterpret_cast<decltype(m.comm_size)>(sym("MPI_Comm_size"));
    m.world = sym("ompi_mpi_comm_world"), m.byte = sym("ompi_mpi_byte"), m.float32 = sym("ompi_mpi_float");
    m.int64 = sym("ompi_mpi_int64_t"), m.int32 = sym("ompi_mpi_int");
    m.ops[0] = sym("ompi_mpi_op_sum"), m.ops[2] = sym("ompi_mpi_op_max"), m.ops[3] = sym("ompi_mpi_op_min");
    return m.allreduce && m.bcast && m.allgather && m.comm_rank && m.comm_size && m.world && m.byte && m.float32 &&
           m.int64 && m.int32 && m.ops[0] && m.ops[2] && m.ops[3];
  }();
  return ok ? &m : nullptr;
}

std::size_t ElementSize(int dtype) {
  switch (dtype) {
    case kInt8: case kUint8: return 1;
    case kFloat16: case kBfloat16: return 2;
    case kInt32: case kUint32: case kFloat32: return 4;
    case kInt64: case kUint64: case kFloat64: return 8;
    default: return 0;
  }
}

struct Job {
  enum Kind { kAllReduce, kBroadcast, kAllGather } kind;
  const void* send;
  void* recv;
  std::size_t count;
  int dtype, op, root;
};

int RunJob(void* data) {
  const Job& j = *static_cast<Job*>(data);
  const Mpi& m = *World();
  const std::size_t bytes = j.count * ElementSize(j.dtype);
  if (j.kind == Job::kAllGather) {
    return m.allgather(j.send, static_cast<int>(bytes), m.byte, j.recv, static_cast<int>(bytes), m.byte, m.world);
  }
  if (j.send != j.recv) std::memmove(j.recv, j.send, bytes);
  if (j.kind == Job::kBroadcast) return m.bcast(j.recv, static_cast<int>(bytes), m.byte, j.root, m.world);
  void* in_place = reinterpret_cast<void*>(1);
  const int n = static_cast<int>(j.count);
  if (j.dtype == kFloat32) return m.allreduce(in_place, j.recv, n, m.float32, m.ops[j.op], m.world);
  if (j.dtype == kInt64) return m.allreduce(in_place, j.recv, n, m.int64, m.ops[j.op], m.world);
  if (j.dtype == kInt32) return m.allreduce(in_place, j.recv, n, m.int32, m.ops[j.op], m.world);
  // 16-bit floats: reduced in float32, rounded once
  auto* h = static_cast<std::uint16_t*>(j.recv);
  std::vector<std::uint32_t> wide(j.count);
  for (std::size_t i = 0; i < j.count; ++i) wide[i] = j.dtype == kBfloat16 ? Bf16ToF32Bits(h[i]) : F16ToF32Bits(h[i]);
  const int result = m.allreduce(in_place, wide.data(), n, m.float32, m.ops[j.op], m.world);
  for (std::size_t i = 0; i < j.count; ++i) h[i] = j.dtype == kBfloat16 ? F32BitsToBf16(wide[i]) : F32BitsToF16(wide[i]);
  return result;
}

}  // namespace

struct ncclComm {
  int rank = 0, size = 0;
};

extern "C" {
bool ftemu_in_device(std::uint64_t p, std::size_t n);
int ftemu_submit(void* stream, int (*run)(void*), void* data, void (*release)(void*));

struct ncclUniqueId {
  char internal[128];
};

int ncclGetVersion(int* version) {
  *version = 22703;
  return kSuccess;
}

const char* ncclGetErrorString(int code) {
  switch (code) {
    case kSuccess: return "no error";
    case kSystemError: return "fake NCCL: MPI is not loaded, or an MPI call failed";
    case kInvalidArgument: return "fake NCCL: invalid argument (a buffer outside device memory, or processes passed different ids)";
    case kInvalidUsage: return "fake NCCL: invalid usage (the rank or size is not MPI's)";
    default: return "fake NCCL: error";
  }
}

int ncclGetUniqueId(ncclUniqueId* id) {
  std::memset(id->internal, 0, sizeof(id->internal));
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  std::snprintf(id->internal, sizeof(id->internal), "ftemu-nccl %d %lld", static_cast<int>(getpid()), static_cast<long long>(now));
  return kSuccess;
}

int ncclCommInitRank(ncclComm** comm, int nranks, ncclUniqueId id, int rank) {
  const Mpi* m = World();
  if (m == nullptr) return kSystemError;
  int mpi_rank = -1, mpi_size = -1;
  m->comm_rank(m->world, &mpi_rank);
  m->comm_size(m->world, &mpi_size);
  if (mpi_rank != rank || mpi_size != nranks) return kInvalidUsage;
  std::vector<char> ids(sizeof(id.internal) * static_cast<std::size_t>(nranks));
  if (m->allgather(id.internal, sizeof(id.internal), m->byte, ids.data(), sizeof(id.internal), m->byte, m->world) != 0)
    return kSystemError;
  for (int r = 0; r < nranks; ++r) {
    if (std::memcmp(ids.data() + r * sizeof(id.internal), id.internal, sizeof(id.internal)) != 0) return kInvalidArgument;
  }
  *comm = new ncclComm{rank, nranks};
  return kSuccess;
}

int ncclCommDestroy(ncclComm* comm) {
  delete comm;
  return kSuccess;
}

static int Queue(Job job, std::size_t send_bytes, std::size_t recv_bytes, void* stream) {
  if (World() == nullptr) return kSystemError;
  if (ElementSize(job.dtype) == 0 || (job.kind == Job::kAllReduce && (job.op < 0 || job.op > 3 || job.op == 1)) ||
      !ftemu_in_device(reinterpret_cast<std::uint64_t>(job.send), send_bytes) ||
      !ftemu_in_device(reinterpret_cast<std::uint64_t>(job.recv), recv_bytes))
    return kInvalidArgument;
  const int result = ftemu_submit(stream, RunJob, new Job(job), [](void* data) { delete static_cast<Job*>(data); });
  return result == 0 ? kSuccess : kSystemError;
}

int ncclAllReduce(const void* send, void* recv, std::size_t count, int dtype, int op, ncclComm*, void* stream) {
  const std::size_t bytes = count * ElementSize(dtype);
  return Queue(Job{Job::kAllReduce, send, recv, count, dtype, op, 0}, bytes, bytes, stream);
}

int ncclBroadcast(const void* send, void* recv, std::size_t count, int dtype, int root, ncclComm* comm, void* stream) {
  if (root < 0 || root >= comm->size) return kInvalidArgument;
  const std::size_t bytes = count * ElementSize(dtype);
  return Queue(Job{Job::kBroadcast, send, recv, count, dtype, 0, root}, bytes, bytes, stream);
}

int ncclAllGather(const void* send, void* recv, std::size_t count, int dtype, ncclComm* comm, void* stream) {
  const std::size_t bytes = count * ElementSize(dtype);
  return Queue(Job{Job::kAllGather, send, recv, count, dtype, 0, 0}, bytes, bytes * static_cast<std::size_t>(comm->size), stream);
}

}  // extern "C"
