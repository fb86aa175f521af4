// Training precision of the forward and backward (runtime.precision).
//   fp32: every tensor fp32.
//   bf16: the forward and backward read bf16 copies of the weights (made once per
//         update from the fp32 masters) and store bf16 activations and activation
//         gradients; the fp32 master weights, the parameter gradients (accumulated
//         in fp32), the optimizer state, the LayerNorm mean/rstd, the attention's
//         saved softmax state and the loss stay fp32.
// The one list of names: parse_precision/precision_name; nothing else compares them.
#pragma once

#include <string>

#include "common/status.h"

namespace pt {

enum class Precision { kFp32, kBf16 };

// "fp32" | "bf16" -> *out; otherwise an error listing the names (no key prefix: the
// caller adds the key).
Status parse_precision(const std::string& name, Precision* out);
const char* precision_name(Precision p);
// "fp32, bf16" for messages and docs.
const char* precision_names();

}  // namespace pt
