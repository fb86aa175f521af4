// See precision.h.
#include "model/precision.h"

namespace pt {

Status parse_precision(const std::string& name, Precision* out) {
  if (name == "fp32") {
    *out = Precision::kFp32;
  } else if (name == "bf16") {
    *out = Precision::kBf16;
  } else {
    return Status::error("'" + name + "' is not one of: " + precision_names());
  }
  return Status::ok();
}

const char* precision_name(Precision p) { return p == Precision::kBf16 ? "bf16" : "fp32"; }

const char* precision_names() { return "fp32, bf16"; }

}  // namespace pt
