// Config schema: each key declared once with its accessor, type and help text.
// Loading walks the YAML tree against the schema, so an unknown key anywhere is an
// error that names the key, the file and the keys allowed at that level.
#include "app/config.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <type_traits>

namespace pt {
namespace {

struct Field {
  std::string path;
  std::string type;
  std::string help;
  std::function<Status(Config&, const YAML::Node&)> set;
  std::function<std::string(const Config&)> get;  // flow-style YAML value
};

template <class T> std::string type_name() {
  if constexpr (std::is_same_v<T, bool>) return "bool";
  else if constexpr (std::is_integral_v<T>) return "int";
  else if constexpr (std::is_floating_point_v<T>) return "float";
  else if constexpr (std::is_same_v<T, std::string>) return "string";
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
  } else if constexpr (std::is_floating_point_v<T>) {
    char buf[64];  // the shortest text that reads back to the same value
    return std::string(buf, std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general).ptr);
  } else return std::to_string(v);
}

template <class T, class Access> Field make_field(const char* path, Access access, const char* help) {
  Field f;
  f.path = path;
  f.type = type_name<T>();
  f.help = help;
  f.set = [access](Config& c, const YAML::Node& n) { return parse_value<T>(n, &access(c)); };
  f.get = [access](const Config& c) { return format_value<T>(access(const_cast<Config&>(c))); };
  return f;
}

#define PT_KEY(path, member, help) \
  make_field<std::decay_t<decltype(Config{}.member)>>(path, [](Config& c) -> auto& { return c.member; }, help)

const std::vector<Field>& schema() {
  static const std::vector<Field> fields = {
      PT_KEY("run.name", run.name, "Run name; the run directory is run.out_dir/run.name. Default: the config file's stem."),
      PT_KEY("run.out_dir", run.out_dir, "Parent folder of run directories."),
      PT_KEY("run.seed", run.seed, "Seed of initialization and data order."),
      PT_KEY("run.save_params", run.save_params, "After the last step, write every parameter tensor to run_dir/params/<global id>.bin (raw fp32, layout-independent names)."),
      PT_KEY("model.vocab_size", model.vocab_size, "V: token ids are < V (at most 65536: shards store uint16)."),
      PT_KEY("model.max_seq_len", model.max_seq_len, "Rows of the position table; must be >= training.seq_len."),
      PT_KEY("model.n_layer", model.n_layer, "L: transformer blocks."),
      PT_KEY("model.n_head", model.n_head, "NH: attention heads; must divide n_embd."),
      PT_KEY("model.n_embd", model.n_embd, "C: model width."),
      PT_KEY("model.tie_embeddings", model.tie_embeddings, "LM head shares the token embedding (GPT-2 default)."),
      PT_KEY("model.init_std", model.init_std, "Std of the normal weight init; residual projections use init_std/sqrt(2L)."),
      PT_KEY("data.train", data.train, "Glob of training shards (llm.c format, written by `pipetrain prepare`). Required."),
      PT_KEY("data.val", data.val, "Glob of validation shards; empty disables evaluation."),
      PT_KEY("data.shuffle", data.shuffle, "Shuffle sequences each epoch (a pure function of seed and epoch)."),
      PT_KEY("training.steps", training.steps, "Optimizer steps."),
      PT_KEY("training.micro_batch_size", training.micro_batch_size, "B: sequences per micro-batch."),
      PT_KEY("training.seq_len", training.seq_len, "T: tokens per sequence."),
      PT_KEY("training.microbatches", training.microbatches, "m: micro-batches per optimizer step per data-parallel replica. Global batch = B*T*m*dp tokens."),
      PT_KEY("training.eval_every", training.eval_every, "Steps between validation evaluations; 0 = only after the last step."),
      PT_KEY("training.eval_batches", training.eval_batches, "Validation micro-batches per evaluation."),
      PT_KEY("training.log_every", training.log_every, "Steps between metric lines printed on rank 0 (metrics.jsonl gets every step)."),
      PT_KEY("training.max_seconds", training.max_seconds, "Stop after this many seconds of training (0 = no limit)."),
      PT_KEY("optimizer.kind", optimizer.kind, "Optimizer: adamw."),
      PT_KEY("optimizer.lr", optimizer.lr, "Peak learning rate."),
      PT_KEY("optimizer.min_lr_ratio", optimizer.min_lr_ratio, "Final learning rate as a fraction of lr (cosine, linear)."),
      PT_KEY("optimizer.lr_schedule", optimizer.lr_schedule, "cosine | linear | constant, after linear warm-up."),
      PT_KEY("optimizer.warmup_steps", optimizer.warmup_steps, "Linear warm-up steps."),
      PT_KEY("optimizer.beta1", optimizer.beta1, "Adam beta1."),
      PT_KEY("optimizer.beta2", optimizer.beta2, "Adam beta2."),
      PT_KEY("optimizer.eps", optimizer.eps, "Adam epsilon."),
      PT_KEY("optimizer.weight_decay", optimizer.weight_decay, "Decoupled weight decay (not applied to biases, LayerNorms, wpe)."),
      PT_KEY("optimizer.grad_clip", optimizer.grad_clip, "Clip the global gradient norm to this value; 0 = no clipping."),
      PT_KEY("optimizer.decay_embeddings", optimizer.decay_embeddings, "Apply weight decay to the token embedding wte."),
      PT_KEY("parallel.dp", parallel.dp, "Data-parallel replicas. World size = dp * pp."),
      PT_KEY("parallel.pp", parallel.pp, "Pipeline ranks per replica (N_PP)."),
      PT_KEY("parallel.layer_split", parallel.layer_split, "'auto' (balanced, counting embedding and head) or a list of blocks per stage (pp*chunks entries, summing to n_layer)."),
      PT_KEY("schedule.kind", schedule.kind, "Synchronous: gpipe | 1f1b | interleaved_1f1b | bfpp | zb_h1. Asynchronous (no flush; training.microbatches = micro-batches per update): pipedream | pipedream_2bw | paci | paci_flush | amdp."),
      PT_KEY("schedule.chunks", schedule.chunks, "v: stages per pipeline rank (looping placement; interleaved_1f1b and bfpp)."),
      PT_KEY("schedule.bfpp_breadth", schedule.bfpp_breadth, "bfpp: micro-batches per breadth-first group (must divide m); 0 = all m."),
      PT_KEY("schedule.drain_every", schedule.drain_every, "Asynchronous schedules: drain the pipeline every N steps (0 = only at evaluations, checkpoints and the end). Signals and max_seconds are honoured at drain points."),
      PT_KEY("schedule.paci.allowed_lagging", schedule.paci_allowed_lagging, "paci: 'auto' (S-s) or one in-flight cap per stage, each in [1, S-s]."),
      PT_KEY("schedule.paci.mode", schedule.paci_mode, "paci: perf (keep activations) or mem (keep the stage input, recompute the forward in the backward with the live weights)."),
      PT_KEY("schedule.amdp.zero_owner", schedule.amdp_zero_owner, "amdp: stage s is owned by the GPU hosting it in pipeline 0; at the step slot the K replicas' gradients are summed on the owner (canonical order), only the owner runs AdamW and holds Adam moments, then it broadcasts the new parameters (ZeRO-1 over replicas). false: every replica sums all gradients and steps itself."),
      PT_KEY("schedule.amdp.step_slot", schedule.amdp_step_slot, "amdp: clean (each step slot reduces and applies everything accumulated since the previous slot: every gradient applied exactly once) | reference (parallel.pp 4 or 8, needs zero_owner: the reference code's placement, reduce after a replica's last backward of the iteration, step at its U; backwards in between are dropped on non-owners, algorithms.md §2.2)."),
      PT_KEY("runtime.backend", runtime.backend, "auto | cpu | cuda (auto picks cuda when a GPU is visible and built)."),
      PT_KEY("runtime.transport", runtime.transport, "auto | mpi | local | nccl. auto = nccl when the backend is cuda and every pipeline rank has a GPU of its own, else mpi; mpi = host-staged MPI, also for ranks that share a GPU (MPS, scripts/mps_pipeline.sh); local keeps every stage in one process (parallel.pp = 1); nccl needs the cuda backend and one GPU per pipeline rank (docs/transports.md)."),
      PT_KEY("runtime.threads", runtime.threads, "OpenBLAS threads per rank; 0 = library default."),
      PT_KEY("runtime.progress", runtime.progress, "auto | on | off: one-line progress display on rank 0 (auto = when stdout is a terminal)."),
      PT_KEY("checkpoint.every_steps", checkpoint.every_steps, "Write a checkpoint every N steps and after the last step; 0 = only on SIGTERM/SIGUSR1. Resume with `train --resume auto|PATH` (docs/checkpoints.md)."),
      PT_KEY("checkpoint.keep_last", checkpoint.keep_last, "Complete checkpoints kept (older ones are deleted after a new one is complete); 0 = keep all."),
      PT_KEY("checkpoint.dir", checkpoint.dir, "Checkpoint folder (holds step_N/); empty = run_dir/checkpoints."),
  };
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

std::string one_of(const std::string& v, std::initializer_list<const char*> allowed, bool* ok) {
  std::string list;
  *ok = false;
  for (const char* a : allowed) {
    if (v == a) *ok = true;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  return list;
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
  if (t.microbatches < 1) return bad("training.microbatches", "must be >= 1");
  if (t.eval_every < 0) return bad("training.eval_every", "must be >= 0");
  if (t.eval_batches < 1) return bad("training.eval_batches", "must be >= 1");
  if (t.log_every < 1) return bad("training.log_every", "must be >= 1");
  if (t.max_seconds < 0) return bad("training.max_seconds", "must be >= 0");
  std::string allowed = one_of(o.kind, {"adamw"}, &ok);
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
  if (p.dp < 1) return bad("parallel.dp", "must be >= 1");
  if (p.pp < 1) return bad("parallel.pp", "must be >= 1");
  allowed = one_of(s.kind, {"gpipe", "1f1b", "interleaved_1f1b", "bfpp", "zb_h1", "pipedream", "pipedream_2bw", "paci",
                            "paci_flush", "amdp"},
                   &ok);
  if (!ok) return bad("schedule.kind", "'" + s.kind + "' is not one of: " + allowed);
  const bool async = s.kind == "pipedream" || s.kind == "pipedream_2bw" || s.kind == "paci" || s.kind == "paci_flush" ||
                     s.kind == "amdp";
  if (async && m.tie_embeddings)
    return bad("model.tie_embeddings", "asynchronous schedules (" + s.kind + ") keep separate weight versions per stage, "
               "so the first and last stage cannot share wte; set model.tie_embeddings: false");
  if (s.drain_every < 0) return bad("schedule.drain_every", "must be >= 0");
  allowed = one_of(s.paci_mode, {"perf", "mem"}, &ok);
  if (!ok) return bad("schedule.paci.mode", "'" + s.paci_mode + "' is not one of: " + allowed);
  allowed = one_of(s.amdp_step_slot, {"clean", "reference"}, &ok);
  if (!ok) return bad("schedule.amdp.step_slot", "'" + s.amdp_step_slot + "' is not one of: " + allowed);
  if (s.amdp_step_slot == "reference" && s.kind != "amdp")
    return bad("schedule.amdp.step_slot", "applies to schedule.kind: amdp only; leave it clean with " + s.kind);
  if (s.amdp_step_slot == "reference" && !s.amdp_zero_owner)
    return bad("schedule.amdp.step_slot", "reference needs schedule.amdp.zero_owner: true (with an all-reduce, gradients "
               "accumulated between the reduce and the step would make the replicas diverge)");
  if (!s.amdp_zero_owner && s.kind != "amdp")
    return bad("schedule.amdp.zero_owner", "applies to schedule.kind: amdp only (stage replicas); leave it true with " + s.kind);
  if (!s.paci_allowed_lagging.empty()) {
    if (s.kind != "paci") return bad("schedule.paci.allowed_lagging", "applies to schedule.kind: paci only; use 'auto'");
    if (int(s.paci_allowed_lagging.size()) != p.pp)
      return bad("schedule.paci.allowed_lagging", "needs one entry per stage (parallel.pp = " + std::to_string(p.pp) + "), got " +
                 std::to_string(s.paci_allowed_lagging.size()));
    for (int st = 0; st < p.pp; ++st)
      if (s.paci_allowed_lagging[st] < 1 || s.paci_allowed_lagging[st] > p.pp - st)
        return bad("schedule.paci.allowed_lagging", "entry for stage " + std::to_string(st) + " must be in [1, S-s] = [1, " +
                   std::to_string(p.pp - st) + "], got " + std::to_string(s.paci_allowed_lagging[st]));
  }
  if (s.kind == "pipedream_2bw" && t.microbatches < p.pp)
    return bad("training.microbatches", "pipedream_2bw accumulates m >= S micro-batches per update (S = parallel.pp = " +
               std::to_string(p.pp) + "), got " + std::to_string(t.microbatches));
  if (s.kind == "amdp") {
    if (p.pp % 2 != 0 || p.pp < 2)
      return bad("parallel.pp", "amdp runs S/2 bidirectional pipelines and needs an even number of stages >= 2, got " + std::to_string(p.pp));
    if (t.microbatches % p.pp != 0)
      return bad("training.microbatches", "amdp needs m divisible by parallel.pp (" + std::to_string(p.pp) +
                 ": rounds of 2 micro-batches per pipeline), got " + std::to_string(t.microbatches));
  }
  if (s.chunks < 1) return bad("schedule.chunks", "must be >= 1");
  if (s.chunks > 1 && s.kind != "interleaved_1f1b" && s.kind != "bfpp")
    return bad("schedule.chunks", "only interleaved_1f1b and bfpp place several stages per rank; use chunks: 1 with " + s.kind);
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
  if (s.kind == "interleaved_1f1b" && t.microbatches % p.pp != 0)
    return bad("training.microbatches", "interleaved_1f1b needs m divisible by parallel.pp (" + std::to_string(p.pp) + "), got " + std::to_string(t.microbatches));
  if (s.bfpp_breadth < 0 || (s.bfpp_breadth > 0 && t.microbatches % s.bfpp_breadth != 0))
    return bad("schedule.bfpp_breadth", "must be 0 or divide training.microbatches (" + std::to_string(t.microbatches) + ")");
  allowed = one_of(c.runtime.backend, {"auto", "cpu", "cuda"}, &ok);
  if (!ok) return bad("runtime.backend", "'" + c.runtime.backend + "' is not one of: " + allowed);
  allowed = one_of(c.runtime.transport, {"auto", "mpi", "local", "nccl"}, &ok);
  if (!ok) return bad("runtime.transport", "'" + c.runtime.transport + "' is not one of: " + allowed);
  if (c.runtime.transport == "nccl" && c.runtime.backend == "cpu")
    return bad("runtime.transport", "nccl needs the cuda backend, but runtime.backend is cpu; use mpi or auto");
  if (c.runtime.transport == "local" && p.pp != 1)
    return bad("runtime.transport", "local runs a pipeline inside one process and needs parallel.pp = 1, got " +
               std::to_string(p.pp) + "; use mpi or auto");
  allowed = one_of(c.runtime.progress, {"auto", "on", "off"}, &ok);
  if (!ok) return bad("runtime.progress", "'" + c.runtime.progress + "' is not one of: " + allowed);
  if (c.runtime.threads < 0) return bad("runtime.threads", "must be >= 0");
  if (c.run.name.find('/') != std::string::npos) return bad("run.name", "must not contain '/'");
  if (c.checkpoint.every_steps < 0) return bad("checkpoint.every_steps", "must be >= 0 (0 = only on SIGTERM/SIGUSR1)");
  if (c.checkpoint.keep_last < 0) return bad("checkpoint.keep_last", "must be >= 0 (0 = keep all)");
  return Status::ok();
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
  for (const auto& f : schema()) docs.push_back({f.path, f.type, f.get(defaults), f.help});
  return docs;
}

}  // namespace pt
