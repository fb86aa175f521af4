// Canonical tensor order and stage tensor lists; see param_layout.h.
#include "model/param_layout.h"

#include <cmath>

#include "common/check.h"
#include "common/rng.h"

namespace pt {
namespace {

struct BlockTensorInfo {
  const char* suffix;
  bool is_matrix;     // normal init and weight decay
  bool is_residual;   // std scaled by 1/sqrt(2L)
  bool is_ln_weight;  // init 1
};

// Indexed by BlockTensor.
constexpr BlockTensorInfo kBlockInfo[kTensorsPerBlock] = {
    {"ln1_w", false, false, true},       {"ln1_b", false, false, false},
    {"attn.qkv_w", true, false, false},  {"attn.qkv_b", false, false, false},
    {"attn.proj_w", true, true, false},  {"attn.proj_b", false, false, false},
    {"ln2_w", false, false, true},       {"ln2_b", false, false, false},
    {"mlp.fc_w", true, false, false},    {"mlp.fc_b", false, false, false},
    {"mlp.proj_w", true, true, false},   {"mlp.proj_b", false, false, false},
};

std::vector<int> block_shape(const ModelConfig& cfg, BlockTensor which) {
  const int C = cfg.n_embd;
  switch (which) {
    case BlockTensor::kQkvW: return {3 * C, C};
    case BlockTensor::kQkvB: return {3 * C};
    case BlockTensor::kAttProjW: return {C, C};
    case BlockTensor::kFcW: return {4 * C, C};
    case BlockTensor::kFcB: return {4 * C};
    case BlockTensor::kFcProjW: return {C, 4 * C};
    default: return {C};
  }
}

size_t shape_numel(const std::vector<int>& shape) {
  size_t n = 1;
  for (int d : shape) n *= size_t(d);
  return n;
}

ParamTensor make_tensor(std::string name, int global_id, std::vector<int> shape, bool weight_decay) {
  ParamTensor t;
  t.name = std::move(name);
  t.global_id = global_id;
  t.numel = shape_numel(shape);
  t.shape = std::move(shape);
  t.weight_decay = weight_decay;
  return t;
}

void append_block(const ModelConfig& cfg, int layer, std::vector<ParamTensor>& out) {
  for (int k = 0; k < kTensorsPerBlock; ++k) {
    const auto which = static_cast<BlockTensor>(k);
    // Appended piecewise: operator+ chains trip GCC 12's false -Wrestrict (PR 105651).
    std::string name = "h";
    name += std::to_string(layer);
    name += '.';
    name += kBlockInfo[k].suffix;
    out.push_back(make_tensor(std::move(name), block_tensor_id(layer, which), block_shape(cfg, which),
                              kBlockInfo[k].is_matrix));
  }
}

void assign_offsets(std::vector<ParamTensor>& tensors) {
  size_t offset = 0;
  for (auto& t : tensors) {
    t.offset = offset;
    offset += t.numel;
  }
}

}  // namespace

int block_tensor_id(int layer, BlockTensor which) { return 2 + layer * kTensorsPerBlock + static_cast<int>(which); }
int lnf_w_id(const ModelConfig& config) { return 2 + config.n_layer * kTensorsPerBlock; }
int lnf_b_id(const ModelConfig& config) { return lnf_w_id(config) + 1; }
int lm_head_id(const ModelConfig& config) {
  PT_CHECK_MSG(!config.tie_embeddings, "lm_head exists only with untied embeddings");
  return lnf_w_id(config) + 2;
}
int num_global_tensors(const ModelConfig& config) { return lnf_w_id(config) + (config.tie_embeddings ? 2 : 3); }

void check_model_config(const ModelConfig& c) {
  PT_CHECK(c.vocab_size > 0 && c.max_seq_len > 0 && c.n_layer >= 0 && c.n_head > 0 && c.n_embd > 0);
  PT_CHECK_MSG(c.n_embd % c.n_head == 0, "n_embd must be a multiple of n_head");
  PT_CHECK(c.init_std >= 0.0f);
}

void check_stage_spec(const ModelConfig& config, const StageSpec& spec) {
  PT_CHECK_MSG(0 <= spec.first_layer && spec.first_layer <= spec.last_layer && spec.last_layer <= config.n_layer,
               "stage layer range must satisfy 0 <= first_layer <= last_layer <= n_layer");
}

std::vector<ParamTensor> full_model_tensors(const ModelConfig& config) {
  StageSpec all;
  all.first_layer = 0;
  all.last_layer = config.n_layer;
  all.has_embedding = true;
  all.has_head = true;
  std::vector<ParamTensor> tensors = stage_tensors(config, all);
  if (config.tie_embeddings) tensors.pop_back();  // the head copy is not a separate tensor of the model
  assign_offsets(tensors);
  return tensors;
}

std::vector<ParamTensor> stage_tensors(const ModelConfig& config, const StageSpec& spec) {
  check_model_config(config);
  check_stage_spec(config, spec);
  const int V = config.vocab_size, C = config.n_embd;
  std::vector<ParamTensor> tensors;
  if (spec.has_embedding) {
    tensors.push_back(make_tensor("wte", kWteId, {V, C}, true));
    tensors.push_back(make_tensor("wpe", kWpeId, {config.max_seq_len, C}, false));
  }
  for (int l = spec.first_layer; l < spec.last_layer; ++l) append_block(config, l, tensors);
  if (spec.has_head) {
    tensors.push_back(make_tensor("lnf_w", lnf_w_id(config), {C}, false));
    tensors.push_back(make_tensor("lnf_b", lnf_b_id(config), {C}, false));
    if (config.tie_embeddings) {
      ParamTensor head = make_tensor("wte", kWteId, {V, C}, true);
      head.is_tied_head = true;
      tensors.push_back(head);
    } else {
      tensors.push_back(make_tensor("lm_head", lm_head_id(config), {V, C}, true));
    }
  }
  assign_offsets(tensors);
  return tensors;
}

size_t total_numel(const std::vector<ParamTensor>& tensors) {
  size_t n = 0;
  for (const auto& t : tensors) n += t.numel;
  return n;
}

void init_tensor(const ModelConfig& config, const ParamTensor& tensor, uint64_t seed, float* dst) {
  const int id = tensor.global_id;
  float fill = 0.0f;
  float std_dev = -1.0f;  // < 0: constant fill
  if (id == kWteId || id == kWpeId || (!config.tie_embeddings && id == lm_head_id(config))) {
    std_dev = config.init_std;
  } else if (id == lnf_w_id(config)) {
    fill = 1.0f;
  } else if (id == lnf_b_id(config)) {
    fill = 0.0f;
  } else {
    PT_CHECK(id >= 2 && id < lnf_w_id(config));
    const BlockTensorInfo& info = kBlockInfo[(id - 2) % kTensorsPerBlock];
    if (info.is_matrix) {
      std_dev = config.init_std;
      if (info.is_residual) std_dev /= std::sqrt(2.0f * float(config.n_layer));
    } else if (info.is_ln_weight) {
      fill = 1.0f;
    }
  }
  if (std_dev < 0.0f) {
    for (size_t i = 0; i < tensor.numel; ++i) dst[i] = fill;
  } else {
    for (size_t i = 0; i < tensor.numel; ++i) dst[i] = std_dev * philox_normal(seed, uint64_t(id), i);
  }
}

std::vector<size_t> model_stage_params(const ModelConfig& config, const std::vector<std::pair<int, int>>& ranges) {
  const int L = int(ranges.size());
  std::vector<size_t> out(static_cast<size_t>(L), 0);
  for (int s = 0; s < L; ++s)
    for (const auto& t : stage_tensors(config, StageSpec{ranges[size_t(s)].first, ranges[size_t(s)].second, s == 0, s == L - 1}))
      out[size_t(s)] += t.numel;
  return out;
}

}  // namespace pt
