// Element-wise mean of several equal-length buffers, written to all of them (CPU):
// LocalSGD's average of a stage's copies (app/model_copies.h), Backend::average.
#pragma once

#include <cstddef>

namespace pt::cpu {

// For i < n: m = float( (sum over p = 0..count-1, ascending, of double(bufs[p][i])) / count ),
// then bufs[p][i] = m for every p. bufs: count (>= 1) pointers to n floats each, distinct.
void average(float* const* bufs, int count, size_t n);

}  // namespace pt::cpu
