// The run configuration: YAML -> typed structs with defaults. Every key is declared
// once in the schema (config.cc), which drives loading, `--set` overrides, unknown-key
// errors, the resolved-config dump and the docs check. Cross-field rules live in
// validate() alone. docs/config.md documents every key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/config.h"
#include "model/precision.h"
#include "optim/registry.h"
#include "pipeline/schedules/schedules.h"

namespace pt {

struct RunSection {
  std::string name;             // default: the config file's stem
  std::string out_dir = "runs"; // run directory = out_dir/name
  int64_t seed = 1337;
  bool save_params = false;     // write final parameters to run_dir/params/<global id>.bin
  bool overwrite = false;       // replace an existing run directory's record (train --overwrite)
  int64_t trace_steps = 0;      // write run_dir/trace.json of the segments starting before this step; 0 = none
  bool time_accounting = true;  // per-action timing: metrics' time_split and the trace
};

struct DataSection {
  std::string train;            // glob of train_*.bin shards (required)
  std::string val;              // glob of validation shards; empty = no evaluation
  bool shuffle = true;
};

struct TrainingSection {
  int64_t steps = 100;          // optimizer steps
  int micro_batch_size = 4;     // B, sequences per micro-batch
  int seq_len = 64;             // T
  int microbatches = 4;         // m, micro-batches per step per data-parallel replica
  int64_t eval_every = 0;       // steps between validation evals; 0 = only at the end (if data.val)
  int eval_batches = 8;         // validation micro-batches per eval
  int64_t log_every = 1;        // steps between metric lines on stdout
  double max_seconds = 0;       // stop after this much training time, summed over restarts (0 = no limit)
  std::string on_nonfinite = "stop";  // stop | skip_step: a NaN/Inf loss or gradient norm
  std::string sim_costs;        // cost file of `pipetrain bench` for sim_time; empty = unit costs
  std::vector<double> target_val_losses;  // summary.json: first crossing of each (time, sim time, tokens, step)
};

struct OptimizerSection {
  std::string kind = kDefaultOptimizerKind;  // a name of optim/registry.h
  double lr = 6e-4;
  double min_lr_ratio = 0.1;
  std::string lr_schedule = "cosine";  // cosine | linear | constant
  int64_t warmup_steps = 0;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double grad_clip = 1.0;              // global-norm clip; 0 = off
  bool decay_embeddings = true;        // apply weight decay to wte (wpe never decays)
  double momentum_decay = 0.004;       // nadamw: psi of the Nesterov momentum schedule
  BasisRotationOptions basis_rotation; // basis_rotation: geometry, source, update_freq, ...
};

struct ParallelSection {
  int dp = 1;
  int pp = 1;                          // pipeline ranks (N_PP)
  std::vector<int> layer_split;        // empty = auto; else blocks per stage
};

struct ScheduleSection {
  std::string kind = kDefaultScheduleKind;  // a name of the schedule registry (pipeline/schedules/)
  int chunks = 1;                      // v: stages per pipeline rank (interleaved_1f1b, bfpp)
  int bfpp_breadth = 0;                // micro-batches per breadth-first group; 0 = all m
  int64_t drain_every = 0;             // async: drain every N steps (0 = only at eval, checkpoint, end)
  std::string pipedream_lr_correction = "none";  // pipedream: none | stagewise (PipeDream-LR, lr_schedule.h)
  int64_t pipedream_lr_correction_steps = 0;     // pipedream: T_corr of stagewise; 0 = training.steps
  std::vector<int> paci_allowed_lagging;  // paci: per-stage in-flight cap; empty = S - s
  std::string paci_mode = "perf";      // paci: perf | mem (recompute the forward in the backward)
  bool amdp_zero_owner = true;         // amdp: only the stage's owner (pipeline 0's GPU) holds Adam state
  std::string amdp_step_slot = "clean";  // amdp: clean | reference (reduce after the last backward, step at U)
  int localsgd_copies = 0;             // localsgd: M model copies on the same ranks; 0 = parallel.pp
  int localsgd_local_steps = 2;        // localsgd: K updates per round between two averages
  int rpd_max_delay = 0;                // rpd: delta, read delays in [0, min(delta, k)] global updates
  std::string rpd_stage_sampling = "uniform";   // rpd: uniform | cyclic
  std::string rpd_delay_sampling = "uniform";   // rpd: uniform | deterministic
};

struct RuntimeSection {
  std::string backend = "auto";        // auto | cpu | cuda
  std::string precision = "fp32";      // fp32 | bf16 (model/precision.h)
  bool tf32 = false;                   // cuda: fp32 GEMMs with TF32 tensor-core compute
  bool keep_logits = true;             // bf16, last stage: keep the logits for the backward (StageNeeds)
  std::string transport = "auto";      // auto | mpi | local | nccl | ipc
  int threads = 0;                     // OpenBLAS threads per rank; 0 = library default
  std::string progress = "auto";       // auto | on | off (one-line progress on rank 0)
  double watchdog_seconds = 600;       // deadline of every blocking wait; 0 = none
  double dp_bucket_mb = 25;            // data-parallel all-reduce bucket cap in MiB; 0 = one bucket per stage
};

struct CheckpointSection {
  int64_t every_steps = 0;             // checkpoint cadence in steps; 0 = only on SIGTERM/SIGUSR1
  int keep_last = 3;                   // complete checkpoints kept; 0 = keep all
  std::string dir;                     // checkpoint root; empty = run_dir/checkpoints
  std::string on_write_error = "stop"; // stop | continue: a checkpoint that cannot be written
  std::string resume;                  // not a config key: `train --resume auto|PATH` sets it
};

struct Config {
  std::string source_file;             // where it was loaded from (for messages)
  RunSection run;
  ModelConfig model;
  DataSection data;
  TrainingSection training;
  OptimizerSection optimizer;
  ParallelSection parallel;
  ScheduleSection schedule;
  RuntimeSection runtime;
  CheckpointSection checkpoint;
};

// Loads `path`, applies "a.b=value" overrides, then validates.
Status load_config(const std::string& path, const std::vector<std::string>& overrides, Config* out);
// Same from YAML text (tests); `source` names it in messages.
Status load_config_text(const std::string& yaml, const std::string& source,
                        const std::vector<std::string>& overrides, Config* out);
// Every cross-field rule. Messages name the key and the file.
Status validate(const Config& c);
// runtime.precision parsed (validate() has checked it; the error names the file and key).
Status run_precision(const Config& c, Precision* out);
// The resolved config as YAML, every key included.
std::string dump_config(const Config& c);

// Whether a key may change when a run resumes from a checkpoint (docs/checkpoints.md); the
// checkpoint's fingerprint (resume_fingerprint) is derived from it.
enum class OnResume : uint8_t {
  kMayChange,    // run length, evaluation, logging, layout (dp, pp, schedule), runtime, checkpoints
  kMustMatch,    // the model, the data order and the optimizer: a resume must continue exactly
  kGlobalBatch,  // a factor of the global batch: only the product of these keys must match
};

struct ConfigKeyDoc {
  std::string path;       // "training.micro_batch_size"
  std::string type;       // int | float | bool | string | list<int>
  std::string default_value;
  std::string help;
  OnResume on_resume = OnResume::kMayChange;
};
// The schema, in declaration order (docs test and `pipetrain keys`).
std::vector<ConfigKeyDoc> config_schema();

// Every key of `c` in schema order with its resume rule and its value as the fingerprint writes
// it (integers in decimal, bools true/false, strings verbatim, floats %.17g). The keys of an
// optimizer other than c.optimizer.kind (optimizer.<section>.*) are kMayChange here.
struct ResumeKey {
  std::string path;
  OnResume on_resume;
  std::string value;
};
std::vector<ResumeKey> resume_keys(const Config& c);

}  // namespace pt
