// Asynchronous schedules end to end on the CPU backend under mpirun (S=4):
//   * every invariant of algorithms.md §1.4, §1.5, §2.4, §3.5 that the version
//     record can show holds on the record of a REAL run (versions.jsonl), checked by
//     the same functions the simulator tests use (pipeline/versions.h);
//   * `pipetrain replay` reproduces every stage's parameters bit for bit after 20
//     steps from the record alone (and rejects a tampered record);
//   * degenerate cases: PACI with S=1 equals gradient accumulation (1f1b, pp=1) bit
//     for bit; PACI's flush baseline equals 1f1b at pp=4 bit for bit;
//   * bad input gives errors naming the key.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "pipeline/versions.h"

namespace pt {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

struct CommandResult {
  int status = 0;
  std::string output;
};

CommandResult run(const std::string& cmd) {
  CommandResult r;
  std::FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (p && std::fgets(buf, sizeof buf, p)) r.output += buf;
  r.status = p ? pclose(p) : -1;
  return r;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class AsyncRun : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    bin_ = env("PIPETRAIN_BINARY");
    src_ = env("PIPETRAIN_SOURCE_DIR");
    ASSERT_FALSE(bin_.empty());
    char tmpl[] = "/tmp/pt_async_XXXXXX";
    work_ = mkdtemp(tmpl);
    auto r = run("python3 " + src_ + "/tests/app/make_byte_corpus.py " + work_ + "/corpus.txt 96 && " + bin_ +
                 " prepare --tokenizer byte --input " + work_ + "/corpus.txt --out " + work_ + "/data");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { run("rm -rf " + work_); }

  // Trains `name` with `np` ranks and extra --set overrides; returns the run dir.
  static std::string train(const std::string& name, int np, const std::string& sets, CommandResult* result = nullptr) {
    std::string cmd = (np > 1 ? "mpirun --oversubscribe -x OPENBLAS_NUM_THREADS=1 -np " + std::to_string(np) + " " : "") +
                      bin_ + " train --config " + src_ + "/configs/tiny_test.yaml --set 'data.train=" + work_ +
                      "/data/train_*.bin' --set 'data.val=" + work_ + "/data/val_*.bin' --set run.out_dir=" + work_ +
                      "/runs --set run.name=" + name +
                      " --set run.save_params=true --set model.tie_embeddings=false --set training.steps=20"
                      " --set training.eval_every=10 --set training.eval_batches=4 " + sets;
    CommandResult r = run(cmd);
    if (result) *result = r;
    else EXPECT_EQ(r.status, 0) << cmd << "\n" << r.output;
    return work_ + "/runs/" + name;
  }

  static std::vector<VersionRecord> record(const std::string& dir) {
    std::vector<VersionRecord> out;
    std::ifstream in(dir + "/versions.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      long long mb, st, f, b, a;
      EXPECT_EQ(std::sscanf(line.c_str(), "{\"mb\":%lld,\"stage\":%lld,\"forward\":%lld,\"backward\":%lld,\"applied\":%lld}",
                            &mb, &st, &f, &b, &a),
                5)
          << line;
      out.push_back(VersionRecord{int(mb), int(st), int(f), int(b), int(a)});
    }
    return out;
  }

  // Validation loss at the last eval below the step-0 eval.
  static void expect_val_loss_falls(const std::string& dir) {
    std::ifstream in(dir + "/metrics.jsonl");
    std::string line;
    std::vector<double> val;
    while (std::getline(in, line)) {
      auto p = line.find("\"val_loss\":");
      if (p != std::string::npos) val.push_back(std::atof(line.c_str() + p + 11));
    }
    ASSERT_GE(val.size(), 2u) << dir;
    EXPECT_LT(val.back(), val.front() - 0.05) << dir << ": validation loss did not fall";
  }

  static void expect_replay_exact(const std::string& dir) {
    CommandResult r = run(bin_ + " replay --run " + dir);
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("bit for bit"), std::string::npos) << r.output;
  }

  static void expect_same_params(const std::string& a, const std::string& b) {
    int n = 0;
    for (int id = 0; id < 200; ++id) {
      std::string pa = slurp(a + "/params/" + std::to_string(id) + ".bin");
      std::string pb = slurp(b + "/params/" + std::to_string(id) + ".bin");
      if (pa.empty() && pb.empty()) continue;
      EXPECT_TRUE(pa == pb) << "tensor " << id << " differs between " << a << " and " << b;
      ++n;
    }
    EXPECT_GT(n, 10);
  }

  static std::string losses(const std::string& dir) {
    std::ifstream in(dir + "/metrics.jsonl");
    std::string line, out;
    while (std::getline(in, line)) {
      auto p = line.find("\"loss\":");
      if (p != std::string::npos) out += line.substr(p, line.find(',', p) - p) + "\n";
    }
    return out;
  }

  static std::string bin_, src_, work_;
};
std::string AsyncRun::bin_, AsyncRun::src_, AsyncRun::work_;

TEST_F(AsyncRun, PaciInvariantsReplayAndLearning) {
  const std::string dir = train("paci", 4, "--set parallel.pp=4 --set schedule.kind=paci --set training.microbatches=4");
  const auto rec = record(dir);
  ASSERT_EQ(rec.size(), size_t(20 * 4 * 4));
  Status s = check_paci_invariants(rec, 4, 4);
  EXPECT_TRUE(s.is_ok()) << s.message();
  int drifted = 0;
  for (const auto& r : rec) drifted += r.backward != r.forward;
  EXPECT_GT(drifted, 0) << "a=S: PACI must show drift-1 micro-batches";
  expect_replay_exact(dir);
  expect_val_loss_falls(dir);
}

TEST_F(AsyncRun, PaciMemModeReplays) {
  const std::string dir =
      train("paci_mem", 4, "--set parallel.pp=4 --set schedule.kind=paci --set schedule.paci.mode=mem --set training.microbatches=2");
  Status s = check_paci_invariants(record(dir), 4, 2);
  EXPECT_TRUE(s.is_ok()) << s.message();
  expect_replay_exact(dir);
}

TEST_F(AsyncRun, PipeDreamInvariantsAndReplay) {
  // accumulation 1: an update per backward, stage delay S-1-s in steady state.
  // One segment (no drain at step 10): the steady-state laws hold across the whole run.
  const std::string dir = train("pipedream", 4, "--set parallel.pp=4 --set schedule.kind=pipedream --set training.microbatches=1 "
                                                "--set training.eval_every=0");
  Status s = check_pipedream_invariants(record(dir), 4, 1);
  EXPECT_TRUE(s.is_ok()) << s.message();
  expect_replay_exact(dir);
  expect_val_loss_falls(dir);
}

TEST_F(AsyncRun, PipeDream2bwInvariantsAndReplay) {
  // One segment: after a drain 2BW restarts its double buffer (delay 0 for one update).
  const std::string dir = train("pd2bw", 4, "--set parallel.pp=4 --set schedule.kind=pipedream_2bw --set training.microbatches=4 "
                                            "--set training.eval_every=0");
  Status s = check_2bw_invariants(record(dir), 4, 4);
  EXPECT_TRUE(s.is_ok()) << s.message();
  expect_replay_exact(dir);
  expect_val_loss_falls(dir);
}

TEST_F(AsyncRun, AmdpInvariants) {
  const std::string dir = train("amdp", 4, "--set parallel.pp=4 --set schedule.kind=amdp --set training.microbatches=4 "
                                           "--set training.eval_every=0");
  Status s = check_amdp_invariants(record(dir), 4, 2, 4);
  EXPECT_TRUE(s.is_ok()) << s.message();
  expect_val_loss_falls(dir);
}

TEST_F(AsyncRun, TamperedRecordIsRejectedByReplay) {
  const std::string dir = train("paci_t", 4, "--set parallel.pp=4 --set schedule.kind=paci --set training.microbatches=4");
  // Pretend one drifted micro-batch ran its backward on its forward's weights.
  std::ifstream in(dir + "/versions.jsonl");
  std::string line, text;
  bool changed = false;
  while (std::getline(in, line)) {
    long long mb, st, f, b, a;
    std::sscanf(line.c_str(), "{\"mb\":%lld,\"stage\":%lld,\"forward\":%lld,\"backward\":%lld,\"applied\":%lld}", &mb, &st,
                &f, &b, &a);
    if (!changed && b != f) {
      line = "{\"mb\":" + std::to_string(mb) + ",\"stage\":" + std::to_string(st) + ",\"forward\":" + std::to_string(f) +
             ",\"backward\":" + std::to_string(f) + ",\"applied\":" + std::to_string(a) + "}";
      changed = true;
    }
    text += line + "\n";
  }
  ASSERT_TRUE(changed);
  std::ofstream(dir + "/versions.jsonl") << text;
  CommandResult r = run(bin_ + " replay --run " + dir);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("differs"), std::string::npos) << r.output;
}

TEST_F(AsyncRun, PaciOneStageEqualsGradientAccumulation) {
  const std::string paci = train("paci_s1", 1, "--set schedule.kind=paci --set training.microbatches=4");
  const std::string acc = train("accum_s1", 1, "--set schedule.kind=1f1b --set training.microbatches=4");
  EXPECT_EQ(losses(paci), losses(acc));
  EXPECT_FALSE(losses(paci).empty());
  expect_same_params(paci, acc);
}

TEST_F(AsyncRun, PaciFlushEqualsOneFOneB) {
  // Per-stage clipping (async) and global clipping (sync) differ, so compare unclipped.
  const std::string flush = train("flush4", 4, "--set parallel.pp=4 --set schedule.kind=paci_flush --set training.microbatches=4 "
                                               "--set optimizer.grad_clip=0");
  const std::string sync = train("sync4", 4, "--set parallel.pp=4 --set schedule.kind=1f1b --set training.microbatches=4 "
                                             "--set optimizer.grad_clip=0");
  EXPECT_TRUE(check_drift_zero(record(flush)).is_ok());
  EXPECT_EQ(losses(flush), losses(sync));
  expect_same_params(flush, sync);
}

TEST_F(AsyncRun, BadInputNamesTheKey) {
  CommandResult r;
  train("bad1", 1, "--set schedule.kind=paci --set model.tie_embeddings=true", &r);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("model.tie_embeddings"), std::string::npos) << r.output;
  train("bad2", 1, "--set schedule.kind=amdp --set parallel.pp=3 --set training.microbatches=3", &r);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("parallel.pp"), std::string::npos) << r.output;
  train("bad3", 1, "--set schedule.kind=paci --set parallel.pp=2 --set 'schedule.paci.allowed_lagging=[3,1]'", &r);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("allowed_lagging"), std::string::npos) << r.output;
  train("bad4", 1, "--set schedule.kind=paci --set training.microbatches=0", &r);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("training.microbatches"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace pt
