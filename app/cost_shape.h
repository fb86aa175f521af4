// The cost-file shape (pipeline/cost_file.h) a config trains at: the model, the
// micro-batch, the sequence and the arithmetic (runtime.precision, runtime.tf32).
// `pipetrain bench` writes it into the file; plan --costs and training.sim_costs
// accept a file only at the same shape.
#pragma once

#include "app/config.h"
#include "pipeline/cost_file.h"

namespace pt {

CostShape cost_shape_of(const Config& c);

}  // namespace pt
