// The cost file: what `pipetrain bench` measured on one machine, in seconds, and what
// `pipetrain plan --costs FILE` turns into a CostModel for any layer split.
//
// Costs are stored per *component* of a stage, each for one micro-batch of B
// sequences of T tokens, as forward / backward_input / backward_weight seconds:
//   block      one transformer block: (a k-block stage − a 0-block stage) / k, k = min(L, 2)
//   stage_io   a stage holding nothing (no block, embedding or head): copying its
//              (B, T, C) input in and its output out, and their gradients back
//   embedding  a stage holding only the token + position embedding (its output copy included)
//   head       a stage holding only the final LayerNorm, the LM head and the loss (its
//              input copy and the loss read-back included)
// A stage with n blocks then costs
//   n·block + (first ? embedding : 0) + (last ? head : 0) + (1 − first − last)·stage_io
// i.e. a middle stage pays its boundary copies once; a first or last stage's copies are
// inside its embedding or head measurement; a stage that is both (pp = 1) has no
// boundary at all, so one stage_io comes off. Every measured term is a whole stage
// (no negative increments), and full_model, the measured pp = 1 stage, checks the sum.
//
// Communication: a (B, T, C) fp32 boundary message takes latency + bytes / bandwidth
// (rank 0 ↔ 1 ping-pong; bandwidth 0 = not measured, one rank: messages are free).
// The optimizer (zero grads, gradient sum of squares, AdamW) costs seconds per parameter.
//
// The file is JSON, format version kCostFileVersion; loading checks the version, every
// key and the model shape, and names the file and key in any error.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "pipeline/simulate.h"

namespace pt {

constexpr int kCostFileVersion = 1;

// Seconds of one micro-batch through one component.
struct ComponentCost {
  double forward = 0;
  double backward_input = 0;
  double backward_weight = 0;
  double backward() const { return backward_input + backward_weight; }
  double total() const { return forward + backward_input + backward_weight; }
};

// The shape the costs were measured at; per-block costs scale with all of it, so a
// file is only used for a config of the same shape.
struct CostShape {
  int n_layer = 0;           // L
  int n_embd = 0;            // C
  int n_head = 0;            // NH
  int vocab_size = 0;        // V
  int micro_batch_size = 0;  // B
  int seq_len = 0;           // T
  // Arithmetic of the forward/backward (runtime.precision, runtime.tf32): a bf16 or TF32
  // run takes a fraction of the fp32 time on a GPU, so costs measured in one precision
  // do not predict another. Files of pipetrains before these keys measured fp32.
  std::string precision = "fp32";  // fp32 | bf16 (model/precision.h names)
  bool tf32 = false;
};

struct CostFile {
  int version = kCostFileVersion;
  // Machine: what ran the measurement (free text, for people reading the file).
  std::string backend;       // "cpu" | "cuda"
  std::string device;        // CPU model name or GPU name
  std::string host;
  std::string transport;     // what carried the p2p measurement ("mpi")
  int ranks = 1;             // ranks that measured compute at the same time
  int threads = 0;           // math-library threads per rank (0 = library default)
  std::string created;       // UTC time of the measurement, ISO 8601
  int warmup = 0;            // untimed repetitions per measurement
  int iters = 0;             // timed repetitions; each cost is their median
  CostShape model;

  ComponentCost block;
  ComponentCost stage_io;
  ComponentCost embedding;
  ComponentCost head;
  ComponentCost full_model;  // measured pp = 1 stage (all blocks + embedding + head): a check, not used by plan

  double p2p_latency_s = 0;                // one-way time of a small message
  double p2p_bandwidth_bytes_per_s = 0;    // 0 = not measured (1 rank)
  double p2p_message_bytes = 0;            // the message the bandwidth was derived from
  double p2p_message_s = 0;                // its measured one-way time
  double optimizer_seconds_per_param = 0;  // zero_grads + grad sum of squares + AdamW, per parameter
};

// Writes `f` as pretty-printed JSON (numbers with 17 significant digits: exact round trip).
Status write_cost_file(const std::string& path, const CostFile& f);
std::string cost_file_json(const CostFile& f);

// Reads and validates: version == kCostFileVersion, every key present with the right
// type, times finite and >= 0. Errors name `path` and the key.
Status read_cost_file(const std::string& path, CostFile* out);
// Same from JSON text; `source` names it in messages (tests).
Status parse_cost_file(const std::string& json, const std::string& source, CostFile* out);

// Error (naming `source`, the key and both values, and saying to re-run bench) unless the
// file was measured at shape `want` (model, batch, sequence and precision). `config_name` names the config in the message.
Status check_cost_shape(const CostFile& f, const std::string& source, const CostShape& want,
                        const std::string& config_name);

// Cost of one stage holding blocks [first_layer, last_layer) (formula above).
ComponentCost stage_cost_from_file(const CostFile& f, int first_layer, int last_layer, bool has_embedding,
                                   bool has_head);

// One-way time of a `bytes` message: latency + bytes / bandwidth (latency only when the
// bandwidth was not measured).
double p2p_seconds(const CostFile& f, double bytes);

// CostModel in seconds for `num_stages` (virtual) stages where stage v holds model stage
// v % ranges.size(), ranges = [first, end) blocks of each model stage (stage 0 has the
// embedding, the last the head); p2p_latency = p2p_seconds(activation_bytes), the
// (B, T, C) boundary message. step = the optimizer time of the largest stage
// (`stage_params`[i] = parameters of model stage i; used by STEP actions of
// asynchronous schedules; `pipetrain plan` accounts a synchronous step after the flush
// instead); allreduce and allreduce_data are left 0.
CostModel cost_model_from_file(const CostFile& f, const std::vector<std::pair<int, int>>& ranges, int num_stages,
                               double activation_bytes, const std::vector<size_t>& stage_params);

}  // namespace pt
