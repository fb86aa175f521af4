// The optimizer registry: the one table that maps `optimizer.kind` to an
// implementation of optim/optimizer.h. Config validation takes its allowed list
// from here; no optimizer name is compared anywhere else.
// To add an optimizer: a file pair in optim/ with a make_<kind>() factory, one line
// in the table in registry.cc, and its tests in tests/optim/.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "optim/optimizer.h"

namespace pt {

struct OptimizerEntry {
  const char* kind;                                              // the optimizer.kind value
  std::unique_ptr<Optimizer> (*make)(const OptimizerOptions&);   // never null
  // The config section of this optimizer's own keys ("basis_rotation" for
  // optimizer.basis_rotation.*), or null. They must match on resume only when this
  // kind is selected, so a checkpoint of another kind does not depend on them.
  const char* keys_section;
};

const std::vector<OptimizerEntry>& optimizer_registry();

// optimizer.kind when a config leaves it out: the first entry of the table.
inline constexpr const char* kDefaultOptimizerKind = "adamw";

// The entry of `kind`, or null.
const OptimizerEntry* find_optimizer(const std::string& kind);

// Every registered kind, in table order.
std::vector<std::string> optimizer_kinds();

// The optimizer of `kind`; an unknown kind is an error naming the allowed kinds.
Status make_optimizer(const std::string& kind, const OptimizerOptions& options, std::unique_ptr<Optimizer>* out);

}  // namespace pt
