#include "app/cost_shape.h"

namespace pt {

CostShape cost_shape_of(const Config& c) {
  CostShape s{c.model.n_layer, c.model.n_embd, c.model.n_head, c.model.vocab_size, c.training.micro_batch_size,
              c.training.seq_len};
  s.precision = c.runtime.precision;
  s.tf32 = c.runtime.tf32;
  return s;
}

}  // namespace pt
