// pipetrain: the command line. Subcommands:
//   train   --config C [--set k=v ...] [--resume auto|DIR]   train under mpirun (or as one process)
//   plan    --config C [--ranks N] [--costs FILE]   dry run of the schedule: no MPI, no GPU
//   bench   --config C [--out FILE]         measure stage, p2p and optimizer costs (under mpirun)
//   prepare --tokenizer gpt2|byte --input FILES --out DIR
//   keys    [--markdown]                    every config key with type, default, help
//   delays  [--max-stages N]                PipeDream's global delay law, S = 2..N (algorithms.md §5.2)
// Exit codes: 0 success, 1 a user-fixable error (printed), 2 bad command line.
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "app/bench_command.h"
#include "app/checkpoint.h"
#include "app/config.h"
#include "app/delays_command.h"
#include "app/plan_command.h"
#include "app/replay.h"
#include "app/trainer.h"
#include "common/check.h"
#include "data/prepare.h"

namespace {

int report(const pt::Status& s) {
  if (s) return 0;
  std::fprintf(stderr, "pipetrain: error: %s\n", s.message().c_str());
  return 1;
}

int run_train(const std::string& config_path, const std::vector<std::string>& overrides, const std::string& resume,
              bool overwrite) {
  // Before MPI_Init: a SIGTERM/SIGUSR1 (Slurm preemption) that arrives while the job starts
  // is recorded and honoured at the first safe point (a checkpoint after the first segment),
  // never fatal.
  pt::install_stop_signal_handlers();
  MPI_Init(nullptr, nullptr);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  pt::set_reporting_rank(rank);
  pt::Config config;
  pt::Status s = pt::load_config(config_path, overrides, &config);
  config.checkpoint.resume = resume;
  if (overwrite) config.run.overwrite = true;
  if (s) s = pt::run_training(config);
  if (!s) {
    // A config or data error is the same on every rank; print it once.
    if (rank == 0) report(s);
    MPI_Finalize();
    return 1;
  }
  MPI_Finalize();
  return 0;
}

int run_bench(const pt::BenchOptions& options) {
  MPI_Init(nullptr, nullptr);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  pt::set_reporting_rank(rank);
  const pt::Status s = pt::run_bench_command(options);
  // Config and measurement errors are the same on every rank; print once.
  if (!s && rank == 0) report(s);
  MPI_Finalize();
  return s ? 0 : 1;
}

std::string escape_pipes(const std::string& s) {
  std::string out;
  for (char ch : s) out += ch == '|' ? std::string("\\|") : std::string(1, ch);
  return out;
}

void print_keys(bool markdown) {
  if (markdown) std::printf("| key | type | default | meaning |\n|---|---|---|---|\n");
  for (const auto& k : pt::config_schema()) {
    if (markdown)
      std::printf("| `%s` | %s | `%s` | %s |\n", k.path.c_str(), k.type.c_str(), k.default_value.c_str(),
                  escape_pipes(k.help).c_str());
    else
      std::printf("%-32s %-9s %-12s %s\n", k.path.c_str(), k.type.c_str(), k.default_value.c_str(), k.help.c_str());
  }
}

// Every option of every subcommand; CLI11 writes into it.
struct Options {
  std::string config_path, resume, trace_path, costs_path, replay_dir;
  std::vector<std::string> overrides;
  int plan_ranks = 0;
  double time_budget = -1;
  int delay_max_stages = 32;
  bool markdown = false, overwrite = false;
  pt::BenchOptions bench;
  pt::PrepareOptions prep;
};

void add_train(CLI::App& app, Options& o) {
  auto* train = app.add_subcommand("train", "Train a model (run under mpirun -np dp*pp)");
  train->add_option("--config,-c", o.config_path, "YAML config file")->required()->check(CLI::ExistingFile);
  train->add_option("--set", o.overrides, "Override a config key: --set training.steps=10 (repeatable)");
  train->add_option("--resume", o.resume,
                    "Resume from a checkpoint: 'auto' = the newest complete one of this run (fresh start if none), "
                    "or a checkpoint step directory (docs/checkpoints.md)");
  train->add_flag("--overwrite", o.overwrite,
                  "Start afresh even if the run directory already holds a run's metrics (replaces that record; "
                  "same as --set run.overwrite=true)");
}

void add_plan(CLI::App& app, Options& o) {
  auto* plan = app.add_subcommand("plan", "Dry run: layer split, per-rank action grid, predicted bubble and memory");
  plan->add_option("--config,-c", o.config_path, "YAML config file")->required()->check(CLI::ExistingFile);
  plan->add_option("--set", o.overrides, "Override a config key (repeatable)");
  plan->add_option("--ranks", o.plan_ranks, "Pipeline ranks to plan for (default: parallel.pp)");
  plan->add_option("--trace", o.trace_path, "Where to write the Chrome/Perfetto trace (default: run dir/plan_trace.json)");
  plan->add_option("--costs", o.costs_path,
                   "Cost file written by `pipetrain bench`: predict the step time in seconds instead of block units")
      ->check(CLI::ExistingFile);
  plan->add_option("--time-budget", o.time_budget,
                   "Simulated time T (the unit of metrics.jsonl's sim_time): the most updates and micro-batches of "
                   "this config, and of every schedule kind with it, whose timeline fits in T")
      ->check(CLI::NonNegativeNumber);
}

void add_bench(CLI::App& app, Options& o) {
  pt::BenchOptions& b = o.bench;
  auto* bench = app.add_subcommand("bench", "Measure per-stage F/B/W, p2p and optimizer costs on this machine (run "
                                            "under mpirun -np 2+ for p2p) and write the cost file `plan --costs` reads");
  bench->add_option("--config,-c", b.config_path, "YAML config file")->required()->check(CLI::ExistingFile);
  bench->add_option("--set", b.overrides, "Override a config key (repeatable)");
  bench->add_option("--out", b.out, "Where to write the cost file (default: run dir/costs.json)");
  bench->add_option("--iters", b.iters, "Timed repetitions per measurement (the median is kept)")
      ->check(CLI::Range(1, 100000));
  bench->add_option("--warmup", b.warmup, "Untimed repetitions before each measurement")->check(CLI::Range(0, 100000));
  bench->add_option("--peak-tflops", b.peak_tflops,
                    "Peak FLOP/s of the device in TFLOP/s for the MFU (default: the GPU peak table; none for CPUs)")
      ->check(CLI::PositiveNumber);
}

void add_prepare(CLI::App& app, Options& o) {
  pt::PrepareOptions& p = o.prep;
  auto* prepare = app.add_subcommand("prepare", "Tokenize text files into token shards (llm.c format)");
  prepare->add_option("--tokenizer", p.tokenizer, "gpt2 or byte")->required()->check(CLI::IsMember({"gpt2", "byte"}));
  prepare->add_option("--input", p.inputs, "Text files")->required()->expected(1, -1);
  prepare->add_option("--out", p.out_dir, "Output folder for train_*.bin and val_*.bin")->required();
  prepare->add_option("--tokenizer-dir", p.tokenizer_dir,
                      "Folder holding encoder.json and vocab.bpe (gpt2); default data_cache/tokenizer");
  prepare->add_option("--val-fraction", p.val_fraction, "Fraction of tokens held out for validation")
      ->check(CLI::Range(0.0, 0.5));
}

void add_replay_and_keys(CLI::App& app, Options& o) {
  auto* replay = app.add_subcommand("replay", "Verify an asynchronous run: replay its version record in one process and "
                                              "compare the final parameters bit for bit");
  replay->add_option("--run", o.replay_dir, "Run directory (config.yaml, versions.jsonl, params/)")->required()
      ->check(CLI::ExistingDirectory);
  auto* keys = app.add_subcommand("keys", "List every config key with its type, default and meaning");
  keys->add_flag("--markdown", o.markdown, "Print a Markdown table");
}

void add_delays(CLI::App& app, Options& o) {
  auto* delays = app.add_subcommand("delays", "PipeDream's global delay law: max and mean global delay of the "
                                              "steady state for S = 2..N, measured on the simulated schedule");
  delays->add_option("--max-stages", o.delay_max_stages, "Largest S (default 32)")->check(CLI::Range(2, 128));
}

// Runs a command that prints a summary on success.
int with_summary(const std::function<pt::Status(std::string*)>& fn) {
  std::string summary;
  const pt::Status s = fn(&summary);
  if (s) std::printf("%s\n", summary.c_str());
  return report(s);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pipetrain: pipeline-parallel GPT pretraining (launch `train` under mpirun)"};
  app.require_subcommand(1);
  Options o;
  add_train(app, o);
  add_plan(app, o);
  add_bench(app, o);
  add_prepare(app, o);
  add_replay_and_keys(app, o);
  add_delays(app, o);
  CLI11_PARSE(app, argc, argv);

  const std::string cmd = app.get_subcommands().front()->get_name();
  if (cmd == "train") return run_train(o.config_path, o.overrides, o.resume, o.overwrite);
  if (cmd == "plan")
    return report(
        pt::run_plan_command(o.config_path, o.overrides, o.plan_ranks, o.trace_path, o.costs_path, o.time_budget));
  if (cmd == "bench") return run_bench(o.bench);
  if (cmd == "prepare") return with_summary([&](std::string* out) { return pt::prepare_shards(o.prep, out); });
  if (cmd == "replay") return with_summary([&](std::string* out) { return pt::replay_run(o.replay_dir, out); });
  if (cmd == "delays") return report(pt::run_delays_command(o.delay_max_stages));
  if (cmd == "keys") {
    print_keys(o.markdown);
    return 0;
  }
  return 2;
}
