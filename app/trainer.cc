#include "app/trainer.h"

#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "app/checkpoint.h"
#include "app/async_runner.h"
#include "app/metrics.h"
#include "app/optimizer_step.h"
#include "app/schedule_builder.h"
#include "app/train_state.h"
#include "common/check.h"
#include "common/json.h"
#include "common/logging.h"
#include "data/loader.h"
#include "model/stage_model.h"
#include "model/stage_model_factory.h"
#include "optim/grad_norm.h"
#include "optim/lr_schedule.h"
#include "pipeline/executor.h"
#include "pipeline/process_groups.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/transport_select.h"

extern "C" void openblas_set_num_threads(int);

namespace pt {
namespace {

using Clock = std::chrono::steady_clock;

// Tensor that holds the embedding's wte (first stage) or the head's tied copy (last stage).
const ParamTensor* find_wte(const StageModel& m, bool tied_head) {
  for (const auto& t : m.tensors())
    if (t.name == "wte" && t.is_tied_head == tied_head) return &t;
  return nullptr;
}

// Tied embeddings: grad(wte) = embedding part + head part, summed in that order on
// every layout, so both copies get identical gradients and identical updates.
void reduce_tied_embeddings(const Config& c, const ProcessGroups& g, const Schedule& sched,
                            std::vector<LocalStage>& local) {
  if (!c.model.tie_embeddings) return;
  const int S = sched.num_stages;
  const int first_rank = sched.stage_to_rank[0], last_rank = sched.stage_to_rank[S - 1];
  StageModel* first = nullptr;
  StageModel* last = nullptr;
  for (auto& ls : local) {
    if (ls.stage == 0) first = ls.model.get();
    if (ls.stage == S - 1) last = ls.model.get();
  }
  if (first) first->sync_grads_to_host();  // host reads and writes of grads() below
  if (last) last->sync_grads_to_host();
  if (first && last) {
    const ParamTensor* e = find_wte(*first, false);
    const ParamTensor* h = find_wte(*last, true);
    PT_CHECK(e && h && e->numel == h->numel);
    float* ge = first->grads() + e->offset;
    float* gh = last->grads() + h->offset;
    for (size_t i = 0; i < e->numel; ++i) {
      float total = ge[i] + gh[i];
      ge[i] = total;
      gh[i] = total;
    }
    return;
  }
  if (!first && !last) return;
  StageModel* mine = first ? first : last;
  const ParamTensor* t = find_wte(*mine, last != nullptr);
  PT_CHECK(t != nullptr);
  float* grad = mine->grads() + t->offset;
  std::vector<float> other(t->numel);
  const int peer = first ? last_rank : first_rank;
  PT_MPI_CHECK(MPI_Sendrecv(grad, int(t->numel), MPI_FLOAT, peer, 77, other.data(), int(t->numel), MPI_FLOAT, peer, 77,
                            g.pipeline, MPI_STATUS_IGNORE));
  for (size_t i = 0; i < t->numel; ++i) grad[i] = first ? grad[i] + other[i] : other[i] + grad[i];
}

// Global gradient norm: per-tensor sums of squares gathered over the pipeline
// group and added in global tensor order (the tied head copy is not counted).
double global_grad_norm(const ProcessGroups& g, std::vector<LocalStage>& local) {
  std::vector<double> mine;  // (id, sumsq) pairs flattened
  for (auto& ls : local)
    for (const auto& [id, sq] : stage_grad_sumsq(ls)) {
      mine.push_back(double(id));
      mine.push_back(sq);
    }
  int count = int(mine.size());
  std::vector<int> counts(g.pp), displs(g.pp);
  PT_MPI_CHECK(MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, g.pipeline));
  int total = 0;
  for (int r = 0; r < g.pp; ++r) {
    displs[r] = total;
    total += counts[r];
  }
  std::vector<double> all(total);
  PT_MPI_CHECK(MPI_Allgatherv(mine.data(), count, MPI_DOUBLE, all.data(), counts.data(), displs.data(), MPI_DOUBLE,
                              g.pipeline));
  std::vector<std::pair<int, double>> entries;
  for (int i = 0; i < total; i += 2) entries.push_back({int(all[i]), all[i + 1]});
  return combine_norm(std::move(entries));
}

// Mean over all micro-batches of the step, summed in global micro-batch order
// (replica-major), so dp×m and 1×(dp·m) runs agree. Valid on every rank.
double reduce_loss(const ProcessGroups& g, const Schedule& sched, const std::vector<float>& local_losses, int m) {
  const int last_rank = sched.stage_to_rank[sched.num_stages - 1];
  double loss = 0.0;
  if (g.pp_rank == last_rank) {
    std::vector<float> all(size_t(m) * g.dp);
    PT_MPI_CHECK(MPI_Allgather(local_losses.data(), m, MPI_FLOAT, all.data(), m, MPI_FLOAT, g.data));
    double sum = 0.0;
    for (float x : all) sum += double(x);
    loss = sum / double(all.size());
  }
  PT_MPI_CHECK(MPI_Bcast(&loss, 1, MPI_DOUBLE, last_rank, g.pipeline));
  return loss;
}

// One raw fp32 file per tensor, named by global id, so runs with different
// layouts can be compared file by file. The tied head copy is not written.
Status save_params(const std::string& run_dir, const ProcessGroups& g, std::vector<LocalStage>& local) {
  const std::string dir = run_dir + "/params";
  if (g.world_rank == 0) std::filesystem::create_directories(dir);
  PT_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  if (g.dp_rank != 0) return Status::ok();
  for (auto& ls : local)
    for (const auto& t : ls.model->tensors()) {
      if (t.is_tied_head) continue;
      const std::string path = dir + "/" + std::to_string(t.global_id) + ".bin";
      std::FILE* f = std::fopen(path.c_str(), "wb");
      if (!f) return Status::error(path + ": cannot open for writing");
      std::fwrite(ls.model->params() + t.offset, sizeof(float), t.numel, f);
      if (std::fclose(f) != 0) return Status::error(path + ": write failed");
    }
  return Status::ok();
}

// On resume, keeps the records of micro-batches before the checkpoint (ids < keep_below):
// a killed run may have logged records past its last checkpoint.
Status truncate_version_record(const std::string& path, int64_t keep_below) {
  std::ifstream in(path);
  if (!in) return Status::ok();
  std::string line, kept;
  while (std::getline(in, line)) {
    long long mb = 0;
    if (std::sscanf(line.c_str(), "{\"mb\":%lld,", &mb) == 1 && mb < keep_below) kept += line + "\n";
  }
  in.close();
  return write_text_file(path, kept);
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

Status run_training(const Config& c) {
  ProcessGroups g;
  PT_RETURN_IF_ERROR(make_process_groups(c.parallel.dp, c.parallel.pp, &g).with_context(c.source_file));
  set_reporting_rank(g.world_rank);
  if (c.runtime.threads > 0) openblas_set_num_threads(c.runtime.threads);
  // runtime.backend: cuda fails here, naming the key and the reason, when the binary
  // has no CUDA or no GPU is usable; auto picks cuda only when both are there.
  std::string backend;
  PT_RETURN_IF_ERROR(resolve_backend(c.runtime.backend, &backend).with_context(c.source_file));
  const int gpu = g.node_rank;  // make_stage_model takes it modulo the GPU count
  // runtime.transport (pipeline/transport_select.h): from the backend in use and where each
  // pipeline rank runs (host, GPU UUID), gathered over the pipeline group; built further down.
  TransportRequest transport_request{c.runtime.transport, backend, g.pp, nccl_transport_built(), {}};
  int transport_gpu = -1;
  PT_RETURN_IF_ERROR(gather_rank_devices(g.pipeline, backend == "cuda", g.node_rank, &transport_gpu, &transport_request.ranks));
  TransportChoice transport_choice;
  PT_RETURN_IF_ERROR(select_transport(transport_request, &transport_choice).with_context(c.source_file));

  const int B = c.training.micro_batch_size, T = c.training.seq_len, m = c.training.microbatches;

  // Schedule: built, lowered and validated identically on every rank. Asynchronous
  // kinds build one list per drained segment (segments of equal length share it).
  const bool async = is_async_kind(c.schedule.kind);
  std::map<int64_t, Schedule> segment_lists;  // segment length (updates) -> lowered list
  auto lowered_for = [&](int64_t updates, const Schedule** out) -> Status {
    auto it = segment_lists.find(updates);
    if (it == segment_lists.end()) {
      Schedule lowered;
      PT_RETURN_IF_ERROR(build_lowered_schedule(c, updates, &lowered));
      it = segment_lists.emplace(updates, std::move(lowered)).first;
    }
    *out = &it->second;
    return Status::ok();
  };
  // Drain points of asynchronous runs: evaluations, checkpoints, schedule.drain_every, the end.
  const bool have_val = !c.data.val.empty();
  auto next_drain = [&](int64_t step) { return next_drain_step(c, step); };
  const Schedule* first_list = nullptr;
  PT_RETURN_IF_ERROR(lowered_for(async ? next_drain(0) : 1, &first_list));
  const Schedule& lowered = *first_list;  // sync: every step; async: placement and evaluation
  const int S = lowered.num_stages;
  const int L = chain_length(lowered);    // model stages (S / pipelines)

  std::vector<std::pair<int, int>> ranges;
  PT_RETURN_IF_ERROR(split_layers_for_config(c, L, &ranges));

  TrainState state;
  std::vector<LocalStage>& local = state.local;
  std::vector<StageModel*> by_stage(S, nullptr);
  for (int s = 0; s < S; ++s) {
    if (lowered.stage_to_rank[s] != g.pp_rank) continue;
    const int ms = s % L;  // model stage of (virtual) stage s
    StageSpec ss{ranges[ms].first, ranges[ms].second, ms == 0, ms == L - 1};
    LocalStage ls;
    ls.stage = s;
    ls.layers = ranges[ms];
    PT_RETURN_IF_ERROR(make_stage_model(backend, gpu, c.model, ss, B, T, &ls.model).with_context(c.source_file));
    ls.model->init_params(uint64_t(c.run.seed));  // leaves host and device copies consistent
    // amdp + schedule.amdp.zero_owner: only the owner (pipeline 0's rank) of a model stage holds optimizer state.
    if (!(c.schedule.kind == "amdp" && c.schedule.amdp_zero_owner) || lowered.stage_to_rank[ms] == g.pp_rank)
      ls.optimizer_state = make_optimizer_state(c.optimizer, *ls.model);
    by_stage[s] = ls.model.get();
    local.push_back(std::move(ls));
  }

  DataLoaderOptions data_opts;
  data_opts.train_pattern = c.data.train;
  data_opts.val_pattern = c.data.val;
  data_opts.batch_size = B;
  data_opts.seq_len = T;
  data_opts.microbatches = m;
  data_opts.dp_size = c.parallel.dp;
  data_opts.seed = uint64_t(c.run.seed);
  data_opts.shuffle = c.data.shuffle;
  data_opts.vocab_size = c.model.vocab_size;
  DataLoader data;
  PT_RETURN_IF_ERROR(data.open(data_opts).with_context(c.source_file + ": data"));
  if (have_val && data.num_eval_batches() < c.training.eval_batches)
    return Status::error(c.source_file + ": key 'training.eval_batches': the validation split holds only " +
                         std::to_string(data.num_eval_batches()) + " micro-batches of B*T tokens; lower eval_batches");

  // Resume (checkpoint.cc): params, moments, versions and the step, mapped by global tensor id.
  install_stop_signal_handlers();
  ResumeResult resumed;
  PT_RETURN_IF_ERROR(resume_training(c, g, local, &resumed));

  // `local` keeps every stage in this process (pp = 1: no stage boundary crosses a
  // process); mpi or nccl carries everything else.
  std::unique_ptr<Transport> transport;
  if (transport_choice.transport == "local") {
    transport = make_local_transport(make_local_hub(1), 0);
  } else if (transport_choice.transport == "nccl") {
    Status st;
    transport = make_nccl_transport(g.pipeline, transport_gpu, pipeline_channels(lowered), &st);
    PT_RETURN_IF_ERROR(st.with_context(c.source_file + ": key 'runtime.transport'"));
  } else {
    transport = make_mpi_transport(g.pipeline);
  }
  if (g.world_rank == 0) log_info("pipetrain: transport " + transport_choice.transport + " (" + transport_choice.reason + ")");
  Executor executor(lowered, g.pp_rank, by_stage, transport.get());

  // Run directory (rank 0).
  const std::string run_dir = c.run.out_dir + "/" + c.run.name;
  MetricsLog metrics;
  const bool is_root = g.world_rank == 0;
  if (is_root) {
    std::error_code ec;
    std::filesystem::create_directories(run_dir, ec);
    if (ec) return Status::error(run_dir + ": cannot create the run directory: " + ec.message());
    PT_RETURN_IF_ERROR(prepare_metrics_file(run_dir + "/metrics.jsonl", resumed.step));  // keeps lines <= resume step
    PT_RETURN_IF_ERROR(write_text_file(run_dir + "/config.yaml", dump_config(c)));
    PT_RETURN_IF_ERROR(metrics.open(run_dir + "/metrics.jsonl"));
  }
  const bool interactive = c.runtime.progress == "on" || (c.runtime.progress == "auto" && isatty(STDOUT_FILENO));
  Progress progress(interactive && is_root);

  const LrSchedule lr_sched = lr_schedule_for(c);

  const int64_t tokens_per_step = int64_t(B) * T * m * c.parallel.dp;
  const float loss_scale = 1.0f / float(m * c.parallel.dp);
  if (is_root)
    log_info("pipetrain: " + std::to_string(g.world_size) + " rank(s) = dp " + std::to_string(g.dp) + " x pp " +
             std::to_string(g.pp) + ", schedule " + c.schedule.kind + ", backend " + backend + ", " +
             std::to_string(S) + " stages, " + std::to_string(tokens_per_step) + " tokens/step, run dir " + run_dir);

  auto evaluate = [&](int64_t step) -> double {
    const int count = c.training.eval_batches;
    std::vector<float> losses = executor.forward_only(count, [&](int mb, int32_t* in, int32_t* tg) {
      data.eval_batch(mb, in, tg);
    });
    double v = 0.0;
    const int last_rank = lowered.stage_to_rank[L - 1];
    if (g.pp_rank == last_rank) {
      double sum = 0.0;
      for (float x : losses) sum += double(x);
      v = sum / double(losses.size());
    }
    PT_MPI_CHECK(MPI_Bcast(&v, 1, MPI_DOUBLE, last_rank, g.pipeline));
    return v;
  };

  const auto t_start = Clock::now();
  double last_val = NAN;
  int64_t steps_done = resumed.step;
  auto log_eval = [&](int64_t step) {
    last_val = evaluate(step);
    if (!is_root) return;
    JsonWriter j;
    j.field("step", step).field("tokens", step * tokens_per_step).field("time_s", seconds_since(t_start))
        .field("val_loss", last_val);
    metrics.write(j.str());
    progress.finish();
    std::printf("eval  step %5lld | val_loss %.4f\n", (long long)step, last_val);
    std::fflush(stdout);
  };
  // The untrained model's validation loss anchors every loss-vs-time curve.
  if (have_val && resumed.step == 0) log_eval(0);
  std::unique_ptr<AsyncRunner> runner;
  std::unique_ptr<MetricsLog> versions_log;
  if (async) {
    runner = std::make_unique<AsyncRunner>(c, g, lowered.stage_to_rank, L);
    if (is_root) {
      versions_log = std::make_unique<MetricsLog>();
      const std::string path = run_dir + "/versions.jsonl";
      if (resumed.step == 0) std::filesystem::remove(path);
      else PT_RETURN_IF_ERROR(truncate_version_record(path, resumed.step * m));
      PT_RETURN_IF_ERROR(versions_log->open(path));
    }
  }
  // Hash of (replica 0, micro-batch 0)'s tokens of a step: runs that must see the same data can be compared.
  auto step_data_hash = [&](int64_t step) {
    std::vector<int32_t> in(size_t(B) * T), tg(size_t(B) * T);
    data.batch(step, 0, 0, in.data(), tg.data());
    return std::to_string(batch_hash(in.data(), tg.data(), int64_t(in.size())));
  };
  auto print_step = [&](int64_t step, double loss, double lr, double norm, double tok_s, double elapsed) {
    if (step % c.training.log_every != 0 && step != c.training.steps) return;
    char line[256];
    std::snprintf(line, sizeof line, "step %5lld/%lld | loss %.4f | lr %.2e | norm %.3f | %.0f tok/s | %.1fs",
                  (long long)step, (long long)c.training.steps, loss, lr, norm, tok_s, elapsed);
    progress.update(line);
  };

  for (int64_t step = resumed.step; step < c.training.steps;) {
    const auto t_step = Clock::now();
    if (async) {
      // One drained segment: steps [step, end) without a flush.
      const int64_t end = next_drain(step);
      const Schedule* list = nullptr;
      PT_RETURN_IF_ERROR(lowered_for(end - step, &list));
      std::vector<AsyncStepLog> logs;
      std::vector<RunVersionRecord> records;
      PT_RETURN_IF_ERROR(runner->run_segment(*list, step, seconds_since(t_start), &state, data, transport.get(), &logs,
                                             &records));
      const double seg_s = seconds_since(t_step);
      if (is_root) {
        for (const auto& r : records) versions_log->write(version_record_json(r));
        for (const auto& l : logs) {
          JsonWriter j;
          j.field("step", l.step)
              .field("tokens", l.step * tokens_per_step)
              .field("time_s", l.time_s)
              .field("loss", l.loss)
              .field("lr", l.lr)
              .field("grad_norm", l.grad_norm)
              .field("tokens_per_s", double(tokens_per_step * (end - step)) / seg_s)
              .field("data_hash", step_data_hash(l.step - 1))
              .raw("versions", l.versions);
          metrics.write(j.str());
          print_step(l.step, l.loss, l.lr, l.grad_norm, double(tokens_per_step * (end - step)) / seg_s, l.time_s);
        }
      }
      step = end;
    } else {
      for (auto& ls : local) ls.model->zero_grads();
      StepOutput out = executor.run_step(
          [&](int mb, int32_t* in, int32_t* tg) { data.batch(step, mb, g.dp_rank, in, tg); }, loss_scale);
      if (g.dp > 1)
        for (auto& ls : local) {
          ls.model->sync_grads_to_host();
          PT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, ls.model->grads(), int(ls.model->num_params()), MPI_FLOAT, MPI_SUM,
                                     g.data));
        }
      reduce_tied_embeddings(c, g, lowered, local);
      const double norm = global_grad_norm(g, local);
      const float scale = clip_scale(norm, c.optimizer.grad_clip);
      const double lr = learning_rate(lr_sched, step);
      for (auto& ls : local) apply_stage_update(ls, c.optimizer, lr, scale);
      const double loss = reduce_loss(g, lowered, out.losses, m);
      const double step_s = seconds_since(t_step);
      if (is_root) {
        JsonWriter j;
        j.field("step", step + 1)
            .field("tokens", (step + 1) * tokens_per_step)
            .field("time_s", seconds_since(t_start))
            .field("loss", loss)
            .field("lr", lr)
            .field("grad_norm", norm)
            .field("tokens_per_s", double(tokens_per_step) / step_s)
            .field("peak_slots", out.peak_slots)
            .field("data_hash", step_data_hash(step));
        metrics.write(j.str());
        print_step(step + 1, loss, lr, norm, double(tokens_per_step) / step_s, seconds_since(t_start));
      }
      step += 1;
    }
    steps_done = step;
    const double elapsed = seconds_since(t_start);
    const bool last = step == c.training.steps;
    bool out_of_time = c.training.max_seconds > 0 && elapsed >= c.training.max_seconds;
    // Every rank must agree on stopping: take rank 0's clock.
    int stop = out_of_time ? 1 : 0;
    PT_MPI_CHECK(MPI_Bcast(&stop, 1, MPI_INT, 0, MPI_COMM_WORLD));
    const bool eval_now = have_val && ((c.training.eval_every > 0 && step % c.training.eval_every == 0) || last || stop);
    if (eval_now) log_eval(step);
    const bool signalled = stop_signal_agreed();  // SIGTERM/SIGUSR1 on any rank: checkpoint, then exit 0
    if (checkpoint_due(c, step, last || stop, signalled))
      PT_RETURN_IF_ERROR(save_checkpoint(c, g, ranges, local, step, resumed.restarts));
    if (signalled && is_root) log_info("pipetrain: stop signal received; checkpointed step " + std::to_string(step) + ", exiting");
    if (signalled) break;
    if (stop) break;
  }
  progress.finish();
  if (c.run.save_params) PT_RETURN_IF_ERROR(save_params(run_dir, g, local));
  if (is_root) {
    JsonWriter j;
    j.field("steps", steps_done)
        .field("tokens", steps_done * tokens_per_step)
        .field("time_s", seconds_since(t_start))
        .field("final_val_loss", last_val)
        .field("schedule", c.schedule.kind)
        .field("world_size", g.world_size)
        .field("restarts", resumed.restarts);
    PT_RETURN_IF_ERROR(write_text_file(run_dir + "/summary.json", j.str() + "\n"));
    log_info("pipetrain: done; metrics in " + run_dir + "/metrics.jsonl");
  }
  free_process_groups(&g);
  return Status::ok();
}

}  // namespace pt
