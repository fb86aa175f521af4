// BasisRotationState: basis_rotation's state of one stage (optim/basis_rotation.h):
// AdamW's moments adam_m, adam_v (n floats each, the params' layout; for a rotated
// matrix adam_v is in rotated coordinates) and per rotated matrix its blocks rot_q_left,
// rot_q_right, rot_l, rot_r (those its plan has), named for checkpoints. Here in host
// memory; the device state (optim/cuda/basis_rotation_state.h) derives from this class
// and keeps these vectors as its host mirror.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "optim/adamw_state.h"
#include "optim/basis_rotation.h"

namespace pt {

class BasisRotationState : public AdamWState {
 public:
  struct Block {
    std::string name;          // kRotQLeft, kRotQRight, kRotStatLeft or kRotStatRight
    std::vector<float> data;   // (d×d), host
  };
  BasisRotationState(std::vector<OptimTensor> layout, size_t n, const BasisRotationOptions& o);
  std::vector<StateTensor> tensors() override;  // adam_m, adam_v, then "<tensor name>:<block name>"
  std::vector<StateTensor> tensor_state(size_t k) override;
  size_t total_floats() const override { return AdamWState::total_floats() + extra_; }

  const RotationPlan& plan(size_t k) const { return plans_[k]; }
  std::vector<Block>& blocks(size_t k) { return blocks_[k]; }
  // Tensor k's matrix state in host memory (meaningful only when plan(k).rotated()).
  RotatedMatrix matrix(size_t k);
  // The same with m, v and blocks(k)[i] at the given pointers (a device copy).
  RotatedMatrix assemble(size_t k, float* m, float* v, const std::vector<float*>& block_ptrs) const;

 private:
  std::vector<RotationPlan> plans_;
  std::vector<std::vector<Block>> blocks_;  // per tensor of the layout
  size_t extra_ = 0;
};

}  // namespace pt
