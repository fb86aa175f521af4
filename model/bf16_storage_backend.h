// Real bf16 storage (2 bytes per element) for the bf16 tensors of a stage model
// (runtime.precision: bf16), on any backend with pack_bf16/unpack_bf16: a Backend
// decorator around `inner`.
//
// alloc_bf16(n) takes (n + 1) / 2 floats of inner memory as n bf16 elements and
// returns a handle for them (model/storage_ranges.h); everything else is inner's.
// Every op and copy resolves each pointer operand: fp32 memory passes through
// unchanged. When an operand of a GEMM, the attention, GELU, the residual add or a copy
// lies in bf16 storage, the op goes first to inner's typed entry point (Backend::*_typed)
// with every operand as a TensorPtr of its dtype: CUDA reads and writes the bf16
// elements in place (bf16 cuBLASLt GEMMs, flash attention, templated elementwise
// kernels, conversion kernels), the CPU widens them (bitwise the staging below).
// Otherwise (other ops, or the entry point declines, e.g. a GEMM shape the bf16 kernels
// do not take) each operand inside bf16 storage is staged (except the fused fc + GELU,
// Backend::matmul_forward_gelu, which has only the typed form: it returns false unless
// both outputs are bf16 storage and inner takes it, and the stage model then runs the
// unfused ops): unpacked (exactly) into an
// fp32 scratch buffer when the op reads it, the inner op runs on the scratch, and what
// the op wrote is packed back with RNE. Since bf16 operands hold bf16 values and the
// stage model rounds (round_to_bf16) each bf16 output right after its producer, the
// stored bits are those of the fp32-container run, bit for bit: the decorator changes
// where values live, never a result (tests/model/bf16_storage_test.cc).
// round_to_bf16 on bf16 storage is a no-op (already rounded by the pack). Aliased
// operands (the same pointer twice, e.g. an in-place op) share one scratch buffer;
// two different operands overlapping inside one storage range fail (PT_CHECK), as do
// bf16 operands of a size the op cannot know (embedding tables, step-op buffers):
// those must be fp32.
// Costs of the staged path: an unpack pass per bf16 input and a pack pass per bf16
// output, and fp32 scratch for one op's bf16 operands (one buffer per operand position,
// grown on demand to the largest it held, reused, inner memory, so in
// peak_device_bytes; in the stage model LayerNorm and the residual + LayerNorm stage up
// to 3 NC, so about 3 NC fp32 in all). Still staged on CUDA (its typed entry points
// decline): copies from or to host memory, LayerNorm with mixed activation dtypes, and
// the GEMMs the bf16 kernels decline (an LM head whose V is not a multiple of 8). The
// embedding forward and backward run typed (bf16 output, bf16 output gradient), and so
// does the cross-entropy (bf16 logits and dlogits, read and written in place).
// host_memory() is false: handles must not be dereferenced on the host.
// Used by make_cuda_backend in bf16 (cuda_backend.h) and, on the CPU backend, by the
// test switch PIPETRAIN_TEST_BF16_STORAGE (stage_model_factory.h).
#pragma once

#include <cstddef>
#include <memory>

#include "model/backend.h"

namespace pt {

std::unique_ptr<Backend> make_bf16_storage_backend(std::unique_ptr<Backend> inner);

// bf16 operands staged through fp32 scratch (the fallback above) by every storage backend
// of this process so far: lets tests check which ops ran on the typed entry points.
size_t bf16_staged_operands();

}  // namespace pt
