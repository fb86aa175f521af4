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
};

const std::vector<OptimizerEntry>& optimizer_registry();

// Every registered kind, in table order.
std::vector<std::string> optimizer_kinds();

// The optimizer of `kind`; an unknown kind is an error naming the allowed kinds.
Status make_optimizer(const std::string& kind, const OptimizerOptions& options, std::unique_ptr<Optimizer>* out);

}  // namespace pt
