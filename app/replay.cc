#include "app/replay.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <vector>

#include "app/config.h"
#include "app/optimizer_step.h"
#include "app/schedule_builder.h"
#include "app/train_state.h"
#include "optim/grad_norm.h"
#include "optim/lr_schedule.h"
#include "data/loader.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/topology.h"

namespace pt {
namespace {

std::string fmt9(float x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", double(x));
  return buf;
}

struct Rec {
  int64_t mb, forward, backward, applied;
  int stage;
};

Status read_records(const std::string& path, std::vector<Rec>* out) {
  std::ifstream in(path);
  if (!in) return Status::error(path + ": cannot open (was the run asynchronous?)");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    Rec r;
    long long mb, st, f, b, a;
    if (std::sscanf(line.c_str(), "{\"mb\":%lld,\"stage\":%lld,\"forward\":%lld,\"backward\":%lld,\"applied\":%lld}", &mb,
                    &st, &f, &b, &a) != 5)
      return Status::error(path + ":" + std::to_string(n) + ": not a version record: " + line);
    r.mb = mb;
    r.stage = int(st);
    r.forward = f;
    r.backward = b;
    r.applied = a;
    out->push_back(r);
  }
  return Status::ok();
}

}  // namespace

Status replay_run(const std::string& run_dir, std::string* summary) {
  Config c;
  PT_RETURN_IF_ERROR(load_config(run_dir + "/config.yaml", {}, &c));
  if (!is_async_kind(c.schedule.kind))
    return Status::error(run_dir + ": schedule.kind " + c.schedule.kind + " is synchronous; replay checks asynchronous runs");
  if (c.schedule.kind == "amdp")
    return Status::error(run_dir + ": replay of amdp (stage replicas) is not implemented; it covers pipedream, "
                         "pipedream_2bw, paci and paci_flush");
  if (c.parallel.dp != 1) return Status::error(run_dir + ": replay needs a dp=1 run (parallel.dp = " +
                                               std::to_string(c.parallel.dp) + ")");
  if (!c.run.save_params) return Status::error(run_dir + ": the run did not save its parameters (run.save_params: true)");
  std::vector<Rec> recs;
  PT_RETURN_IF_ERROR(read_records(run_dir + "/versions.jsonl", &recs));

  const int S = c.parallel.pp;
  const int m = c.training.microbatches;
  const int B = c.training.micro_batch_size, T = c.training.seq_len;
  std::vector<std::pair<int, int>> ranges;
  PT_RETURN_IF_ERROR(split_layers_for_config(c, S, &ranges));
  DataLoaderOptions d;
  d.train_pattern = c.data.train;
  d.batch_size = B;
  d.seq_len = T;
  d.microbatches = m;
  d.dp_size = 1;
  d.seed = uint64_t(c.run.seed);
  d.shuffle = c.data.shuffle;
  d.vocab_size = c.model.vocab_size;
  DataLoader data;
  PT_RETURN_IF_ERROR(data.open(d));

  std::vector<LocalStage> st(S);
  std::vector<std::map<int64_t, std::vector<float>>> snap(S);  // version -> params
  for (int s = 0; s < S; ++s) {
    st[s].stage = s;
    st[s].layers = ranges[s];
    st[s].model = make_cpu_stage_model(c.model, StageSpec{ranges[s].first, ranges[s].second, s == 0, s == S - 1}, B, T);
    st[s].model->init_params(uint64_t(c.run.seed));
    st[s].adam_m.assign(st[s].model->num_params(), 0.0f);
    st[s].adam_v.assign(st[s].model->num_params(), 0.0f);
    snap[s][0].assign(st[s].model->params(), st[s].model->params() + st[s].model->num_params());
  }
  std::vector<std::vector<Rec>> queue(S);
  std::map<std::pair<int64_t, int>, Rec> by_key;
  for (const Rec& r : recs) {
    if (r.stage < 0 || r.stage >= S) return Status::error(run_dir + "/versions.jsonl: stage out of range");
    queue[r.stage].push_back(r);
    by_key[{r.mb, r.stage}] = r;
  }
  LrSchedule lr;
  lr.kind = c.optimizer.lr_schedule;
  lr.lr = c.optimizer.lr;
  lr.min_lr_ratio = c.optimizer.min_lr_ratio;
  lr.warmup_steps = c.optimizer.warmup_steps;
  lr.total_steps = c.training.steps;
  const bool recompute = c.schedule.kind == "paci" && c.schedule.paci_mode == "mem";
  const float loss_scale = 1.0f / float(m);
  const size_t act = size_t(B) * T * c.model.n_embd;
  std::vector<int32_t> in(size_t(B) * T), tg(size_t(B) * T);
  std::map<std::pair<int64_t, int>, std::vector<float>> outputs, dgrad;  // (mb, stage)

  auto load = [&](int s, int64_t v) {
    auto it = snap[s].find(v);
    if (it == snap[s].end()) return false;
    std::copy(it->second.begin(), it->second.end(), st[s].model->params());
    return true;
  };
  // Output of stage s for micro-batch mb at its recorded forward version.
  std::function<const std::vector<float>*(int64_t, int)> output_of = [&](int64_t mb, int s) -> const std::vector<float>* {
    auto it = outputs.find({mb, s});
    if (it != outputs.end()) return &it->second;
    auto rk = by_key.find({mb, s});
    if (rk == by_key.end()) return nullptr;
    const std::vector<float>* input = nullptr;
    if (s > 0 && !(input = output_of(mb, s - 1))) return nullptr;
    if (!snap[s].count(rk->second.forward)) return nullptr;
    load(s, rk->second.forward);
    data.batch(mb / m, int(mb % m), 0, in.data(), tg.data());
    std::vector<float> out(act);
    st[s].model->forward(0, s == 0 ? in.data() : nullptr, s > 0 ? input->data() : nullptr, nullptr, out.data());
    st[s].model->release(0);
    return &(outputs[{mb, s}] = std::move(out));
  };

  std::vector<size_t> next(S, 0);
  int64_t updates = 0, done = 0;
  bool progressed = true;
  while (progressed) {
    progressed = false;
    for (int s = S - 1; s >= 0; --s) {
      while (next[s] < queue[s].size()) {
        const Rec& r = queue[s][next[s]];
        const std::vector<float>* input = nullptr;
        if (s > 0 && !(input = output_of(r.mb, s - 1))) break;
        if (s < S - 1 && !dgrad.count({r.mb, s})) break;
        const int64_t fwd_version = recompute ? r.backward : r.forward;
        if (!snap[s].count(fwd_version) || !snap[s].count(r.backward)) break;
        // Forward (activations at the forward version), then backward at the backward version.
        data.batch(r.mb / m, int(r.mb % m), 0, in.data(), tg.data());
        load(s, fwd_version);
        std::vector<float> out(s < S - 1 ? act : 0), dinput(s > 0 ? act : 0);
        st[s].model->forward(0, s == 0 ? in.data() : nullptr, s > 0 ? input->data() : nullptr,
                             s == S - 1 ? tg.data() : nullptr, s < S - 1 ? out.data() : nullptr);
        load(s, r.backward);
        st[s].model->backward(0, s < S - 1 ? dgrad.at({r.mb, s}).data() : nullptr, s > 0 ? dinput.data() : nullptr,
                              loss_scale);
        st[s].model->release(0);
        if (s > 0) dgrad[{r.mb, s - 1}] = std::move(dinput);
        dgrad.erase({r.mb, s});
        ++next[s];
        ++done;
        progressed = true;
        const bool last_of_update =
            r.applied >= 0 && (next[s] == queue[s].size() || queue[s][next[s]].applied != r.applied);
        if (last_of_update) {
          LocalStage& ls = st[s];
          if (ls.version != r.applied)
            return Status::error(run_dir + "/versions.jsonl: stage " + std::to_string(s) + " applies a gradient to version " +
                                 std::to_string(r.applied) + " but the replay is at version " + std::to_string(ls.version));
          load(s, ls.version);
          auto sq = stage_grad_sumsq(ls);
          std::sort(sq.begin(), sq.end());
          double total = 0.0;
          for (const auto& e : sq) total += e.second;
          apply_stage_update(ls, c.optimizer, learning_rate(lr, ls.version), clip_scale(std::sqrt(total), c.optimizer.grad_clip));
          ls.model->zero_grads();
          snap[s][ls.version].assign(ls.model->params(), ls.model->params() + ls.model->num_params());
          ++updates;
        }
      }
    }
  }
  for (int s = 0; s < S; ++s)
    if (next[s] != queue[s].size())
      return Status::error(run_dir + "/versions.jsonl: replay stuck at stage " + std::to_string(s) + " micro-batch " +
                           std::to_string(queue[s][next[s]].mb) + ": a version or input it needs never appears");

  // Compare the final weights with the run's.
  int tensors = 0;
  for (int s = 0; s < S; ++s) {
    LocalStage& ls = st[s];
    load(s, ls.version);
    for (const auto& t : ls.model->tensors()) {
      if (t.is_tied_head) continue;
      const std::string path = run_dir + "/params/" + std::to_string(t.global_id) + ".bin";
      std::ifstream f(path, std::ios::binary);
      std::vector<float> saved(t.numel);
      if (!f.read(reinterpret_cast<char*>(saved.data()), std::streamsize(t.numel * sizeof(float))))
        return Status::error(path + ": missing or short");
      const float* mine = ls.model->params() + t.offset;
      for (size_t i = 0; i < t.numel; ++i)
        if (std::memcmp(&saved[i], &mine[i], sizeof(float)) != 0)
          return Status::error(path + ": replay differs from the run at element " + std::to_string(i) + " of " + t.name +
                               " (stage " + std::to_string(s) + "): run " + fmt9(saved[i]) + ", replay " +
                               fmt9(mine[i]));
      ++tensors;
    }
  }
  *summary = "replay of " + run_dir + ": " + std::to_string(done) + " (micro-batch, stage) backwards, " +
             std::to_string(updates) + " stage updates; all " + std::to_string(tensors) +
             " parameter tensors equal the run's bit for bit";
  return Status::ok();
}

}  // namespace pt
