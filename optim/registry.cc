#include "optim/registry.h"

#include "optim/adamw.h"
#include "optim/basis_rotation.h"
#include "optim/nadamw.h"

namespace pt {

const std::vector<OptimizerEntry>& optimizer_registry() {
  static const std::vector<OptimizerEntry> table = {
      {"adamw", &make_adamw, nullptr},
      {"nadamw", &make_nadamw, "nadamw"},
      {"basis_rotation", &make_basis_rotation, "basis_rotation"},
  };
  return table;
}

const OptimizerEntry* find_optimizer(const std::string& kind) {
  for (const auto& e : optimizer_registry())
    if (kind == e.kind) return &e;
  return nullptr;
}

std::vector<std::string> optimizer_kinds() {
  std::vector<std::string> out;
  for (const auto& e : optimizer_registry()) out.push_back(e.kind);
  return out;
}

Status make_optimizer(const std::string& kind, const OptimizerOptions& options, std::unique_ptr<Optimizer>* out) {
  std::string allowed;
  for (const auto& e : optimizer_registry()) {
    if (kind == e.kind) {
      *out = e.make(options);
      return Status::ok();
    }
    allowed += (allowed.empty() ? "" : ", ") + std::string(e.kind);
  }
  return Status::error("optimizer kind '" + kind + "' is not available; allowed: " + allowed);
}

}  // namespace pt
