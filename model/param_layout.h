// The canonical tensor order of the full GPT-2 (global ids) and the tensor list
// of one pipeline stage.
//
// Global order: wte (V,C), wpe (maxT,C); per block l the 12 tensors of
// BlockTensor; lnf_w, lnf_b; lm_head (V,C) only when embeddings are untied.
// A stage lists its tensors in the same relative order: [wte, wpe] if it has
// the embedding, its blocks, then [lnf_w, lnf_b, head] if it has the head. When
// tied, the head is a copy of wte: name "wte", the SAME global id as wte and
// is_tied_head = true. Offsets are contiguous in that order.
//
// Initialization is a pure function of (seed, global id, element index), so the
// tied head copy equals wte and every layout gets the same weights.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"
#include "model/stage_model.h"

namespace pt {

enum class BlockTensor : int {
  kLn1W = 0,
  kLn1B,
  kQkvW,      // (3C, C)
  kQkvB,      // (3C)
  kAttProjW,  // (C, C), residual projection
  kAttProjB,  // (C)
  kLn2W,
  kLn2B,
  kFcW,       // (4C, C)
  kFcB,       // (4C)
  kFcProjW,   // (C, 4C), residual projection
  kFcProjB,   // (C)
  kCount
};
constexpr int kTensorsPerBlock = static_cast<int>(BlockTensor::kCount);
constexpr int kWteId = 0;
constexpr int kWpeId = 1;

int block_tensor_id(int layer, BlockTensor which);
int lnf_w_id(const ModelConfig& config);
int lnf_b_id(const ModelConfig& config);
int lm_head_id(const ModelConfig& config);  // untied only
int num_global_tensors(const ModelConfig& config);

// Checks the config is usable (positive sizes, C % NH == 0); PT_CHECK on failure.
void check_model_config(const ModelConfig& config);
// Checks 0 <= first_layer <= last_layer <= L; PT_CHECK on failure.
void check_stage_spec(const ModelConfig& config, const StageSpec& spec);

// Every tensor of the full model in global order (no tied head copy), offsets
// into one contiguous buffer of the whole model.
std::vector<ParamTensor> full_model_tensors(const ModelConfig& config);

// The tensors a stage owns, offsets into that stage's flat buffer.
std::vector<ParamTensor> stage_tensors(const ModelConfig& config, const StageSpec& spec);

// Parameters of each model stage of a split into blocks [first, last) per stage (stage 0 holds
// the embedding, the last one the head; the tied head copy counts: the optimizer updates it).
std::vector<size_t> model_stage_params(const ModelConfig& config, const std::vector<std::pair<int, int>>& ranges);

// Sum of numel over a tensor list.
size_t total_numel(const std::vector<ParamTensor>& tensors);

// Writes the initial values of `tensor` (numel floats) into dst:
// normal(0, init_std) for wte, wpe, lm_head and weight matrices, with std / sqrt(2L)
// for the residual projections; biases 0; LayerNorm weights 1.
void init_tensor(const ModelConfig& config, const ParamTensor& tensor, uint64_t seed, float* dst);

}  // namespace pt
