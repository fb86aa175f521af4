#include "app/bench_command.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>

#include "app/config.h"
#include "app/cost_shape.h"
#include "app/optimizer_step.h"
#include "app/train_state.h"
#include "common/check.h"
#include "model/param_layout.h"
#include "model/stage_model.h"
#include "model/stage_model_factory.h"
#include "pipeline/collectives.h"
#include "pipeline/cost_file.h"
#include "pipeline/mpi_wait.h"
#include "pipeline/process_groups.h"
#include "pipeline/transport.h"

extern "C" void openblas_set_num_threads(int);
extern "C" int openblas_get_num_threads(void);

namespace pt {
namespace {

using Clock = std::chrono::steady_clock;

// What bench needs from the device besides a StageModel: a name (peak table, cost file)
// and the peak memory. Before the clock is read bench calls StageModel::synchronize()
// (GPU work is asynchronous: without it the CUDA timings would measure kernel launches;
// a no-op on the CPU).
struct BenchDevice {
  std::string backend;                     // "cpu" | "cuda"
  std::string name;                        // CPU model name or GPU name
  std::function<double()> peak_bytes;      // cpu: peak RSS of this rank so far
  bool device_memory = false;              // cuda: the peak is models_peak instead
  double models_peak = 0;                  // cuda: max StageModel::peak_device_bytes() of bench's models
  std::string peak_what;                   // what the peak measures
  // Records a stage model's device memory peak (before the model is destroyed).
  void note(const StageModel& m) { models_peak = std::max(models_peak, double(m.peak_device_bytes())); }
  double peak() const { return device_memory ? models_peak : peak_bytes(); }
};

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string v = line.substr(colon + 1);
        v.erase(0, v.find_first_not_of(' '));
        return v;
      }
    }
  return "unknown CPU";
}

// The device of `runtime.backend` (resolved by the stage model factory: auto -> cuda when
// the binary has CUDA and a GPU is visible, else cpu). local_rank: the GPU index the
// factory will use (modulo the visible GPUs).
Status make_bench_device(const Config& c, int local_rank, BenchDevice* out) {
  std::string backend;
  PT_RETURN_IF_ERROR(resolve_backend(c.runtime.backend, &backend).with_context(c.source_file));
  out->backend = backend;
  if (backend == "cuda") {
    out->name = gpu_device_name(local_rank);
    if (out->name.empty()) out->name = "unknown GPU";
    out->device_memory = true;
    out->peak_what = "peak GPU memory held by the stage models' CUDA backend (cudaMalloc'd buffers, without the "
                     "CUDA context and cuBLASLt workspaces)";
    return Status::ok();
  }
  out->name = cpu_model_name();
  out->peak_bytes = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) * 1024.0;  // Linux: KiB
  };
  out->peak_what = "peak RSS of the process";
  return Status::ok();
}

// runtime.precision of the config (validated by load_config): bench measures the
// arithmetic the run will use, and the cost file records it (cost_shape_of).
Precision bench_precision(const Config& c) {
  Precision p = Precision::kFp32;
  const Status st = run_precision(c, &p);
  PT_CHECK_MSG(st.is_ok(), st.message());
  return p;
}

// The one place bench builds a stage: the factory the trainer uses, on the resolved backend.
// device = the node-local rank (the factory takes it modulo the visible GPUs).
std::unique_ptr<StageModel> bench_stage_model(const Config& c, const BenchDevice& dev, int local_rank,
                                              const StageSpec& spec) {
  std::unique_ptr<StageModel> model;
  StageNeeds needs;  // split_backward: Bx and Bw are timed too
  needs.keep_logits = c.runtime.keep_logits;
  const Status st = make_stage_model(dev.backend, local_rank, c.model, spec, c.training.micro_batch_size,
                                     c.training.seq_len, &model, bench_precision(c), needs,
                                     BackendOptions{c.runtime.tf32});
  // make_bench_device resolved the same backend, and load_config validated the shape.
  PT_CHECK_MSG(st.is_ok(), st.message());
  return model;
}

double median(std::vector<double> v) {
  PT_CHECK(!v.empty());
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Inputs of one micro-batch: tokens/targets (B, T) in [0, V), an input and an output
// gradient (B, T, C) of small deterministic values (the costs do not depend on them).
struct BenchInputs {
  std::vector<int32_t> tokens, targets;
  std::vector<float> input, doutput, output, dinput;
};

BenchInputs make_inputs(const Config& c) {
  const size_t N = size_t(c.training.micro_batch_size) * c.training.seq_len, C = size_t(c.model.n_embd);
  BenchInputs in;
  in.tokens.resize(N);
  in.targets.resize(N);
  uint64_t x = 88172645463325252ull;  // xorshift64
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (size_t i = 0; i < N; ++i) {
    in.tokens[i] = int32_t(next() % uint64_t(c.model.vocab_size));
    in.targets[i] = int32_t(next() % uint64_t(c.model.vocab_size));
  }
  in.input.resize(N * C);
  in.doutput.resize(N * C);
  for (size_t i = 0; i < N * C; ++i) {
    in.input[i] = float(int(next() % 2001) - 1000) * 1e-3f;
    in.doutput[i] = float(int(next() % 2001) - 1000) * 1e-6f;
  }
  in.output.assign(N * C, 0.0f);
  in.dinput.assign(N * C, 0.0f);
  return in;
}

// Median F / Bx / Bw seconds of one micro-batch through `m`, one slot, as the executor
// calls them (the last stage's forward includes reading the loss back).
ComponentCost time_stage(StageModel& m, BenchInputs& in, BenchDevice& dev, int warmup, int iters, float loss_scale) {
  const StageSpec& sp = m.spec();
  const int32_t* tokens = sp.has_embedding ? in.tokens.data() : nullptr;
  const float* input = sp.has_embedding ? nullptr : in.input.data();
  const int32_t* targets = sp.has_head ? in.targets.data() : nullptr;
  float* output = sp.has_head ? nullptr : in.output.data();
  const float* dout = sp.has_head ? nullptr : in.doutput.data();
  float* dinput = sp.has_embedding ? nullptr : in.dinput.data();
  std::vector<double> f, bx, bw;
  volatile float sink = 0;
  for (int it = 0; it < warmup + iters; ++it) {
    m.synchronize();
    const auto t0 = Clock::now();
    m.forward(0, tokens, input, targets, output);
    if (sp.has_head) sink = sink + m.loss(0);
    m.synchronize();
    const auto t1 = Clock::now();
    m.backward_input(0, dout, dinput, loss_scale);
    m.synchronize();
    const auto t2 = Clock::now();
    m.backward_weight(0);
    m.synchronize();
    const auto t3 = Clock::now();
    m.release(0);
    if (it < warmup) continue;
    f.push_back(seconds(t0, t1));
    bx.push_back(seconds(t1, t2));
    bw.push_back(seconds(t2, t3));
  }
  dev.note(m);
  return ComponentCost{median(f), median(bx), median(bw)};
}

// Mean over ranks of each rank's medians (every rank measured at the same time).
ComponentCost mean_over_ranks(const ComponentCost& c, Collectives& coll) {
  double v[3] = {c.forward, c.backward_input, c.backward_weight};
  coll.allreduce_sum(Group::kWorld, v, 3);
  const double n = coll.size(Group::kWorld);
  return ComponentCost{v[0] / n, v[1] / n, v[2] / n};
}

// Median one-way time (half the round trip) of a `floats`-float message between ranks 0
// and 1 over the transport a pipeline uses (mpi); other ranks return 0.
double pingpong(Transport& t, size_t floats, int reps) {
  if (t.rank() > 1) return 0.0;
  std::vector<float> buf(std::max<size_t>(floats, 1), 1.0f);
  const int peer = 1 - t.rank();
  std::vector<double> half;
  const int warm = std::max(5, reps / 10);
  for (int i = 0; i < warm + reps; ++i) {
    const auto t0 = Clock::now();
    if (t.rank() == 0) {
      t.send(buf.data(), floats, peer, 91);
      t.wait_sends();
      t.recv(buf.data(), floats, peer, 92);
    } else {
      t.recv(buf.data(), floats, peer, 91);
      t.send(buf.data(), floats, peer, 92);
      t.wait_sends();
    }
    if (i >= warm) half.push_back(0.5 * seconds(t0, Clock::now()));
  }
  return median(half);
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

void progress(int rank, const std::string& what) {
  if (rank != 0) return;
  std::fprintf(stderr, "bench: %s\n", what.c_str());
  std::fflush(stderr);
}

std::string fmt(const char* format, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, a);
  return buf;
}

}  // namespace

double peak_flops_for_device(const std::string& device_name) {
  // Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets; the most
  // specific name first ("H100 PCIe" before "H100"). CUDA names the H100 SXM
  // "NVIDIA H100 80GB HBM3".
  static const std::pair<const char*, double> kTable[] = {
      {"GH200", 989e12},    {"H200", 989e12},  {"H100 PCIe", 756e12}, {"H100 NVL", 835e12},
      {"H100", 989e12},     {"H800", 989e12},  {"B200", 2250e12},     {"A100", 312e12},
      {"A800", 312e12},     {"L40S", 362e12},  {"RTX 4090", 165e12},  {"A6000", 155e12},
  };
  std::string name = device_name;
  for (char& ch : name) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  for (const auto& [key, peak] : kTable) {
    std::string k = key;
    for (char& ch : k) ch = char(std::toupper(static_cast<unsigned char>(ch)));
    if (name.find(k) != std::string::npos) return peak;
  }
  return 0.0;
}

double training_flops_per_token(const ModelConfig& model, int seq_len) {
  double n = 0;
  for (const auto& t : full_model_tensors(model))
    if (t.global_id != kWpeId) n += double(t.numel);
  return 6.0 * n + 12.0 * model.n_layer * double(seq_len) * model.n_embd;
}

namespace {

// What every measurement of one bench run shares.
struct BenchRun {
  explicit BenchRun(const BenchOptions& options) : o(options) {}
  const BenchOptions& o;
  Config c;
  ProcessGroups g;             // dp = 1, pp = world: the pipeline group is every rank
  std::unique_ptr<Collectives> coll;
  BenchDevice dev;
  BenchInputs in;
  int rank = 0, world = 1;
  size_t full_params = 0, slot_floats = 0, workspace_floats = 0;
  size_t fused_slot_floats = 0;  // the same model without split-backward buffers (1f1b, gpipe at pp = 1)
  double peak = 0;
};

ComponentCost measure(BenchRun& r, const char* what, const StageSpec& spec) {
  progress(r.rank, std::string("measuring ") + what + " (" + std::to_string(r.o.warmup) + " warm-up + " +
                       std::to_string(r.o.iters) + " timed micro-batches on each of " + std::to_string(r.world) +
                       " rank(s))");
  std::unique_ptr<StageModel> model = bench_stage_model(r.c, r.dev, r.g.node_rank, spec);
  model->init_params(uint64_t(r.c.run.seed));
  r.coll->barrier(Group::kWorld);
  const float loss_scale = 1.0f / float(r.c.training.microbatches);
  return mean_over_ranks(time_stage(*model, r.in, r.dev, r.o.warmup, r.o.iters, loss_scale), *r.coll);
}

// Per-block cost = (stage of k blocks - stage of 0 blocks) / k, both middle stages measured
// the same way: the difference cancels what every stage pays once (input and output copies,
// slot bookkeeping) - that part is stage_io - and k = 2 blocks rather than 1 halves the
// relative noise of the difference; it is also the block count of the pp = 2 quickstart stages.
Status measure_components(BenchRun& r, CostFile* f) {
  const int L = r.c.model.n_layer, k = std::min(L, 2);
  f->stage_io = measure(r, "stage_io (a stage without blocks)", StageSpec{0, 0, false, false});
  const ComponentCost blocks =
      measure(r, k == 2 ? "block (a 2-block stage)" : "block (a 1-block stage)", StageSpec{0, k, false, false});
  f->embedding = measure(r, "embedding (a stage with only the embedding)", StageSpec{0, 0, true, false});
  f->head = measure(r, "head (a stage with only the final LayerNorm, LM head and loss)", StageSpec{L, L, false, true});
  f->block = ComponentCost{(blocks.forward - f->stage_io.forward) / k,
                           (blocks.backward_input - f->stage_io.backward_input) / k,
                           (blocks.backward_weight - f->stage_io.backward_weight) / k};
  if (!(f->block.forward > 0 && f->block.backward_input > 0 && f->block.backward_weight > 0))
    return Status::error("bench: the " + std::to_string(k) + "-block stage did not measure slower than the empty stage (" +
                         "block F/Bx/Bw = " + fmt("%.3g", f->block.forward) + " / " +
                         fmt("%.3g", f->block.backward_input) + " / " + fmt("%.3g", f->block.backward_weight) +
                         " s): the machine is too noisy for this model size; raise --iters or quiet the machine");
  return Status::ok();
}

// The whole model as one stage (pp = 1): throughput, the check of the component sum, the
// optimizer, and the memory of a pp = 1 run (one in-flight micro-batch, as in 1F1B at pp = 1).
void measure_full_model(BenchRun& r, CostFile* f) {
  progress(r.rank, "measuring the whole model as one stage (pp = 1) and the optimizer");
  const int L = r.c.model.n_layer;
  LocalStage ls;
  ls.layers = {0, L};
  ls.model = bench_stage_model(r.c, r.dev, r.g.node_rank, StageSpec{0, L, true, true});
  ls.model->init_params(uint64_t(r.c.run.seed));
  ls.optimizer_state = make_optimizer_state(r.c.optimizer, *ls.model);
  r.full_params = ls.model->num_params();
  r.slot_floats = ls.model->activation_floats_per_slot();
  r.workspace_floats = ls.model->workspace_floats();
  const StageNeeds fused{/*split_backward=*/false};
  r.fused_slot_floats = stage_memory(r.c.model, ls.model->spec(), r.c.training.micro_batch_size, r.c.training.seq_len,
                                     bench_precision(r.c), fused,
                                     r.dev.backend == "cuda" ? cuda_backend_sizes() : cpu_backend_sizes())
                            .slot_floats;
  r.coll->barrier(Group::kWorld);
  const float loss_scale = 1.0f / float(r.c.training.microbatches);
  f->full_model = mean_over_ranks(time_stage(*ls.model, r.in, r.dev, r.o.warmup, r.o.iters, loss_scale), *r.coll);
  // What a STEP does per stage: sums of squares for the norm, the optimizer, zeroing the gradients.
  std::vector<double> t;
  for (int it = 0; it < r.o.warmup + r.o.iters; ++it) {
    ls.model->synchronize();
    const auto t0 = Clock::now();
    volatile double norm = 0;
    for (const auto& e : stage_grad_sumsq(ls)) norm = norm + e.second;
    apply_stage_update(ls, r.c.optimizer, r.c.optimizer.lr, 1.0f);
    ls.model->zero_grads();
    ls.model->synchronize();
    if (it >= r.o.warmup) t.push_back(seconds(t0, Clock::now()));
  }
  r.dev.note(*ls.model);
  double per_param = median(t) / double(r.full_params);
  r.coll->allreduce_sum(Group::kWorld, &per_param, 1);
  f->optimizer_seconds_per_param = per_param / r.world;
}

// Point to point between ranks 0 and 1: latency from 1-float messages, bandwidth from
// messages of one (B, T, C) fp32 boundary tensor, what the pipeline sends. When the
// boundary message is too small to time apart from the latency, a larger one (64x, at
// least 4 MiB) gives the bandwidth.
void measure_p2p(BenchRun& r, CostFile* f) {
  if (r.world < 2) return;
  progress(r.rank, "measuring p2p latency and bandwidth between ranks 0 and 1");
  std::unique_ptr<Transport> t = make_mpi_transport(r.g.pipeline);
  const size_t act_floats = size_t(r.c.training.micro_batch_size) * r.c.training.seq_len * r.c.model.n_embd;
  const int reps = std::max(200, 10 * r.o.iters);
  double lat_msg[2] = {pingpong(*t, 1, reps), pingpong(*t, act_floats, reps)};
  // Every rank takes the next branch on rank 0's times: decided on its own, rank 1 could wait
  // for a large message rank 0 never sends (seen in CI as a hang of bench_test).
  r.coll->broadcast(Group::kWorld, lat_msg, sizeof lat_msg, 0);
  const double lat = lat_msg[0];
  double msg_s = lat_msg[1];
  double msg_bytes = double(act_floats) * sizeof(float);
  if (!(msg_s > 1.05 * lat)) {
    const size_t big = std::max<size_t>(64 * act_floats, (size_t(4) << 20) / sizeof(float));
    msg_s = pingpong(*t, big, std::max(20, r.o.iters));
    msg_bytes = double(big) * sizeof(float);
  }
  double v[3] = {lat, msg_s, msg_bytes};
  r.coll->broadcast(Group::kWorld, v, sizeof v, 0);
  f->p2p_latency_s = v[0];
  f->p2p_message_s = v[1];
  f->p2p_message_bytes = v[2];
  f->p2p_bandwidth_bytes_per_s = v[1] > v[0] ? v[2] / (v[1] - v[0]) : 0.0;
}

void print_components(const BenchRun& r, const CostFile& f) {
  const ModelConfig& mc = r.c.model;
  const int B = r.c.training.micro_batch_size, T = r.c.training.seq_len;
  auto ms = [](double s) { return fmt("%10.4f", 1e3 * s); };
  std::printf("== pipetrain bench: %s ==\n", r.c.source_file.c_str());
  std::printf("machine: %s (%s), %d rank(s) measuring at once, %d math thread(s) per rank, host %s\n",
              r.dev.name.c_str(), r.dev.backend.c_str(), r.world, f.threads, f.host.c_str());
  std::printf("model: L=%d C=%d NH=%d V=%d; micro-batch B=%d x T=%d = %d tokens; %s%s; median of %d after %d warm-up, "
              "mean over ranks\n",
              mc.n_layer, mc.n_embd, mc.n_head, mc.vocab_size, B, T, B * T, f.model.precision.c_str(),
              f.model.tf32 ? " (TF32 GEMMs)" : "", r.o.iters, r.o.warmup);
  std::printf("%-34s %10s %10s %10s\n", "component (ms per micro-batch)", "F", "Bx", "Bw");
  auto row = [&](const std::string& name, const ComponentCost& x) {
    std::printf("%-34s %s %s %s\n", name.c_str(), ms(x.forward).c_str(), ms(x.backward_input).c_str(),
                ms(x.backward_weight).c_str());
  };
  row("block (one transformer block)", f.block);
  row("stage_io (empty middle stage)", f.stage_io);
  row("embedding (embedding-only stage)", f.embedding);
  row("head (LN + LM head + loss stage)", f.head);
  row("whole model, pp=1 (measured)", f.full_model);
  const ComponentCost sum = stage_cost_from_file(f, 0, mc.n_layer, true, true);
  row("whole model, sum of components", sum);
  std::printf("composition check: sum of components / measured = %.3f\n", sum.total() / f.full_model.total());
}

void print_throughput(const BenchRun& r, const CostFile& f) {
  const ModelConfig& mc = r.c.model;
  const int B = r.c.training.micro_batch_size, T = r.c.training.seq_len, m = r.c.training.microbatches;
  const size_t act_floats = size_t(B) * T * mc.n_embd;
  std::printf("optimizer: %.3f ns per parameter (grad sum of squares + optimizer update + zero grads); %zu parameters: %.3f ms per "
              "step at pp=1\n",
              1e9 * f.optimizer_seconds_per_param, r.full_params, 1e3 * f.optimizer_seconds_per_param * r.full_params);
  if (r.world >= 2)
    std::printf("p2p (ranks 0 <-> 1, MPI): latency %.2f us; bandwidth %.3f GB/s (from %.0f-byte messages, %.2f us one "
                "way); a (B,T,C) boundary message of %zu bytes: %.2f us\n",
                1e6 * f.p2p_latency_s, 1e-9 * f.p2p_bandwidth_bytes_per_s, f.p2p_message_bytes, 1e6 * f.p2p_message_s,
                act_floats * sizeof(float), 1e6 * p2p_seconds(f, double(act_floats) * sizeof(float)));
  else
    std::printf("p2p: not measured with 1 rank (run under mpirun -np 2 or more); recorded as 0: plan will treat "
                "messages as free\n");
  const double tokens = double(B) * T;
  const double tok_s = tokens / f.full_model.total();
  const double opt_step = f.optimizer_seconds_per_param * double(r.full_params);
  std::printf("single stage (pp=1): %.0f tokens/s forward+backward; %.0f tokens/s with the optimizer step amortized "
              "over m=%d micro-batches\n",
              tok_s, tokens * m / (m * f.full_model.total() + opt_step), m);
  const double fpt = training_flops_per_token(mc, T);
  std::printf("FLOPs per token: 6*N + 12*L*T*C = %.4g (N = %.0f parameters without the position table)\n", fpt,
              (fpt - 12.0 * mc.n_layer * double(T) * mc.n_embd) / 6.0);
  const double achieved = fpt * tok_s;
  std::printf("achieved: %.3f TFLOP/s (forward+backward)\n", 1e-12 * achieved);
  const double peak_flops = r.o.peak_tflops > 0 ? r.o.peak_tflops * 1e12 : peak_flops_for_device(r.dev.name);
  if (peak_flops > 0)
    std::printf("MFU: %.2f%% of %.4g TFLOP/s (%s)\n", 100.0 * achieved / peak_flops, 1e-12 * peak_flops,
                r.o.peak_tflops > 0 ? "--peak-tflops" : ("dense bf16 peak of " + r.dev.name).c_str());
  else
    std::printf("MFU: n/a (unknown peak; pass --peak-tflops X)\n");
  std::printf("peak memory: %.1f MiB (%s, max over ranks; the largest thing bench held is the pp=1 stage below)\n",
              r.peak / (1 << 20), r.dev.peak_what.c_str());
  std::printf("pp=1 model state: %.1f MiB of parameters, gradients and optimizer state (AdamW: 4 x %zu fp32) + %.1f MiB of "
              "activations per in-flight micro-batch (split backward as measured here; %.1f MiB without, as 1f1b "
              "allocates) + %.1f MiB of workspaces\n",
              16.0 * double(r.full_params) / (1 << 20), r.full_params, 4.0 * double(r.slot_floats) / (1 << 20),
              4.0 * double(r.fused_slot_floats) / (1 << 20), 4.0 * double(r.workspace_floats) / (1 << 20));
}

Status write_result(const BenchRun& r, const CostFile& f) {
  std::string out = r.o.out;
  if (out.empty()) out = r.c.run.out_dir + "/" + r.c.run.name + "/costs.json";
  const std::filesystem::path parent = std::filesystem::path(out).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) return Status::error(parent.string() + ": cannot create the folder for the cost file: " + ec.message());
  }
  PT_RETURN_IF_ERROR(write_cost_file(out, f));
  std::printf("cost file: %s\nnext: pipetrain plan --config %s --costs %s\n", out.c_str(), r.c.source_file.c_str(),
              out.c_str());
  std::fflush(stdout);
  return Status::ok();
}

Status open_bench(BenchRun* r) {
  const BenchOptions& o = r->o;
  if (o.iters < 1) return Status::error("--iters must be >= 1, got " + std::to_string(o.iters));
  if (o.warmup < 0) return Status::error("--warmup must be >= 0, got " + std::to_string(o.warmup));
  if (o.peak_tflops < 0) return Status::error("--peak-tflops must be > 0 (or left out), got " + fmt("%g", o.peak_tflops));
  PT_RETURN_IF_ERROR(load_config(o.config_path, o.overrides, &r->c));
  PT_RETURN_IF_ERROR(make_process_groups(1, world_size(), &r->g));
  set_wait_deadline_seconds(r->c.runtime.watchdog_seconds);  // no wait of bench hangs either
  init_watchdog_pings();
  r->coll = make_mpi_collectives(r->g);
  r->rank = r->g.world_rank;
  r->world = r->g.world_size;
  PT_RETURN_IF_ERROR(make_bench_device(r->c, r->g.node_rank, &r->dev));  // the GPU: node rank % GPUs, as in train
  if (r->c.runtime.threads > 0) openblas_set_num_threads(r->c.runtime.threads);
  r->in = make_inputs(r->c);
  return Status::ok();
}

Status bench_all(BenchRun& r) {
  PT_RETURN_IF_ERROR(open_bench(&r));
  CostFile f;
  PT_RETURN_IF_ERROR(measure_components(r, &f));
  measure_full_model(r, &f);
  r.peak = r.dev.peak();
  r.coll->allreduce_max(Group::kWorld, &r.peak, 1);
  measure_p2p(r, &f);
  f.backend = r.dev.backend;
  f.device = r.dev.name;
  f.host = host_name();
  f.transport = r.world >= 2 ? "mpi" : "none";
  f.ranks = r.world;
  f.threads = openblas_get_num_threads();
  f.created = utc_now();
  f.warmup = r.o.warmup;
  f.iters = r.o.iters;
  f.model = cost_shape_of(r.c);
  if (r.rank != 0) return Status::ok();
  print_components(r, f);
  print_throughput(r, f);
  return write_result(r, f);
}

}  // namespace

Status run_bench_command(const BenchOptions& o) {
  BenchRun r(o);
  const Status st = bench_all(r);
  r.coll.reset();
  free_process_groups(&r.g);
  return st;
}

}  // namespace pt
