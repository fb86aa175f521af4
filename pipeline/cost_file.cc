#include "pipeline/cost_file.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/check.h"
#include "common/json.h"

namespace pt {
namespace {

std::string number(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

std::string component_json(const ComponentCost& c) {
  return "{\"forward_s\": " + number(c.forward) + ", \"backward_input_s\": " + number(c.backward_input) +
         ", \"backward_weight_s\": " + number(c.backward_weight) + "}";
}

// Reads one key of a JSON (YAML) object; every failure names the file and the dotted key.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  Status node(const YAML::Node& parent, const std::string& parent_path, const std::string& key, YAML::Node* out) {
    const std::string path = parent_path.empty() ? key : parent_path + "." + key;
    if (!parent.IsMap()) return bad(parent_path, "must be a JSON object");
    YAML::Node n = parent[key];
    if (!n) return bad(path, "is missing; re-run `pipetrain bench` to write a complete cost file");
    *out = n;
    return Status::ok();
  }
  Status scalar_of(const YAML::Node& parent, const std::string& parent_path, const std::string& key, YAML::Node* out) {
    PT_RETURN_IF_ERROR(node(parent, parent_path, key, out));
    if (!out->IsScalar()) return bad(join(parent_path, key), "must be a number or a string, not an object or a list");
    return Status::ok();
  }
  Status str(const YAML::Node& parent, const std::string& parent_path, const std::string& key, std::string* out) {
    YAML::Node n;
    PT_RETURN_IF_ERROR(scalar_of(parent, parent_path, key, &n));
    *out = n.as<std::string>();
    return Status::ok();
  }
  Status integer(const YAML::Node& parent, const std::string& parent_path, const std::string& key, int* out) {
    YAML::Node n;
    PT_RETURN_IF_ERROR(scalar_of(parent, parent_path, key, &n));
    try {
      *out = n.as<int>();
    } catch (const YAML::Exception&) {
      return bad(join(parent_path, key), "must be an integer, got '" + n.as<std::string>() + "'");
    }
    return Status::ok();
  }
  // A finite number >= 0 (every quantity in the file is a time, a rate or a size).
  Status real(const YAML::Node& parent, const std::string& parent_path, const std::string& key, double* out) {
    YAML::Node n;
    PT_RETURN_IF_ERROR(scalar_of(parent, parent_path, key, &n));
    try {
      *out = n.as<double>();
    } catch (const YAML::Exception&) {
      return bad(join(parent_path, key), "must be a number, got '" + n.as<std::string>() + "'");
    }
    if (!std::isfinite(*out) || *out < 0)
      return bad(join(parent_path, key), "must be a finite number >= 0, got " + n.as<std::string>());
    return Status::ok();
  }
  Status component(const YAML::Node& root, const std::string& key, ComponentCost* out) {
    YAML::Node n;
    PT_RETURN_IF_ERROR(node(root, "", key, &n));
    PT_RETURN_IF_ERROR(real(n, key, "forward_s", &out->forward));
    PT_RETURN_IF_ERROR(real(n, key, "backward_input_s", &out->backward_input));
    return real(n, key, "backward_weight_s", &out->backward_weight);
  }
  // measurement.precision / .tf32: optional, fp32 without TF32 when absent (files
  // written before the keys existed, by a bench that always measured fp32).
  Status precision(const YAML::Node& meas, CostShape* out) {
    // The name is compared with the config's (check_cost_shape), not parsed here.
    if (meas["precision"]) PT_RETURN_IF_ERROR(str(meas, "measurement", "precision", &out->precision));
    if (const YAML::Node t = meas["tf32"]) {
      if (!t.IsScalar() || (t.as<std::string>() != "true" && t.as<std::string>() != "false"))
        return bad("measurement.tf32", "must be true or false");
      out->tf32 = t.as<std::string>() == "true";
    }
    return Status::ok();
  }
  Status bad(const std::string& key, const std::string& what) const {
    return Status::error(source_ + ": key '" + key + "' " + what);
  }

 private:
  static std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }
  std::string source_;
};

}  // namespace

std::string cost_file_json(const CostFile& f) {
  const CostShape& m = f.model;
  std::string s = "{\n";
  s += "  \"format\": \"pipetrain-costs\",\n";
  s += "  \"version\": " + std::to_string(f.version) + ",\n";
  s += "  \"machine\": {\"backend\": " + JsonWriter::escape(f.backend) + ", \"device\": " + JsonWriter::escape(f.device) +
       ", \"host\": " + JsonWriter::escape(f.host) + ", \"transport\": " + JsonWriter::escape(f.transport) +
       ", \"ranks\": " + std::to_string(f.ranks) + ", \"threads\": " + std::to_string(f.threads) + "},\n";
  s += "  \"created\": " + JsonWriter::escape(f.created) + ",\n";
  s += "  \"measurement\": {\"warmup\": " + std::to_string(f.warmup) + ", \"iters\": " + std::to_string(f.iters) +
       ", \"statistic\": \"median\", \"unit\": \"seconds per micro-batch\", \"precision\": " +
       JsonWriter::escape(m.precision) + ", \"tf32\": " + (m.tf32 ? "true" : "false") + "},\n";
  s += "  \"model\": {\"n_layer\": " + std::to_string(m.n_layer) + ", \"n_embd\": " + std::to_string(m.n_embd) +
       ", \"n_head\": " + std::to_string(m.n_head) + ", \"vocab_size\": " + std::to_string(m.vocab_size) +
       ", \"micro_batch_size\": " + std::to_string(m.micro_batch_size) + ", \"seq_len\": " + std::to_string(m.seq_len) +
       "},\n";
  s += "  \"block\": " + component_json(f.block) + ",\n";
  s += "  \"stage_io\": " + component_json(f.stage_io) + ",\n";
  s += "  \"embedding\": " + component_json(f.embedding) + ",\n";
  s += "  \"head\": " + component_json(f.head) + ",\n";
  s += "  \"full_model\": " + component_json(f.full_model) + ",\n";
  s += "  \"p2p\": {\"latency_s\": " + number(f.p2p_latency_s) +
       ", \"bandwidth_bytes_per_s\": " + number(f.p2p_bandwidth_bytes_per_s) +
       ", \"message_bytes\": " + number(f.p2p_message_bytes) + ", \"message_s\": " + number(f.p2p_message_s) + "},\n";
  s += "  \"optimizer\": {\"seconds_per_param\": " + number(f.optimizer_seconds_per_param) + "}\n";
  s += "}\n";
  return s;
}

Status write_cost_file(const std::string& path, const CostFile& f) {
  // Written to a temporary name and renamed: a reader never sees half a file.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return Status::error(path + ": cannot open for writing");
    out << cost_file_json(f);
    out.close();
    if (!out) return Status::error(path + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return Status::error(path + ": cannot rename " + tmp + " into place");
  return Status::ok();
}

Status parse_cost_file(const std::string& json, const std::string& source, CostFile* out) {
  YAML::Node root;
  try {
    root = YAML::Load(json);
  } catch (const YAML::Exception& e) {
    return Status::error(source + ": not a valid cost file (JSON): " + e.what());
  }
  if (!root.IsMap()) return Status::error(source + ": not a cost file: expected a JSON object written by `pipetrain bench`");
  Reader r(source);
  CostFile f;
  std::string format;
  PT_RETURN_IF_ERROR(r.str(root, "", "format", &format));
  if (format != "pipetrain-costs")
    return r.bad("format", "is '" + format + "'; expected 'pipetrain-costs' (a file written by `pipetrain bench`)");
  PT_RETURN_IF_ERROR(r.integer(root, "", "version", &f.version));
  if (f.version != kCostFileVersion)
    return r.bad("version", "is " + std::to_string(f.version) + "; this pipetrain reads version " +
                                std::to_string(kCostFileVersion) + ": re-run `pipetrain bench` to write a current file");
  YAML::Node machine, meas, model, p2p, opt;
  PT_RETURN_IF_ERROR(r.node(root, "", "machine", &machine));
  PT_RETURN_IF_ERROR(r.str(machine, "machine", "backend", &f.backend));
  PT_RETURN_IF_ERROR(r.str(machine, "machine", "device", &f.device));
  PT_RETURN_IF_ERROR(r.str(machine, "machine", "host", &f.host));
  PT_RETURN_IF_ERROR(r.str(machine, "machine", "transport", &f.transport));
  PT_RETURN_IF_ERROR(r.integer(machine, "machine", "ranks", &f.ranks));
  PT_RETURN_IF_ERROR(r.integer(machine, "machine", "threads", &f.threads));
  PT_RETURN_IF_ERROR(r.str(root, "", "created", &f.created));
  PT_RETURN_IF_ERROR(r.node(root, "", "measurement", &meas));
  PT_RETURN_IF_ERROR(r.integer(meas, "measurement", "warmup", &f.warmup));
  PT_RETURN_IF_ERROR(r.integer(meas, "measurement", "iters", &f.iters));
  PT_RETURN_IF_ERROR(r.precision(meas, &f.model));
  PT_RETURN_IF_ERROR(r.node(root, "", "model", &model));
  struct {
    const char* key;
    int* field;
  } shape[] = {{"n_layer", &f.model.n_layer},       {"n_embd", &f.model.n_embd},
               {"n_head", &f.model.n_head},         {"vocab_size", &f.model.vocab_size},
               {"micro_batch_size", &f.model.micro_batch_size}, {"seq_len", &f.model.seq_len}};
  for (auto& k : shape) {
    PT_RETURN_IF_ERROR(r.integer(model, "model", k.key, k.field));
    if (*k.field < 1) return r.bad(std::string("model.") + k.key, "must be >= 1, got " + std::to_string(*k.field));
  }
  PT_RETURN_IF_ERROR(r.component(root, "block", &f.block));
  PT_RETURN_IF_ERROR(r.component(root, "stage_io", &f.stage_io));
  PT_RETURN_IF_ERROR(r.component(root, "embedding", &f.embedding));
  PT_RETURN_IF_ERROR(r.component(root, "head", &f.head));
  PT_RETURN_IF_ERROR(r.component(root, "full_model", &f.full_model));
  if (!(f.block.forward > 0))
    return r.bad("block.forward_s", "must be > 0 (a transformer block cannot be free); re-run `pipetrain bench`");
  PT_RETURN_IF_ERROR(r.node(root, "", "p2p", &p2p));
  PT_RETURN_IF_ERROR(r.real(p2p, "p2p", "latency_s", &f.p2p_latency_s));
  PT_RETURN_IF_ERROR(r.real(p2p, "p2p", "bandwidth_bytes_per_s", &f.p2p_bandwidth_bytes_per_s));
  PT_RETURN_IF_ERROR(r.real(p2p, "p2p", "message_bytes", &f.p2p_message_bytes));
  PT_RETURN_IF_ERROR(r.real(p2p, "p2p", "message_s", &f.p2p_message_s));
  PT_RETURN_IF_ERROR(r.node(root, "", "optimizer", &opt));
  PT_RETURN_IF_ERROR(r.real(opt, "optimizer", "seconds_per_param", &f.optimizer_seconds_per_param));
  *out = f;
  return Status::ok();
}

Status read_cost_file(const std::string& path, CostFile* out) {
  std::ifstream in(path);
  if (!in) return Status::error(path + ": cannot open the cost file; write it with `pipetrain bench --config C --out " + path + "`");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_cost_file(ss.str(), path, out);
}

Status check_cost_shape(const CostFile& f, const std::string& source, const CostShape& want,
                        const std::string& config_name) {
  struct {
    const char* key;
    int have, want;
  } keys[] = {{"n_layer", f.model.n_layer, want.n_layer},
              {"n_embd", f.model.n_embd, want.n_embd},
              {"n_head", f.model.n_head, want.n_head},
              {"vocab_size", f.model.vocab_size, want.vocab_size},
              {"micro_batch_size", f.model.micro_batch_size, want.micro_batch_size},
              {"seq_len", f.model.seq_len, want.seq_len}};
  for (const auto& k : keys)
    if (k.have != k.want)
      return Status::error(source + ": key 'model." + k.key + "': the costs were measured with " +
                           std::to_string(k.have) + " but " + config_name + " has " + std::to_string(k.want) +
                           "; re-run `pipetrain bench --config " + config_name + "` for this model shape");
  auto arith = [](const CostShape& s) { return s.precision + (s.tf32 ? " with TF32" : ""); };
  if (f.model.precision != want.precision || f.model.tf32 != want.tf32)
    return Status::error(source + ": key 'measurement.precision': the costs were measured in " + arith(f.model) +
                         " but " + config_name + " trains in " + arith(want) + " (runtime.precision, runtime.tf32)" +
                         "; re-run `pipetrain bench --config " + config_name + "` with the same runtime keys");
  return Status::ok();
}

ComponentCost stage_cost_from_file(const CostFile& f, int first_layer, int last_layer, bool has_embedding,
                                   bool has_head) {
  PT_CHECK(0 <= first_layer && first_layer <= last_layer);
  const double n = double(last_layer - first_layer);
  // Weight of stage_io: 1 for a middle stage, 0 for a first or last stage, -1 for a stage that is both.
  const double io = 1.0 - double(has_embedding) - double(has_head);
  auto sum = [&](double ComponentCost::*field) {
    return n * f.block.*field + (has_embedding ? f.embedding.*field : 0.0) + (has_head ? f.head.*field : 0.0) +
           io * f.stage_io.*field;
  };
  ComponentCost c;
  c.forward = sum(&ComponentCost::forward);
  c.backward_input = sum(&ComponentCost::backward_input);
  c.backward_weight = sum(&ComponentCost::backward_weight);
  return c;
}

double p2p_seconds(const CostFile& f, double bytes) {
  PT_CHECK(bytes >= 0);
  if (f.p2p_bandwidth_bytes_per_s <= 0) return f.p2p_latency_s;
  return f.p2p_latency_s + bytes / f.p2p_bandwidth_bytes_per_s;
}

CostModel cost_model_from_file(const CostFile& f, const std::vector<std::pair<int, int>>& ranges, int num_stages,
                               double activation_bytes, const std::vector<size_t>& stage_params) {
  const int L = int(ranges.size());
  PT_CHECK(L >= 1 && num_stages >= L && num_stages % L == 0);
  PT_CHECK(stage_params.empty() || int(stage_params.size()) == L);
  CostModel cm = CostModel::uniform(num_stages, 0, 0, 0, p2p_seconds(f, activation_bytes));
  for (int v = 0; v < num_stages; ++v) {
    const int s = v % L;
    const ComponentCost c = stage_cost_from_file(f, ranges[s].first, ranges[s].second, s == 0, s == L - 1);
    cm.forward[v] = c.forward;
    cm.backward_input[v] = c.backward_input;
    cm.backward_weight[v] = c.backward_weight;
  }
  size_t largest = 0;
  for (size_t p : stage_params) largest = std::max(largest, p);
  cm.step = double(largest) * f.optimizer_seconds_per_param;
  return cm;
}

}  // namespace pt
