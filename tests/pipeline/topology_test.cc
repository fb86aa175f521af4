// Layer split: auto covers every layer exactly once, each stage >= 1 layer, and its largest stage
// cost equals the optimum found by brute force over all splits (small cases); explicit lists are
// checked and their errors name parallel.layer_split.
#include "pipeline/topology.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

namespace pt {
namespace {

// Smallest achievable max stage cost by enumerating every composition of n_layer into num_stages
// parts >= 1.
double brute_force_best(int n_layer, int num_stages, const SplitCosts& c) {
  double best = 1e30;
  std::vector<int> counts(static_cast<size_t>(num_stages));
  std::function<void(int, int)> rec = [&](int st, int left) {
    if (st == num_stages - 1) {
      counts[size_t(st)] = left;
      std::vector<std::pair<int, int>> ranges;
      int first = 0;
      for (int k : counts) {
        ranges.emplace_back(first, first + k);
        first += k;
      }
      auto costs = stage_costs(ranges, c);
      best = std::min(best, *std::max_element(costs.begin(), costs.end()));
      return;
    }
    for (int k = 1; k <= left - (num_stages - 1 - st); ++k) {
      counts[size_t(st)] = k;
      rec(st + 1, left - k);
    }
  };
  rec(0, n_layer);
  return best;
}

TEST(SplitLayers, AutoCoversEveryLayerAndIsOptimal) {
  int checked = 0;
  for (SplitCosts c : {SplitCosts{0.0, 0.0}, SplitCosts{0.5, 0.5},
                       SplitCosts{0.5, head_cost_in_layers(50257, 768)}, SplitCosts{1.25, 2.75}}) {
    for (int stages = 1; stages <= 6; ++stages) {
      for (int layers = stages; layers <= 14; ++layers) {
        std::vector<std::pair<int, int>> ranges;
        Status st = split_layers(layers, stages, {}, &ranges, c);
        ASSERT_TRUE(st.is_ok()) << st.message();
        ASSERT_EQ(int(ranges.size()), stages);
        int next = 0;
        for (auto [l0, l1] : ranges) {
          EXPECT_EQ(l0, next);
          EXPECT_GE(l1 - l0, 1);
          next = l1;
        }
        EXPECT_EQ(next, layers);
        auto costs = stage_costs(ranges, c);
        EXPECT_NEAR(*std::max_element(costs.begin(), costs.end()),
                    brute_force_best(layers, stages, c), 1e-9)
            << layers << " layers, " << stages << " stages, emb " << c.embedding_layers << " head "
            << c.head_layers;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 200);
}

TEST(SplitLayers, BalancedExamples) {
  std::vector<std::pair<int, int>> r;
  // 12 layers, 4 stages, no extras: 3 each.
  ASSERT_TRUE(split_layers(12, 4, {}, &r, SplitCosts{0, 0}).is_ok());
  EXPECT_EQ(r, (std::vector<std::pair<int, int>>{{0, 3}, {3, 6}, {6, 9}, {9, 12}}));
  // 13 layers: the extra layer goes to the last stage, not a 4/4/4/1 packing.
  ASSERT_TRUE(split_layers(13, 4, {}, &r, SplitCosts{0, 0}).is_ok());
  EXPECT_EQ(r, (std::vector<std::pair<int, int>>{{0, 3}, {3, 6}, {6, 9}, {9, 13}}));
  // GPT-2 124M head (5.45 layers) on 12 layers / 4 stages: the last stage keeps a single layer.
  ASSERT_TRUE(
      split_layers(12, 4, {}, &r, SplitCosts{0.5, head_cost_in_layers(50257, 768)}).is_ok());
  EXPECT_EQ(r.back(), std::make_pair(11, 12));
  // Large: 4096 layers on 1024 stages is fast and exact.
  ASSERT_TRUE(split_layers(4096, 1024, {}, &r).is_ok());
  EXPECT_EQ(r.size(), 1024u);
  EXPECT_EQ(r.back().second, 4096);
}

TEST(SplitLayers, ExplicitListsAreCheckedNamingTheKey) {
  std::vector<std::pair<int, int>> r;
  ASSERT_TRUE(split_layers(12, 3, {2, 5, 5}, &r).is_ok());
  EXPECT_EQ(r, (std::vector<std::pair<int, int>>{{0, 2}, {2, 7}, {7, 12}}));
  for (const std::vector<int>& bad : {std::vector<int>{2, 5}, std::vector<int>{2, 5, 4},
                                      std::vector<int>{0, 6, 6}, std::vector<int>{-1, 7, 6}}) {
    Status st = split_layers(12, 3, bad, &r);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("parallel.layer_split"), std::string::npos) << st.message();
  }
  Status st = split_layers(3, 4, {}, &r);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("parallel.layer_split"), std::string::npos) << st.message();
}

TEST(SplitLayers, HeadCostFormula) {
  EXPECT_NEAR(head_cost_in_layers(50257, 768), 50257.0 / 9216.0, 1e-12);
  EXPECT_EQ(head_cost_in_layers(100, 0), 0.0);
}

}  // namespace
}  // namespace pt
