// Config schema: each key declared once with its accessor, type and help text.
// Loading walks the YAML tree against the schema, so an unknown key anywhere is an
// error that names the key, the file and the keys allowed at that level.
#include "app/config.h"

#include "app/schedule_builder.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <type_traits>

#include "model/precision.h"
#include "optim/basis_rotation.h"
#include "optim/registry.h"

namespace pt {
namespace {

struct Field {
  std::string path;
  std::string type;
  std::string help;
  std::function<Status(Config&, const YAML::Node&)> set;
  std::function<std::string(const Config&)> get;  // flow-style YAML value
  OnResume on_resume = OnResume::kMayChange;
  std::function<std::string(const Config&)> fingerprint;  // fingerprint_value
};

template <class T> std::string type_name() {
  if constexpr (std::is_same_v<T, bool>) return "bool";
  else if constexpr (std::is_integral_v<T>) return "int";
  else if constexpr (std::is_floating_point_v<T>) return "float";
  else if constexpr (std::is_same_v<T, std::string>) return "string";
  else if constexpr (std::is_same_v<T, std::vector<double>>) return "list<float>";
  else return "list<int>";
}

std::string node_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  YAML::Emitter e;
  e << YAML::Flow << n;
  return e.c_str();
}

template <class T> Status parse_value(const YAML::Node& n, T* out) {
  try {
    if constexpr (std::is_same_v<T, std::vector<int>>) {
      if (n.IsScalar() && n.Scalar() == "auto") {
        out->clear();
        return Status::ok();
      }
      if (!n.IsSequence()) return Status::error("expected 'auto' or a list of integers, got '" + node_text(n) + "'");
      std::vector<int> v;
      for (const auto& x : n) v.push_back(x.as<int>());
      *out = v;
    } else if constexpr (std::is_same_v<T, std::vector<double>>) {
      if (!n.IsSequence()) return Status::error("expected a list of numbers such as [3.0, 2.5], got '" + node_text(n) + "'");
      std::vector<double> v;
      for (const auto& x : n) v.push_back(x.as<double>());
      *out = v;
    } else {
      if (!n.IsScalar()) return Status::error("expected a " + type_name<T>() + ", got '" + node_text(n) + "'");
      if constexpr (std::is_same_v<T, bool>) {
        *out = n.as<bool>();
      } else if constexpr (std::is_integral_v<T>) {
        // yaml-cpp accepts "1.5" as int on some versions; insist on an integer literal.
        const std::string& s = n.Scalar();
        if (s.find_first_of(".eE") != std::string::npos && s.rfind("0x", 0) != 0)
          return Status::error("expected an integer, got '" + s + "'");
        *out = n.as<T>();
      } else {
        *out = n.as<T>();
        if constexpr (std::is_floating_point_v<T>)
          if (!std::isfinite(*out)) return Status::error("expected a finite float, got '" + n.Scalar() + "'");
      }
    }
  } catch (const YAML::Exception&) {
    return Status::error("expected a " + type_name<T>() + ", got '" + node_text(n) + "'");
  }
  return Status::ok();
}

template <class T> std::string format_value(const T& v) {
  if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
  else if constexpr (std::is_same_v<T, std::string>) {
    YAML::Emitter e;  // escapes quotes, backslashes and control characters
    e << YAML::DoubleQuoted << v;
    return e.c_str();
  }
  else if constexpr (std::is_same_v<T, std::vector<int>>) {
    if (v.empty()) return "auto";
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  } else if constexpr (std::is_same_v<T, std::vector<double>>) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + format_value(v[i]);
    return s + "]";
  } else if constexpr (std::is_floating_point_v<T>) {
    char buf[64];  // the shortest text that reads back to the same value
    return std::string(buf, std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general).ptr);
  } else return std::to_string(v);
}

// The value as the checkpoint fingerprint writes it: integers in decimal, bools true/false,
// strings verbatim, floats with 17 significant digits (exact round trip).
template <class T> std::string fingerprint_value(const T& v) {
  if constexpr (std::is_same_v<T, std::string>) return v;
  else if constexpr (std::is_floating_point_v<T>) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
  } else return format_value<T>(v);
}

template <class T, class Access>
Field make_field(const char* path, Access access, OnResume on_resume, const char* help) {
  Field f;
  f.path = path;
  f.type = type_name<T>();
  f.help = help;
  f.on_resume = on_resume;
  f.set = [access](Config& c, const YAML::Node& n) { return parse_value<T>(n, &access(c)); };
  f.get = [access](const Config& c) { return format_value<T>(access(const_cast<Config&>(c))); };
  f.fingerprint = [access](const Config& c) { return fingerprint_value<T>(access(const_cast<Config&>(c))); };
  return f;
}

#define PT_KEY(path, member, on_resume, help)                                                               \
  make_field<std::decay_t<decltype(Config{}.member)>>(path, [](Config& c) -> auto& { return c.member; }, on_resume, \
                                                      help)

// On resume (docs/checkpoints.md): kMust = the model, data order and optimizer, which a resumed run
// must keep to continue exactly; kBatch = a factor of the global batch (only the product must
// match); kMay = everything else (run length, evaluation, logging, layout, runtime, checkpoints).
constexpr OnResume kMay = OnResume::kMayChange, kMust = OnResume::kMustMatch, kBatch = OnResume::kGlobalBatch;

// The runtime and checkpoint sections (schema() lists them last).
std::vector<Field> runtime_and_checkpoint_fields() {
  return {
      PT_KEY("runtime.backend", runtime.backend, kMay, "auto | cpu | cuda (auto picks cuda when a GPU is visible and built)."),
      PT_KEY("runtime.precision", runtime.precision, kMust, "fp32 | bf16. bf16: the forward and backward read bf16 copies of the weights (made once per update) and keep bf16 activations and activation gradients; master weights, gradient accumulation, optimizer state and the loss stay fp32. Values are rounded to bf16 (nearest even) where the CUDA bf16 kernels store bf16: CUDA stores them as bf16 (2 bytes, half the activation memory) and runs the GEMMs (C and OC multiples of 8) and the attention (head size 32, 64 or 128) on bf16 tensor-core kernels and LayerNorm, GELU and residual adds on bf16 loads/stores; the CPU backend keeps them in fp32 storage and runs fp32 ops on them. Must match on resume when bf16 (fp32 checkpoints keep their fingerprint)."),
      PT_KEY("runtime.tf32", runtime.tf32, kMay, "false | true. true: every fp32 GEMM of the cuda backend runs on the tensor cores with TF32 inputs (cuBLASLt compute type CUBLAS_COMPUTE_32F_FAST_TF32: 10-bit mantissa products, fp32 accumulation; faster, ~1e-3 relative difference from fp32, still deterministic run to run). The cpu backend has no TF32: rejected with runtime.backend cpu, ignored when auto resolves to cpu."),
      PT_KEY("runtime.keep_logits", runtime.keep_logits, kMay, "true | false. With runtime.precision bf16, the last pipeline stage keeps each in-flight micro-batch's (B*T, V) logits, in bf16, from its forward to its backward, which turns them into the logits' gradient in place: one head GEMM fewer per micro-batch and no fp32 chunk buffer, for B*T*V*2 bytes per in-flight micro-batch on cuda (4 on the cpu backend, whose bf16 values sit in fp32 storage; `pipetrain plan` shows the memory). false: the backward recomputes the logits chunk by chunk. The same values either way, up to the summation order of the head's weight gradient (kept logits run the classifier as one chunk of B*T rows, recomputed ones in chunks of a bounded buffer) and, on cuda, of the head GEMMs (cuBLASLt may pick another algorithm for a bf16 than for an fp32 output) (docs/memory.md). fp32 always recomputes."),
      PT_KEY("runtime.transport", runtime.transport, kMay, "auto | mpi | local | nccl | ipc. auto = nccl when the backend is cuda and every pipeline rank has a GPU of its own, else mpi; mpi = host-staged MPI, also for ranks that share a GPU (MPS, scripts/mps_pipeline.sh); local keeps every stage in one process (parallel.pp = 1); nccl needs the cuda backend and one GPU per pipeline rank; ipc = one-sided copies into the receiver's memory, every pipeline rank on one host: CUDA IPC device-to-device copies with the cuda backend (ranks sharing a GPU under MPS included; fails naming the rank, and suggesting mpi, where the driver refuses IPC), POSIX shared memory with cpu (docs/transports.md)."),
      PT_KEY("runtime.threads", runtime.threads, kMay, "OpenBLAS threads per rank; 0 = library default."),
      PT_KEY("runtime.progress", runtime.progress, kMay, "auto | on | off: one-line progress display on rank 0 (auto = when stdout is a terminal)."),
      PT_KEY("runtime.watchdog_seconds", runtime.watchdog_seconds, kMay, "Deadline in seconds of every blocking wait (stage-boundary receive, send completion, collective). When it passes the rank names the peer or group and action it waited for and the whole job exits non-zero; waiting sleeps rather than spins. 0 = no deadline."),
      PT_KEY("runtime.dp_bucket_mb", runtime.dp_bucket_mb, kMay, "Cap in MiB of one data-parallel gradient all-reduce bucket (parallel.dp > 1). A stage's gradients are summed in buckets of whole tensors, last layer first, each started (non-blocking) as soon as the stage's last backward of the update has finished its tensors, so the sums overlap the rest of the backward; ALLREDUCE_GRAD waits for them. 0 = one bucket per stage, started at ALLREDUCE_GRAD. With dp = 2 the result is bitwise independent of the cap (docs/transports.md)."),
      PT_KEY("checkpoint.every_steps", checkpoint.every_steps, kMay, "Write a checkpoint every N steps and after the last step; 0 = only on SIGTERM/SIGUSR1. Resume with `train --resume auto|PATH` (docs/checkpoints.md)."),
      PT_KEY("checkpoint.keep_last", checkpoint.keep_last, kMay, "Complete checkpoints kept (older ones are deleted after a new one is complete); 0 = keep all."),
      PT_KEY("checkpoint.dir", checkpoint.dir, kMay, "Checkpoint folder (holds step_N/); empty = run_dir/checkpoints."),
      PT_KEY("checkpoint.on_write_error", checkpoint.on_write_error, kMay, "stop | continue. A checkpoint that cannot be written (full or read-only disk) is reported with its path and the previous complete checkpoint stays usable; stop then ends the run non-zero, continue trains on and tries again at the next checkpoint."),
  };
}

const std::vector<Field>& schema() {
  static const std::vector<Field> fields = [] {
    std::vector<Field> f = {
        PT_KEY("run.name", run.name, kMay, "Run name; the run directory is run.out_dir/run.name. Default: the config file's stem."),
        PT_KEY("run.out_dir", run.out_dir, kMay, "Parent folder of run directories."),
        PT_KEY("run.seed", run.seed, kMust, "Seed of initialization and data order."),
        PT_KEY("run.save_params", run.save_params, kMay, "After the last step, write every parameter tensor to run_dir/params/<global id>.bin (raw fp32, layout-independent names)."),
        PT_KEY("run.overwrite", run.overwrite, kMay, "Start afresh in a run directory that already holds a run's metrics, replacing that record (also `train --overwrite`). Without it such a start is refused; `--resume auto` continues the run instead."),
        PT_KEY("run.trace_steps", run.trace_steps, kMay, "Write run_dir/trace.json, a Chrome/Perfetto trace of the measured actions of every rank (clocks aligned at start, flow arrows from each send to its receive), covering the segments that start before this step; 0 = no trace. Needs run.time_accounting. Draw it with scripts/trace_png.py."),
        PT_KEY("run.time_accounting", run.time_accounting, kMay, "Time every action on every rank: metrics.jsonl's time_split and measured bubble per step, summary.json's totals, and the trace. false only to measure its cost."),
        PT_KEY("model.vocab_size", model.vocab_size, kMust, "V: token ids are < V (at most 65536: shards store uint16)."),
        PT_KEY("model.max_seq_len", model.max_seq_len, kMust, "Rows of the position table; must be >= training.seq_len."),
        PT_KEY("model.n_layer", model.n_layer, kMust, "L: transformer blocks."),
        PT_KEY("model.n_head", model.n_head, kMust, "NH: attention heads; must divide n_embd."),
        PT_KEY("model.n_embd", model.n_embd, kMust, "C: model width."),
        PT_KEY("model.tie_embeddings", model.tie_embeddings, kMust, "LM head shares the token embedding (GPT-2 default)."),
        PT_KEY("model.init_std", model.init_std, kMust, "Std of the normal weight init; residual projections use init_std/sqrt(2L)."),
        PT_KEY("data.train", data.train, kMust, "Glob of training shards (llm.c format, written by `pipetrain prepare`). Required."),
        PT_KEY("data.val", data.val, kMay, "Glob of validation shards; empty disables evaluation."),
        PT_KEY("data.shuffle", data.shuffle, kMust, "Shuffle sequences each epoch (a pure function of seed and epoch)."),
        PT_KEY("training.steps", training.steps, kMay, "Optimizer steps."),
        PT_KEY("training.micro_batch_size", training.micro_batch_size, kMust, "B: sequences per micro-batch."),
        PT_KEY("training.seq_len", training.seq_len, kMust, "T: tokens per sequence."),
        PT_KEY("training.microbatches", training.microbatches, kBatch, "m: micro-batches per optimizer step per data-parallel replica. Global batch = B*T*m*dp tokens."),
        PT_KEY("training.eval_every", training.eval_every, kMay, "Steps between validation evaluations; 0 = only after the last step."),
        PT_KEY("training.eval_batches", training.eval_batches, kMay, "Validation micro-batches per evaluation."),
        PT_KEY("training.log_every", training.log_every, kMay, "Steps between metric lines printed on rank 0 (metrics.jsonl gets every step)."),
        PT_KEY("training.max_seconds", training.max_seconds, kMay, "Stop after this many seconds of training (0 = no limit)."),
        PT_KEY("training.on_nonfinite", training.on_nonfinite, kMay, "stop | skip_step. A NaN or Inf loss or gradient norm: stop ends the run with a non-zero exit naming the step and stage, keeping the last good checkpoint (none is written after it); skip_step leaves that update out (parameters and optimizer state unchanged) and counts it in metrics (skipped_steps)."),
        PT_KEY("training.sim_costs", training.sim_costs, kMay, "Cost file of `pipetrain bench` (seconds) for sim_time, the simulated makespan of the schedule actually run; empty = unit costs (F = 1, Bx = Bw = 1, free communication and steps). Must match the model shape."),
        PT_KEY("training.target_val_losses", training.target_val_losses, kMay, "Validation losses whose first crossing (val_loss <= target) summary.json reports: time_s, sim_time, tokens and step, over the whole run history including restarts. [] = none."),
        PT_KEY("optimizer.kind", optimizer.kind, kMust, "adamw | nadamw | basis_rotation (docs/optimizers.md). nadamw: Adam with Nesterov momentum and decoupled weight decay; basis_rotation: Adam in a rotated basis for the attention and MLP weight matrices, AdamW for every other tensor."),
        PT_KEY("optimizer.lr", optimizer.lr, kMust, "Peak learning rate."),
        PT_KEY("optimizer.min_lr_ratio", optimizer.min_lr_ratio, kMust, "Final learning rate as a fraction of lr (cosine, linear)."),
        PT_KEY("optimizer.lr_schedule", optimizer.lr_schedule, kMust, "cosine | linear | constant, after linear warm-up."),
        PT_KEY("optimizer.warmup_steps", optimizer.warmup_steps, kMust, "Linear warm-up steps."),
        PT_KEY("optimizer.beta1", optimizer.beta1, kMust, "Adam beta1."),
        PT_KEY("optimizer.beta2", optimizer.beta2, kMust, "Adam beta2."),
        PT_KEY("optimizer.eps", optimizer.eps, kMust, "Adam epsilon."),
        PT_KEY("optimizer.weight_decay", optimizer.weight_decay, kMust, "Decoupled weight decay (not applied to biases, LayerNorms, wpe)."),
        PT_KEY("optimizer.grad_clip", optimizer.grad_clip, kMust, "Clip the global gradient norm to this value; 0 = no clipping."),
        PT_KEY("optimizer.decay_embeddings", optimizer.decay_embeddings, kMust, "Apply weight decay to the token embedding wte."),
        PT_KEY("optimizer.nadamw.momentum_decay", optimizer.momentum_decay, kMust, "nadamw: psi of the momentum schedule mu_t = beta1*(1 - 0.5*0.96^(t*psi)) (PyTorch NAdam's momentum_decay); >= 0."),
        PT_KEY("optimizer.basis_rotation.geometry", optimizer.basis_rotation.geometry, kMust, "basis_rotation: bi (rotate both sides of each matrix) | uni (only the smaller side)."),
        PT_KEY("optimizer.basis_rotation.source", optimizer.basis_rotation.source, kMust, "basis_rotation: 2nd (eigenbases of the EMAs of G*G^T and G^T*G, as SOAP) | 1st (singular bases of the momentum)."),
        PT_KEY("optimizer.basis_rotation.update_freq", optimizer.basis_rotation.update_freq, kMust, "basis_rotation: refresh each matrix's basis every N updates (one QR power step), staggered across matrices; >= 1."),
        PT_KEY("optimizer.basis_rotation.shampoo_beta", optimizer.basis_rotation.shampoo_beta, kMust, "basis_rotation, source 2nd: EMA factor of the statistics, in [0, 1); negative = optimizer.beta2."),
        PT_KEY("optimizer.basis_rotation.max_precond_dim", optimizer.basis_rotation.max_precond_dim, kMust, "basis_rotation: a matrix side longer than this stays unrotated (saves its d*d basis and statistic); >= 1."),
        PT_KEY("parallel.dp", parallel.dp, kBatch, "Data-parallel replicas. World size = dp * pp."),
        PT_KEY("parallel.pp", parallel.pp, kMay, "Pipeline ranks per replica (N_PP)."),
        PT_KEY("parallel.layer_split", parallel.layer_split, kMay, "'auto' (balanced, counting embedding and head) or a list of blocks per stage (pp*chunks entries, summing to n_layer)."),
        PT_KEY("schedule.kind", schedule.kind, kMay, "Synchronous: gpipe | 1f1b | interleaved_1f1b | bfpp | zb_h1. Asynchronous (no flush; training.microbatches = micro-batches per update): pipedream | pipedream_2bw | paci | paci_flush | amdp | localsgd. Reference: rpd (Randomized PipeDream, one block updated per step)."),
        PT_KEY("schedule.chunks", schedule.chunks, kMay, "v: stages per pipeline rank (looping placement; interleaved_1f1b and bfpp)."),
        PT_KEY("schedule.bfpp_breadth", schedule.bfpp_breadth, kMay, "bfpp: micro-batches per breadth-first group (must divide m); 0 = all m."),
        PT_KEY("schedule.drain_every", schedule.drain_every, kMay, "Asynchronous schedules: drain the pipeline every N steps (0 = only at evaluations, checkpoints and the end). Signals and max_seconds are honoured at drain points."),
        PT_KEY("schedule.pipedream.lr_correction", schedule.pipedream_lr_correction, kMust, "pipedream: none | stagewise. stagewise = PipeDream-LR (algorithms.md §4.2): stage s's update u (1-based, counted per stage over the run) takes the scheduled lr / (n_s - 1)^(1 - min(u / T_corr, 1)), n_s = (S - s) / m its stashed weight versions (S - s at training.microbatches 1); a stage with n_s <= 1 (no delay) is not corrected. Must match on resume when stagewise."),
        PT_KEY("schedule.pipedream.lr_correction_steps", schedule.pipedream_lr_correction_steps, kMust, "pipedream, lr_correction stagewise: T_corr, the update from which no stage is corrected any more; 0 = training.steps."),
        PT_KEY("schedule.paci.allowed_lagging", schedule.paci_allowed_lagging, kMay, "paci: 'auto' (S-s) or one in-flight cap per stage, each in [1, S-s]."),
        PT_KEY("schedule.paci.mode", schedule.paci_mode, kMay, "paci: perf (keep activations) or mem (keep the stage input, recompute the forward in the backward with the live weights)."),
        PT_KEY("schedule.amdp.zero_owner", schedule.amdp_zero_owner, kMay, "amdp: stage s is owned by the GPU hosting it in pipeline 0; at the step slot the K replicas' gradients are summed on the owner (canonical order), only the owner runs the optimizer and holds its state, then it broadcasts the new parameters (ZeRO-1 over replicas). false: every replica sums all gradients and steps itself."),
        PT_KEY("schedule.amdp.step_slot", schedule.amdp_step_slot, kMay, "amdp: clean (each step slot reduces and applies everything accumulated since the previous slot: every gradient applied exactly once) | reference (parallel.pp 4 or 8, needs zero_owner: the reference code's placement, reduce after a replica's last backward of the iteration, step at its U; backwards in between are dropped on non-owners, algorithms.md §2.2)."),
        PT_KEY("schedule.localsgd.copies", schedule.localsgd_copies, kMay, "localsgd: M independent model copies sharing the pipeline ranks (copy p's stage s on rank s; micro-batch g trains copy g mod M); 0 = parallel.pp. training.microbatches must be a multiple of M: each update gives every copy m/M micro-batches (m = M: an update per backward)."),
        PT_KEY("schedule.localsgd.local_steps", schedule.localsgd_local_steps, kMay, "localsgd: K updates per round; after each round the M copies' parameters and optimizer state are replaced by their mean (>= 1). Drains happen after an average only: training.eval_every, checkpoint.every_steps and schedule.drain_every must be multiples of K (a training.steps that is not ends on a shorter round)."),
        PT_KEY("schedule.rpd.max_delay", schedule.rpd_max_delay, kMay, "rpd: delta >= 0; every block's read delay is drawn in [0, min(delta, k)] global updates (the history restarts at drain points: docs/schedules.md). Keep the rpd keys on resume: they decide the draws of the steps still to come."),
        PT_KEY("schedule.rpd.stage_sampling", schedule.rpd_stage_sampling, kMay, "rpd: the block updated by global update k: uniform (s ~ U{0..S-1}, from run.seed and k) | cyclic (s = k mod S) | pipedream (the stage of PipeDream's k-th backward, unit-time timeline)."),
        PT_KEY("schedule.rpd.delay_sampling", schedule.rpd_delay_sampling, kMay, "rpd: the read delay of block j: uniform (d_j ~ U{0..min(delta, k)}, independent per block) | deterministic (d_j = min(max(0, j - s), delta, k)) | pipedream (PipeDream's own global delay of block j at its k-th update, capped at delta; up to S^2 - S/2)."),
    };
    for (Field& rest : runtime_and_checkpoint_fields()) f.push_back(std::move(rest));
    return f;
  }();
  return fields;
}
#undef PT_KEY

const Field* find_field(const std::string& path) {
  for (const auto& f : schema())
    if (f.path == path) return &f;
  return nullptr;
}

bool is_section(const std::string& prefix) {
  for (const auto& f : schema())
    if (f.path.rfind(prefix + ".", 0) == 0) return true;
  return false;
}

std::string allowed_under(const std::string& prefix) {
  std::set<std::string> names;
  for (const auto& f : schema()) {
    std::string rest;
    if (prefix.empty()) rest = f.path;
    else if (f.path.rfind(prefix + ".", 0) == 0) rest = f.path.substr(prefix.size() + 1);
    else continue;
    names.insert(rest.substr(0, rest.find('.')));
  }
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

Status load_node(const YAML::Node& node, const std::string& prefix, const std::string& source, Config* c) {
  for (const auto& kv : node) {
    if (!kv.first.IsScalar())
      return Status::error(source + ": expected a key name" + (prefix.empty() ? "" : " in section '" + prefix + "'") +
                           ", got '" + node_text(kv.first) + "'");
    std::string key = kv.first.Scalar();
    std::string path = prefix.empty() ? key : prefix + "." + key;
    if (const Field* f = find_field(path)) {
      Status s = f->set(*c, kv.second);
      if (!s) return Status::error(source + ": key '" + path + "': " + s.message());
    } else if (is_section(path)) {
      if (!kv.second.IsMap())
        return Status::error(source + ": key '" + path + "' is a section; expected a map of: " + allowed_under(path));
      PT_RETURN_IF_ERROR(load_node(kv.second, path, source, c));
    } else {
      return Status::error(source + ": unknown key '" + path + "'" +
                           (prefix.empty() ? "" : " in section '" + prefix + "'") +
                           "; allowed: " + allowed_under(prefix));
    }
  }
  return Status::ok();
}

Status apply_override(const std::string& assignment, Config* c) {
  size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    return Status::error("--set '" + assignment + "': expected key=value, e.g. --set training.steps=10");
  std::string path = assignment.substr(0, eq);
  const Field* f = find_field(path);
  if (!f) {
    std::string parent = path.find('.') == std::string::npos ? "" : path.substr(0, path.rfind('.'));
    return Status::error("--set: unknown key '" + path + "'; allowed" +
                         (is_section(parent) ? " under '" + parent + "'" : "") + ": " +
                         allowed_under(is_section(parent) ? parent : ""));
  }
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    return Status::error("--set " + path + ": cannot parse value: " + e.what());
  }
  if (value.IsNull()) value = YAML::Node(std::string());
  Status s = f->set(*c, value);
  if (!s) return Status::error("--set " + path + ": " + s.message());
  return Status::ok();
}

std::string one_of(const std::string& v, const std::vector<std::string>& allowed, bool* ok) {
  std::string list;
  *ok = false;
  for (const std::string& a : allowed) {
    if (v == a) *ok = true;
    list += (list.empty() ? "" : ", ") + a;
  }
  return list;
}

// optimizer.basis_rotation.*: the allowed geometries and sources come from optim/basis_rotation.h.
template <class Bad> Status validate_basis_rotation(const BasisRotationOptions& b, const Bad& bad) {
  bool ok = false;
  std::string allowed = one_of(b.geometry, basis_rotation_geometries(), &ok);
  if (!ok) return bad("optimizer.basis_rotation.geometry", "'" + b.geometry + "' is not one of: " + allowed);
  allowed = one_of(b.source, basis_rotation_sources(), &ok);
  if (!ok) return bad("optimizer.basis_rotation.source", "'" + b.source + "' is not one of: " + allowed);
  if (b.update_freq < 1) return bad("optimizer.basis_rotation.update_freq", "must be >= 1, got " + std::to_string(b.update_freq));
  if (!(b.shampoo_beta < 1)) return bad("optimizer.basis_rotation.shampoo_beta", "must be < 1 (in [0, 1), or negative for optimizer.beta2)");
  if (b.max_precond_dim < 1)
    return bad("optimizer.basis_rotation.max_precond_dim", "must be >= 1, got " + std::to_string(b.max_precond_dim));
  return Status::ok();
}

}  // namespace

Status load_config_text(const std::string& yaml, const std::string& source, const std::vector<std::string>& overrides,
                        Config* out) {
  Config c;
  c.source_file = source;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return Status::error(source + ": YAML syntax error: " + e.what());
  }
  if (root && !root.IsNull()) {
    if (!root.IsMap()) return Status::error(source + ": expected a map of sections at the top level");
    PT_RETURN_IF_ERROR(load_node(root, "", source, &c));
  }
  for (const auto& o : overrides) PT_RETURN_IF_ERROR(apply_override(o, &c));
  if (c.run.name.empty()) {
    std::string stem = std::filesystem::path(source).stem().string();
    c.run.name = stem.empty() ? "run" : stem;
  }
  PT_RETURN_IF_ERROR(validate(c));
  *out = c;
  return Status::ok();
}

Status load_config(const std::string& path, const std::vector<std::string>& overrides, Config* out) {
  std::ifstream in(path);
  if (!in) return Status::error(path + ": cannot open config file (check the --config path)");
  std::stringstream ss;
  ss << in.rdbuf();
  return load_config_text(ss.str(), path, overrides, out);
}

namespace {

// run.trace_steps, run.time_accounting, training.target_val_losses.
Status validate_time_accounting(const Config& c) {
  auto bad = [&](const std::string& key, const std::string& what) {
    return Status::error(c.source_file + ": key '" + key + "': " + what);
  };
  for (double v : c.training.target_val_losses)
    if (!std::isfinite(v) || v <= 0) return bad("training.target_val_losses", "every target must be a finite loss > 0");
  if (c.run.trace_steps < 0) return bad("run.trace_steps", "must be >= 0");
  if (c.run.trace_steps > 0 && !c.run.time_accounting)
    return bad("run.trace_steps", "needs run.time_accounting: true (the trace is made of the measured spans)");
  return Status::ok();
}

}  // namespace

// Averaged copies (localsgd): every drain point but the run's end follows a round's average, where
// all copies are equal (evaluation and checkpoints see one model; a resume continues exactly).
template <class Bad> Status validate_whole_rounds(const Config& c, const Bad& bad) {
  const ScheduleTraits* t = find_schedule(c.schedule.kind);
  const int64_t K = c.schedule.localsgd_local_steps;
  if (t == nullptr || !t->averaged_copies) return Status::ok();
  const std::pair<const char*, int64_t> cadences[] = {{"training.eval_every", c.data.val.empty() ? 0 : c.training.eval_every},
                                                      {"checkpoint.every_steps", c.checkpoint.every_steps},
                                                      {"schedule.drain_every", c.schedule.drain_every}};
  for (const auto& [key, every] : cadences)
    if (every > 0 && every % K != 0)
      return bad(key, std::to_string(every) + " is not a multiple of schedule.localsgd.local_steps = " + std::to_string(K) +
                          ": localsgd drains (evaluates, checkpoints) only after a round's average, when its copies are equal");
  return Status::ok();
}

// runtime.*, the failure policies, run.name and checkpoint.* (the tail of validate()).
template <class Bad> Status validate_runtime_and_checkpoint(const Config& c, const Bad& bad) {
  bool ok = false;
  std::string allowed;
  const auto& p = c.parallel;
  allowed = one_of(c.runtime.backend, {"auto", "cpu", "cuda"}, &ok);
  if (!ok) return bad("runtime.backend", "'" + c.runtime.backend + "' is not one of: " + allowed);
  Precision precision = Precision::kFp32;
  if (Status st = parse_precision(c.runtime.precision, &precision); !st) return bad("runtime.precision", st.message());
  if (c.runtime.tf32 && c.runtime.backend == "cpu")
    return bad("runtime.tf32", "TF32 is a GPU tensor-core mode, but runtime.backend is cpu; set runtime.tf32: false or "
                               "use backend cuda or auto");
  allowed = one_of(c.runtime.transport, {"auto", "mpi", "local", "nccl", "ipc"}, &ok);
  if (!ok) return bad("runtime.transport", "'" + c.runtime.transport + "' is not one of: " + allowed);
  if (c.runtime.transport == "nccl" && c.runtime.backend == "cpu")
    return bad("runtime.transport", "nccl needs the cuda backend, but runtime.backend is cpu; use mpi or auto");
  if (c.runtime.transport == "local" && p.pp != 1)
    return bad("runtime.transport", "local runs a pipeline inside one process and needs parallel.pp = 1, got " +
               std::to_string(p.pp) + "; use mpi or auto");
  allowed = one_of(c.runtime.progress, {"auto", "on", "off"}, &ok);
  if (!ok) return bad("runtime.progress", "'" + c.runtime.progress + "' is not one of: " + allowed);
  if (c.runtime.threads < 0) return bad("runtime.threads", "must be >= 0");
  if (c.runtime.watchdog_seconds < 0) return bad("runtime.watchdog_seconds", "must be >= 0 (0 = no deadline)");
  if (!(c.runtime.dp_bucket_mb >= 0) || c.runtime.dp_bucket_mb > 4096)
    return bad("runtime.dp_bucket_mb", "must be in [0, 4096] MiB (0 = one bucket per stage)");
  allowed = one_of(c.training.on_nonfinite, {"stop", "skip_step"}, &ok);
  if (!ok) return bad("training.on_nonfinite", "'" + c.training.on_nonfinite + "' is not one of: " + allowed);
  allowed = one_of(c.checkpoint.on_write_error, {"stop", "continue"}, &ok);
  if (!ok) return bad("checkpoint.on_write_error", "'" + c.checkpoint.on_write_error + "' is not one of: " + allowed);
  if (c.run.name.find('/') != std::string::npos) return bad("run.name", "must not contain '/'");
  if (c.checkpoint.every_steps < 0) return bad("checkpoint.every_steps", "must be >= 0 (0 = only on SIGTERM/SIGUSR1)");
  if (c.checkpoint.keep_last < 0) return bad("checkpoint.keep_last", "must be >= 0 (0 = keep all)");
  return Status::ok();
}

Status run_precision(const Config& c, Precision* out) {
  return parse_precision(c.runtime.precision, out).with_context(c.source_file + ": key 'runtime.precision'");
}

Status validate(const Config& c) {
  const std::string& src = c.source_file;
  auto bad = [&](const std::string& key, const std::string& what) {
    return Status::error(src + ": key '" + key + "': " + what);
  };
  bool ok = false;
  const auto& m = c.model;
  const auto& t = c.training;
  const auto& o = c.optimizer;
  const auto& p = c.parallel;
  const auto& s = c.schedule;
  if (m.vocab_size < 2 || m.vocab_size > 65536) return bad("model.vocab_size", "must be in [2, 65536], got " + std::to_string(m.vocab_size));
  if (m.n_layer < 1) return bad("model.n_layer", "must be >= 1");
  if (m.n_head < 1) return bad("model.n_head", "must be >= 1");
  if (m.n_embd < 1 || m.n_embd % m.n_head != 0)
    return bad("model.n_embd", "must be a positive multiple of model.n_head (" + std::to_string(m.n_head) + "), got " + std::to_string(m.n_embd));
  if (!(m.init_std > 0)) return bad("model.init_std", "must be > 0");
  if (c.data.train.empty()) return bad("data.train", "is required: a glob of training shards such as data_cache/sotu/train_*.bin (make them with `pipetrain prepare`)");
  if (t.steps < 1) return bad("training.steps", "must be >= 1");
  if (t.micro_batch_size < 1) return bad("training.micro_batch_size", "must be >= 1");
  if (t.seq_len < 1) return bad("training.seq_len", "must be >= 1");
  if (t.seq_len > m.max_seq_len)
    return bad("training.seq_len", "must be <= model.max_seq_len (" + std::to_string(m.max_seq_len) + "), got " + std::to_string(t.seq_len));
  if (t.eval_every < 0) return bad("training.eval_every", "must be >= 0");
  if (t.eval_batches < 1) return bad("training.eval_batches", "must be >= 1");
  if (t.log_every < 1) return bad("training.log_every", "must be >= 1");
  if (t.max_seconds < 0) return bad("training.max_seconds", "must be >= 0");
  PT_RETURN_IF_ERROR(validate_time_accounting(c));
  std::string allowed = one_of(o.kind, optimizer_kinds(), &ok);
  if (!ok) return bad("optimizer.kind", "'" + o.kind + "' is not available; allowed: " + allowed);
  if (!(o.lr > 0)) return bad("optimizer.lr", "must be > 0");
  if (o.min_lr_ratio < 0 || o.min_lr_ratio > 1) return bad("optimizer.min_lr_ratio", "must be in [0, 1]");
  allowed = one_of(o.lr_schedule, {"cosine", "linear", "constant"}, &ok);
  if (!ok) return bad("optimizer.lr_schedule", "'" + o.lr_schedule + "' is not one of: " + allowed);
  if (o.warmup_steps < 0) return bad("optimizer.warmup_steps", "must be >= 0");
  if (o.beta1 < 0 || o.beta1 >= 1) return bad("optimizer.beta1", "must be in [0, 1)");
  if (o.beta2 < 0 || o.beta2 >= 1) return bad("optimizer.beta2", "must be in [0, 1)");
  if (!(o.eps > 0)) return bad("optimizer.eps", "must be > 0");
  if (o.weight_decay < 0) return bad("optimizer.weight_decay", "must be >= 0");
  if (o.grad_clip < 0) return bad("optimizer.grad_clip", "must be >= 0 (0 = off)");
  if (!(o.momentum_decay >= 0)) return bad("optimizer.nadamw.momentum_decay", "must be >= 0");
  PT_RETURN_IF_ERROR(validate_basis_rotation(o.basis_rotation, bad));
  if (p.dp < 1) return bad("parallel.dp", "must be >= 1");
  if (s.drain_every < 0) return bad("schedule.drain_every", "must be >= 0");
  // The schedule rules (pipeline/schedules/): one copy, shared with `pipetrain plan`.
  PT_RETURN_IF_ERROR(check_schedule_spec(schedule_spec_for(c)).with_context(src));
  PT_RETURN_IF_ERROR(validate_whole_rounds(c, bad));
  const int num_stages = p.pp * s.chunks;
  if (m.n_layer < num_stages)
    return bad("parallel.pp", "pp * schedule.chunks = " + std::to_string(num_stages) + " stages need at least that many layers; model.n_layer = " + std::to_string(m.n_layer));
  if (!p.layer_split.empty()) {
    if (int(p.layer_split.size()) != num_stages)
      return bad("parallel.layer_split", "has " + std::to_string(p.layer_split.size()) + " entries; expected pp * chunks = " + std::to_string(num_stages));
    int sum = 0;
    for (int x : p.layer_split) {
      if (x < 1) return bad("parallel.layer_split", "every stage needs at least 1 layer");
      sum += x;
    }
    if (sum != m.n_layer)
      return bad("parallel.layer_split", "sums to " + std::to_string(sum) + "; must equal model.n_layer = " + std::to_string(m.n_layer));
  }
  return validate_runtime_and_checkpoint(c, bad);
}

std::string dump_config(const Config& c) {
  std::string out = "# resolved config (every key, defaults included)\n";
  std::string section;
  for (const auto& f : schema()) {
    std::string sec = f.path.substr(0, f.path.find('.'));
    if (sec != section) {
      out += sec + ":\n";
      section = sec;
    }
    out += "  " + f.path.substr(sec.size() + 1) + ": " + f.get(c) + "\n";
  }
  return out;
}

std::vector<ConfigKeyDoc> config_schema() {
  std::vector<ConfigKeyDoc> docs;
  Config defaults;
  for (const auto& f : schema()) docs.push_back({f.path, f.type, f.get(defaults), f.help, f.on_resume});
  return docs;
}

namespace {

// Whether `path` is a key of another optimizer's own section (optimizer.<section>.*,
// OptimizerEntry::keys_section) than the one of `kind`: such a key does not act.
bool other_optimizers_key(const std::string& path, const std::string& kind) {
  const OptimizerEntry* mine = find_optimizer(kind);
  for (const auto& e : optimizer_registry()) {
    if (!e.keys_section || (mine && mine->keys_section && std::string(e.keys_section) == mine->keys_section)) continue;
    if (path.rfind("optimizer." + std::string(e.keys_section) + ".", 0) == 0) return true;
  }
  return false;
}

}  // namespace

// An optimizer's own keys must match only when that optimizer is selected: checkpoints of
// the other kinds (those written before the keys existed included) keep their fingerprint.
// schedule.pipedream.* (the PipeDream-LR correction) likewise only when it is on.
// runtime.precision likewise must match only when it is bf16: a run keeps its precision
// (bf16 changes every step's numerics by ~2^-8, far beyond the fp32 summation-order
// noise of a backend change, so a mixed run would equal neither), while fp32
// checkpoints, including those written before the key existed, keep their fingerprint.
std::vector<ResumeKey> resume_keys(const Config& c) {
  std::vector<ResumeKey> keys;
  for (const auto& f : schema()) {
    const bool inert = other_optimizers_key(f.path, c.optimizer.kind) ||
                       (f.path == "runtime.precision" && c.runtime.precision == precision_name(Precision::kFp32)) ||
                       (f.path.rfind("schedule.pipedream.", 0) == 0 && c.schedule.pipedream_lr_correction == "none");
    keys.push_back({f.path, inert ? OnResume::kMayChange : f.on_resume, f.fingerprint(c)});
  }
  return keys;
}

}  // namespace pt
