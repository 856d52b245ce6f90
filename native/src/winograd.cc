// Winograd minimal filtering for 3x3 stride-1 convolutions (Lavin & Gray 2016, "Fast Algorithms for
// Convolutional Neural Networks"). Each m x m output tile is
//     Y = A^T [ (G g G^T) . (B^T d B) ] A                                          (eq. 8)
// over its (m+2) x (m+2) input tile d, so a tile costs (m+2)^2 products per (ci, co) where direct
// convolution costs 9 m^2: 2.25x fewer for F(2x2, 3x3), 4x fewer for F(4x4, 3x3). Summed over input
// channels, the (m+2)^2 elementwise products become (m+2)^2 matrix products [tiles, ci] x [ci, co].
// The filter gradient goes through the same transforms: Y is linear in g, so
//     dg = G^T [ sum over tiles of (B^T d B) . (A dY A^T) ] G.
#include "winograd.h"

#include <cblas.h>

#include <cstring>
#include <type_traits>

namespace sslkit {
namespace {

int g_tile = 4;

// F(2x2, 3x3) and F(4x4, 3x3): the matrices of Lavin & Gray, sec. 4.1 and 4.2.
struct F2 {
  static constexpr int m = 2, a = 4;
  static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr float G[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
  static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};
struct F4 {
  static constexpr int m = 4, a = 6;
  static constexpr float BT[6][6] = {{4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0}, {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr float G[6][3] = {{1.0f / 4, 0, 0},           {-1.0f / 6, -1.0f / 6, -1.0f / 6}, {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                                    {1.0f / 24, 1.0f / 12, 1.0f / 6}, {1.0f / 24, -1.0f / 12, 1.0f / 6}, {0, 0, 1}};
  static constexpr float AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
  // B^T and A^T applied to one column, with the shared sums written out (13 and 10 operations
  // where the matrices take 22 and 16; the hot loops of the input and output transforms).
  template <typename V> static void inputColumn(const V* d, int is, V* r, int os) {
    const V d0 = d[0], d1 = d[is], d2 = d[2 * is], d3 = d[3 * is], d4 = d[4 * is], d5 = d[5 * is];
    const V p = d3 + d4, q = d4 - d3, t = d1 - d3, u = d4 - d2;
    r[0] = 4.0f * d0 - 5.0f * d2 + d4;
    r[os] = p - 4.0f * (d1 + d2);
    r[2 * os] = q + 4.0f * (d1 - d2);
    r[3 * os] = u - 2.0f * t;
    r[4 * os] = u + 2.0f * t;
    r[5 * os] = 4.0f * d1 - 5.0f * d3 + d5;
  }
  template <typename V> static void outputColumn(const V* mv, int is, V* r, int os) {
    const V m1 = mv[is], m2 = mv[2 * is], m3 = mv[3 * is], m4 = mv[4 * is];
    const V sum12 = m1 + m2, dif12 = m1 - m2, sum34 = m3 + m4, dif34 = m3 - m4;
    r[0] = mv[0] + sum12 + sum34;
    r[os] = dif12 + 2.0f * dif34;
    r[2 * os] = sum12 + 4.0f * sum34;
    r[3 * os] = dif12 + 8.0f * dif34 + mv[5 * is];
  }
};

// Channels are processed 8 at a time as GCC vectors (AVX with -march=native), the rest one by one.
typedef float f8 __attribute__((vector_size(32)));
template <typename V> inline V load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V> inline void store(float* p, V v) { std::memcpy(p, &v, sizeof(V)); }
template <typename Body> inline void forChannels(int64_t n, Body body) {
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) body(c, f8{});
  for (; c < n; ++c) body(c, 0.0f);
}

// out[i * os] = sum_k M'[i][k] in[k * is], M' = M or (Transposed) M^T; the loops unroll, so zero
// coefficients drop out and +-1 become additions.
template <bool Transposed, int R, int C, typename V>
inline void apply(const float (&M)[R][C], const V* in, int is, V* out, int os) {
  constexpr int rows = Transposed ? C : R, cols = Transposed ? R : C;
#pragma GCC unroll 8
  for (int i = 0; i < rows; ++i) {
    V acc{};
    bool first = true;
#pragma GCC unroll 8
    for (int k = 0; k < cols; ++k) {
      const float c = Transposed ? M[k][i] : M[i][k];
      if (c == 0.0f) continue;
      const V term = c == 1.0f ? in[k * is] : c == -1.0f ? -in[k * is] : c * in[k * is];
      acc = first ? term : acc + term;
      first = false;
    }
    out[i * os] = acc;
  }
}

// C[M, N] = A[M, K] B[K, N], row-major and contiguous, for few channels (K, N <= 32), where
// OpenBLAS's packing costs more than the product (forward 10-15% faster here); N a multiple of 16.
// 6 x 16 blocks of C live in 12 vector registers; one broadcast of A per row and k.
void smallGemm(int64_t M, int64_t N, int64_t K, const float* a, const float* b, float* c) {
  constexpr int R = 6;
  for (int64_t j = 0; j < N; j += 16) {
    int64_t i = 0;
    for (; i + R <= M; i += R) {
      f8 acc[R][2] = {};
      for (int64_t k = 0; k < K; ++k) {
        const f8 b0 = load<f8>(b + k * N + j), b1 = load<f8>(b + k * N + j + 8);
#pragma GCC unroll 6
        for (int r = 0; r < R; ++r) {
          const f8 av = f8{} + a[(i + r) * K + k];
          acc[r][0] += av * b0;
          acc[r][1] += av * b1;
        }
      }
      for (int r = 0; r < R; ++r) {
        store(c + (i + r) * N + j, acc[r][0]);
        store(c + (i + r) * N + j + 8, acc[r][1]);
      }
    }
    for (; i < M; ++i) {
      f8 acc0{}, acc1{};
      for (int64_t k = 0; k < K; ++k) {
        const f8 av = f8{} + a[i * K + k];
        acc0 += av * load<f8>(b + k * N + j);
        acc1 += av * load<f8>(b + k * N + j + 8);
      }
      store(c + i * N + j, acc0);
      store(c + i * N + j + 8, acc1);
    }
  }
}

bool useSmallGemm(const ConvShape& s) { return s.co % 16 == 0 && s.co <= 32 && s.ci <= 32; }

// B^T (input) and A^T (output) on one column: F4's hand-written sums, else the generic product.
template <typename F, typename V> inline void inputColumn(const V* in, int is, V* out, int os) {
  if constexpr (std::is_same_v<F, F4>) F4::inputColumn(in, is, out, os);
  else apply<false>(F::BT, in, is, out, os);
}
template <typename F, typename V> inline void outputColumn(const V* in, int is, V* out, int os) {
  if constexpr (std::is_same_v<F, F4>) F4::outputColumn(in, is, out, os);
  else apply<false>(F::AT, in, is, out, os);
}

struct Tiling {
  int64_t tilesH, tilesW, perImage, total, block;  // block: tiles transformed and multiplied together
  Tiling(const ConvShape& s, int m, int a, int64_t minBlock) {
    tilesH = (s.oh + m - 1) / m, tilesW = (s.ow + m - 1) / m, perImage = tilesH * tilesW, total = s.n * perImage;
    // a^2 x block x channels floats per buffer: 2^17 floats was best of 2^14..2^19 on ResNet shapes (2 cores).
    block = std::max<int64_t>(minBlock, std::min<int64_t>(1024, (int64_t{1} << 17) / (a * a * std::max(s.ci, s.co))));
  }
  // Image and top-left output pixel of tile g.
  void locate(int64_t g, int m, int64_t& b, int64_t& oy, int64_t& ox) const {
    b = g / perImage;
    const int64_t r = g % perImage;
    oy = (r / tilesW) * m, ox = (r % tilesW) * m;
  }
};

// V[p, t, c] = (B^T d_t B)[p] for tiles [t0, t0 + count), d_t the input patch of tile t (zero outside x).
template <typename F>
void inputTransform(const ConvShape& s, const Tiling& tl, const float* x, int64_t t0, int64_t count, const float* zeros, float* v) {
  constexpr int a = F::a;
  const int64_t ci = s.ci, pstride = count * ci;
  for (int64_t t = 0; t < count; ++t) {
    int64_t b, oy, ox;
    tl.locate(t0 + t, F::m, b, oy, ox);
    const float* d[a * a];
    for (int i = 0; i < a; ++i)
      for (int j = 0; j < a; ++j) {
        const int64_t iy = oy - s.pt + i, ix = ox - s.pl + j;
        d[i * a + j] = (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w) ? x + ((b * s.h + iy) * s.w + ix) * ci : zeros;
      }
    float* out = v + t * ci;
    forChannels(ci, [&](int64_t c, auto lane) {
      using V = decltype(lane);
      V in[a * a], u[a * a], r[a * a];
      for (int k = 0; k < a * a; ++k) in[k] = load<V>(d[k] + c);
      for (int j = 0; j < a; ++j) inputColumn<F>(in + j, a, u + j, a);  // B^T d
      for (int i = 0; i < a; ++i) inputColumn<F>(u + i * a, 1, r + i * a, 1);  // (B^T d) B
      for (int p = 0; p < a * a; ++p) store(out + p * pstride + c, r[p]);
    });
  }
}

// U[p, c, o] = (G g G^T)[p] for the HWIO filter w (in a scratch buffer of the calling thread).
template <typename F>
const float* filterTransform(const ConvShape& s, const float* w) {
  constexpr int a = F::a;
  const int64_t n = s.ci * s.co;
  float* u = scratch(0, 3, static_cast<size_t>(a * a * n));
  for (int64_t k = 0; k < n; ++k) {
    float g[9], gg[a * 3], r[a * a];
    for (int q = 0; q < 9; ++q) g[q] = w[q * n + k];
    for (int j = 0; j < 3; ++j) apply<false>(F::G, g + j, 3, gg + j, 3);  // G g
    for (int i = 0; i < a; ++i) apply<false>(F::G, gg + i * 3, 1, r + i * a, 1);  // (G g) G^T
    for (int p = 0; p < a * a; ++p) u[p * n + k] = r[p];
  }
  return u;
}

// Splits the tiles over `parts` threads; each walks its tiles in blocks with its own two buffers.
void forEachBlock(const Tiling& tl, int parts, size_t floats0, size_t floats1, const std::function<void(int, int64_t, int64_t, float*, float*)>& fn) {
  parallelFor(tl.total, parts, [&](int part, int64_t g0, int64_t g1) {
    float* buf0 = scratch(part, 0, floats0);
    float* buf1 = scratch(part, 1, floats1);
    for (int64_t g = g0; g < g1; g += tl.block) fn(part, g, std::min(tl.block, g1 - g), buf0, buf1);
  });
}

int partsFor(const Tiling& tl, int threads) { return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, tl.total / 32))); }

template <typename F>
void conv2d(const ConvShape& s, const float* x, const float* w, float* y, int threads) {
  constexpr int m = F::m, a = F::a;
  const Tiling tl(s, m, a, 16);  // the products' outer dimension is the block
  const float* u = filterTransform<F>(s, w);
  const std::vector<float> zeros(static_cast<size_t>(s.ci), 0.0f);
  const int64_t ci = s.ci, co = s.co;
  const size_t vFloats = static_cast<size_t>(a * a * tl.block * ci), mFloats = static_cast<size_t>(a * a * tl.block * co + m * m * co);
  forEachBlock(tl, partsFor(tl, threads), vFloats, mFloats, [&](int, int64_t t0, int64_t count, float* v, float* mm) {
    inputTransform<F>(s, tl, x, t0, count, zeros.data(), v);
    for (int p = 0; p < a * a; ++p)  // M[p] = V[p] U[p]
      if (useSmallGemm(s)) smallGemm(count, co, ci, v + p * count * ci, u + p * ci * co, mm + p * count * co);
      else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(count), static_cast<int>(co), static_cast<int>(ci), 1.0f, v + p * count * ci,
                  static_cast<int>(ci), u + p * ci * co, static_cast<int>(co), 0.0f, mm + p * count * co, static_cast<int>(co));
    float* pastEdge = mm + a * a * count * co;  // outputs beyond the image (sizes not a multiple of m)
    const int64_t pstride = count * co;
    for (int64_t t = 0; t < count; ++t) {
      int64_t b, oy, ox;
      tl.locate(t0 + t, m, b, oy, ox);
      float* out[m * m];
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j)
          out[i * m + j] = (oy + i < s.oh && ox + j < s.ow) ? y + ((b * s.oh + oy + i) * s.ow + ox + j) * co : pastEdge + (i * m + j) * co;
      const float* mt = mm + t * co;
      forChannels(co, [&](int64_t o, auto lane) {
        using V = decltype(lane);
        V in[a * a], u1[m * a], r[m * m];
        for (int p = 0; p < a * a; ++p) in[p] = load<V>(mt + p * pstride + o);
        for (int j = 0; j < a; ++j) outputColumn<F>(in + j, a, u1 + j, a);  // A^T M
        for (int i = 0; i < m; ++i) outputColumn<F>(u1 + i * a, 1, r + i * m, 1);  // (A^T M) A
        for (int q = 0; q < m * m; ++q) store(out[q] + o, r[q]);
      });
    }
  });
}

template <typename F>
void filterGrad(const ConvShape& s, const float* x, const float* dy, float* dw, int threads) {
  constexpr int m = F::m, a = F::a;
  const Tiling tl(s, m, a, 256);  // the products' inner dimension is the block: at least 256 tiles
  const std::vector<float> zeros(static_cast<size_t>(s.ci), 0.0f), zerosOut(static_cast<size_t>(s.co), 0.0f);
  const int64_t ci = s.ci, co = s.co, n = ci * co;
  const int parts = partsFor(tl, threads);
  std::vector<float*> partial(static_cast<size_t>(parts));  // per-thread sums Mg [a^2, ci, co]
  for (int q = 0; q < parts; ++q) std::fill_n(partial[static_cast<size_t>(q)] = scratch(q, 2, static_cast<size_t>(a * a * n)), a * a * n, 0.0f);
  const size_t vFloats = static_cast<size_t>(a * a * tl.block * ci), dFloats = static_cast<size_t>(a * a * tl.block * co);
  forEachBlock(tl, parts, vFloats, dFloats, [&](int part, int64_t t0, int64_t count, float* v, float* d) {
    inputTransform<F>(s, tl, x, t0, count, zeros.data(), v);
    const int64_t pstride = count * co;
    for (int64_t t = 0; t < count; ++t) {  // D[p, t, o] = (A dY_t A^T)[p], dY_t the output-gradient tile (zero past the edge)
      int64_t b, oy, ox;
      tl.locate(t0 + t, m, b, oy, ox);
      const float* in[m * m];
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) in[i * m + j] = (oy + i < s.oh && ox + j < s.ow) ? dy + ((b * s.oh + oy + i) * s.ow + ox + j) * co : zerosOut.data();
      float* dt = d + t * co;
      forChannels(co, [&](int64_t o, auto lane) {
        using V = decltype(lane);
        V g[m * m], u1[a * m], r[a * a];
        for (int q = 0; q < m * m; ++q) g[q] = load<V>(in[q] + o);
        for (int j = 0; j < m; ++j) apply<true>(F::AT, g + j, m, u1 + j, m);  // A dY
        for (int i = 0; i < a; ++i) apply<true>(F::AT, u1 + i * m, 1, r + i * a, 1);  // (A dY) A^T
        for (int p = 0; p < a * a; ++p) store(dt + p * pstride + o, r[p]);
      });
    }
    float* acc = partial[static_cast<size_t>(part)];
    for (int p = 0; p < a * a; ++p)  // Mg[p] += V[p]^T D[p]
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(ci), static_cast<int>(co), static_cast<int>(count), 1.0f, v + p * count * ci, static_cast<int>(ci),
                  d + p * count * co, static_cast<int>(co), 1.0f, acc + p * n, static_cast<int>(co));
  });
  // dg = G^T Mg G, Mg the per-thread sums added in thread order (deterministic).
  parallelFor(n, parts, [&](int, int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      double in[a * a], u1[3 * a], r[9];
      for (int p = 0; p < a * a; ++p) {
        in[p] = partial[0][p * n + k];
        for (int q = 1; q < parts; ++q) in[p] += partial[static_cast<size_t>(q)][p * n + k];
      }
      for (int j = 0; j < a; ++j) apply<true>(F::G, in + j, a, u1 + j, a);
      for (int i = 0; i < 3; ++i) apply<true>(F::G, u1 + i * a, 1, r + i * 3, 1);
      for (int q = 0; q < 9; ++q) dw[q * n + k] = static_cast<float>(r[q]);
    }
  });
}

}  // namespace

void setWinogradTile(int m) { g_tile = m; }
int winogradTile() { return g_tile; }

int winogradTileFor(const ConvShape& s) {
  if (g_tile == 0 || s.kh != 3 || s.kw != 3 || s.sh != 1 || s.sw != 1 || s.ci < 16 || s.co < 16) return 0;
  if (g_tile == 4 && s.oh >= 8 && s.ow >= 8) return 4;
  return s.oh >= 2 && s.ow >= 2 ? 2 : 0;
}

void winogradConv2d(const ConvShape& s, int m, const float* x, const float* w, float* y, int threads) {
  if (m == 4) conv2d<F4>(s, x, w, y, threads);
  else conv2d<F2>(s, x, w, y, threads);
}

void winogradFilterGrad(const ConvShape& s, int m, const float* x, const float* dy, float* dw, int threads) {
  if (m == 4) filterGrad<F4>(s, x, dy, dw, threads);
  else filterGrad<F2>(s, x, dy, dw, threads);
}

}  // namespace sslkit
