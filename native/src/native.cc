// sslkit-native: OpenBLAS matrix products and convolutions (Winograd for 3x3 stride 1, see
// winograd.cc; im2col otherwise) over Float32Arrays (on the tfjs wasm backend, views of the wasm
// heap), so that a machine without libtensorflow still trains at native BLAS speed. Row-major
// throughout; convolutions are NHWC with HWIO filters, dilation 1.
// Work is split over `threads` std::threads, each calling single-threaded OpenBLAS on its own
// rows, images or columns: a fixed split, so results do not depend on timing (a seed reproduces).
#include <node_api.h>
#include <cblas.h>

#include "common.h"
#include "winograd.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_config(void);

namespace {

using sslkit::ConvShape;
using sslkit::parallelFor;

int g_threads = std::max(1u, std::thread::hardware_concurrency());

// Below this many multiply-adds a product runs on one thread (thread start-up would dominate).
constexpr double kMinParallelMacs = 2e5;

// ------------------------------------------------------------------------------------------------
// Matrix products

// C[M,N] (+)= op(A)[M,K] op(B)[K,N], A stored [M,K] or (transA) [K,M], B [K,N] or (transB) [N,K].
void gemmSplit(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* a, const float* b, float beta, float* c, int threads) {
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  auto run = [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const float* ap = ta ? a + i0 : a + i0 * lda;
    const float* bp = tb ? b + j0 * ldb : b + j0;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(i1 - i0), static_cast<int>(j1 - j0), static_cast<int>(K), 1.0f, ap,
                static_cast<int>(lda), bp, static_cast<int>(ldb), beta, c + i0 * N + j0, static_cast<int>(N));
  };
  if (K == 0) {
    if (beta == 0.0f) std::fill(c, c + M * N, 0.0f);
    return;
  }
  if (threads <= 1 || static_cast<double>(M) * N * K < kMinParallelMacs) return run(0, M, 0, N);
  if (M >= N || M >= 16 * threads) {
    parallelFor(M, threads, [&](int, int64_t i0, int64_t i1) { run(i0, i1, 0, N); });
  } else {
    parallelFor(N, threads, [&](int, int64_t j0, int64_t j1) { run(0, M, j0, j1); });
  }
}

// ------------------------------------------------------------------------------------------------
// Convolutions (NHWC x, HWIO w, dilation 1)

// Rows of im2col for images [b0, b1): col[(b, oy, ox), (ky, kx, c)] = x[b, oy*sh+ky-pt, ox*sw+kx-pl, c] or 0.
void im2col(const ConvShape& s, const float* x, int64_t b0, int64_t b1, float* col) {
  const int64_t rowLen = s.patch();
  for (int64_t b = b0; b < b1; ++b) {
    const float* xb = x + b * s.h * s.w * s.ci;
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        float* row = col + ((b - b0) * s.outPixels() + oy * s.ow + ox) * rowLen;
        for (int64_t ky = 0; ky < s.kh; ++ky) {
          const int64_t iy = oy * s.sh + ky - s.pt;
          float* dst = row + ky * s.kw * s.ci;
          if (iy < 0 || iy >= s.h) {
            std::memset(dst, 0, sizeof(float) * s.kw * s.ci);
            continue;
          }
          for (int64_t kx = 0; kx < s.kw; ++kx) {
            const int64_t ix = ox * s.sw + kx - s.pl;
            if (ix < 0 || ix >= s.w) std::memset(dst + kx * s.ci, 0, sizeof(float) * s.ci);
            else std::memcpy(dst + kx * s.ci, xb + (iy * s.w + ix) * s.ci, sizeof(float) * s.ci);
          }
        }
      }
    }
  }
}

// The transpose of im2col, accumulated: dx[b, iy, ix, c] += dcol[(b, oy, ox), (ky, kx, c)].
void col2imAdd(const ConvShape& s, const float* dcol, int64_t b0, int64_t b1, float* dx) {
  const int64_t rowLen = s.patch();
  for (int64_t b = b0; b < b1; ++b) {
    float* dxb = dx + b * s.h * s.w * s.ci;
    for (int64_t oy = 0; oy < s.oh; ++oy) {
      for (int64_t ox = 0; ox < s.ow; ++ox) {
        const float* row = dcol + ((b - b0) * s.outPixels() + oy * s.ow + ox) * rowLen;
        for (int64_t ky = 0; ky < s.kh; ++ky) {
          const int64_t iy = oy * s.sh + ky - s.pt;
          if (iy < 0 || iy >= s.h) continue;
          for (int64_t kx = 0; kx < s.kw; ++kx) {
            const int64_t ix = ox * s.sw + kx - s.pl;
            if (ix < 0 || ix >= s.w) continue;
            const float* src = row + (ky * s.kw + kx) * s.ci;
            float* dst = dxb + (iy * s.w + ix) * s.ci;
            for (int64_t c = 0; c < s.ci; ++c) dst[c] += src[c];
          }
        }
      }
    }
  }
}

// Images per im2col chunk: enough rows for an efficient product, a buffer of at most 8 MB.
int64_t imagesPerChunk(const ConvShape& s) {
  const int64_t rows = std::max<int64_t>(1, s.outPixels());
  // 1,024 rows and 2M floats: within 10% of the best of 128-1,024 rows / 32k-2M floats measured
  // on ResNet shapes (2 cores, OpenBLAS 0.3.21).
  const int64_t byRows = std::max<int64_t>(1, 1024 / rows);
  const int64_t byBytes = std::max<int64_t>(1, (int64_t{2} << 20) / std::max<int64_t>(1, rows * s.patch()));
  return std::min(byRows, byBytes);
}

// Splits the batch over threads; each thread walks its images in chunks with its own buffer.
void forEachChunk(const ConvShape& s, int threads, const std::function<void(int, int64_t, int64_t, float*)>& fn) {
  const int64_t chunk = imagesPerChunk(s);
  const int parts = static_cast<int>(std::min<int64_t>(threads, s.n));
  parallelFor(s.n, parts, [&](int part, int64_t b0, int64_t b1) {
    float* buf = sslkit::scratch(part, 0, static_cast<size_t>(std::min(chunk, b1 - b0) * s.outPixels() * s.patch()));
    for (int64_t b = b0; b < b1; b += chunk) fn(part, b, std::min(b1, b + chunk), buf);
  });
}

void conv2dForward(const ConvShape& s, const float* x, const float* w, float* y, int threads) {
  if (s.pointwise()) return gemmSplit(false, false, s.n * s.h * s.w, s.co, s.ci, x, w, 0.0f, y, threads);
  if (const int m = sslkit::winogradTileFor(s)) return sslkit::winogradConv2d(s, m, x, w, y, threads);
  forEachChunk(s, threads, [&](int, int64_t b0, int64_t b1, float* col) {
    im2col(s, x, b0, b1, col);
    gemmSplit(false, false, (b1 - b0) * s.outPixels(), s.co, s.patch(), col, w, 0.0f, y + b0 * s.outPixels() * s.co, 1);
  });
}

// dW[(ky,kx,c), o] = sum over images and output pixels of col^T dy: per-thread partial sums, added in thread order.
void conv2dFilterGrad(const ConvShape& s, const float* x, const float* dy, float* dw, int threads) {
  if (s.pointwise()) return gemmSplit(true, false, s.ci, s.co, s.n * s.h * s.w, x, dy, 0.0f, dw, threads);
  if (const int m = sslkit::winogradTileFor(s)) return sslkit::winogradFilterGrad(s, m, x, dy, dw, threads);
  const int64_t size = s.patch() * s.co;
  const int parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, s.n)));
  std::vector<std::vector<float>> partial(static_cast<size_t>(parts), std::vector<float>(static_cast<size_t>(size), 0.0f));
  forEachChunk(s, parts, [&](int part, int64_t b0, int64_t b1, float* col) {
    im2col(s, x, b0, b1, col);
    gemmSplit(true, false, s.patch(), s.co, (b1 - b0) * s.outPixels(), col, dy + b0 * s.outPixels() * s.co, 1.0f, partial[static_cast<size_t>(part)].data(), 1);
  });
  std::memcpy(dw, partial[0].data(), sizeof(float) * size);
  for (int p = 1; p < parts; ++p)
    for (int64_t i = 0; i < size; ++i) dw[i] += partial[static_cast<size_t>(p)][static_cast<size_t>(i)];
}

// dx = col2im(dy W^T); for stride 1, the forward convolution of dy with the spatially flipped,
// in/out-swapped filter and pads K-1-p (dx[i] = sum_k dy[i + p - k] w[k]), which gathers instead
// of scatter-adding: ~20% faster on ResNet shapes.
void conv2dInputGrad(const ConvShape& s, const float* dy, const float* w, float* dx, int threads) {
  if (s.pointwise()) return gemmSplit(false, true, s.n * s.h * s.w, s.ci, s.co, dy, w, 0.0f, dx, threads);
  if (s.sh == 1 && s.sw == 1 && s.pt <= s.kh - 1 && s.pl <= s.kw - 1 && s.ci >= 16) {  // (a few input channels: a thin product)
    std::vector<float> flipped(static_cast<size_t>(s.patch() * s.co));
    for (int64_t ky = 0; ky < s.kh; ++ky)
      for (int64_t kx = 0; kx < s.kw; ++kx)
        for (int64_t c = 0; c < s.ci; ++c)
          for (int64_t o = 0; o < s.co; ++o)
            flipped[static_cast<size_t>(((ky * s.kw + kx) * s.co + o) * s.ci + c)] = w[((s.kh - 1 - ky) * s.kw + (s.kw - 1 - kx)) * s.ci * s.co + c * s.co + o];
    const ConvShape t{s.n, s.oh, s.ow, s.co, s.kh, s.kw, s.ci, 1, 1, s.kh - 1 - s.pt, s.kw - 1 - s.pl, s.h, s.w};
    return conv2dForward(t, dy, flipped.data(), dx, threads);
  }
  forEachChunk(s, threads, [&](int, int64_t b0, int64_t b1, float* dcol) {
    gemmSplit(false, true, (b1 - b0) * s.outPixels(), s.patch(), s.co, dy + b0 * s.outPixels() * s.co, w, 0.0f, dcol, 1);
    std::fill(dx + b0 * s.h * s.w * s.ci, dx + b1 * s.h * s.w * s.ci, 0.0f);
    col2imAdd(s, dcol, b0, b1, dx);
  });
}


// ------------------------------------------------------------------------------------------------
// Batch normalisation over the rows of x [M, C] (Ioffe & Szegedy 2015, alg. 1), biased variance.
// Column sums are accumulated in double per thread over a fixed row split and added in order.

template <typename RowFn>
std::vector<double> columnSums2(int64_t m, int64_t c, int threads, RowFn rowFn) {
  const int parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, m / 256)));
  std::vector<std::vector<double>> partial(static_cast<size_t>(parts), std::vector<double>(static_cast<size_t>(2 * c), 0.0));
  parallelFor(m, parts, [&](int part, int64_t r0, int64_t r1) {
    double* s = partial[static_cast<size_t>(part)].data();
    for (int64_t r = r0; r < r1; ++r) rowFn(r, s, s + c);
  });
  for (int p = 1; p < parts; ++p)
    for (int64_t i = 0; i < 2 * c; ++i) partial[0][static_cast<size_t>(i)] += partial[static_cast<size_t>(p)][static_cast<size_t>(i)];
  return partial[0];
}

void batchNormForward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* variance, int64_t m, int64_t c, float eps, int threads) {
  // E[x] and E[x^2] in double: exact enough for float data, one pass.
  const std::vector<double> sums = columnSums2(m, c, threads, [&](int64_t r, double* s1, double* s2) {
    const float* xr = x + r * c;
    for (int64_t j = 0; j < c; ++j) {
      const double v = xr[j];
      s1[j] += v;
      s2[j] += v * v;
    }
  });
  std::vector<float> scale(static_cast<size_t>(c)), shift(static_cast<size_t>(c));
  for (int64_t j = 0; j < c; ++j) {
    const double mu = sums[static_cast<size_t>(j)] / static_cast<double>(m);
    const double var = std::max(0.0, sums[static_cast<size_t>(c + j)] / static_cast<double>(m) - mu * mu);
    mean[j] = static_cast<float>(mu);
    variance[j] = static_cast<float>(var);
    const double g = gamma ? gamma[j] : 1.0, invStd = 1.0 / std::sqrt(var + eps);
    scale[static_cast<size_t>(j)] = static_cast<float>(g * invStd);
    shift[static_cast<size_t>(j)] = static_cast<float>((beta ? beta[j] : 0.0) - mu * g * invStd);
  }
  parallelFor(m, static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, m / 256))), [&](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < c; ++j) y[r * c + j] = x[r * c + j] * scale[static_cast<size_t>(j)] + shift[static_cast<size_t>(j)];
  });
}

// dbeta = sum(dy), dgamma = sum(dy xHat), dx = gamma invStd (dy - dbeta/M - xHat dgamma/M); any output may be null.
void batchNormBackward(const float* x, const float* dy, const float* mean, const float* variance, const float* gamma, float* dx, float* dgamma, float* dbeta, int64_t m, int64_t c, float eps, int threads) {
  // dbeta alone needs only dy: half the memory traffic of the pass.
  const std::vector<double> sums = (dx || dgamma) ? columnSums2(m, c, threads, [&](int64_t r, double* sDy, double* sDyX) {
    const float* xr = x + r * c;
    const float* dyr = dy + r * c;
    for (int64_t j = 0; j < c; ++j) {
      sDy[j] += dyr[j];
      sDyX[j] += static_cast<double>(dyr[j]) * (xr[j] - mean[j]);
    }
  }) : columnSums2(m, c, threads, [&](int64_t r, double* sDy, double*) {
    const float* dyr = dy + r * c;
    for (int64_t j = 0; j < c; ++j) sDy[j] += dyr[j];
  });
  std::vector<float> invStd(static_cast<size_t>(c)), a(static_cast<size_t>(c)), b(static_cast<size_t>(c)), k(static_cast<size_t>(c));
  for (int64_t j = 0; j < c; ++j) {
    const double is = 1.0 / std::sqrt(static_cast<double>(variance[j]) + eps);
    const double sumDy = sums[static_cast<size_t>(j)], sumDyXHat = sums[static_cast<size_t>(c + j)] * is;
    if (dbeta) dbeta[j] = static_cast<float>(sumDy);
    if (dgamma) dgamma[j] = static_cast<float>(sumDyXHat);
    // dx = a * dy + b * (x - mean) + k, with a = gamma invStd, b = -a invStd dgamma / M, k = -a dbeta / M.
    const double aj = (gamma ? gamma[j] : 1.0) * is;
    a[static_cast<size_t>(j)] = static_cast<float>(aj);
    b[static_cast<size_t>(j)] = static_cast<float>(-aj * is * sumDyXHat / static_cast<double>(m));
    k[static_cast<size_t>(j)] = static_cast<float>(-aj * sumDy / static_cast<double>(m) + aj * is * sumDyXHat / static_cast<double>(m) * mean[j]);
  }
  if (!dx) return;
  parallelFor(m, static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, m / 256))), [&](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < c; ++j)
        dx[r * c + j] = a[static_cast<size_t>(j)] * dy[r * c + j] + b[static_cast<size_t>(j)] * x[r * c + j] + k[static_cast<size_t>(j)];
  });
}

// ------------------------------------------------------------------------------------------------
// Transformer kernels: exact GELU, layer norm over rows, and attention heads in and out of tokens

constexpr float kSqrt1_2 = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;

// exp(x) in float, branch-free so that loops of it vectorise (with -fno-trapping-math): Cephes'
// expf (range reduction by ln 2 in two parts, degree-6 polynomial), relative error ~1e-7; 0 below -87.
inline float fastExp(float x) {
  const float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float k = __builtin_floorf(xc * 1.44269504088896341f + 0.5f);
  const float r = (xc - k * 0.693359375f) - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x < -87.0f ? 0.0f : p * scale;
}

// Phi(x), the standard normal CDF, as erfc(|x| / sqrt 2) / 2 by Numerical Recipes' erfcc (relative
// error < 1.2e-7 for every argument), so that the lower tail keeps its relative accuracy (1 + erf(x)
// cancels there). Branch-free and vectorisable, where libm's erf is a scalar call (~17 ns a value).
inline float normalCdf(float x) {
  const float z = std::fabs(x) * kSqrt1_2;
  const float t = 1.0f / (1.0f + 0.5f * z);
  const float poly = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
  const float tail = 0.5f * t * fastExp(poly - z * z);  // Phi(-|x|)
  return x < 0.0f ? tail : 1.0f - tail;
}

// Parts for a pass over `values` floats in `rows` rows: one per 64k values, at most `threads`.
int partsFor(int64_t rows, int64_t values, int threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({static_cast<int64_t>(threads), rows, values / 65536})));
}

// Per row r of x [m, d]: mean[r], rstd[r] = 1 / sqrt(var + eps) (biased, two-pass), and
// y = (x - mean) rstd gamma + beta (Ba et al. 2016; PyTorch nn.LayerNorm).
void layerNormForward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd, int64_t m, int64_t d, float eps, int threads) {
  parallelFor(m, partsFor(m, m * d, threads), [&](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * d;
      double s = 0.0, s2 = 0.0;
      for (int64_t j = 0; j < d; ++j) s += xr[j];
      const double mu = s / static_cast<double>(d);
      for (int64_t j = 0; j < d; ++j) s2 += (xr[j] - mu) * (xr[j] - mu);
      const float mf = static_cast<float>(mu), rs = static_cast<float>(1.0 / std::sqrt(s2 / static_cast<double>(d) + eps));
      mean[r] = mf;
      rstd[r] = rs;
      float* yr = y + r * d;
      for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - mf) * rs * gamma[j] + beta[j];
    }
  });
}

// With xHat = (x - mean) rstd and g = dy gamma: dx = rstd (g - mean(g) - xHat mean(g xHat)) per row,
// dgamma = sum over rows of dy xHat, dbeta = sum of dy; any output may be null.
void layerNormBackward(const float* x, const float* dy, const float* mean, const float* rstd, const float* gamma, float* dx, float* dgamma, float* dbeta, int64_t m, int64_t d, int threads) {
  if (dx) {
    parallelFor(m, partsFor(m, m * d, threads), [&](int, int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * d;
        const float* dyr = dy + r * d;
        const float mu = mean[r], rs = rstd[r];
        float sg = 0.0f, sgx = 0.0f;
        for (int64_t j = 0; j < d; ++j) {
          const float g = dyr[j] * gamma[j];
          sg += g;
          sgx += g * (xr[j] - mu) * rs;
        }
        const float mg = sg / static_cast<float>(d), mgx = sgx / static_cast<float>(d);
        float* dxr = dx + r * d;
        for (int64_t j = 0; j < d; ++j) dxr[j] = rs * (dyr[j] * gamma[j] - mg - (xr[j] - mu) * rs * mgx);
      }
    });
  }
  if (!dgamma && !dbeta) return;
  const std::vector<double> sums = columnSums2(m, d, threads, [&](int64_t r, double* sDy, double* sDyX) {
    const float* xr = x + r * d;
    const float* dyr = dy + r * d;
    const float mu = mean[r], rs = rstd[r];
    for (int64_t j = 0; j < d; ++j) {
      sDy[j] += dyr[j];
      sDyX[j] += dyr[j] * (xr[j] - mu) * rs;
    }
  });
  for (int64_t j = 0; j < d; ++j) {
    if (dbeta) dbeta[j] = static_cast<float>(sums[static_cast<size_t>(j)]);
    if (dgamma) dgamma[j] = static_cast<float>(sums[static_cast<size_t>(d + j)]);
  }
}

// Attention heads: part `part` of tokens [n, l, parts, h, dh] <-> heads [n, h, l, dh] (merge: heads
// into tokens), the reshape-transpose-split of a fused qkv projection as one copy of dh-float rows.
// The max and the sum of term(j) over j < n in 16 independent lanes (one running max or sum is a
// chain of dependent instructions; the sum's lanes vectorise); a fixed order, so reproducible.
constexpr int kLanes = 16;
template <typename Term>
float laneMax(int64_t n, Term term) {
  float acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = term(0);
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] = term(j + l) > acc[l] ? term(j + l) : acc[l];
  for (; j < n; ++j) acc[0] = term(j) > acc[0] ? term(j) : acc[0];
  float top = acc[0];
  for (int l = 1; l < kLanes; ++l) top = acc[l] > top ? acc[l] : top;
  return top;
}
template <typename Term>
float laneSum(int64_t n, Term term) {
  float acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += term(j + l);
  for (; j < n; ++j) acc[0] += term(j);
  float sum = 0.0f;
  for (int l = 0; l < kLanes; ++l) sum += acc[l];
  return sum;
}

// y = softmax(scale x) over one row of d values (scale > 0): exp(scale (x - max)) / sum.
inline void softmaxRow(const float* __restrict x, float* __restrict y, int64_t d, float scale) {
  const float shift = scale * laneMax(d, [&](int64_t j) { return x[j]; });  // the largest scaled value
  for (int64_t j = 0; j < d; ++j) y[j] = fastExp(scale * x[j] - shift);  // branch-free: vectorises
  const float inv = 1.0f / laneSum(d, [&](int64_t j) { return y[j]; });
  for (int64_t j = 0; j < d; ++j) y[j] *= inv;
}

// softmaxRow over each row r of x [m, d] (attention: scale = 1 / sqrt(d_head), folded in).
void softmaxRows(const float* x, float* y, int64_t m, int64_t d, float scale, int threads) {
  parallelFor(m, partsFor(m, m * d, threads), [&](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) softmaxRow(x + r * d, y + r * d, d, scale);
  });
}

// Its gradient from its output: dx = scale y (dy - sum_j dy_j y_j), over one row.
inline void softmaxRowGrad(const float* __restrict y, const float* __restrict dy, float* __restrict dx, int64_t d, float scale) {
  const float dot = laneSum(d, [&](int64_t j) { return dy[j] * y[j]; });
  for (int64_t j = 0; j < d; ++j) dx[j] = scale * y[j] * (dy[j] - dot);
}

// softmaxRowGrad over each row r.
void softmaxRowsGrad(const float* y, const float* dy, float* dx, int64_t m, int64_t d, float scale, int threads) {
  parallelFor(m, partsFor(m, m * d, threads), [&](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) softmaxRowGrad(y + r * d, dy + r * d, dx + r * d, d, scale);
  });
}

void moveHeads(float* tokens, float* heads, int64_t n, int64_t l, int64_t parts, int64_t part, int64_t h, int64_t dh, bool merge, int threads) {
  const int64_t blocks = n * h;
  parallelFor(blocks, partsFor(blocks, blocks * l * dh, threads), [&](int, int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {  // blk = b h + head
      const int64_t b = blk / h, head = blk % h;
      for (int64_t t = 0; t < l; ++t) {
        float* token = tokens + ((b * l + t) * parts + part) * h * dh + head * dh;
        float* row = heads + (blk * l + t) * dh;
        if (merge) std::memcpy(token, row, sizeof(float) * dh);
        else std::memcpy(row, token, sizeof(float) * dh);
      }
    }
  });
}

// ------------------------------------------------------------------------------------------------
// N-API glue

struct Args {
  napi_env env;
  std::vector<napi_value> v;
  bool failed = false;
  Args(napi_env e, napi_callback_info info, size_t n) : env(e), v(n) {
    size_t argc = n;
    napi_get_cb_info(env, info, &argc, v.data(), nullptr, nullptr);
    if (argc < n) fail("expected " + std::to_string(n) + " arguments, got " + std::to_string(argc));
  }
  void fail(const std::string& msg) {
    if (!failed) napi_throw_error(env, "ERR_SSLKIT_NATIVE", ("sslkit-native: " + msg).c_str());
    failed = true;
  }
  float* floats(size_t i, int64_t minLength, const char* name) {
    if (failed) return nullptr;
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    if (napi_get_typedarray_info(env, v[i], &type, &length, &data, nullptr, nullptr) != napi_ok || type != napi_float32_array) {
      fail(std::string(name) + " must be a Float32Array");
      return nullptr;
    }
    if (static_cast<int64_t>(length) < minLength) {
      fail(std::string(name) + " holds " + std::to_string(length) + " floats, needs " + std::to_string(minLength));
      return nullptr;
    }
    return static_cast<float*>(data);
  }
  int64_t integer(size_t i, const char* name, int64_t min = 0) {
    if (failed) return 0;
    int64_t out = 0;
    if (napi_get_value_int64(env, v[i], &out) != napi_ok || out < min) fail(std::string(name) + " must be an integer >= " + std::to_string(min));
    return out;
  }
  // Optional Float32Array argument (null/undefined -> nullptr).
  float* optionalFloats(size_t i, int64_t minLength, const char* name) {
    if (failed) return nullptr;
    napi_valuetype type = napi_null;
    napi_typeof(env, v[i], &type);
    return (type == napi_null || type == napi_undefined) ? nullptr : floats(i, minLength, name);
  }
  double number(size_t i, const char* name) {
    double out = 0;
    if (!failed && napi_get_value_double(env, v[i], &out) != napi_ok) fail(std::string(name) + " must be a number");
    return out;
  }
  bool boolean(size_t i) {
    bool out = false;
    if (!failed) napi_get_value_bool(env, v[i], &out);
    return out;
  }
};

napi_value undefinedValue(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// gemm(a, b, c, bias|null, transA, transB, batch, m, n, k, aBatchStride, bBatchStride):
// c[batch, m, n] = op(a) op(b) (+ bias[n]); a batch stride of 0 broadcasts that operand.
napi_value Gemm(napi_env env, napi_callback_info info) {
  Args g(env, info, 12);
  const bool ta = g.boolean(4), tb = g.boolean(5);
  const int64_t batch = g.integer(6, "batch"), m = g.integer(7, "m"), n = g.integer(8, "n"), k = g.integer(9, "k");
  const int64_t sa = g.integer(10, "aBatchStride"), sb = g.integer(11, "bBatchStride");
  const float* a = g.floats(0, (batch - 1) * sa + m * k, "a");
  const float* b = g.floats(1, (batch - 1) * sb + k * n, "b");
  float* c = g.floats(2, batch * m * n, "c");
  const float* bias = g.optionalFloats(3, n, "bias");
  if (g.failed) return nullptr;
  auto product = [&](int64_t i, int threads) {
    float* ci = c + i * m * n;
    if (bias)
      for (int64_t r = 0; r < m; ++r) std::memcpy(ci + r * n, bias, sizeof(float) * n);
    gemmSplit(ta, tb, m, n, k, a + i * sa, b + i * sb, bias ? 1.0f : 0.0f, ci, threads);
  };
  if (batch >= g_threads && static_cast<double>(batch) * m * n * k >= kMinParallelMacs) {
    parallelFor(batch, g_threads, [&](int, int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) product(i, 1);
    });
  } else {
    for (int64_t i = 0; i < batch; ++i) product(i, g_threads);
  }
  return undefinedValue(env);
}

// Conv kernels share the argument list (p, q, out, n, h, w, ci, kh, kw, co, sh, sw, pt, pl, oh, ow).
template <int Kind>
napi_value Conv(napi_env env, napi_callback_info info) {
  Args g(env, info, 16);
  ConvShape s{};
  s.n = g.integer(3, "n"), s.h = g.integer(4, "h", 1), s.w = g.integer(5, "w", 1), s.ci = g.integer(6, "ci", 1);
  s.kh = g.integer(7, "kh", 1), s.kw = g.integer(8, "kw", 1), s.co = g.integer(9, "co", 1);
  s.sh = g.integer(10, "sh", 1), s.sw = g.integer(11, "sw", 1), s.pt = g.integer(12, "pt"), s.pl = g.integer(13, "pl");
  s.oh = g.integer(14, "oh"), s.ow = g.integer(15, "ow");
  const int64_t xSize = s.n * s.h * s.w * s.ci, wSize = s.patch() * s.co, ySize = s.n * s.oh * s.ow * s.co;
  if (Kind == 0) {  // forward: (x, w) -> y
    const float* x = g.floats(0, xSize, "x");
    const float* w = g.floats(1, wSize, "filter");
    float* y = g.floats(2, ySize, "y");
    if (!g.failed) conv2dForward(s, x, w, y, g_threads);
  } else if (Kind == 1) {  // filter gradient: (x, dy) -> dw
    const float* x = g.floats(0, xSize, "x");
    const float* dy = g.floats(1, ySize, "dy");
    float* dw = g.floats(2, wSize, "dw");
    if (!g.failed) conv2dFilterGrad(s, x, dy, dw, g_threads);
  } else {  // input gradient: (dy, w) -> dx
    const float* dy = g.floats(0, ySize, "dy");
    const float* w = g.floats(1, wSize, "filter");
    float* dx = g.floats(2, xSize, "dx");
    if (!g.failed) conv2dInputGrad(s, dy, w, dx, g_threads);
  }
  return g.failed ? nullptr : undefinedValue(env);
}

// batchNormForward(x, gamma|null, beta|null, y, mean, variance, m, c, eps)
napi_value BatchNormForward(napi_env env, napi_callback_info info) {
  Args g(env, info, 9);
  const int64_t m = g.integer(6, "m", 1), c = g.integer(7, "c", 1);
  const float eps = static_cast<float>(g.number(8, "eps"));
  const float* x = g.floats(0, m * c, "x");
  const float* gamma = g.optionalFloats(1, c, "gamma");
  const float* beta = g.optionalFloats(2, c, "beta");
  float* y = g.floats(3, m * c, "y");
  float* mean = g.floats(4, c, "mean");
  float* variance = g.floats(5, c, "variance");
  if (g.failed) return nullptr;
  batchNormForward(x, gamma, beta, y, mean, variance, m, c, eps, g_threads);
  return undefinedValue(env);
}

// batchNormBackward(x, dy, mean, variance, gamma|null, dx|null, dgamma|null, dbeta|null, m, c, eps)
napi_value BatchNormBackward(napi_env env, napi_callback_info info) {
  Args g(env, info, 11);
  const int64_t m = g.integer(8, "m", 1), c = g.integer(9, "c", 1);
  const float eps = static_cast<float>(g.number(10, "eps"));
  const float* x = g.floats(0, m * c, "x");
  const float* dy = g.floats(1, m * c, "dy");
  const float* mean = g.floats(2, c, "mean");
  const float* variance = g.floats(3, c, "variance");
  const float* gamma = g.optionalFloats(4, c, "gamma");
  float* dx = g.optionalFloats(5, m * c, "dx");
  float* dgamma = g.optionalFloats(6, c, "dgamma");
  float* dbeta = g.optionalFloats(7, c, "dbeta");
  if (g.failed) return nullptr;
  batchNormBackward(x, dy, mean, variance, gamma, dx, dgamma, dbeta, m, c, eps, g_threads);
  return undefinedValue(env);
}

// Element-wise kernels over n floats, split over threads in blocks of at least 64k values.
template <typename Body>
void elementwise(int64_t n, Body body) {
  parallelFor(n, static_cast<int>(std::min<int64_t>(g_threads, std::max<int64_t>(1, n / 65536))), [&](int, int64_t i0, int64_t i1) { body(i0, i1); });
}

// (p, q, out, n): out[i] = op(p[i], q[i]), the argument list add and reluGrad share.
template <typename Op>
napi_value Binary(napi_env env, napi_callback_info info, const char* pName, const char* qName, const char* outName, Op op) {
  Args g(env, info, 4);
  const int64_t n = g.integer(3, "n");
  const float* p = g.floats(0, n, pName);
  const float* q = g.floats(1, n, qName);
  float* out = g.floats(2, n, outName);
  if (g.failed) return nullptr;
  elementwise(n, [&](int64_t i0, int64_t i1) {
    const float* __restrict pp = p + i0;
    const float* __restrict qp = q + i0;
    float* __restrict outp = out + i0;
    for (int64_t i = 0; i < i1 - i0; ++i) outp[i] = op(pp[i], qp[i]);
  });
  return undefinedValue(env);
}

// reluGrad(dy, y, dx, n): dx = dy where y > 0, else 0 (y is relu's output; branch-free, a vector blend).
napi_value ReluGrad(napi_env env, napi_callback_info info) {
  return Binary(env, info, "dy", "y", "dx", [](float dy, float y) { return y > 0.0f ? dy : 0.0f; });
}

// add(a, b, y, n): y = a + b (same shapes).
napi_value Add(napi_env env, napi_callback_info info) {
  return Binary(env, info, "a", "b", "y", [](float a, float b) { return a + b; });
}

// (x, y, n): y[i] = op(x[i]), the argument list relu and gelu share.
template <typename Op>
napi_value Unary(napi_env env, napi_callback_info info, Op op) {
  Args g(env, info, 3);
  const int64_t n = g.integer(2, "n");
  const float* x = g.floats(0, n, "x");
  float* y = g.floats(1, n, "y");
  if (g.failed) return nullptr;
  elementwise(n, [&](int64_t i0, int64_t i1) {
    const float* __restrict xp = x + i0;
    float* __restrict yp = y + i0;
    for (int64_t i = 0; i < i1 - i0; ++i) yp[i] = op(xp[i]);
  });
  return undefinedValue(env);
}

// relu(x, y, n): y = max(x, 0).
napi_value Relu(napi_env env, napi_callback_info info) {
  return Unary(env, info, [](float x) { return x > 0.0f ? x : 0.0f; });
}

// channelAffine(x, scale, shift, y, m, c): y[r, j] = x[r, j] scale[j] + shift[j] (eval-mode batch norm).
napi_value ChannelAffine(napi_env env, napi_callback_info info) {
  Args g(env, info, 6);
  const int64_t m = g.integer(4, "m"), c = g.integer(5, "c", 1);
  const float* x = g.floats(0, m * c, "x");
  const float* scale = g.floats(1, c, "scale");
  const float* shift = g.floats(2, c, "shift");
  float* y = g.floats(3, m * c, "y");
  if (g.failed) return nullptr;
  elementwise(m, [&](int64_t r0, int64_t r1) {  // (rows of c values)
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < c; ++j) y[r * c + j] = x[r * c + j] * scale[j] + shift[j];
  });
  return undefinedValue(env);
}

// gelu(x, y, n): y = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2 (Hendrycks & Gimpel 2016; nn.GELU()).
napi_value Gelu(napi_env env, napi_callback_info info) {
  return Unary(env, info, [](float x) { return x * normalCdf(x); });
}

// geluGrad(x, dy, dx, n): dx = dy (Phi(x) + x phi(x)), phi the standard normal density.
napi_value GeluGrad(napi_env env, napi_callback_info info) {
  return Binary(env, info, "x", "dy", "dx", [](float x, float dy) {
    return dy * (normalCdf(x) + x * kInvSqrt2Pi * fastExp(-0.5f * x * x));
  });
}

// layerNormForward(x, gamma, beta, y, mean, rstd, m, d, eps)
napi_value LayerNormForward(napi_env env, napi_callback_info info) {
  Args g(env, info, 9);
  const int64_t m = g.integer(6, "m", 1), d = g.integer(7, "d", 1);
  const float eps = static_cast<float>(g.number(8, "eps"));
  const float* x = g.floats(0, m * d, "x");
  const float* gamma = g.floats(1, d, "gamma");
  const float* beta = g.floats(2, d, "beta");
  float* y = g.floats(3, m * d, "y");
  float* mean = g.floats(4, m, "mean");
  float* rstd = g.floats(5, m, "rstd");
  if (g.failed) return nullptr;
  layerNormForward(x, gamma, beta, y, mean, rstd, m, d, eps, g_threads);
  return undefinedValue(env);
}

// layerNormBackward(x, dy, mean, rstd, gamma, dx|null, dgamma|null, dbeta|null, m, d)
napi_value LayerNormBackward(napi_env env, napi_callback_info info) {
  Args g(env, info, 10);
  const int64_t m = g.integer(8, "m", 1), d = g.integer(9, "d", 1);
  const float* x = g.floats(0, m * d, "x");
  const float* dy = g.floats(1, m * d, "dy");
  const float* mean = g.floats(2, m, "mean");
  const float* rstd = g.floats(3, m, "rstd");
  const float* gamma = g.floats(4, d, "gamma");
  float* dx = g.optionalFloats(5, m * d, "dx");
  float* dgamma = g.optionalFloats(6, d, "dgamma");
  float* dbeta = g.optionalFloats(7, d, "dbeta");
  if (g.failed) return nullptr;
  layerNormBackward(x, dy, mean, rstd, gamma, dx, dgamma, dbeta, m, d, g_threads);
  return undefinedValue(env);
}

// softmax(x, y, m, d, scale): y = softmax(scale x) over each row of d values (scale > 0).
napi_value Softmax(napi_env env, napi_callback_info info) {
  Args g(env, info, 5);
  const int64_t m = g.integer(2, "m"), d = g.integer(3, "d", 1);
  const double scale = g.number(4, "scale");
  if (!g.failed && !(scale > 0.0)) g.fail("scale must be > 0");
  const float* x = g.floats(0, m * d, "x");
  float* y = g.floats(1, m * d, "y");
  if (g.failed) return nullptr;
  softmaxRows(x, y, m, d, static_cast<float>(scale), g_threads);
  return undefinedValue(env);
}

// softmaxGrad(y, dy, dx, m, d, scale): dx = scale y (dy - sum(dy y)) per row, y softmax's output.
napi_value SoftmaxGrad(napi_env env, napi_callback_info info) {
  Args g(env, info, 6);
  const int64_t m = g.integer(3, "m"), d = g.integer(4, "d", 1);
  const double scale = g.number(5, "scale");
  const float* y = g.floats(0, m * d, "y");
  const float* dy = g.floats(1, m * d, "dy");
  float* dx = g.floats(2, m * d, "dx");
  if (g.failed) return nullptr;
  softmaxRowsGrad(y, dy, dx, m, d, static_cast<float>(scale), g_threads);
  return undefinedValue(env);
}

// moveHeads(tokens, heads, n, l, parts, part, h, dh, merge): part `part` of tokens [n, l, parts, h, dh]
// to heads [n, h, l, dh] (merge 0), or heads into that part of tokens (merge 1).
napi_value MoveHeads(napi_env env, napi_callback_info info) {
  Args g(env, info, 9);
  const int64_t n = g.integer(2, "n"), l = g.integer(3, "l"), parts = g.integer(4, "parts", 1), part = g.integer(5, "part");
  const int64_t h = g.integer(6, "h", 1), dh = g.integer(7, "dh", 1), merge = g.integer(8, "merge");
  if (!g.failed && merge > 1) g.fail("merge must be 0 or 1");
  if (!g.failed && part >= parts) g.fail("part must be < parts");
  float* tokens = g.floats(0, n * l * parts * h * dh, "tokens");
  float* heads = g.floats(1, n * l * h * dh, "heads");
  if (g.failed) return nullptr;
  moveHeads(tokens, heads, n, l, parts, part, h, dh, merge == 1, g_threads);
  return undefinedValue(env);
}

napi_value SetThreads(napi_env env, napi_callback_info info) {
  Args g(env, info, 1);
  const int64_t t = g.integer(0, "threads", 1);
  if (g.failed) return nullptr;
  g_threads = static_cast<int>(std::min<int64_t>(t, 256));
  return undefinedValue(env);
}

// setWinograd(m): 3x3 stride-1 convolutions by Winograd F(m x m, 3x3), m = 4 (default) or 2; 0: im2col.
napi_value SetWinograd(napi_env env, napi_callback_info info) {
  Args g(env, info, 1);
  const int64_t m = g.integer(0, "tile");
  if (!g.failed && m != 0 && m != 2 && m != 4) g.fail("tile must be 0, 2 or 4, got " + std::to_string(m));
  if (g.failed) return nullptr;
  sslkit::setWinogradTile(static_cast<int>(m));
  return undefinedValue(env);
}

napi_value Info(napi_env env, napi_callback_info) {
  napi_value out, threads, blas, winograd;
  napi_create_object(env, &out);
  napi_create_int32(env, g_threads, &threads);
  napi_create_int32(env, sslkit::winogradTile(), &winograd);
  napi_set_named_property(env, out, "winograd", winograd);
  napi_create_string_utf8(env, openblas_get_config(), NAPI_AUTO_LENGTH, &blas);
  napi_set_named_property(env, out, "threads", threads);
  napi_set_named_property(env, out, "blas", blas);
  return out;
}

napi_value Init(napi_env env, napi_value exports) {
  openblas_set_num_threads(1);  // sslkit splits the work itself (deterministically)
  const std::pair<const char*, napi_callback> fns[] = {
      {"gemm", Gemm}, {"conv2d", Conv<0>}, {"conv2dFilterGrad", Conv<1>}, {"conv2dInputGrad", Conv<2>}, {"batchNormForward", BatchNormForward}, {"batchNormBackward", BatchNormBackward}, {"reluGrad", ReluGrad}, {"channelAffine", ChannelAffine}, {"add", Add}, {"relu", Relu}, {"gelu", Gelu}, {"geluGrad", GeluGrad}, {"layerNormForward", LayerNormForward}, {"layerNormBackward", LayerNormBackward}, {"moveHeads", MoveHeads}, {"softmax", Softmax}, {"softmaxGrad", SoftmaxGrad}, {"setThreads", SetThreads}, {"setWinograd", SetWinograd}, {"info", Info},
  };
  for (const auto& [name, fn] : fns) {
    napi_value f;
    napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, nullptr, &f);
    napi_set_named_property(env, exports, name, f);
  }
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
