// Checks every Optimizer implementation makes on what it is handed (programming errors: the
// fatal reporter). Shared so the implementations state their update rule and nothing else.
#pragma once

#include <string>
#include <vector>

#include "common/check.h"
#include "optim/optimizer.h"

namespace pt {

// Every tensor of `layout` lies inside a stage of n floats.
inline void check_layout_fits(const std::vector<OptimTensor>& layout, size_t n, const char* kind) {
  for (const auto& t : layout)
    PT_CHECK_MSG(t.offset + t.numel <= n, std::string(kind) + ": tensor '" + t.name + "' exceeds the stage");
}

// `state` as the host state `State` of `kind` for host buffers `b` of the same size.
template <class State>
State& host_state_for(OptimizerState& state, const StageBuffers& b, const char* kind) {
  auto* s = dynamic_cast<State*>(&state);
  PT_CHECK_MSG(s != nullptr && b.space == MemorySpace::kHost && s->space() == MemorySpace::kHost,
               std::string(kind) + ": host buffers need the state of make_state(..., kHost)");
  PT_CHECK(b.n == s->n());
  return *s;
}

}  // namespace pt
