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
#include "optim/lr_schedule.h"
#include "data/loader.h"
#include "model/stage_model_factory.h"
#include "pipeline/action.h"
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
  if (find_schedule(c.schedule.kind)->replicas && c.schedule.amdp_step_slot != "clean")
    return Status::error(run_dir + ": replay of amdp covers step_slot: clean (the reference slot drops gradients)");
  if (c.parallel.dp != 1) return Status::error(run_dir + ": replay needs a dp=1 run (parallel.dp = " +
                                               std::to_string(c.parallel.dp) + ")");
  if (!c.run.save_params) return Status::error(run_dir + ": the run did not save its parameters (run.save_params: true)");
  std::vector<Rec> recs;
  PT_RETURN_IF_ERROR(read_records(run_dir + "/versions.jsonl", &recs));

  // Stages: V virtual stages (chain position v % L, pipeline v / L). Without stage
  // replicas V = L. Each virtual stage has its own model (activations, gradients); the
  // weights of a model stage are shared by its replicas and kept per version.
  Schedule placement;
  PT_RETURN_IF_ERROR(build_lowered_schedule(c, 1, &placement));
  const int V = placement.num_stages;
  const int L = chain_length(placement);
  const int m = c.training.microbatches;
  const int B = c.training.micro_batch_size, T = c.training.seq_len;
  std::vector<std::pair<int, int>> ranges;
  PT_RETURN_IF_ERROR(split_layers_for_config(c, L, &ranges));
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

  std::vector<LocalStage> st(V);  // st[s] for s < L also carries model stage s's optimizer state
  std::vector<std::map<int64_t, std::vector<float>>> snap(L);  // model stage -> version -> params
  std::vector<std::vector<int>> replicas(L);                    // model stage -> virtual stages, by rank
  for (int v = 0; v < V; ++v) {
    const int ms = v % L;
    st[v].stage = v;
    st[v].layers = ranges[ms];
    // The run's backend (auto resolves as the run did on a machine like this one); one process: GPU 0.
    PT_RETURN_IF_ERROR(make_stage_model(c.runtime.backend, 0, c.model,
                                        StageSpec{ranges[ms].first, ranges[ms].second, ms == 0, ms == L - 1}, B, T,
                                        &st[v].model)
                           .with_context(c.source_file));
    st[v].model->init_params(uint64_t(c.run.seed));
    replicas[ms].push_back(v);
  }
  for (int s = 0; s < L; ++s) {
    st[s].optimizer_state = make_optimizer_state(c.optimizer, *st[s].model);
    snap[s][0].assign(st[s].model->params(), st[s].model->params() + st[s].model->num_params());
    // The run sums replica gradients in ascending rank order (replica communicator).
    std::sort(replicas[s].begin(), replicas[s].end(),
              [&](int x, int y) { return placement.stage_to_rank[x] < placement.stage_to_rank[y]; });
  }
  std::vector<std::vector<Rec>> queue(V);
  std::map<std::pair<int64_t, int>, Rec> by_key;
  for (const Rec& r : recs) {
    if (r.stage < 0 || r.stage >= V) return Status::error(run_dir + "/versions.jsonl: stage out of range");
    queue[r.stage].push_back(r);
    by_key[{r.mb, r.stage}] = r;
  }
  const LrSchedule lr = lr_schedule_for(c);
  const bool recompute = placement.recompute_in_backward;  // as the run's executor
  const float loss_scale = 1.0f / float(m);
  const size_t act = size_t(B) * T * c.model.n_embd;
  std::vector<int32_t> in(size_t(B) * T), tg(size_t(B) * T);
  std::map<std::pair<int64_t, int>, std::vector<float>> outputs, dgrad;  // (mb, virtual stage)
  auto first = [&](int v) { return v % L == 0; };
  auto last = [&](int v) { return v % L == L - 1; };

  auto load = [&](int v, int64_t version) {
    auto it = snap[v % L].find(version);
    if (it == snap[v % L].end()) return false;
    std::copy(it->second.begin(), it->second.end(), st[v].model->params());
    st[v].model->sync_params_to_device();
    return true;
  };
  // Output of stage v for micro-batch mb at its recorded forward version.
  std::function<const std::vector<float>*(int64_t, int)> output_of = [&](int64_t mb, int v) -> const std::vector<float>* {
    auto it = outputs.find({mb, v});
    if (it != outputs.end()) return &it->second;
    auto rk = by_key.find({mb, v});
    if (rk == by_key.end()) return nullptr;
    const std::vector<float>* input = nullptr;
    if (!first(v) && !(input = output_of(mb, v - 1))) return nullptr;
    if (!load(v, rk->second.forward)) return nullptr;
    data.batch(mb / m, int(mb % m), 0, in.data(), tg.data());
    std::vector<float> out(act);
    st[v].model->forward(0, first(v) ? in.data() : nullptr, first(v) ? nullptr : input->data(), nullptr, out.data());
    st[v].model->release(0);
    return &(outputs[{mb, v}] = std::move(out));
  };
  // Model stage s applies update k once every replica has run all its backwards
  // whose gradient the record assigns to version k.
  std::vector<int64_t> version(L, 0);
  std::vector<size_t> next(V, 0);
  std::vector<float> sum;
  int64_t updates = 0, done = 0;
  auto try_step = [&](int s) -> bool {
    const int64_t k = version[s];
    bool any = false;
    for (int v : replicas[s]) {
      for (size_t i = next[v]; i < queue[v].size(); ++i) {
        if (queue[v][i].applied == k) return false;  // still to run
        if (queue[v][i].applied > k) break;
      }
      for (size_t i = 0; i < next[v]; ++i) any = any || queue[v][i].applied == k;
    }
    if (!any) return false;
    LocalStage& owner = st[s];
    const size_t n = owner.model->num_params();
    for (int v : replicas[s]) st[v].model->sync_grads_to_host();  // host reads; the owner's is then written
    sum.assign(st[replicas[s][0]].model->grads(), st[replicas[s][0]].model->grads() + n);
    for (size_t r = 1; r < replicas[s].size(); ++r) {
      const float* g = st[replicas[s][r]].model->grads();
      for (size_t i = 0; i < n; ++i) sum[i] += g[i];
    }
    std::copy(sum.begin(), sum.end(), owner.model->grads());
    load(s, k);
    apply_stage_update_self_clipped(owner, c, lr);
    for (int v : replicas[s]) st[v].model->zero_grads();
    version[s] = owner.version;
    snap[s][owner.version].assign(owner.model->params(), owner.model->params() + n);
    ++updates;
    return true;
  };

  std::vector<int> order(V);  // downstream chain positions first
  for (int v = 0; v < V; ++v) order[v] = v;
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return x % L > y % L; });
  bool progressed = true;
  while (progressed) {
    progressed = false;
    for (int v : order) {
      while (next[v] < queue[v].size()) {
        const Rec& r = queue[v][next[v]];
        const std::vector<float>* input = nullptr;
        if (!first(v) && !(input = output_of(r.mb, v - 1))) break;
        if (!last(v) && !dgrad.count({r.mb, v})) break;
        const int64_t fwd_version = recompute ? r.backward : r.forward;
        if (!snap[v % L].count(fwd_version) || !snap[v % L].count(r.backward)) break;
        // Forward (activations at the forward version), then backward at the backward version.
        data.batch(r.mb / m, int(r.mb % m), 0, in.data(), tg.data());
        load(v, fwd_version);
        std::vector<float> out(last(v) ? 0 : act), dinput(first(v) ? 0 : act);
        st[v].model->forward(0, first(v) ? in.data() : nullptr, first(v) ? nullptr : input->data(),
                             last(v) ? tg.data() : nullptr, last(v) ? nullptr : out.data());
        load(v, r.backward);
        st[v].model->backward(0, last(v) ? nullptr : dgrad.at({r.mb, v}).data(), first(v) ? nullptr : dinput.data(),
                              loss_scale);
        st[v].model->release(0);
        if (!first(v)) dgrad[{r.mb, v - 1}] = std::move(dinput);
        dgrad.erase({r.mb, v});
        ++next[v];
        ++done;
        progressed = true;
        if (r.applied >= 0 && r.applied < version[v % L])
          return Status::error(run_dir + "/versions.jsonl: stage " + std::to_string(v) + " micro-batch " +
                               std::to_string(r.mb) + " applies its gradient to version " + std::to_string(r.applied) +
                               ", already past in the replay (version " + std::to_string(version[v % L]) + ")");
        while (try_step(v % L)) {
        }
      }
    }
  }
  for (int v = 0; v < V; ++v)
    if (next[v] != queue[v].size())
      return Status::error(run_dir + "/versions.jsonl: replay stuck at stage " + std::to_string(v) + " micro-batch " +
                           std::to_string(queue[v][next[v]].mb) + ": a version or input it needs never appears");

  // Compare the final weights with the run's.
  int tensors = 0;
  for (int s = 0; s < L; ++s) {
    LocalStage& ls = st[s];
    load(s, version[s]);
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
