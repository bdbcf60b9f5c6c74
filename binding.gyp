{
  "targets": [
    {
      "target_name": "finetune_native",
      "sources": [
        "native/binding/addon.cc",
        "native/cpu/threadpool.cc",
        "native/cpu/gemm.cc",
        "native/cpu/elementwise.cc",
        "native/cpu/copy.cc",
        "native/cpu/reduce.cc",
        "native/cpu/softmax.cc",
        "native/cpu/layer_norm.cc",
        "native/cpu/embedding.cc",
        "native/cpu/cross_entropy.cc",
        "native/cpu/optim.cc",
        "native/cpu/random.cc",
        "native/cuda/search.cc",
        "native/cuda/loader.cc",
        "native/cuda/info.cc",
        "native/cuda/runtime.cc",
        "native/cuda/allocator.cc",
        "native/cuda/memory.cc",
        "native/cuda/staging.cc",
        "native/cuda/graphs.cc",
        "native/cuda/events.cc",
        "native/cuda/gemm.cc",
        "native/cuda/kernels/register.cc",
        "native/cuda/kernels/copy.cc",
        "native/cuda/kernels/elementwise.cc",
        "native/cuda/kernels/reduce.cc",
        "native/cuda/kernels/softmax.cc",
        "native/cuda/kernels/layer_norm.cc",
        "native/cuda/kernels/embedding.cc",
        "native/cuda/kernels/cross_entropy.cc",
        "native/cuda/kernels/optim.cc",
        "native/cuda/kernels/random.cc",
        "native/cuda/kernels/attention.cc",
        "native/cuda/kernels/index_check.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions", "-O2"],
      "cflags_cc!": ["-fno-exceptions", "-O2"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fno-math-errno", "-pthread"],
      "ldflags": ["-pthread", "-ldl"]
    }
  ]
}
