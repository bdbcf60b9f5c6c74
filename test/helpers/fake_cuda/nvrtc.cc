// The fake libnvrtc: "compiles" a CUDA program with g++ into a shared library, the program's source preceded by
// device.h (the CUDA built-ins on the CPU) and followed by one FTEMU_KERNEL line per `extern "C" __global__`
// function, which the fake driver's cuModuleGetFunction finds. The "cubin" names that library; g++'s messages
// are the program log. Libraries go to <CUDA_HOME>/modules (this library is <CUDA_HOME>/lib64/...), named by a
// hash of source and options, so the processes of one test run share them. Kernels are built with UBSan's alignment
// and bounds checks (the process stops with its message): a GPU faults on a vector load or store at an address its
// width does not divide ("misaligned address", which ends the context), where the CPU would read it without a word,
// and an index past a shared or local array's end reads or overwrites a neighbour's data on both without one.
#include <dlfcn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>

namespace {

constexpr int kSuccess = 0, kInvalidInput = 3, kInvalidProgram = 4, kInvalidOption = 5, kCompilation = 6;
constexpr int kArchs[] = {75, 80, 86, 89, 90};

struct Program {
  std::string source, name, log, image;
  bool cubin = false;  // compiled for sm_XX (a cubin) rather than compute_XX (PTX)
};

std::string Home() {
  Dl_info info{};
  dladdr(reinterpret_cast<void*>(&Home), &info);
  std::string lib = info.dli_fname;                     // <home>/lib64/libnvrtc.so.13
  return lib.substr(0, lib.rfind('/', lib.rfind('/') - 1));  // <home>
}

// Returns g++'s exit status; its output goes to `log`.
int Run(const std::string& command, std::string& log) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    log = "cannot run g++";
    return -1;
  }
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) log.append(buffer, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The option's architecture number (sm_90 -> 90), or 0 when the option names none.
int ParseArch(const std::string& option, bool& cubin) {
  static const std::regex arch("(?:--gpu-architecture=|-arch=|-arch )(sm|compute)_(\\d+)");
  std::smatch m;
  if (!std::regex_match(option, m, arch)) return 0;
  cubin = m[1] == "sm";
  return std::stoi(m[2]);
}

}  // namespace

extern "C" {

int nvrtcVersion(int* major, int* minor) {
  *major = 13;
  *minor = 0;
  return 0;
}

const char* nvrtcGetErrorString(int result) {
  switch (result) {
    case kSuccess: return "NVRTC_SUCCESS";
    case kInvalidInput: return "NVRTC_ERROR_INVALID_INPUT";
    case kInvalidProgram: return "NVRTC_ERROR_INVALID_PROGRAM";
    case kInvalidOption: return "NVRTC_ERROR_INVALID_OPTION";
    case kCompilation: return "NVRTC_ERROR_COMPILATION";
    default: return "NVRTC_ERROR";
  }
}

int nvrtcGetNumSupportedArchs(int* count) {
  *count = static_cast<int>(std::size(kArchs));
  return 0;
}

int nvrtcGetSupportedArchs(int* archs) {
  std::memcpy(archs, kArchs, sizeof(kArchs));
  return 0;
}

int nvrtcCreateProgram(Program** program, const char* source, const char* name, int num_headers,
                       const char* const*, const char* const*) {
  if (program == nullptr || source == nullptr) return kInvalidInput;
  // Headers would need a virtual include path; finetune's modules are self-contained.
  if (num_headers != 0) return kInvalidInput;
  *program = new Program{source, name != nullptr ? name : "default_program", "", "", false};
  return 0;
}

int nvrtcDestroyProgram(Program** program) {
  if (program == nullptr || *program == nullptr) return kInvalidProgram;
  delete *program;
  *program = nullptr;
  return 0;
}

int nvrtcCompileProgram(Program* p, int num_options, const char* const* options) {
  if (p == nullptr) return kInvalidProgram;
  int arch = 0;
  bool fmad = true;  // NVRTC's default
  for (int i = 0; i < num_options; ++i) {
    const std::string option = options[i];
    if (option == "-std=c++17" || option == "--std=c++17") continue;
    if (option == "--fmad=true" || option == "-fmad=true" || option == "--fmad=false" || option == "-fmad=false") {
      fmad = option.find("true") != std::string::npos;
      continue;
    }
    if ((arch = ParseArch(option, p->cubin)) != 0) continue;
    p->log = "nvrtc: error: the fake NVRTC does not know option \"" + option + "\"\n";
    return kInvalidOption;
  }
  if (arch == 0) arch = 52;  // NVRTC's default target
  if (std::find(std::begin(kArchs), std::end(kArchs), arch) == std::end(kArchs) && p->cubin) {
    p->log = "nvrtc: error: invalid value for --gpu-architecture (-arch)\n";
    return kInvalidOption;
  }
  // `extern __shared__ T name[];` becomes a pointer to the launch's dynamic shared memory.
  static const std::regex dynamic_shared(R"(extern\s+__shared__\s+((?:__align__\(\d+\)\s+)?)([\w:]+)\s+(\w+)\s*\[\s*\]\s*;)");
  std::string source = std::regex_replace(p->source, dynamic_shared, "$2* $3 = FTEMU_DYNAMIC_SHARED($2);");
  static const std::regex kernel(R"(extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s+)?void\s+(\w+)\s*\()");
  std::string registrations;
  for (std::sregex_iterator it(source.begin(), source.end(), kernel), end; it != end; ++it)
    registrations += "FTEMU_KERNEL(" + (*it)[1].str() + ")\n";

  const std::string home = Home(), folder = home + "/modules";
  mkdir(folder.c_str(), 0755);
  std::uint64_t hash = 0xcbf29ce484222325ull;
  // With --fmad=true (NVRTC's default) multiply-adds are contracted into FMAs; where the CPU has FMA the module
  // does the same, so results that contraction would change on a GPU change here too.
  const std::string fp = fmad && __builtin_cpu_supports("fma") ? "-mfma -ffp-contract=fast" : "-ffp-contract=off";
  const std::string key = p->source + '\0' + std::to_string(arch) + '\0' + fp;
  for (unsigned char c : key) hash = (hash ^ c) * 0x100000001b3ull;
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(hash));
  const std::string stem = folder + "/" + p->name + "-" + hex, library = stem + ".so";
  struct stat st;
  if (stat(library.c_str(), &st) != 0) {
    const std::string unit = stem + "." + std::to_string(getpid()) + ".cc";
    const std::string temp = stem + "." + std::to_string(getpid()) + ".so";
    {
      std::ofstream out(unit);
      out << "#include \"" << home << "/include/device.h\"\n#line 1 \"" << p->name << "\"\n"
          << source << "\n#line 1 \"<kernel registrations>\"\n" << registrations;
    }
    // Hidden symbols keep each module's built-ins (and its fibers) its own; only the kernel entries are exported.
    const char* cxx = std::getenv("CXX");
    const std::string command = std::string(cxx != nullptr && *cxx != '\0' ? cxx : "g++") +
                                " -std=c++20 -O2 -fPIC -shared -w -fno-strict-aliasing " + fp +
                                " -fsanitize=alignment,bounds -fno-sanitize-recover=alignment,bounds" +
                                " -fvisibility=hidden -fvisibility-inlines-hidden -fno-gnu-unique -o '" + temp + "' '" +
                                unit + "'";
    const int status = Run(command, p->log);
    std::remove(unit.c_str());
    if (status != 0) {
      std::remove(temp.c_str());
      return kCompilation;
    }
    std::rename(temp.c_str(), library.c_str());
  }
  p->image = "FTEMU-MODULE\n" + library;
  p->image.push_back('\0');
  return 0;
}

int nvrtcGetProgramLogSize(Program* p, std::size_t* size) {
  if (p == nullptr) return kInvalidProgram;
  *size = p->log.size() + 1;
  return 0;
}

int nvrtcGetProgramLog(Program* p, char* log) {
  if (p == nullptr) return kInvalidProgram;
  std::memcpy(log, p->log.c_str(), p->log.size() + 1);
  return 0;
}

int nvrtcGetCUBINSize(Program* p, std::size_t* size) {
  if (p == nullptr || p->image.empty() || !p->cubin) return kInvalidInput;
  *size = p->image.size();
  return 0;
}

int nvrtcGetCUBIN(Program* p, char* cubin) {
  if (p == nullptr || p->image.empty() || !p->cubin) return kInvalidInput;
  std::memcpy(cubin, p->image.data(), p->image.size());
  return 0;
}

int nvrtcGetPTXSize(Program* p, std::size_t* size) {
  if (p == nullptr || p->image.empty() || p->cubin) return kInvalidInput;
  *size = p->image.size();
  return 0;
}

int nvrtcGetPTX(Program* p, char* ptx) {
  if (p == nullptr || p->image.empty() || p->cubin) return kInvalidInput;
  std::memcpy(ptx, p->image.data(), p->image.size());
  return 0;
}

}  // extern "C"
