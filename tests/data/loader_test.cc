// DataLoader: exact batch contents on synthetic shards whose token equals its global
// index, the dp/microbatch slicing identity, shuffling as a per-epoch permutation,
// purity (seek), validation batches and error messages.
#include "data/loader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "data/token_shard.h"
#include "tests/data/test_files.h"

namespace pt {
namespace {

constexpr int kB = 4, kT = 16;
// Three train shards of 1000 + 1500 + 700 tokens: 3200 tokens, (3200-1)/16 = 199 sequences.
constexpr int kTrainTokens = 3200;
constexpr int64_t kSequences = (kTrainTokens - 1) / kT;

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int base = 0;
    int sizes[] = {1000, 1500, 700};
    for (int i = 0; i < 3; ++i) {
      std::vector<uint16_t> tokens(sizes[i]);
      std::iota(tokens.begin(), tokens.end(), uint16_t(base));
      base += sizes[i];
      ASSERT_TRUE(write_token_shard(dir_.file("train_00000" + std::to_string(i) + ".bin"), tokens).is_ok());
    }
    // Validation tokens 40000.. so they cannot be confused with train tokens.
    std::vector<uint16_t> val(300);
    std::iota(val.begin(), val.end(), uint16_t(40000));
    ASSERT_TRUE(write_token_shard(dir_.file("val_000000.bin"), val).is_ok());
  }

  DataLoaderOptions options(int m, int dp, bool shuffle, uint64_t seed = 1234) const {
    DataLoaderOptions o;
    o.train_pattern = dir_.file("train_*.bin");
    o.val_pattern = dir_.file("val_*.bin");
    o.batch_size = kB;
    o.seq_len = kT;
    o.microbatches = m;
    o.dp_size = dp;
    o.seed = seed;
    o.shuffle = shuffle;
    o.vocab_size = 65536;
    return o;
  }

  static DataLoader open(const DataLoaderOptions& o) {
    DataLoader loader;
    Status s = loader.open(o);
    EXPECT_TRUE(s.is_ok()) << s.message();
    return loader;
  }

  struct Batch {
    std::vector<int32_t> inputs = std::vector<int32_t>(kB * kT), targets = std::vector<int32_t>(kB * kT);
    bool operator==(const Batch&) const = default;
  };
  static Batch get(const DataLoader& loader, int64_t step, int mb, int rank) {
    Batch b;
    loader.batch(step, mb, rank, b.inputs.data(), b.targets.data());
    return b;
  }
  // The sequence each row holds, read back from the synthetic token values.
  static std::vector<int64_t> rows(const Batch& b) {
    std::vector<int64_t> seqs;
    for (int r = 0; r < kB; ++r) {
      int32_t first = b.inputs[r * kT];
      EXPECT_EQ(first % kT, 0);
      seqs.push_back(first / kT);
    }
    return seqs;
  }

  testing::ScratchDir dir_;
};

TEST_F(LoaderTest, SequentialBatchesAreExactRanges) {
  DataLoader loader = open(options(/*m=*/2, /*dp=*/1, /*shuffle=*/false));
  ASSERT_EQ(loader.num_train_sequences(), kSequences);
  ASSERT_EQ(loader.num_train_tokens(), kTrainTokens);
  ASSERT_EQ(loader.train_files().size(), 3u);
  // Steps 0..60 run past the end of the 199 sequences, so this covers the wrap.
  for (int64_t step = 0; step < 60; ++step) {
    for (int mb = 0; mb < 2; ++mb) {
      Batch b = get(loader, step, mb, 0);
      for (int r = 0; r < kB; ++r) {
        int64_t seq = ((step * 2 + mb) * kB + r) % kSequences;
        for (int t = 0; t < kT; ++t) {
          ASSERT_EQ(b.inputs[r * kT + t], seq * kT + t) << "step " << step << " mb " << mb << " row " << r;
          ASSERT_EQ(b.targets[r * kT + t], seq * kT + t + 1);
        }
      }
    }
  }
}

TEST_F(LoaderTest, TargetsAreInputsShiftedByOne) {
  DataLoader loader = open(options(1, 1, true));
  for (int64_t step = 0; step < 10; ++step) {
    Batch b = get(loader, step, 0, 0);
    for (int r = 0; r < kB; ++r)
      for (int t = 0; t + 1 < kT; ++t) ASSERT_EQ(b.targets[r * kT + t], b.inputs[r * kT + t + 1]);
  }
}

// dp ranks take consecutive slices of a step: (rank r, microbatch j) of a dp=2, m=2
// run is microbatch 2r+j of a dp=1, m=4 run, with and without shuffling.
TEST_F(LoaderTest, DataParallelSlicesMatchSingleRankRun) {
  for (bool shuffle : {false, true}) {
    DataLoader dp2 = open(options(2, 2, shuffle));
    DataLoader dp1 = open(options(4, 1, shuffle));
    for (int64_t step = 0; step < 30; ++step) {
      std::set<int64_t> seen;
      for (int rank = 0; rank < 2; ++rank) {
        for (int mb = 0; mb < 2; ++mb) {
          Batch b = get(dp2, step, mb, rank);
          ASSERT_EQ(b, get(dp1, step, rank * 2 + mb, 0)) << "shuffle " << shuffle << " step " << step;
          for (int64_t s : rows(b)) seen.insert(s);
        }
      }
      // 16 rows per step out of 199 sequences: disjoint unless the step straddles an
      // epoch boundary (slot ranges [16k, 16k+16) crossing a multiple of 199).
      int64_t first_slot = step * 16, last_slot = first_slot + 15;
      if (first_slot / kSequences == last_slot / kSequences) {
        EXPECT_EQ(seen.size(), 16u) << "dp ranks overlap at step " << step;
      }
    }
  }
}

TEST_F(LoaderTest, ShuffledEpochIsAPermutationAndDiffersBetweenEpochs) {
  // B*m*dp = 4*1*1 = 4 rows per step; read two epochs' worth of slots.
  DataLoader loader = open(options(1, 1, true));
  std::vector<int64_t> order;
  for (int64_t step = 0; order.size() < size_t(2 * kSequences); ++step)
    for (int64_t s : rows(get(loader, step, 0, 0))) order.push_back(s);
  std::vector<int64_t> epoch0(order.begin(), order.begin() + kSequences);
  std::vector<int64_t> epoch1(order.begin() + kSequences, order.begin() + 2 * kSequences);
  std::vector<int64_t> identity(kSequences);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(epoch0, identity);
  EXPECT_NE(epoch0, epoch1);
  std::sort(epoch0.begin(), epoch0.end());
  std::sort(epoch1.begin(), epoch1.end());
  EXPECT_EQ(epoch0, identity);
  EXPECT_EQ(epoch1, identity);
}

TEST_F(LoaderTest, SeedChangesOrderAndSameSeedRepeats) {
  DataLoader a = open(options(2, 1, true, 7)), b = open(options(2, 1, true, 7)), c = open(options(2, 1, true, 8));
  bool differs = false;
  for (int64_t step = 0; step < 5; ++step) {
    EXPECT_EQ(get(a, step, 1, 0), get(b, step, 1, 0));
    differs |= !(get(a, step, 1, 0) == get(c, step, 1, 0));
  }
  EXPECT_TRUE(differs);
}

TEST_F(LoaderTest, BatchIsPureFunctionOfStep) {
  for (bool shuffle : {false, true}) {
    DataLoader fresh = open(options(2, 2, shuffle));
    Batch want = get(fresh, 37, 1, 1);
    DataLoader used = open(options(2, 2, shuffle));
    for (int64_t step : {0, 90, 5, 36, 38, 1000}) get(used, step, 0, 0), get(used, step, 1, 1);
    EXPECT_EQ(get(used, 37, 1, 1), want);
    EXPECT_EQ(used.sequence_index(37, 1, 1, 2), rows(want)[2]);
  }
}

TEST(ShuffleIndex, IsABijectionForManySizes) {
  for (uint64_t n : {1ull, 2ull, 3ull, 5ull, 16ull, 17ull, 199ull, 1000ull, 4097ull}) {
    for (uint64_t epoch : {0ull, 3ull}) {
      std::vector<bool> hit(n, false);
      for (uint64_t i = 0; i < n; ++i) {
        uint64_t j = shuffle_index(i, n, 99, epoch);
        ASSERT_LT(j, n);
        ASSERT_FALSE(hit[j]) << "n=" << n << " collides at " << j;
        hit[j] = true;
      }
    }
  }
}

TEST_F(LoaderTest, EvalBatchesWalkValidationInOrder) {
  DataLoader loader = open(options(1, 1, true));
  // 300 val tokens: 299/16 = 18 sequences, 18/4 = 4 batches.
  ASSERT_EQ(loader.num_eval_batches(), 4);
  Batch b;
  for (int i = 0; i < 4; ++i) {
    loader.eval_batch(i, b.inputs.data(), b.targets.data());
    for (int r = 0; r < kB; ++r)
      for (int t = 0; t < kT; ++t) {
        ASSERT_EQ(b.inputs[r * kT + t], 40000 + (i * kB + r) * kT + t);
        ASSERT_EQ(b.targets[r * kT + t], 40000 + (i * kB + r) * kT + t + 1);
      }
  }
}

TEST_F(LoaderTest, EmptyGlobIsAClearError) {
  DataLoaderOptions o = options(1, 1, false);
  o.train_pattern = dir_.file("nothing_*.bin");
  DataLoader loader;
  Status s = loader.open(o);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), o.train_pattern);
  EXPECT_CONTAINS(s.message(), "pipetrain prepare");
}

TEST_F(LoaderTest, TooLittleDataIsAClearError) {
  DataLoaderOptions o = options(1, 1, false);
  o.seq_len = kTrainTokens;  // needs seq_len + 1 tokens
  DataLoader loader;
  Status s = loader.open(o);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), "fewer than one sequence");

  o = options(1, 1, false);
  o.batch_size = 100;  // 18 val sequences < one batch
  s = loader.open(o);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), o.val_pattern);
}

TEST_F(LoaderTest, VocabCheckAppliesToEveryShard) {
  DataLoaderOptions o = options(1, 1, false);
  o.vocab_size = 2000;  // shard 1 holds tokens 1000..2499
  DataLoader loader;
  Status s = loader.open(o);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), dir_.file("train_000001.bin"));
  EXPECT_CONTAINS(s.message(), "token 2000 at index 1000");
}

TEST(BatchHash, Fnv1aOverTokens) {
  // With no tokens the hash is FNV-1a's offset basis.
  EXPECT_EQ(batch_hash(nullptr, nullptr, 0), 0xcbf29ce484222325ull);
  // FNV-1a of the bytes "abcd" + "efgh", i.e. the tokens as little-endian int32.
  int32_t in[1] = {0x64636261}, tg[1] = {0x68676665};
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : std::string("abcdefgh")) h = (h ^ uint8_t(c)) * 0x100000001b3ull;
  EXPECT_EQ(batch_hash(in, tg, 1), h);
  int32_t tg2[1] = {0x68676666};
  EXPECT_NE(batch_hash(in, tg2, 1), h);
}

}  // namespace
}  // namespace pt
