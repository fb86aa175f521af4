#include "app/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "app/checkpoint.h"
#include "app/metrics.h"
#include "app/run_setup.h"
#include "app/run_trace.h"
#include "app/schedule_builder.h"
#include "app/segment_runner.h"
#include "app/time_accounting.h"
#include "app/train_state.h"
#include "common/check.h"
#include "common/json.h"
#include "common/logging.h"
#include "data/loader.h"
#include "model/stage_model_factory.h"
#include "pipeline/collectives.h"
#include "pipeline/executor.h"
#include "pipeline/mpi_wait.h"
#include "pipeline/process_groups.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/transport_select.h"

extern "C" void openblas_set_num_threads(int);

namespace pt {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

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

// sim_time of the last kept metrics line (resume: lines after the checkpoint are dropped); 0 if none.
double last_sim_time(const std::string& metrics_path) {
  std::ifstream in(metrics_path);
  std::string line;
  double last = 0, v = 0;
  while (std::getline(in, line))
    if (json_number(line, "sim_time", &v) && v > last) last = v;
  return last;
}

// One run of `pipetrain train` on this rank: set-up, then a loop over drained segments (a
// synchronous schedule drains after every update), with evaluation, metrics, checkpoints
// and stop signals between segments.
class TrainingRun {
 public:
  explicit TrainingRun(const Config& c) : c_(c) {}
  ~TrainingRun() { free_process_groups(&g_); }
  Status setup();
  Status run();

 private:
  Status setup_devices(TransportChoice* choice, int* transport_gpu);
  Status setup_data_sums();
  Status setup_stages();
  Status setup_transport(const TransportChoice& choice, int transport_gpu);
  Status setup_run_dir();
  Status refuse_existing_record();
  void continue_clock(double last_logged_time_s);
  double train_time() const { return clock_.train_s + seconds_since(t_start_); }
  Status check_nonfinite(const SegmentResult& r);
  Status checkpoint(int64_t step);
  Status lowered_for(int64_t first_step, int64_t updates, const Schedule** out);
  void release_list(const Schedule* list);
  Status run_segment(int64_t* step);
  std::string account_segment(const SegmentResult& r, const SimClock::Segment& sim, int64_t first_step);
  void log_update(const UpdateLog& l, const SegmentResult& r, int64_t updates, double sim_time, const std::string& split);
  void log_eval(int64_t step);
  double evaluate();
  Status between_segments(int64_t step, bool* stop);
  Status save_params();
  std::string time_summary_json();
  Status write_summary();
  std::string step_data_hash(int64_t step) const;
  bool root() const { return g_.world_rank == 0; }

  const Config& c_;
  ProcessGroups g_;
  std::unique_ptr<Collectives> coll_;
  std::string backend_;
  const ScheduleTraits* traits_ = nullptr;
  // (first update, updates) -> lowered list; the first update is 0 except for block-coordinate
  // kinds, whose list depends on it (kept for one segment only, the placement excepted).
  std::map<std::pair<int64_t, int64_t>, Schedule> lists_;
  const Schedule* placement_ = nullptr;
  int chain_ = 1;
  std::vector<std::pair<int, int>> ranges_;
  TrainState state_;
  DataLoader data_;
  ResumeResult resumed_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<SegmentRunner> runner_;
  std::string run_dir_;
  MetricsLog metrics_, versions_;
  std::unique_ptr<Progress> progress_;
  Clock::time_point t_start_;
  RunClock clock_;                // training time before this segment, downtime and lost work so far
  int64_t tokens_per_step_ = 0;
  int64_t steps_done_ = 0;
  int64_t skipped_steps_ = 0;     // updates left out for a non-finite gradient (on_nonfinite: skip_step)
  double step_transfers_ = 0;     // SegmentResult::transfer_floats of this rank's segments, summed
  double last_val_ = NAN;
  SimClock sim_;                  // simulated makespans of the lists that ran
  double sim_time_ = 0;           // sim_time at the end of the last segment (continues across restarts)
  RankTimes totals_;              // this rank's measured time over this process's segments
  StageCosts stage_costs_;        // this rank's measured compute per stage (planned bubble at measured costs)
  std::unique_ptr<RunTrace> trace_;  // run.trace_steps > 0
};

Status TrainingRun::setup_devices(TransportChoice* choice, int* transport_gpu) {
  // runtime.backend: cuda fails here, naming the key and the reason, when the binary has no
  // CUDA or no GPU is usable; auto picks cuda only when both are there.
  PT_RETURN_IF_ERROR(resolve_backend(c_.runtime.backend, &backend_).with_context(c_.source_file));
  // runtime.transport (pipeline/transport_select.h): from the backend in use and where each
  // pipeline rank runs (host, GPU UUID), gathered over the pipeline group.
  TransportRequest request{c_.runtime.transport, backend_, g_.pp, nccl_transport_built(), {}};
  PT_RETURN_IF_ERROR(gather_rank_devices(g_.pipeline, backend_ == "cuda", g_.node_rank, transport_gpu, &request.ranks));
  return select_transport(request, choice).with_context(c_.source_file);
}

// The data-parallel gradient sum on the stages' memory (app/backend_staging.h): on cuda with
// dp > 1, NCCL sums the device gradients in place where the binary has NCCL and the data
// group's ranks have a GPU each (select_data_sums); otherwise MPI (staged through the host
// on cuda). Before any user of coll_ is made.
Status TrainingRun::setup_data_sums() {
  if (backend_ != "cuda" || g_.dp < 2) return Status::ok();
  int gpu = -1;
  std::vector<RankDevice> ranks;
  PT_RETURN_IF_ERROR(gather_rank_devices(g_.data, true, g_.node_rank, &gpu, &ranks));
  const TransportChoice sums = select_data_sums(nccl_transport_built(), ranks);
  if (root()) log_info("pipetrain: data-parallel sums over " + sums.transport + " (" + sums.reason + ")");
  if (sums.transport != "nccl") return Status::ok();
  Status st;
  std::unique_ptr<Collectives> nccl = make_nccl_collectives(g_, gpu, &st);
  if (!nccl) return st.with_context("data-parallel gradient sums over NCCL");
  coll_ = std::move(nccl);
  return Status::ok();
}

Status TrainingRun::lowered_for(int64_t first_step, int64_t updates, const Schedule** out) {
  const std::pair<int64_t, int64_t> key{traits_->block_coordinate ? first_step : 0, updates};
  auto it = lists_.find(key);
  if (it == lists_.end()) {
    Schedule lowered;
    PT_RETURN_IF_ERROR(build_lowered_schedule(c_, updates, &lowered, key.first));
    it = lists_.emplace(key, std::move(lowered)).first;
  }
  *out = &it->second;
  return Status::ok();
}

// A block-coordinate segment's list is not run again: free it (and what was cached for it).
void TrainingRun::release_list(const Schedule* list) {
  if (!traits_->block_coordinate || list == placement_) return;
  runner_->forget(*list);
  sim_.forget(*list);
  for (auto it = lists_.begin(); it != lists_.end(); ++it)
    if (&it->second == list) {
      lists_.erase(it);
      return;
    }
}

// The stages this rank hosts, built identically on every rank from the placement.
Status TrainingRun::setup_stages() {
  PT_RETURN_IF_ERROR(lowered_for(0, traits_->asynchronous ? next_drain_step(c_, 0) : 1, &placement_));
  chain_ = chain_length(*placement_);
  PT_RETURN_IF_ERROR(split_layers_for_config(c_, chain_, &ranges_));
  PT_RETURN_IF_ERROR(sim_.init(c_, *placement_, ranges_));
  runner_ = std::make_unique<SegmentRunner>(c_, *coll_, *placement_, g_.pp_rank, *traits_,
                                            c_.run.out_dir + "/" + c_.run.name);
  for (int s = 0; s < placement_->num_stages; ++s) {
    if (placement_->stage_to_rank[size_t(s)] != g_.pp_rank) continue;
    LocalStage ls;
    ls.stage = s;
    ls.model = nullptr;
    const bool with_state = !runner_->replicas().owner_mode() || placement_->stage_to_rank[size_t(s % chain_)] == g_.pp_rank;
    PT_RETURN_IF_ERROR(
        make_local_stage(c_, backend_, g_.node_rank, s, chain_, ranges_, with_state, stage_needs(c_, *placement_, s), &ls));
    state_.local.push_back(std::move(ls));
  }
  return Status::ok();
}

// `local` keeps every stage in this process (pp = 1); mpi, nccl or ipc carries everything else.
// ipc: each receiving rank keeps kIpcSlots mailbox slots of one boundary tensor (B x T x C
// floats) per channel; a message finding no free slot waits in the sender's queue
// (transport_ipc.cc), so the count bounds memory, not correctness.
Status TrainingRun::setup_transport(const TransportChoice& choice, int transport_gpu) {
  constexpr int kIpcSlots = 4;
  Status st;
  if (choice.transport == "local") {
    transport_ = make_local_transport(make_local_hub(1), 0);
  } else if (choice.transport == "nccl") {
    transport_ = make_nccl_transport(g_.pipeline, transport_gpu, pipeline_channels(*placement_), &st);
  } else if (choice.transport == "ipc") {
    const size_t act = size_t(c_.training.micro_batch_size) * size_t(c_.training.seq_len) * size_t(c_.model.n_embd);
    transport_ = make_ipc_transport(g_.pipeline, backend_ == "cuda" ? "cuda" : "shm", transport_gpu,
                                    pipeline_channels(*placement_), act, kIpcSlots, &st);
  } else {
    transport_ = make_mpi_transport(g_.pipeline);
  }
  PT_RETURN_IF_ERROR(st.with_context(c_.source_file + ": key 'runtime.transport'"));
  if (root()) log_info("pipetrain: transport " + choice.transport + " (" + choice.reason + ")");
  return Status::ok();
}

// A fresh start (no --resume) never replaces another run's record: a run directory that
// holds metrics is refused unless run.overwrite. World rank 0 looks; every rank returns its answer.
Status TrainingRun::refuse_existing_record() {
  std::string error;
  const std::string dir = c_.run.out_dir + "/" + c_.run.name, metrics = dir + "/metrics.jsonl";
  std::error_code ec;
  if (root() && c_.checkpoint.resume.empty() && !c_.run.overwrite && std::filesystem::file_size(metrics, ec) > 0 && !ec)
    error = dir + " already holds a run's record (metrics.jsonl). To continue that run pass --resume auto; to "
            "start another, give it a new name (--set run.name=NAME); to replace it, pass --overwrite";
  error = broadcast_string(*coll_, Group::kWorld, error, 0);
  return error.empty() ? Status::ok() : Status::error(error);
}

// Resumed: time continues from the checkpoint's training time. The wall time from the
// checkpoint to this start is split into work redone (the killed segment logged up to
// last_logged_time_s) and downtime. Rank 0 computes it; every rank gets the same clock.
void TrainingRun::continue_clock(double last_logged_time_s) {
  clock_ = resumed_.clock;
  if (resumed_.step == 0 || clock_.saved_unix <= 0) return;
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const double lost = std::max(0.0, last_logged_time_s - clock_.train_s);
  clock_.lost_s += lost;
  clock_.downtime_s += std::max(0.0, now - clock_.saved_unix - lost);
}

// Rank 0: config.yaml, metrics.jsonl (kept up to the resumed step), versions.jsonl (async).
Status TrainingRun::setup_run_dir() {
  run_dir_ = c_.run.out_dir + "/" + c_.run.name;
  if (!root()) return Status::ok();
  std::error_code ec;
  std::filesystem::create_directories(run_dir_, ec);
  if (ec) return Status::error(run_dir_ + ": cannot create the run directory: " + ec.message());
  double last_logged = 0;
  PT_RETURN_IF_ERROR(prepare_metrics_file(run_dir_ + "/metrics.jsonl", resumed_.step, &last_logged));
  continue_clock(last_logged);
  sim_time_ = last_sim_time(run_dir_ + "/metrics.jsonl");
  PT_RETURN_IF_ERROR(write_text_file(run_dir_ + "/config.yaml", dump_config(c_)));
  PT_RETURN_IF_ERROR(metrics_.open(run_dir_ + "/metrics.jsonl"));
  if (!traits_->asynchronous) return Status::ok();
  const std::string path = run_dir_ + "/versions.jsonl";
  if (resumed_.step == 0) std::filesystem::remove(path);
  else PT_RETURN_IF_ERROR(truncate_version_record(path, resumed_.step * c_.training.microbatches));
  return versions_.open(path);
}

Status TrainingRun::setup() {
  PT_RETURN_IF_ERROR(make_process_groups(c_.parallel.dp, c_.parallel.pp, &g_).with_context(c_.source_file));
  set_reporting_rank(g_.world_rank);
  set_wait_deadline_seconds(c_.runtime.watchdog_seconds);
  init_watchdog_pings();
  if (c_.runtime.threads > 0) openblas_set_num_threads(c_.runtime.threads);
  coll_ = make_mpi_collectives(g_);
  traits_ = find_schedule(c_.schedule.kind);  // the config loader checked the name
  TransportChoice choice;
  int transport_gpu = -1;
  PT_RETURN_IF_ERROR(setup_devices(&choice, &transport_gpu));
  PT_RETURN_IF_ERROR(setup_data_sums());
  PT_RETURN_IF_ERROR(refuse_existing_record());
  PT_RETURN_IF_ERROR(setup_stages());
  PT_RETURN_IF_ERROR(open_data_loader(c_, c_.parallel.dp, true, &data_));
  install_stop_signal_handlers();
  // Resume (checkpoint.cc): params, optimizer state, versions and the step, by global tensor id.
  PT_RETURN_IF_ERROR(resume_training(c_, g_, *coll_, state_.local, &resumed_));
  PT_RETURN_IF_ERROR(setup_transport(choice, transport_gpu));
  PT_RETURN_IF_ERROR(setup_run_dir());
  double k[4] = {clock_.train_s, clock_.downtime_s, clock_.lost_s, sim_time_};  // rank 0 read the metrics
  coll_->broadcast(Group::kWorld, k, sizeof k, 0);
  clock_ = RunClock{k[0], k[1], k[2], 0};
  sim_time_ = k[3];
  if (c_.run.trace_steps > 0) trace_ = std::make_unique<RunTrace>(g_.world_rank, g_.pp, c_.training.microbatches);
  const bool interactive = c_.runtime.progress == "on" || (c_.runtime.progress == "auto" && isatty(STDOUT_FILENO));
  progress_ = std::make_unique<Progress>(interactive && root());
  tokens_per_step_ = int64_t(c_.training.micro_batch_size) * c_.training.seq_len * c_.training.microbatches * g_.dp;
  if (root())
    log_info("pipetrain: " + std::to_string(g_.world_size) + " rank(s) = dp " + std::to_string(g_.dp) + " x pp " +
             std::to_string(g_.pp) + ", schedule " + c_.schedule.kind + ", backend " + backend_ + ", " +
             std::to_string(placement_->num_stages) + " stages, " + std::to_string(tokens_per_step_) +
             " tokens/step, run dir " + run_dir_);
  return Status::ok();
}

// Mean loss of the first training.eval_batches validation micro-batches through pipeline 0.
double TrainingRun::evaluate() {
  Executor& executor = runner_->executor_for(*placement_, state_, transport_.get());
  std::vector<float> losses = executor.forward_only(
      c_.training.eval_batches, [&](int mb, int32_t* in, int32_t* tg) { data_.eval_batch(mb, in, tg); });
  double v = 0.0;
  const int last_rank = placement_->stage_to_rank[size_t(chain_ - 1)];
  if (g_.pp_rank == last_rank) {
    double sum = 0.0;
    for (float x : losses) sum += double(x);
    v = sum / double(losses.size());
  }
  coll_->broadcast(Group::kPipeline, &v, sizeof v, last_rank);
  return v;
}

void TrainingRun::log_eval(int64_t step) {
  const double t0 = seconds_since(t_start_);
  last_val_ = evaluate();
  const double t1 = seconds_since(t_start_);
  totals_.s[kTimeEval] += t1 - t0;
  if (trace_ && step < c_.run.trace_steps) trace_->add(kSpanEval, t0, t1, step);
  if (!root()) return;
  JsonWriter j;
  j.field("step", step).field("tokens", step * tokens_per_step_).field("time_s", train_time()).field("val_loss", last_val_)
      .field("sim_time", sim_time_).field("eval_s", t1 - t0);
  metrics_.write(j.str());
  progress_->finish();
  std::printf("eval  step %5lld | val_loss %.4f\n", (long long)step, last_val_);
  std::fflush(stdout);
}

// Hash of (replica 0, micro-batch 0)'s tokens of a step: runs that must see the same data can be compared.
std::string TrainingRun::step_data_hash(int64_t step) const {
  const size_t n = size_t(c_.training.micro_batch_size) * size_t(c_.training.seq_len);
  std::vector<int32_t> in(n), tg(n);
  data_.batch(step, 0, 0, in.data(), tg.data());
  return std::to_string(batch_hash(in.data(), tg.data(), int64_t(n)));
}

void TrainingRun::log_update(const UpdateLog& l, const SegmentResult& r, int64_t updates, double sim_time,
                             const std::string& split) {
  const double tok_s = double(tokens_per_step_ * updates) / r.seconds;
  JsonWriter j;
  j.field("step", l.step).field("tokens", l.step * tokens_per_step_).field("time_s", l.time_s).field("loss", l.loss)
      .field("lr", l.lr).field("grad_norm", l.grad_norm).field("tokens_per_s", tok_s).field("sim_time", sim_time);
  if (!traits_->asynchronous) j.field("peak_slots", r.peak_slots);
  if (l.skipped) j.field("skipped", true);
  j.field("data_hash", step_data_hash(l.step - 1));
  if (traits_->asynchronous) j.raw("versions", l.versions);
  if (!split.empty()) j.field("split_updates", updates).raw("time_split", split);
  metrics_.write(j.str());
  if (l.step % c_.training.log_every != 0 && l.step != c_.training.steps) return;
  char line[256];
  std::snprintf(line, sizeof line, "step %5lld/%lld | loss %.4f | lr %.2e | norm %.3f | %.0f tok/s | %.1fs",
                (long long)l.step, (long long)c_.training.steps, l.loss, l.lr, l.grad_norm, tok_s, l.time_s);
  progress_->update(line);
}

Status TrainingRun::run_segment(int64_t* step) {
  const int64_t end = traits_->asynchronous ? next_drain_step(c_, *step) : *step + 1;
  const Schedule* list = nullptr;
  PT_RETURN_IF_ERROR(lowered_for(*step, end - *step, &list));
  SegmentResult r = runner_->run(*list, *step, train_time(), &state_, data_, transport_.get());
  step_transfers_ += double(r.transfer_floats);
  const SimClock::Segment& sim = sim_.segment(*list, traits_->asynchronous, c_.training.microbatches);
  const std::string split = account_segment(r, sim, *step);
  if (root()) {
    for (const auto& rec : r.records) versions_.write(version_record_json(rec));
    for (size_t k = 0; k < r.updates.size(); ++k)
      log_update(r.updates[k], r, end - *step, sim_time_ + sim.update_end[k], k + 1 == r.updates.size() ? split : "");
  }
  sim_time_ += sim.makespan;
  release_list(list);
  *step = end;
  return check_nonfinite(r);
}

// run.time_accounting: this rank's split of the segment, gathered over the world; the
// time_split JSON on world rank 0 ("" elsewhere or when off). Trace spans are kept here.
std::string TrainingRun::account_segment(const SegmentResult& r, const SimClock::Segment& sim, int64_t first_step) {
  if (!c_.run.time_accounting) return "";
  const auto t0 = Clock::now();
  const RankTimes mine = split_spans(r.spans, r.seconds);
  totals_.add(mine);
  stage_costs_.add(r.spans, placement_->num_stages);
  if (trace_ && first_step < c_.run.trace_steps)
    trace_->add_segment(r.spans, std::chrono::duration<double>(r.started - t_start_).count(), first_step);
  std::vector<RankTimes> all(size_t(g_.world_size));
  coll_->allgather(Group::kWorld, &mine, sizeof mine, all.data());
  std::string json = root() ? time_split_json(all, sim.planned_bubble) : "";
  totals_.s[kTimeAccounting] += seconds_since(t0);
  return json;
}

// training.on_nonfinite: stop ends the run here, before any checkpoint of the bad state;
// skip_step counts the updates the runner left out. Every rank holds the same findings.
Status TrainingRun::check_nonfinite(const SegmentResult& r) {
  for (const UpdateLog& l : r.updates) skipped_steps_ += l.skipped ? 1 : 0;
  if (r.nonfinite.empty() || c_.training.on_nonfinite == "skip_step") return Status::ok();
  const NonFinite& f = r.nonfinite.front();
  const std::string what = f.stage < 0 ? "loss" : "gradient norm of stage " + std::to_string(f.stage) +
                                                     " (pipeline rank " + std::to_string(f.pp_rank) + ")";
  return Status::error("non-finite " + what + " at step " + std::to_string(f.step) +
                       ". training.on_nonfinite is stop: the run ends without applying that update or writing a "
                       "checkpoint, so the last complete checkpoint (if any) stays the newest. Lower optimizer.lr, "
                       "check the data, or set training.on_nonfinite: skip_step");
}

// checkpoint.on_write_error: the previous complete checkpoint stays usable either way.
Status TrainingRun::checkpoint(int64_t step) {
  const double t0 = seconds_since(t_start_);
  struct Timed {  // the checkpoint's time goes to checkpoint_s and the trace on every return
    TrainingRun* run;
    double t0;
    int64_t step;
    ~Timed() {
      const double t1 = seconds_since(run->t_start_);
      run->totals_.s[kTimeCheckpoint] += t1 - t0;
      if (run->trace_ && step < run->c_.run.trace_steps) run->trace_->add(kSpanCheckpoint, t0, t1, step);
    }
  } timed{this, t0, step};
  RunClock k = clock_;
  k.train_s = train_time();
  k.saved_unix = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const Status s = save_checkpoint(c_, g_, *coll_, ranges_, state_.local, step, resumed_.restarts, k);
  if (s || c_.checkpoint.on_write_error == "stop")
    return s.with_context("checkpoint.on_write_error is stop");
  if (root()) log_warn("checkpoint of step " + std::to_string(step) + " not written (" + s.message() +
                       "); checkpoint.on_write_error is continue: training goes on");
  return Status::ok();
}

// Evaluation, checkpoint and stop decisions after a segment, agreed by every rank.
Status TrainingRun::between_segments(int64_t step, bool* stop) {
  const bool last = step == c_.training.steps;
  const bool out_of_time = c_.training.max_seconds > 0 && train_time() >= c_.training.max_seconds;
  int64_t flag = out_of_time ? 1 : 0;  // rank 0's clock decides for everyone
  coll_->broadcast(Group::kWorld, &flag, sizeof flag, 0);
  const bool timed_out = flag != 0;
  const bool have_val = !c_.data.val.empty();
  if (have_val && ((c_.training.eval_every > 0 && step % c_.training.eval_every == 0) || last || timed_out))
    log_eval(step);
  const bool signalled = stop_signal_agreed(*coll_);  // SIGTERM/SIGUSR1 on any rank: checkpoint, then exit 0
  if (checkpoint_due(c_, step, last || timed_out, signalled))
    PT_RETURN_IF_ERROR(checkpoint(step));
  if (signalled && root())
    log_info("pipetrain: stop signal received; checkpointed step " + std::to_string(step) + ", exiting");
  *stop = signalled || timed_out;
  return Status::ok();
}

// One raw fp32 file per tensor, named by global id, so runs with different layouts can be
// compared file by file. The tied head copy is not written.
Status TrainingRun::save_params() {
  const std::string dir = run_dir_ + "/params";
  if (root()) std::filesystem::create_directories(dir);
  coll_->barrier(Group::kWorld);
  if (g_.dp_rank != 0) return Status::ok();
  for (auto& ls : state_.local) {
    std::vector<float> params(ls.model->num_params());
    ls.model->params_to_host(params.data());  // an explicit point of the memory contract (stage_model.h)
    for (const auto& t : ls.model->tensors()) {
      if (t.is_tied_head) continue;
      const std::string path = dir + "/" + std::to_string(t.global_id) + ".bin";
      std::FILE* f = std::fopen(path.c_str(), "wb");
      if (!f) return Status::error(path + ": cannot open for writing");
      std::fwrite(params.data() + t.offset, sizeof(float), t.numel, f);
      if (std::fclose(f) != 0) return Status::error(path + ": write failed");
    }
  }
  return Status::ok();
}

// Collective over kWorld: every rank's time totals, the run's planned bubbles (the first
// segment's list under the sim costs and under this run's measured mean costs), the
// sim_time and the target crossings read back from the whole metrics.jsonl (rank 0).
std::string TrainingRun::time_summary_json() {
  std::vector<RankTimes> all(size_t(g_.world_size));
  coll_->allgather(Group::kWorld, &totals_, sizeof totals_, all.data());
  StageCosts costs = stage_costs_;
  costs.sum.resize(size_t(placement_->num_stages) * 4, 0.0);
  costs.count.resize(costs.sum.size(), 0.0);
  coll_->allreduce_sum(Group::kWorld, costs.sum.data(), costs.sum.size());
  coll_->allreduce_sum(Group::kWorld, costs.count.data(), costs.count.size());
  if (!root()) return "";
  const SimClock::Segment& sim = sim_.segment(*placement_, traits_->asynchronous, c_.training.microbatches);
  JsonWriter j;
  j.field("sim_time", sim_time_).field("sim_time_unit", sim_.unit());
  if (c_.run.time_accounting) {
    j.raw("time_split_total", time_split_json(all, sim.planned_bubble));
    CostModel measured;
    SimResult r;
    if (costs.cost_model(placement_->num_stages, &measured) && simulate(*placement_, measured, &r)) {
      std::vector<double> bubble;
      for (double idle : r.idle) bubble.push_back(r.makespan > 0 ? idle / r.makespan : 0.0);
      j.raw("planned_bubble_measured_costs", number_array(bubble));
    }
  }
  j.raw("targets", target_crossings_json(target_crossings(run_dir_ + "/metrics.jsonl", c_.training.target_val_losses)));
  const std::string body = j.str();
  return body.substr(1, body.size() - 2);
}

Status TrainingRun::write_summary() {
  const std::string time_fields = time_summary_json();
  double moved = step_transfers_;
  coll_->allreduce_sum(Group::kWorld, &moved, 1);
  if (!root()) return Status::ok();
  JsonWriter j;
  j.field("steps", steps_done_).field("tokens", steps_done_ * tokens_per_step_).field("time_s", train_time())
      .field("final_val_loss", last_val_).field("schedule", c_.schedule.kind).field("world_size", g_.world_size)
      .field("restarts", resumed_.restarts).field("restart_downtime_s", clock_.downtime_s)
      .field("lost_work_s", clock_.lost_s).field("segment_time_s", seconds_since(t_start_))
      .field("skipped_steps", skipped_steps_).field("step_transfer_floats", int64_t(moved));
  std::string text = j.str();
  text.insert(text.size() - 1, "," + time_fields);
  PT_RETURN_IF_ERROR(write_text_file(run_dir_ + "/summary.json", text + "\n"));
  log_info("pipetrain: done; metrics in " + run_dir_ + "/metrics.jsonl");
  return Status::ok();
}

Status TrainingRun::run() {
  coll_->barrier(Group::kWorld);  // aligns the ranks' trace origins
  t_start_ = Clock::now();
  // The untrained model's validation loss anchors every loss-vs-time curve.
  if (!c_.data.val.empty() && resumed_.step == 0) log_eval(0);
  steps_done_ = resumed_.step;
  for (int64_t step = resumed_.step; step < c_.training.steps;) {
    PT_RETURN_IF_ERROR(run_segment(&step));
    steps_done_ = step;
    bool stop = false;
    PT_RETURN_IF_ERROR(between_segments(step, &stop));
    if (stop) break;
  }
  progress_->finish();
  if (c_.run.save_params) PT_RETURN_IF_ERROR(save_params());
  PT_RETURN_IF_ERROR(write_summary());
  if (!trace_) return Status::ok();
  const std::string trace = trace_->gather_json(*coll_);
  return root() ? write_text_file(run_dir_ + "/trace.json", trace) : Status::ok();
}

}  // namespace

Status run_training(const Config& c) {
  TrainingRun run(c);
  PT_RETURN_IF_ERROR(run.setup());
  return run.run();
}

}  // namespace pt
