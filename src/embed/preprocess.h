// Pixels -> the model's input tensor.
//
// preprocess() writes one image as 3 x S x S floats (S = spec.input_size) at `out`, planar
// RGB (3 planes of S x S) for an NCHW model, interleaved (S x S pixels of RGB) for NHWC: the centre square covering
// input_size/resize_short_side of the shorter side is cropped (the standard ImageNet evaluation crop), resampled to S x
// S (bilinear; a plain copy when the decoder already delivered shorter side == resize_short_side), and normalised as
// (pixel - mean) / std.
#pragma once

#include "decode/decode.h"
#include "embed/model.h"

namespace imgsearch::embed {

void preprocess(const decode::RgbImage& image, const ModelSpec& spec, float* out);

// The decode options that make preprocess() a pure crop (no resampling twice).
decode::DecodeOptions decode_options_for(const ModelSpec& spec);

}  // namespace imgsearch::embed
