#include "cuda/search.h"

#include <dlfcn.h>
#include <glob.h>
#include <limits.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <tuple>

namespace ft::cuda {
namespace {

#if defined(__aarch64__)
constexpr const char* kTargetLib = "targets/sbsa-linux/lib";
#else
constexpr const char* kTargetLib = "targets/x86_64-linux/lib";
#endif

// The folders of NVIDIA's Python wheels that hold the libraries we load: CUDA 13 wheels put everything in
// nvidia/cu13/lib, CUDA 12 ones one folder per package; NCCL has its own.
constexpr const char* kWheelFolders[] = {"nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib", "nvidia/cublas/lib",
                                         "nvidia/cuda_runtime/lib", "nvidia/nccl/lib"};

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

std::vector<std::string> Glob(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g{};
  if (glob(pattern.c_str(), GLOB_ONLYDIR, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  globfree(&g);
  return out;
}

// The X.Y of /usr/local/cuda-X.Y, compared as numbers so that 12.10 sorts above 12.8; other names give 0.0.
std::tuple<long, long> ToolkitVersion(const std::string& folder) {
  const char* text = folder.c_str() + folder.rfind("cuda-") + 5;
  char* end = nullptr;
  long major = std::strtol(text, &end, 10);
  long minor = *end == '.' ? std::strtol(end + 1, nullptr, 10) : 0;
  return {major, minor};
}

class FolderList {
 public:
  explicit FolderList(std::set<std::string>& seen) : seen_(seen) {}

  void Add(const std::string& folder) {
    struct stat st {};
    if (folder.empty() || stat(folder.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return;
    char real[PATH_MAX];
    if (realpath(folder.c_str(), real) == nullptr || !seen_.insert(real).second) return;
    folders_.push_back(folder);
  }

  std::vector<std::string> Take() { return std::move(folders_); }

 private:
  std::set<std::string>& seen_;
  std::vector<std::string> folders_;
};

std::vector<std::string> PythonSitePackages() {
  std::vector<std::string> patterns;
  // The active environment first: that is the one whose wheels the user installed last.
  if (std::string venv = Env("VIRTUAL_ENV"); !venv.empty()) patterns.push_back(venv + "/lib/python3*/site-packages");
  if (std::string conda = Env("CONDA_PREFIX"); !conda.empty())
    patterns.push_back(conda + "/lib/python3*/site-packages");
  if (std::string home = Env("HOME"); !home.empty()) patterns.push_back(home + "/.local/lib/python3*/site-packages");
  for (const char* p : {"/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
                        "/usr/lib/python3/dist-packages", "/usr/lib/python3*/site-packages"})
    patterns.emplace_back(p);
  std::vector<std::string> sites;
  for (const std::string& pattern : patterns) {
    for (std::string& site : Glob(pattern)) sites.push_back(std::move(site));
  }
  return sites;
}

std::string Join(const std::vector<std::string>& parts, const char* separator) {
  std::string out;
  for (const std::string& part : parts) out += (out.empty() ? "" : separator) + part;
  return out;
}

// The file the loader actually opened, which for a bare soname is only known after the fact.
std::string LoadedPath(void* handle, const std::string& requested) {
  link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr && *map->l_name)
    return map->l_name;
  return requested;
}

}  // namespace

SearchFolders FindSearchFolders() {
  std::set<std::string> seen;
  FolderList preferred(seen), others(seen);
  if (std::string home = Env("CUDA_HOME"); !home.empty()) {
    for (const char* sub : {"lib64", "lib", kTargetLib}) preferred.Add(home + "/" + sub);
  }
  others.Add("/usr/local/cuda/lib64");
  std::vector<std::string> toolkits = Glob("/usr/local/cuda-*");
  std::stable_sort(toolkits.begin(), toolkits.end(), [](const std::string& a, const std::string& b) {
    return ToolkitVersion(a) > ToolkitVersion(b);
  });
  for (const std::string& toolkit : toolkits) others.Add(toolkit + "/lib64");
  std::string ld_path = Env("LD_LIBRARY_PATH");
  for (size_t start = 0; start <= ld_path.size();) {
    size_t end = ld_path.find(':', start);
    if (end == std::string::npos) end = ld_path.size();
    others.Add(ld_path.substr(start, end - start));
    start = end + 1;
  }
  for (const std::string& site : PythonSitePackages()) {
    for (const char* sub : kWheelFolders) others.Add(site + "/" + sub);
  }
  return {preferred.Take(), others.Take()};
}

Library OpenFirst(const std::vector<std::string>& names, const SearchFolders& folders) {
  std::vector<std::string> failures;
  auto open = [&](const std::string& candidate) -> void* {
    dlerror();
    void* handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* error = dlerror();
      failures.push_back(error != nullptr ? error : candidate + ": dlopen failed");
    }
    return handle;
  };
  auto open_in = [&](const std::vector<std::string>& dirs) -> std::pair<void*, std::string> {
    for (const std::string& dir : dirs) {
      for (const std::string& name : names) {
        std::string path = dir + "/" + name;
        if (access(path.c_str(), F_OK) != 0) continue;
        if (void* handle = open(path)) return {handle, path};
      }
    }
    return {nullptr, ""};
  };

  auto [handle, requested] = open_in(folders.preferred);
  for (size_t i = 0; handle == nullptr && i < names.size(); ++i) {
    if ((handle = open(names[i]))) requested = names[i];
  }
  if (handle == nullptr) std::tie(handle, requested) = open_in(folders.others);

  Library lib;
  if (handle == nullptr) {
    std::vector<std::string> searched = folders.preferred;
    searched.insert(searched.end(), folders.others.begin(), folders.others.end());
    lib.error = "could not load " + Join(names, " or ") + " (" + Join(failures, "; ") +
                "); searched the system loader's paths" + (searched.empty() ? "" : " and " + Join(searched, ", "));
    return lib;
  }
  lib.handle = handle;
  lib.path = LoadedPath(handle, requested);
  return lib;
}

}  // namespace ft::cuda
