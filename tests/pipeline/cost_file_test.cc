// The cost file of `pipetrain bench` / `pipetrain plan --costs`: exact JSON round trip,
// stage costs as the closed-form sum of components, errors that name the file and key,
// and 1F1B simulations under file costs equal to their closed forms.
#include "pipeline/cost_file.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "tests/pipeline/test_util.h"

namespace pt {
namespace {

// Distinct, awkward values (not exactly representable in few digits) for every field.
CostFile sample() {
  CostFile f;
  f.backend = "cpu";
  f.device = "Test \"CPU\" 9000";
  f.host = "host-1";
  f.transport = "mpi";
  f.ranks = 2;
  f.threads = 1;
  f.created = "2026-11-23T00:00:00Z";
  f.warmup = 3;
  f.iters = 20;
  f.model = CostShape{8, 32, 2, 256, 2, 16};
  f.block = {1.0 / 3.0 * 1e-3, 2.0 / 7.0 * 1e-3, 1.0 / 11.0 * 1e-3};
  f.stage_io = {1.1e-6, 1.3e-6, 1.7e-7};
  f.embedding = {2.3e-5, 2.9e-6, 3.1e-5};
  f.head = {3.7e-4, 4.1e-4, 4.3e-4};
  f.full_model = {3.1e-3, 3.3e-3, 1.2e-3};
  f.p2p_latency_s = 1.9e-6;
  f.p2p_bandwidth_bytes_per_s = 5.3e9;
  f.p2p_message_bytes = 4096;
  f.p2p_message_s = 2.7e-6;
  f.optimizer_seconds_per_param = 4.7e-9;
  return f;
}

void expect_component_eq(const ComponentCost& a, const ComponentCost& b, const std::string& what) {
  EXPECT_EQ(a.forward, b.forward) << what;
  EXPECT_EQ(a.backward_input, b.backward_input) << what;
  EXPECT_EQ(a.backward_weight, b.backward_weight) << what;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("pt_cost_file_test_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

TEST(CostFile, WriteReadRoundTripIsExact) {
  const CostFile f = sample();
  const std::string path = temp_path("roundtrip.json");
  ASSERT_TRUE(write_cost_file(path, f).is_ok());
  CostFile g;
  const Status st = read_cost_file(path, &g);
  std::filesystem::remove(path);
  ASSERT_TRUE(st.is_ok()) << st.message();
  EXPECT_EQ(g.version, kCostFileVersion);
  EXPECT_EQ(g.backend, f.backend);
  EXPECT_EQ(g.device, f.device);
  EXPECT_EQ(g.host, f.host);
  EXPECT_EQ(g.transport, f.transport);
  EXPECT_EQ(g.ranks, f.ranks);
  EXPECT_EQ(g.threads, f.threads);
  EXPECT_EQ(g.created, f.created);
  EXPECT_EQ(g.warmup, f.warmup);
  EXPECT_EQ(g.iters, f.iters);
  EXPECT_EQ(g.model.n_layer, 8);
  EXPECT_EQ(g.model.n_embd, 32);
  EXPECT_EQ(g.model.n_head, 2);
  EXPECT_EQ(g.model.vocab_size, 256);
  EXPECT_EQ(g.model.micro_batch_size, 2);
  EXPECT_EQ(g.model.seq_len, 16);
  expect_component_eq(g.block, f.block, "block");
  expect_component_eq(g.stage_io, f.stage_io, "stage_io");
  expect_component_eq(g.embedding, f.embedding, "embedding");
  expect_component_eq(g.head, f.head, "head");
  expect_component_eq(g.full_model, f.full_model, "full_model");
  EXPECT_EQ(g.p2p_latency_s, f.p2p_latency_s);
  EXPECT_EQ(g.p2p_bandwidth_bytes_per_s, f.p2p_bandwidth_bytes_per_s);
  EXPECT_EQ(g.p2p_message_bytes, f.p2p_message_bytes);
  EXPECT_EQ(g.p2p_message_s, f.p2p_message_s);
  EXPECT_EQ(g.optimizer_seconds_per_param, f.optimizer_seconds_per_param);
}

TEST(CostFile, StageCostIsTheSumOfItsComponents) {
  const CostFile f = sample();
  auto check = [&](double (ComponentCost::*field), const std::string& name) {
    const double b = f.block.*field, io = f.stage_io.*field, e = f.embedding.*field, h = f.head.*field;
    // Middle stage: its blocks and its boundary copies.
    EXPECT_DOUBLE_EQ(stage_cost_from_file(f, 2, 5, false, false).*field, 3 * b + io) << name;
    // First stage: the embedding stage carries the copies of its output side.
    EXPECT_DOUBLE_EQ(stage_cost_from_file(f, 0, 2, true, false).*field, 2 * b + e) << name;
    // Last stage: the head stage carries the copies of its input side.
    EXPECT_DOUBLE_EQ(stage_cost_from_file(f, 5, 8, false, true).*field, 3 * b + h) << name;
    // One stage with everything (pp = 1) has no boundary: one stage_io less.
    EXPECT_DOUBLE_EQ(stage_cost_from_file(f, 0, 8, true, true).*field, 8 * b + e + h - io) << name;
  };
  check(&ComponentCost::forward, "forward");
  check(&ComponentCost::backward_input, "backward_input");
  check(&ComponentCost::backward_weight, "backward_weight");
}

TEST(CostFile, CostModelMapsVirtualStagesAndMessages) {
  const CostFile f = sample();
  const std::vector<std::pair<int, int>> ranges = {{0, 2}, {2, 5}, {5, 8}};
  const std::vector<size_t> params = {1000, 3000, 2000};
  const double bytes = 2.0 * 16 * 32 * 4;
  // Two chunks: virtual stage v holds model stage v % 3.
  const CostModel cm = cost_model_from_file(f, ranges, 6, bytes, params);
  ASSERT_EQ(cm.forward.size(), 6u);
  for (int v = 0; v < 6; ++v) {
    const int s = v % 3;
    const ComponentCost c = stage_cost_from_file(f, ranges[s].first, ranges[s].second, s == 0, s == 2);
    EXPECT_EQ(cm.forward[v], c.forward) << v;
    EXPECT_EQ(cm.backward_input[v], c.backward_input) << v;
    EXPECT_EQ(cm.backward_weight[v], c.backward_weight) << v;
  }
  EXPECT_DOUBLE_EQ(cm.p2p_latency, 1.9e-6 + bytes / 5.3e9);
  EXPECT_DOUBLE_EQ(cm.step, 3000 * 4.7e-9);
  EXPECT_EQ(cm.allreduce, 0.0);
  // Without a bandwidth (bench on one rank) a message costs the latency only.
  CostFile one = f;
  one.p2p_latency_s = 0;
  one.p2p_bandwidth_bytes_per_s = 0;
  EXPECT_EQ(p2p_seconds(one, bytes), 0.0);
}

Status parse_edited(const std::string& from, const std::string& to, CostFile* out) {
  std::string json = cost_file_json(sample());
  const size_t at = json.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) json.replace(at, from.size(), to);
  return parse_cost_file(json, "costs/x.json", out);
}

TEST(CostFile, ErrorsNameTheFileAndTheKey) {
  CostFile f;
  Status st = parse_edited("\"version\": 1", "\"version\": 2", &f);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("costs/x.json: key 'version'"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("re-run `pipetrain bench`"), std::string::npos) << st.message();

  st = parse_edited("\"head\":", "\"head_renamed\":", &f);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("costs/x.json: key 'head' is missing"), std::string::npos) << st.message();

  st = parse_edited("\"backward_input_s\": ", "\"backward_input_s\": -1, \"y\": ", &f);  // block's, the first
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("key 'block.backward_input_s'"), std::string::npos) << st.message();

  st = parse_edited("\"latency_s\": ", "\"latency_s\": \"fast\", \"x\": ", &f);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("key 'p2p.latency_s' must be a number"), std::string::npos) << st.message();

  st = parse_edited("\"n_embd\": 32", "\"n_embd\": [32]", &f);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("key 'model.n_embd'"), std::string::npos) << st.message();

  st = parse_edited("pipetrain-costs", "something-else", &f);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("key 'format'"), std::string::npos) << st.message();

  st = parse_cost_file("{\"version\": 1,", "costs/x.json", &f);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("costs/x.json"), std::string::npos) << st.message();

  st = read_cost_file(temp_path("does_not_exist.json"), &f);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("pipetrain bench"), std::string::npos) << st.message();

  // The unedited text parses (the edits above are what failed).
  EXPECT_TRUE(parse_cost_file(cost_file_json(sample()), "costs/x.json", &f).is_ok());
}

TEST(CostFile, ShapeMismatchSaysToRerunBench) {
  const CostFile f = sample();
  EXPECT_TRUE(check_cost_shape(f, "c.json", CostShape{8, 32, 2, 256, 2, 16}, "configs/t.yaml").is_ok());
  const Status st = check_cost_shape(f, "c.json", CostShape{8, 64, 2, 256, 2, 16}, "configs/t.yaml");
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("c.json: key 'model.n_embd': the costs were measured with 32 but configs/t.yaml has 64"),
            std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("re-run `pipetrain bench --config configs/t.yaml`"), std::string::npos) << st.message();
  const Status seq = check_cost_shape(f, "c.json", CostShape{8, 32, 2, 256, 2, 32}, "configs/t.yaml");
  ASSERT_FALSE(seq.is_ok());
  EXPECT_NE(seq.message().find("key 'model.seq_len'"), std::string::npos) << seq.message();
}

TEST(CostFile, PrecisionRoundTripsAndMustMatch) {
  CostFile bf16 = sample();
  bf16.model.precision = "bf16";
  CostFile back;
  ASSERT_TRUE(parse_cost_file(cost_file_json(bf16), "b.json", &back).is_ok());
  EXPECT_EQ(back.model.precision, "bf16");
  EXPECT_FALSE(back.model.tf32);
  CostShape want = bf16.model;
  EXPECT_TRUE(check_cost_shape(back, "b.json", want, "configs/t.yaml").is_ok());
  want.precision = "fp32";
  const Status st = check_cost_shape(back, "b.json", want, "configs/t.yaml");
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("b.json: key 'measurement.precision': the costs were measured in bf16 but "
                              "configs/t.yaml trains in fp32"),
            std::string::npos)
      << st.message();
  want.tf32 = true;
  back.model.precision = "fp32";
  EXPECT_NE(check_cost_shape(back, "b.json", want, "configs/t.yaml").message().find("fp32 with TF32"),
            std::string::npos);
}

TEST(CostFile, FileWithoutPrecisionKeysMeasuredFp32) {
  // Files of earlier versions of bench have no measurement.precision/tf32: they measured fp32.
  std::string json = cost_file_json(sample());
  const size_t at = json.find(", \"precision\"");
  ASSERT_NE(at, std::string::npos);
  json.erase(at, json.find('}', at) - at);
  CostFile f;
  ASSERT_TRUE(parse_cost_file(json, "old.json", &f).is_ok()) << json;
  EXPECT_EQ(f.model.precision, "fp32");
  EXPECT_FALSE(f.model.tf32);
  std::string bad = cost_file_json(sample());
  bad.replace(bad.find("\"tf32\": false"), 13, "\"tf32\": 3");
  const Status st = parse_cost_file(bad, "bad.json", &f);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("key 'measurement.tf32' must be true or false"), std::string::npos) << st.message();
}

ScheduleSpec one_f_one_b(int ranks, int microbatches) {
  ScheduleSpec spec;
  spec.kind = "1f1b";
  spec.ranks = ranks;
  spec.microbatches = microbatches;
  return spec;
}

// 1F1B on S = 2 ranks with the same F and B = Bx + Bw on both stages and a one-way
// message time l. Rank 0 runs F0 F1 B0 F2 B1 ... B(m-1), rank 1 runs F0 B0 F1 B1 ...;
// without messages the makespan is (m+1)(F+B). The longest path starts r0.F0 -> r1.F0
// and ends r1.B(m-1) -> r0.B(m-1) (2 messages). Inside, at micro-batch k the path can stay
// on rank 1 (F(k+1) B(k+1): F+B) or detour r1.B(k) -> r0.B(k) r0.F(k+2) -> r1.F(k+2)
// (B+F, the same compute, 2 more messages, and it lands two micro-batches on). Detours
// fit at k = 0, 2, ... <= m-3, so floor((m-1)/2) of them:
//   makespan = (m+1)(F+B) + (2 + 2·floor((m-1)/2))·l = (m+1)(F+B) + 2·ceil(m/2)·l.
// (Each message on the steady-state path costs l: two micro-batches share one round trip.)
TEST(CostFile, OneFOneBTwoStagesUnderFileCostsMatchesTheClosedForm) {
  CostFile f = sample();
  // Equal stages: a first and a last stage of equal block counts cost the same when embedding == head.
  f.embedding = f.head;
  const std::vector<std::pair<int, int>> ranges = {{0, 4}, {4, 8}};
  const double bytes = 2.0 * 16 * 32 * 4;
  const CostModel cm = cost_model_from_file(f, ranges, 2, bytes, {});
  const double F = cm.forward[0], B = cm.backward_input[0] + cm.backward_weight[0], l = cm.p2p_latency;
  ASSERT_EQ(cm.forward[1], F);
  ASSERT_EQ(cm.backward_input[1] + cm.backward_weight[1], B);
  ASSERT_GT(l, 0.0);
  for (int m = 1; m <= 12; ++m) {
    testing_util::Planned p = testing_util::plan_or_fail(one_f_one_b(2, m));
    ASSERT_FALSE(::testing::Test::HasFailure());
    SimResult r;
    ASSERT_TRUE(simulate(p.lowered, cm, &r).is_ok());
    const double closed = (m + 1) * (F + B) + 2.0 * ((m + 1) / 2) * l;
    EXPECT_NEAR(r.makespan, closed, 1e-12 * closed) << "m=" << m;
  }
}

// Without messages, 1F1B's makespan under file costs is (m+S-1)(F+B) for any S.
TEST(CostFile, OneFOneBWithoutMessagesIsTheUnitFormula) {
  CostFile f = sample();
  f.embedding = f.stage_io;
  f.head = f.stage_io;
  f.p2p_latency_s = 0;
  f.p2p_bandwidth_bytes_per_s = 0;
  for (int S : {2, 3, 4}) {
    std::vector<std::pair<int, int>> ranges;
    for (int s = 0; s < S; ++s) ranges.push_back({2 * s, 2 * s + 2});
    const CostModel cm = cost_model_from_file(f, ranges, S, 4096, {});
    ASSERT_EQ(cm.p2p_latency, 0.0);
    const double F = cm.forward[0], B = cm.backward_input[0] + cm.backward_weight[0];
    for (int m : {S, 2 * S, 8}) {
      testing_util::Planned p = testing_util::plan_or_fail(one_f_one_b(S, m));
      ASSERT_FALSE(::testing::Test::HasFailure());
      SimResult r;
      ASSERT_TRUE(simulate(p.lowered, cm, &r).is_ok());
      EXPECT_NEAR(r.makespan, (m + S - 1) * (F + B), 1e-12 * r.makespan) << "S=" << S << " m=" << m;
    }
  }
}

}  // namespace
}  // namespace pt
