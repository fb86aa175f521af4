// Unit tests of the checkpoint format (app/checkpoint.h): round trip, corruption
// (flipped byte, truncation, magic, version) named by file, config mismatch naming
// the key, layout-independent mapping by global id (pp=4 -> pp=2 -> pp=1, tied
// head), named optimizer state (refused when missing, skipped by stages without
// state), version-1 files (fixed adam_m/adam_v fields) still loaded, refusal of
// unmappable layouts without touching the state, find-latest skipping partial and
// corrupted directories, metrics truncation and cadence.
#include "app/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "app/metrics.h"
#include "app/optimizer_step.h"
#include "optim/adamw.h"

namespace pt {
namespace {

namespace fs = std::filesystem;

ModelConfig tiny_model() {
  ModelConfig m;
  m.vocab_size = 32;
  m.max_seq_len = 8;
  m.n_layer = 4;
  m.n_head = 2;
  m.n_embd = 8;
  m.tie_embeddings = true;
  return m;
}

Config tiny_config(int pp) {
  Config c;
  c.model = tiny_model();
  c.data.train = "data/train_*.bin";
  c.parallel.pp = pp;
  return c;
}

std::vector<std::pair<int, int>> even_split(int L, int S) {
  std::vector<std::pair<int, int>> r;
  for (int s = 0; s < S; ++s) r.push_back({s * L / S, (s + 1) * L / S});
  return r;
}

// The stage-wide optimizer state tensor `name` of `ls` (AdamW: adam_m, adam_v).
float* state_of(const LocalStage& ls, const std::string& name) {
  for (const StateTensor& st : ls.optimizer_state->tensors())
    if (st.name == name) return st.data;
  ADD_FAILURE() << "no optimizer state named " << name;
  return nullptr;
}

// The stages of pipeline rank `rank` under an S-stage layout (one stage per rank),
// with params/moments that encode (global id, element) so a wrong mapping shows.
std::vector<LocalStage> make_local(const ModelConfig& m, int S, int rank, float salt, int64_t version) {
  auto ranges = even_split(m.n_layer, S);
  std::vector<LocalStage> out;
  LocalStage ls;
  ls.stage = rank;
  ls.layers = ranges[rank];
  ls.model = make_cpu_stage_model(m, StageSpec{ranges[rank].first, ranges[rank].second, rank == 0, rank == S - 1}, 1, 4);
  ls.model->init_params(7);
  ls.optimizer_state = make_optimizer_state(OptimizerSection{}, *ls.model);
  float* adam_m = state_of(ls, kAdamM);
  float* adam_v = state_of(ls, kAdamV);
  for (const auto& t : ls.model->tensors())
    for (size_t i = 0; i < t.numel; ++i) {
      ls.model->params()[t.offset + i] = salt + float(t.global_id) + float(i) * 1e-3f;
      adam_m[t.offset + i] = salt + float(t.global_id) * 2 + float(i) * 1e-4f;
      adam_v[t.offset + i] = salt + float(t.global_id) * 3 + float(i) * 1e-5f;
    }
  ls.version = version;
  out.push_back(std::move(ls));
  return out;
}

// Format version 1 as the previous pipetrain wrote it, transcribed independently of
// checkpoint.cc: per tensor (global id, name, numel, params, adam_m, adam_v), no state names.
std::string encode_version1(const RankCheckpoint& r) {
  std::string p;
  auto raw = [&](const void* d, size_t n) { p.append(static_cast<const char*>(d), n); };
  auto i32 = [&](int32_t v) { raw(&v, 4); };
  auto u32 = [&](uint32_t v) { raw(&v, 4); };
  auto i64 = [&](int64_t v) { raw(&v, 8); };
  auto str = [&](const std::string& s) { u32(uint32_t(s.size())); raw(s.data(), s.size()); };
  auto floats = [&](const std::vector<float>& v) { raw(v.data(), v.size() * sizeof(float)); };
  i32(r.dp), i32(r.pp), i32(r.chunks), i32(r.pp_rank), str(r.schedule), u32(uint32_t(r.stage_layers.size()));
  for (const auto& l : r.stage_layers) i32(l.first), i32(l.second);
  i64(r.step), i64(r.restarts), i64(int64_t(r.config_hash)), str(r.fingerprint), u32(uint32_t(r.stages.size()));
  for (const auto& s : r.stages) {
    i32(s.stage), i32(s.layers.first), i32(s.layers.second), i64(s.version), u32(uint32_t(s.tensors.size()));
    for (const auto& t : s.tensors) {
      EXPECT_EQ(t.state.size(), 2u);
      EXPECT_EQ(t.state[0].name, "adam_m");
      EXPECT_EQ(t.state[1].name, "adam_v");
      i32(t.global_id), str(t.name), i64(int64_t(t.params.size())), floats(t.params);
      floats(t.state[0].data), floats(t.state[1].data);
    }
  }
  const uint32_t version = 1;
  const uint64_t size = p.size(), sum = fnv1a64(p.data(), p.size());
  std::string f(kCheckpointMagic, 8);
  f.append(reinterpret_cast<const char*>(&version), 4);
  f.append(reinterpret_cast<const char*>(&size), 8);
  f.append(reinterpret_cast<const char*>(&sum), 8);
  return f + p;
}

// Rank files of a saved S-stage layout, round-tripped through bytes.
std::vector<RankCheckpoint> save_layout(const Config& c, int S, int64_t step, std::vector<std::string>* paths) {
  std::vector<RankCheckpoint> files;
  for (int r = 0; r < S; ++r) {
    auto local = make_local(c.model, S, r, 0.5f, step);
    RankCheckpoint out;
    const std::string path = "mem/rank_" + std::to_string(r) + ".ckpt";
    EXPECT_TRUE(decode_rank_checkpoint(path, encode_rank_checkpoint(make_rank_checkpoint(
                                                 c, r, even_split(c.model.n_layer, S), local, step, 2)),
                                       &out));
    files.push_back(std::move(out));
    paths->push_back(path);
  }
  return files;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ckpt_test_XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string one_file_bytes() {
  Config c = tiny_config(1);
  auto local = make_local(c.model, 1, 0, 0.25f, 3);
  return encode_rank_checkpoint(make_rank_checkpoint(c, 0, even_split(4, 1), local, 3, 0));
}

TEST(Checkpoint, RoundTrip) {
  Config c = tiny_config(2);
  auto local = make_local(c.model, 2, 1, 0.25f, 9);
  RankCheckpoint in = make_rank_checkpoint(c, 1, even_split(4, 2), local, 9, 4), out;
  ASSERT_TRUE(decode_rank_checkpoint("x.ckpt", encode_rank_checkpoint(in), &out));
  EXPECT_EQ(out.pp, 2);
  EXPECT_EQ(out.pp_rank, 1);
  EXPECT_EQ(out.step, 9);
  EXPECT_EQ(out.restarts, 4);
  EXPECT_EQ(out.schedule, "1f1b");
  EXPECT_EQ(out.stage_layers, even_split(4, 2));
  EXPECT_EQ(out.fingerprint, resume_fingerprint(c));
  ASSERT_EQ(out.stages.size(), 1u);
  EXPECT_EQ(out.stages[0].version, 9);
  EXPECT_EQ(out.stages[0].layers, std::make_pair(2, 4));
  ASSERT_EQ(out.stages[0].tensors.size(), in.stages[0].tensors.size());
  for (size_t i = 0; i < in.stages[0].tensors.size(); ++i) {
    const auto& a = in.stages[0].tensors[i];
    const auto& b = out.stages[0].tensors[i];
    EXPECT_EQ(a.global_id, b.global_id);
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.params, b.params);
    EXPECT_EQ(a.state, b.state);
    ASSERT_EQ(b.state.size(), 2u);
    EXPECT_EQ(b.state[0].name, "adam_m");
    EXPECT_EQ(b.state[1].name, "adam_v");
    EXPECT_EQ(b.state[0].data.size(), b.params.size());
    EXPECT_NE(a.name, "") << "tensor names are stored";
  }
  // The last stage's tied head copy of wte is not stored.
  for (const auto& t : out.stages[0].tensors) EXPECT_NE(t.name, "wte");
}

// A tensor with no elements decodes (found by tests/fuzz/fuzz_checkpoint: the reader
// passed an empty vector's null data() to memcpy, undefined behaviour that UBSan
// reports under scripts/sanitize.sh). Also a stage with no tensors.
TEST(Checkpoint, EmptyTensorAndStageRoundTrip) {
  RankCheckpoint in, out;
  in.schedule = "gpipe";
  in.stage_layers = {{0, 1}};
  in.fingerprint = "run.seed=1\n";
  in.config_hash = fnv1a64(in.fingerprint.data(), in.fingerprint.size());
  CheckpointStage stage;
  stage.layers = {0, 1};
  stage.tensors.push_back(CheckpointTensor{3, "empty", {}, {{"adam_m", {}}, {"adam_v", {}}}});
  stage.tensors.push_back(CheckpointTensor{4, "one", {1.5f}, {{"adam_m", {2.5f}}, {"adam_v", {3.5f}}}});
  in.stages = {stage, CheckpointStage{}};
  const std::string bytes = encode_rank_checkpoint(in);
  ASSERT_TRUE(decode_rank_checkpoint("e.ckpt", bytes, &out));
  ASSERT_EQ(out.stages.size(), 2u);
  ASSERT_EQ(out.stages[0].tensors.size(), 2u);
  EXPECT_TRUE(out.stages[0].tensors[0].params.empty());
  EXPECT_EQ(out.stages[0].tensors[1].state.at(1).data, std::vector<float>{3.5f});
  EXPECT_TRUE(out.stages[1].tensors.empty());
  EXPECT_EQ(encode_rank_checkpoint(out), bytes);
}

TEST(Checkpoint, EveryFlippedPayloadByteIsCaught) {
  const std::string good = one_file_bytes();
  RankCheckpoint out;
  for (size_t pos = 8; pos < good.size(); pos += 97) {
    std::string bad = good;
    bad[pos] ^= 0x04;
    Status s = decode_rank_checkpoint("step_3/rank_0.ckpt", bad, &out);
    ASSERT_FALSE(s) << "byte " << pos;
    EXPECT_NE(s.message().find("step_3/rank_0.ckpt"), std::string::npos) << s.message();
  }
  std::string bad = good;
  bad[good.size() / 2] ^= 0x01;
  Status s = decode_rank_checkpoint("f.ckpt", bad, &out);
  EXPECT_NE(s.message().find("checksum mismatch"), std::string::npos) << s.message();
}

TEST(Checkpoint, TruncatedMagicVersion) {
  const std::string good = one_file_bytes();
  RankCheckpoint out;
  for (size_t n : {size_t(0), size_t(5), size_t(27), size_t(28), good.size() / 2, good.size() - 1}) {
    Status s = decode_rank_checkpoint("t.ckpt", good.substr(0, n), &out);
    ASSERT_FALSE(s) << n;
    EXPECT_NE(s.message().find("t.ckpt: truncated"), std::string::npos) << s.message();
  }
  std::string bad = good;
  bad[0] = 'X';
  EXPECT_NE(decode_rank_checkpoint("m.ckpt", bad, &out).message().find("bad magic"), std::string::npos);
  bad = good;
  bad[8] = 9;
  EXPECT_NE(decode_rank_checkpoint("v.ckpt", bad, &out).message().find("format version 9"), std::string::npos);
}

TEST(Checkpoint, AtomicWriteAndRead) {
  TempDir d;
  const std::string path = d.path() + "/rank_0.ckpt";
  ASSERT_TRUE(write_file_atomic(path, one_file_bytes()));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  RankCheckpoint r;
  ASSERT_TRUE(read_rank_checkpoint(path, &r));
  EXPECT_EQ(r.step, 3);
  Status s = read_rank_checkpoint(d.path() + "/nope.ckpt", &r);
  EXPECT_NE(s.message().find("nope.ckpt: cannot open"), std::string::npos);
}

// pp=4 -> pp=2 and pp=1: params and both moments land by global id, bitwise;
// the tied head copy loads wte; versions and step carry over.
TEST(Checkpoint, MapsAcrossLayouts) {
  std::vector<std::string> paths;
  auto files = save_layout(tiny_config(4), 4, 6, &paths);
  for (int S : {1, 2, 4}) {
    for (int r = 0; r < S; ++r) {
      auto local = make_local(tiny_model(), S, r, 100.0f, 0);
      int64_t step = -1, restarts = -1;
      ASSERT_TRUE(map_checkpoint_to_stages(files, paths, tiny_config(S), local, &step, &restarts));
      EXPECT_EQ(step, 6);
      EXPECT_EQ(restarts, 2);
      EXPECT_EQ(local[0].version, 6);
      // Expected values: what make_local(salt 0.5) holds at each global id.
      for (const auto& t : local[0].model->tensors())
        for (size_t i = 0; i < t.numel; i += 7) {
          ASSERT_EQ(local[0].model->params()[t.offset + i], 0.5f + float(t.global_id) + float(i) * 1e-3f)
              << t.name << " S=" << S << (t.is_tied_head ? " (tied head)" : "");
          ASSERT_EQ(state_of(local[0], kAdamM)[t.offset + i], 0.5f + float(t.global_id) * 2 + float(i) * 1e-4f);
          ASSERT_EQ(state_of(local[0], kAdamV)[t.offset + i], 0.5f + float(t.global_id) * 3 + float(i) * 1e-5f);
        }
    }
  }
}

// A version-1 file (written before optimizer state was named) decodes to the same
// contents as the version-2 file of the same state, and maps onto another layout.
TEST(Checkpoint, LoadsVersion1Files) {
  Config c = tiny_config(2);
  std::vector<RankCheckpoint> files;
  std::vector<std::string> paths;
  for (int r = 0; r < 2; ++r) {
    auto local = make_local(c.model, 2, r, 0.5f, 6);
    const RankCheckpoint in = make_rank_checkpoint(c, r, even_split(4, 2), local, 6, 2);
    const std::string v1 = encode_version1(in);
    ASSERT_EQ(v1.substr(8, 4), std::string("\x01\0\0\0", 4)) << "version 1 in the header";
    RankCheckpoint out;
    paths.push_back("old/rank_" + std::to_string(r) + ".ckpt");
    ASSERT_TRUE(decode_rank_checkpoint(paths.back(), v1, &out));
    ASSERT_EQ(out.stages.size(), 1u);
    ASSERT_EQ(out.stages[0].tensors.size(), in.stages[0].tensors.size());
    for (size_t i = 0; i < in.stages[0].tensors.size(); ++i) {
      EXPECT_EQ(out.stages[0].tensors[i].params, in.stages[0].tensors[i].params);
      EXPECT_EQ(out.stages[0].tensors[i].state, in.stages[0].tensors[i].state) << in.stages[0].tensors[i].name;
    }
    EXPECT_EQ(encode_rank_checkpoint(out), encode_rank_checkpoint(in)) << "re-saved as version 2, bit for bit";
    files.push_back(std::move(out));
  }
  auto local = make_local(tiny_model(), 1, 0, 100.0f, 0);
  int64_t step = -1, restarts = -1;
  ASSERT_TRUE(map_checkpoint_to_stages(files, paths, tiny_config(1), local, &step, &restarts));
  EXPECT_EQ(step, 6);
  for (const auto& t : local[0].model->tensors())
    for (size_t i = 0; i < t.numel; i += 5) {
      ASSERT_EQ(state_of(local[0], kAdamM)[t.offset + i], 0.5f + float(t.global_id) * 2 + float(i) * 1e-4f) << t.name;
      ASSERT_EQ(state_of(local[0], kAdamV)[t.offset + i], 0.5f + float(t.global_id) * 3 + float(i) * 1e-5f) << t.name;
    }
}

// Optimizer state is mapped by name: a stage holding state refuses a checkpoint that
// lacks one of its state tensors (loading nothing); a stage without state (an AMDP
// non-owner replica) loads the parameters alone.
TEST(Checkpoint, OptimizerStateByName) {
  std::vector<std::string> paths;
  auto files = save_layout(tiny_config(1), 1, 4, &paths);
  int64_t step = 0, restarts = 0;
  for (const char* dropped : {kAdamM, kAdamV}) {
    auto broken = files;
    auto& st = broken[0].stages[0].tensors[2].state;
    st.erase(std::remove_if(st.begin(), st.end(), [&](const CheckpointState& x) { return x.name == dropped; }), st.end());
    auto local = make_local(tiny_model(), 1, 0, 100.0f, 0);
    const float m0 = state_of(local[0], kAdamM)[0];
    Status s = map_checkpoint_to_stages(broken, paths, tiny_config(1), local, &step, &restarts);
    ASSERT_FALSE(s);
    EXPECT_NE(s.message().find("mem/rank_0.ckpt: tensor '" + broken[0].stages[0].tensors[2].name +
                               "' has no optimizer state '" + dropped + "'"),
              std::string::npos)
        << s.message();
    EXPECT_EQ(state_of(local[0], kAdamM)[0], m0) << "nothing is loaded on failure";
  }
  auto stateless = make_local(tiny_model(), 1, 0, 100.0f, 0);
  stateless[0].optimizer_state.reset();
  ASSERT_TRUE(map_checkpoint_to_stages(files, paths, tiny_config(1), stateless, &step, &restarts));
  const ParamTensor& t = stateless[0].model->tensors()[1];
  EXPECT_EQ(stateless[0].model->params()[t.offset + 1], 0.5f + float(t.global_id) + 1e-3f);
}

// basis_rotation's named state (moments, bases, statistics) survives encode/decode and
// load, and the loaded stage continues bit for bit like the one that was saved, across
// refreshes (update_freq 2) after the load.
TEST(Checkpoint, BasisRotationStateRoundTripsAndContinuesExactly) {
  Config c = tiny_config(1);
  c.optimizer.kind = "basis_rotation";
  c.optimizer.basis_rotation.update_freq = 2;
  auto fresh_stage = [&]() {
    LocalStage ls;
    ls.stage = 0;
    ls.layers = {0, 4};
    ls.model = make_cpu_stage_model(c.model, StageSpec{0, 4, true, true}, 1, 4);
    ls.model->init_params(7);
    ls.optimizer_state = make_optimizer_state(c.optimizer, *ls.model);
    return ls;
  };
  const auto opt = optimizer_for(c.optimizer);
  const size_t n = fresh_stage().model->num_params();
  auto step = [&](LocalStage& ls, int t) {
    std::vector<float> g(n);
    for (size_t i = 0; i < n; ++i) g[i] = 0.01f * float((i * 7919 + size_t(t) * 104729) % 2001) / 1000.0f - 0.01f;
    const auto& ts = ls.model->tensors();  // the tied head copy gets wte's gradient, as in training
    for (const auto& h : ts)
      if (h.is_tied_head) std::copy_n(g.begin() + ts[0].offset, h.numel, g.begin() + h.offset);
    opt->step(*ls.optimizer_state, StageBuffers{ls.model->params(), g.data(), n, MemorySpace::kHost, nullptr},
              StepArgs{1e-2, 1.0f, t});
    ls.version = t;
  };
  std::vector<LocalStage> saved;
  saved.push_back(fresh_stage());
  for (int t = 1; t <= 3; ++t) step(saved[0], t);
  RankCheckpoint out;
  ASSERT_TRUE(decode_rank_checkpoint("x.ckpt", encode_rank_checkpoint(make_rank_checkpoint(c, 0, even_split(4, 1), saved, 3, 0)), &out));
  std::vector<LocalStage> loaded;
  loaded.push_back(fresh_stage());
  int64_t at = 0, restarts = 0;
  ASSERT_TRUE(map_checkpoint_to_stages({out}, {"x.ckpt"}, c, loaded, &at, &restarts));
  EXPECT_EQ(at, 3);
  const auto a = saved[0].optimizer_state->tensors(), b = loaded[0].optimizer_state->tensors();
  ASSERT_EQ(a.size(), b.size());
  size_t bases = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(a[k].name, b[k].name);
    ASSERT_EQ(a[k].numel, b[k].numel);
    EXPECT_EQ(std::vector<float>(a[k].data, a[k].data + a[k].numel), std::vector<float>(b[k].data, b[k].data + b[k].numel))
        << a[k].name;
    bases += a[k].name.find(":rot_q_") != std::string::npos;
  }
  EXPECT_EQ(bases, 4u * 4 * 2) << "4 layers x 4 matrices x 2 sides";
  for (int t = 4; t <= 6; ++t) step(saved[0], t), step(loaded[0], t);
  EXPECT_EQ(std::vector<float>(saved[0].model->params(), saved[0].model->params() + n),
            std::vector<float>(loaded[0].model->params(), loaded[0].model->params() + n));
}

TEST(Checkpoint, ConfigMismatchNamesTheKeyAndLoadsNothing) {
  std::vector<std::string> paths;
  auto files = save_layout(tiny_config(2), 2, 4, &paths);
  Config c = tiny_config(1);
  c.run.seed = 99;
  c.optimizer.lr = 1e-2;
  auto local = make_local(c.model, 1, 0, 100.0f, 0);
  const std::vector<float> before(local[0].model->params(), local[0].model->params() + local[0].model->num_params());
  int64_t step = 0, restarts = 0;
  Status s = map_checkpoint_to_stages(files, paths, c, local, &step, &restarts);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("mem/rank_0.ckpt: config mismatch"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("run.seed: checkpoint 1337, config 99"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("optimizer.lr: checkpoint 0.00059999999999999995, config 0.01"), std::string::npos)
      << s.message();
  EXPECT_EQ(before, std::vector<float>(local[0].model->params(), local[0].model->params() + before.size()));
  EXPECT_EQ(local[0].version, 0);
  // Keys that may change on resume: steps, layout, schedule, eval cadence.
  Config ok = tiny_config(1);
  ok.training.steps = 1000;
  ok.schedule.kind = "gpipe";
  ok.training.eval_every = 3;
  EXPECT_EQ(resume_fingerprint(ok), resume_fingerprint(tiny_config(2)));
}

TEST(Checkpoint, RefusesUnmappableLayouts) {
  std::vector<std::string> paths;
  auto files = save_layout(tiny_config(2), 2, 4, &paths);
  auto fresh = [] { return make_local(tiny_model(), 1, 0, 100.0f, 0); };
  int64_t step = 0, restarts = 0;
  // A tensor missing from every file.
  {
    auto broken = files;
    broken[1].stages[0].tensors.erase(broken[1].stages[0].tensors.begin() + 3);
    auto local = fresh();
    const float first = local[0].model->params()[0];
    Status s = map_checkpoint_to_stages(broken, paths, tiny_config(1), local, &step, &restarts);
    ASSERT_FALSE(s);
    EXPECT_NE(s.message().find("is in no rank file of this checkpoint; the layout cannot be mapped"), std::string::npos)
        << s.message();
    EXPECT_EQ(local[0].model->params()[0], first) << "nothing is loaded on failure";
  }
  // A rank file missing.
  {
    auto one = std::vector<RankCheckpoint>{files[0]};
    auto local = fresh();
    Status s = map_checkpoint_to_stages(one, {paths[0]}, tiny_config(1), local, &step, &restarts);
    EXPECT_NE(s.message().find("expected rank 0 of 1"), std::string::npos) << s.message();
  }
  // Files of different checkpoints mixed.
  {
    auto mixed = files;
    mixed[1].step = 5;
    auto local = fresh();
    Status s = map_checkpoint_to_stages(mixed, paths, tiny_config(1), local, &step, &restarts);
    EXPECT_NE(s.message().find("mem/rank_1.ckpt: step, config or layout differs"), std::string::npos) << s.message();
  }
  // Unequal stage versions (async state): only the same layout can take them.
  {
    auto async = files;
    async[1].stages[0].version = 3;
    auto local = fresh();
    Status s = map_checkpoint_to_stages(async, paths, tiny_config(1), local, &step, &restarts);
    EXPECT_NE(s.message().find("different version counters"), std::string::npos) << s.message();
    auto same0 = make_local(tiny_model(), 2, 0, 100.0f, 0), same1 = make_local(tiny_model(), 2, 1, 100.0f, 0);
    ASSERT_TRUE(map_checkpoint_to_stages(async, paths, tiny_config(2), same0, &step, &restarts));
    ASSERT_TRUE(map_checkpoint_to_stages(async, paths, tiny_config(2), same1, &step, &restarts));
    EXPECT_EQ(same0[0].version, 4);
    EXPECT_EQ(same1[0].version, 3);
  }
}

TEST(Checkpoint, FindLatestSkipsPartialAndCorrupt) {
  TempDir d;
  const std::string root = d.path() + "/checkpoints";
  const std::string bytes = one_file_bytes();
  auto make = [&](int step, bool done, bool corrupt) {
    const std::string dir = root + "/step_" + std::to_string(step);
    fs::create_directories(dir);
    std::string b = bytes;
    if (corrupt) b[b.size() - 3] ^= 1;
    ASSERT_TRUE(write_file_atomic(dir + "/rank_0.ckpt", b));
    if (done) {
      ASSERT_TRUE(write_text_file(dir + "/DONE", "pipetrain checkpoint\nstep 1\nfiles 1\n"));
    }
  };
  std::string dir;
  std::vector<std::string> skipped;
  ASSERT_TRUE(find_latest_checkpoint(root, &dir, &skipped));
  EXPECT_EQ(dir, "") << "no checkpoint directory yet";
  make(5, true, false);
  make(20, true, true);
  make(30, false, false);
  make(100, true, false);
  fs::remove(root + "/step_100/rank_0.ckpt");
  fs::create_directories(root + "/step_x");
  fs::create_directories(root + "/step_99999999999999999999");  // past int64: not a step (no overflow)
  ASSERT_TRUE(find_latest_checkpoint(root, &dir, &skipped));
  EXPECT_EQ(dir, root + "/step_5");
  ASSERT_EQ(skipped.size(), 3u);
  EXPECT_NE(skipped[0].find("step_100/rank_0.ckpt: missing"), std::string::npos) << skipped[0];
  EXPECT_NE(skipped[1].find("step_30: no DONE marker"), std::string::npos) << skipped[1];
  EXPECT_NE(skipped[2].find("step_20/rank_0.ckpt: payload checksum mismatch"), std::string::npos) << skipped[2];
  std::vector<std::string> files;
  EXPECT_FALSE(list_complete_checkpoint(root + "/step_30", &files));
  ASSERT_TRUE(list_complete_checkpoint(root + "/step_5", &files));
  EXPECT_EQ(files, std::vector<std::string>{root + "/step_5/rank_0.ckpt"});
}

TEST(Checkpoint, MetricsKeepLinesUpToTheResumeStep) {
  TempDir d;
  const std::string path = d.path() + "/metrics.jsonl";
  ASSERT_TRUE(write_text_file(path, "{\"step\": 0, \"val_loss\": 5}\n{\"step\": 1, \"loss\": 4}\n{\"step\": 2, \"loss\": 3}\n"
                                    "{\"step\": 2, \"val_loss\": 3}\n{\"step\": 3, \"loss\": 2}\n"));
  ASSERT_TRUE(prepare_metrics_file(path, 2));
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), "{\"step\": 0, \"val_loss\": 5}\n{\"step\": 1, \"loss\": 4}\n{\"step\": 2, \"loss\": 3}\n"
                      "{\"step\": 2, \"val_loss\": 3}\n");
  ASSERT_TRUE(prepare_metrics_file(path, 0));
  EXPECT_FALSE(fs::exists(path));
}

TEST(Checkpoint, Cadence) {
  Config c = tiny_config(1);
  EXPECT_FALSE(checkpoint_due(c, 5, true, false)) << "every_steps 0: only on a signal";
  EXPECT_TRUE(checkpoint_due(c, 5, false, true));
  c.checkpoint.every_steps = 5;
  EXPECT_TRUE(checkpoint_due(c, 10, false, false));
  EXPECT_FALSE(checkpoint_due(c, 11, false, false));
  EXPECT_TRUE(checkpoint_due(c, 11, true, false)) << "the last step is always saved";
}

}  // namespace
}  // namespace pt
