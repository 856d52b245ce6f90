// Shared by sslkit-native's translation units: the thread split and the convolution shape.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace sslkit {

// Runs fn(part, begin, end) for `parts` contiguous slices of [0, n); slice 0 on the calling thread.
inline void parallelFor(int64_t n, int parts, const std::function<void(int, int64_t, int64_t)>& fn) {
  parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(parts, n)));
  if (parts == 1) {
    fn(0, 0, n);
    return;
  }
  std::vector<std::thread> workers;
  auto bounds = [&](int p) { return n * p / parts; };
  for (int p = 1; p < parts; ++p) workers.emplace_back(fn, p, bounds(p), bounds(p + 1));
  fn(0, 0, bounds(1));
  for (auto& w : workers) w.join();
}

// A 2-D convolution: NHWC x [n, h, w, ci], HWIO filter [kh, kw, ci, co], y [n, oh, ow, co], dilation 1.
struct ConvShape {
  int64_t n, h, w, ci, kh, kw, co, sh, sw, pt, pl, oh, ow;
  int64_t patch() const { return kh * kw * ci; }     // im2col row length
  int64_t outPixels() const { return oh * ow; }      // im2col rows per image
  bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && oh == h && ow == w; }
};

}  // namespace sslkit

namespace sslkit {

// Scratch buffers kept between calls, one set per thread part, so that large buffers are not
// mapped (and page-faulted) afresh on every call. Calls come from the one JS thread, so no two
// calls use the pool at once; within a call each part touches only its own slots. Slots: 0 and 1
// a part's block buffers (im2col columns; Winograd's transformed tiles), 2 its filter-gradient
// sums, 3 (part 0, the calling thread) the transformed filter.
inline float* scratch(int part, int slot, size_t floats) {
  constexpr int kSlots = 4;
  static std::vector<std::vector<float>> pool(256 * kSlots);
  std::vector<float>& buf = pool[static_cast<size_t>(part * kSlots + slot)];
  if (buf.size() < floats) buf.resize(floats);
  return buf.data();
}

}  // namespace sslkit
