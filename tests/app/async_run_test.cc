// Asynchronous schedules end to end on the CPU backend under mpirun (S=4):
//   * every invariant of algorithms.md §1.4, §1.5, §2.4, §3.5, §5.6 that the version
//     record can show holds on the record of a REAL run (versions.jsonl), checked by
//     the same functions the simulator tests use (pipeline/versions.h);
//   * `pipetrain replay` reproduces every stage's parameters bit for bit after 20
//     steps from the record alone, for every asynchronous kind (and rejects a
//     tampered record);
//   * degenerate cases: PACI with S=1 equals gradient accumulation (1f1b, pp=1) bit
//     for bit; PACI's flush baseline equals 1f1b at pp=4 bit for bit;
//   * bad input gives errors naming the key.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <fstream>
#include <map>
#include <set>
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
  expect_replay_exact(dir);  // replicas' gradients summed in rank order, owner steps
}

// LocalSGD (§5.4, §5.6 item 5) on a real run: zero staleness on the record of every copy's every
// stage, learning, and a bit-exact replay across a drain (eval at step 10) that holds the
// averages of rounds 1..10; then 2 copies of 2 micro-batches each per update (accumulation) with
// rounds of 5 updates. The run itself checks at every drain that the copies are bit-identical.
TEST_F(AsyncRun, LocalSgdInvariantsReplayAndLearning) {
  const std::string dir = train("localsgd", 4, "--set parallel.pp=4 --set schedule.kind=localsgd --set training.microbatches=4");
  const auto rec = record(dir);
  ASSERT_EQ(rec.size(), size_t(20 * 4 * 4));
  Status s = check_localsgd_invariants(rec, 4, 4, 4);
  EXPECT_TRUE(s.is_ok()) << s.message();
  expect_val_loss_falls(dir);
  expect_replay_exact(dir);
  const std::string acc = train("localsgd_acc", 4, "--set parallel.pp=4 --set schedule.kind=localsgd --set training.microbatches=4 "
                                                   "--set schedule.localsgd.copies=2 --set schedule.localsgd.local_steps=5");
  s = check_localsgd_invariants(record(acc), 4, 2, 4);
  EXPECT_TRUE(s.is_ok()) << s.message();
  expect_replay_exact(acc);
  CommandResult r;
  train("localsgd_bad", 1, "--set schedule.kind=localsgd --set training.microbatches=2 --set checkpoint.every_steps=3", &r);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("checkpoint.every_steps"), std::string::npos) << r.output;
}

// S = 2: K = 1 pipeline, so every model stage is its own only replica (regression: the
// runner used to abort on the missing replica group).
TEST_F(AsyncRun, AmdpTwoStagesOnePipeline) {
  const std::string dir = train("amdp_s2", 2, "--set parallel.pp=2 --set schedule.kind=amdp --set training.microbatches=2 "
                                              "--set training.eval_every=0");
  Status s = check_amdp_invariants(record(dir), 2, 1, 2);
  EXPECT_TRUE(s.is_ok()) << s.message();
  expect_val_loss_falls(dir);
  expect_replay_exact(dir);
}

TEST_F(AsyncRun, PaciEightStagesInvariantsAndReplay) {
  // S=8 (one block per stage of the 8-block test model), a = 8 >= S-1: drift <= 1.
  const std::string dir = train("paci8", 8, "--set parallel.pp=8 --set schedule.kind=paci --set training.microbatches=8 "
                                            "--set training.eval_every=0 --set training.steps=10");
  Status s = check_paci_invariants(record(dir), 8, 8);
  EXPECT_TRUE(s.is_ok()) << s.message();
  expect_replay_exact(dir);
}

TEST_F(AsyncRun, PaciFlushReplays) {
  const std::string dir = train("flush_replay", 4, "--set parallel.pp=4 --set schedule.kind=paci_flush --set training.microbatches=4");
  expect_replay_exact(dir);
}

// run_dir/optimizer_state.jsonl (AsyncRunner): per model stage, the ranks holding Adam moments.
std::map<int, std::vector<int>> moment_holders(const std::string& dir, int* lines) {
  std::map<int, std::vector<int>> out;
  std::ifstream in(dir + "/optimizer_state.jsonl");
  std::string line;
  *lines = 0;
  while (std::getline(in, line)) {
    long long rank, stage, ms, n, floats;
    EXPECT_EQ(std::sscanf(line.c_str(), "{\"rank\":%lld,\"stage\":%lld,\"model_stage\":%lld,\"params\":%lld,\"moment_floats\":%lld}",
                          &rank, &stage, &ms, &n, &floats),
              5)
        << line;
    ++*lines;
    if (floats > 0) {
      EXPECT_EQ(floats, 2 * n) << line;
      out[int(ms)].push_back(int(rank));
    }
  }
  return out;
}

// §2.2 "Stage ownership", §2.4 items 4 and 5. Owner mode (the default) and all-reduce mode must
// train bit-identically (the owner sums the K gradients in the same canonical order every replica
// uses otherwise, and its AdamW result is broadcast); the runner aborts if replicas differ after a
// step slot (item 4, hashed at every drain, here at steps 10 and 20). Item 5: in owner mode each
// model stage's moments live on exactly one rank, its pipeline-0 host (stage s on rank s for S=4);
// without it on both replicas {s, 3-s}.
// An AMDP run over S ranks (m micro-batches per update, zero_owner): its record (versions.jsonl) passes §2.4's
// invariants, and each model stage s's Adam moments exist once, on its owner, rank s.
void expect_amdp_invariants_and_owners(const std::vector<VersionRecord>& record, const std::string& dir, int S,
                                       int m) {
  Status st = check_amdp_invariants(record, S, S / 2, m);
  EXPECT_TRUE(st.is_ok()) << dir << ": " << st.message();
  int lines = 0;
  auto held = moment_holders(dir, &lines);
  EXPECT_EQ(lines, S * S / 2) << S << " ranks x K=" << S / 2 << " hosted stages";
  ASSERT_EQ(int(held.size()), S);
  for (int s = 0; s < S; ++s) EXPECT_EQ(held[s], (std::vector<int>{s})) << "model stage " << s;
}

// The depths beyond the reference code's: S = 6 (K = 3, the general rule of
// pipeline/schedules/amdp.cc: every pipeline down from rank 2p, replica groups = the even and the
// odd ranks) and S = 12 (K = 6, the rule of the S=8 reference orders, 12 blocks). The version
// record of each real run passes §2.4's invariants, each model stage's optimizer state lives on its
// owner only, and the run replays bit for bit.
TEST_F(AsyncRun, AmdpBeyondTheReferenceDepths) {
  for (int S : {6, 12}) {
    const std::string n = std::to_string(S);
    const std::string dir = train("amdp_s" + n, S, "--set parallel.pp=" + n + " --set model.n_layer=" +
                                                       std::to_string(std::max(8, S)) + " --set schedule.kind=amdp "
                                                       "--set training.microbatches=" + n + " --set training.eval_every=0");
    expect_amdp_invariants_and_owners(record(dir), dir, S, S);
    expect_val_loss_falls(dir);
    expect_replay_exact(dir);
  }
}

TEST_F(AsyncRun, AmdpZeroOwnerShardsOptimizerStateAndKeepsReplicasIdentical) {
  const std::string base = "--set parallel.pp=4 --set schedule.kind=amdp --set training.microbatches=4 ";
  const std::string owner = train("amdp_owner", 4, base);
  const std::string all = train("amdp_allreduce", 4, base + "--set schedule.amdp.zero_owner=false");
  EXPECT_TRUE(check_amdp_invariants(record(owner), 4, 2, 4).is_ok());
  EXPECT_EQ(losses(owner), losses(all));
  EXPECT_FALSE(losses(owner).empty());
  expect_same_params(owner, all);
  int lines = 0;
  auto held = moment_holders(owner, &lines);
  EXPECT_EQ(lines, 8) << "4 ranks x K=2 hosted stages";
  ASSERT_EQ(held.size(), 4u);
  for (int s = 0; s < 4; ++s) EXPECT_EQ(held[s], (std::vector<int>{s})) << "model stage " << s;
  held = moment_holders(all, &lines);
  EXPECT_EQ(lines, 8);
  for (int s = 0; s < 4; ++s) {
    std::vector<int> h = held[s];
    std::sort(h.begin(), h.end());
    EXPECT_EQ(h, (std::vector<int>{std::min(s, 3 - s), std::max(s, 3 - s)})) << "model stage " << s;
  }
  CommandResult r;
  train("amdp_bad_owner", 1, "--set schedule.kind=paci --set schedule.amdp.zero_owner=false", &r);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("schedule.amdp.zero_owner"), std::string::npos) << r.output;
}

// schedule.amdp.step_slot: reference on a real run (§2.2 "Reference-code artifact"): the runner
// zeroes a non-owner's gradient at STEP, so GPU0's B of micro-batch 4t+1 on its stage-3 replica
// (virtual stage 7) is dropped in every iteration t >= 1 (one segment: t = 1..19) and recorded
// with applied -1; every other record equals the clean run's. Replicas stay bit-identical (the
// runner aborts otherwise). And the S=8 reference order runs for real (8 ranks): §2.4 invariants
// on its record, moments of model stage s on rank s only.
TEST_F(AsyncRun, AmdpReferenceStepSlotArtifactAndS8) {
  const std::string base = "--set parallel.pp=4 --set schedule.kind=amdp --set training.microbatches=4 "
                           "--set training.eval_every=0 ";
  const std::string ref = train("amdp_ref", 4, base + "--set schedule.amdp.step_slot=reference");
  const std::string clean = train("amdp_clean", 4, base);
  const auto rec = record(ref), rec_clean = record(clean);
  ASSERT_EQ(rec.size(), size_t(20 * 4 * 4));
  ASSERT_EQ(rec_clean.size(), rec.size());
  EXPECT_TRUE(check_amdp_invariants(rec_clean, 4, 2, 4).is_ok());
  std::map<std::pair<int, int>, VersionRecord> by_key;
  for (const auto& r : rec_clean) by_key[{r.microbatch, r.stage}] = r;
  std::set<std::pair<int, int>> dropped, want;
  for (const auto& r : rec) {
    const VersionRecord& c = by_key.at({r.microbatch, r.stage});
    EXPECT_EQ(r.forward, c.forward);
    EXPECT_EQ(r.backward, c.backward);
    if (r.applied < 0) dropped.insert({r.microbatch, r.stage});
    else EXPECT_EQ(r.applied, c.applied) << "mb " << r.microbatch << " stage " << r.stage;
  }
  for (int t = 1; t < 20; ++t) want.insert({4 * t + 1, 7});
  EXPECT_EQ(dropped, want);
  EXPECT_NE(losses(ref), losses(clean)) << "dropping gradients must change the training";
  expect_val_loss_falls(ref);

  const std::string s8 = train("amdp_s8", 8, "--set parallel.pp=8 --set schedule.kind=amdp --set training.microbatches=8");
  expect_amdp_invariants_and_owners(record(s8), s8, 8, 8);

  CommandResult r;
  train("amdp_bad_slot", 1, "--set schedule.kind=amdp --set parallel.pp=4 --set training.microbatches=4 "
                            "--set schedule.amdp.step_slot=reference --set schedule.amdp.zero_owner=false", &r);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("schedule.amdp.step_slot"), std::string::npos) << r.output;
  train("amdp_bad_slot2", 1, "--set schedule.kind=amdp --set parallel.pp=4 --set training.microbatches=4 "
                             "--set schedule.amdp.step_slot=early", &r);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("schedule.amdp.step_slot"), std::string::npos) << r.output;
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
