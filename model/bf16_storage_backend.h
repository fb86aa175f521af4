// Real bf16 storage (2 bytes per element) for the bf16 tensors of a stage model
// (runtime.precision: bf16), on any backend with pack_bf16/unpack_bf16: a Backend
// decorator around `inner`.
//
// alloc_bf16(n) takes (n + 1) / 2 floats of inner memory as n bf16 elements and
// returns a handle for them (model/storage_ranges.h); everything else is inner's.
// Every op and copy resolves each pointer operand: fp32 memory passes through
// unchanged; an operand inside bf16 storage is staged: unpacked (exactly) into an
// fp32 scratch buffer when the op reads it, the inner op runs on the scratch, and
// what the op wrote is packed back with RNE. Since bf16 operands hold bf16 values
// and the stage model rounds (round_to_bf16) each bf16 output right after its
// producer, the stored bits are those of the fp32-container run, bit for bit: the
// decorator changes where values live, never a result (tests/model/bf16_storage_test.cc).
// round_to_bf16 on bf16 storage is a no-op (already rounded by the pack). Aliased
// operands (the same pointer twice, e.g. an in-place op) share one scratch buffer;
// two different operands overlapping inside one storage range fail (PT_CHECK), as do
// bf16 operands of a size the op cannot know (embedding tables, step-op buffers):
// those must be fp32.
// Costs of this generic path: an unpack pass per bf16 input and a pack pass per bf16
// output, and fp32 scratch for one op's bf16 operands (grown on demand, reused,
// inner memory, so in peak_device_bytes).
// host_memory() is false: handles must not be dereferenced on the host.
// Used by make_cuda_backend in bf16 (cuda_backend.h) and, on the CPU backend, by the
// test switch PIPETRAIN_TEST_BF16_STORAGE (stage_model_factory.h).
#pragma once

#include <memory>

#include "model/backend.h"

namespace pt {

std::unique_ptr<Backend> make_bf16_storage_backend(std::unique_ptr<Backend> inner);

}  // namespace pt
