// Where CUDA's libraries are looked for, and opening the first usable candidate among them.
#pragma once
#include <string>
#include <vector>

#include "cuda/loader.h"

namespace ft::cuda {

// Existing folders only, each once (by real path), in search order. `preferred` is CUDA_HOME's: tried before the
// system loader, so a toolkit the user names wins over whatever the loader cache holds; `others` come after it.
struct SearchFolders {
  std::vector<std::string> preferred;
  std::vector<std::string> others;
};

SearchFolders FindSearchFolders();

// dlopen()s the first candidate that loads: each name in the preferred folders, then each bare name through the
// system loader (ld.so.cache, LD_LIBRARY_PATH), then each name in the other folders. `names` go from most to
// least wanted (libnvrtc.so.13 before libnvrtc.so.12). A failure's `error` holds every dlerror() text and the
// folders searched.
Library OpenFirst(const std::vector<std::string>& names, const SearchFolders& folders);

}  // namespace ft::cuda
