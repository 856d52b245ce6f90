// Winograd convolutions for 3x3 stride-1 layers (see winograd.cc).
#pragma once
#include "common.h"

namespace sslkit {

// Output tile size: 4 for F(4x4, 3x3), 2 for F(2x2, 3x3), 0 for none (im2col). Default 4.
void setWinogradTile(int m);
int winogradTile();
// The tile size used for this convolution, or 0 when Winograd does not apply (not 3x3 stride 1, few channels).
int winogradTileFor(const ConvShape& s);
void winogradConv2d(const ConvShape& s, int m, const float* x, const float* w, float* y, int threads);
void winogradFilterGrad(const ConvShape& s, int m, const float* x, const float* dy, float* dw, int threads);

}  // namespace sslkit
