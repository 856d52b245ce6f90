{
  "targets": [
    {
      "target_name": "sslkit_native",
      "sources": ["src/native.cc", "src/winograd.cc"],
      "cflags_cc": ["-O3", "-march=native", "-std=c++17", "-fexceptions", "-fno-trapping-math"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lopenblas", "-lpthread"]
    }
  ]
}
