#include "cpu/threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace ft {
namespace {

// Waking a sleeping thread costs tens of microseconds (more on a virtual machine, where an idle core halts),
// a large share of a sub-millisecond kernel. So a worker that just finished a job, and the caller waiting for
// the workers, spin for a short while before blocking: back-to-back kernels then hand over without a wake-up.
constexpr auto kSpin = std::chrono::microseconds(200);

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Polls `done` until it holds (true) or kSpin has passed (false).
template <class F>
bool SpinUntil(F done) {
  const auto start = std::chrono::steady_clock::now();
  for (unsigned i = 1;; ++i) {
    if (done()) return true;
    CpuRelax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() - start > kSpin) return false;
  }
}

class Pool {
 public:
  explicit Pool(int threads) { Resize(threads); }
  ~Pool() { Stop(); }

  int Size() const { return static_cast<int>(workers_.size()) + 1; }

  void Resize(int threads) {
    Stop();
    stop_ = false;
    // New workers start from the current generation: the last job, already finished, is not theirs to run.
    const uint64_t generation = generation_.load();
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i, generation] { Work(i, generation); });
  }

  void Run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    int64_t chunks = std::min<int64_t>(Size(), (n + grain - 1) / grain);
    if (chunks <= 1 || inside_) {
      fn(0, n);
      return;
    }
    std::unique_lock<std::mutex> lock(run_mutex_);
    {
      std::lock_guard<std::mutex> g(mutex_);
      job_ = &fn;
      total_ = n;
      chunks_ = chunks;
      pending_.store(static_cast<int>(chunks - 1));
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    inside_ = true;
    RunChunk(0);
    inside_ = false;
    const auto finished = [this] { return pending_.load() == 0; };
    SpinUntil(finished);
    std::unique_lock<std::mutex> g(mutex_);
    done_cv_.wait(g, finished);
    job_ = nullptr;
  }

 private:
  void RunChunk(int64_t c) {
    int64_t begin = total_ * c / chunks_;
    int64_t end = total_ * (c + 1) / chunks_;
    if (begin < end) (*job_)(begin, end);
  }

  void Work(int index, uint64_t seen) {
    for (;;) {
      const auto ready = [&] { return stop_.load() || generation_.load() != seen; };
      SpinUntil(ready);
      {
        std::unique_lock<std::mutex> g(mutex_);
        cv_.wait(g, ready);
        if (stop_) return;
        seen = generation_.load();
        if (index >= chunks_) continue;
      }
      inside_ = true;
      RunChunk(index);
      inside_ = false;
      std::lock_guard<std::mutex> g(mutex_);
      if (pending_.fetch_sub(1) == 1) done_cv_.notify_one();
    }
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> g(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_, run_mutex_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t total_ = 0, chunks_ = 0;
  // Written under mutex_, atomic so that the spinning waits may read them without it.
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  static thread_local bool inside_;
};

thread_local bool Pool::inside_ = false;

int DefaultThreads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

Pool& GetPool() {
  static Pool pool(DefaultThreads());
  return pool;
}

}  // namespace

void SetNumThreads(int n) { GetPool().Resize(std::max(1, n)); }
int GetNumThreads() { return GetPool().Size(); }
void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  GetPool().Run(n, std::max<int64_t>(1, grain), fn);
}

}  // namespace ft
