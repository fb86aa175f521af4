// Layer split (see topology.h). `auto` finds the smallest feasible maximum stage cost T by binary
// search over the candidate values (k layers plus 0, the embedding, the head, or both), with a
// greedy feasibility check that fills stages from the last one backwards: O(L log L) even for
// thousands of layers.
#include "pipeline/topology.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace pt {

double head_cost_in_layers(int vocab_size, int channels) {
  return channels > 0 ? double(vocab_size) / (12.0 * double(channels)) : 0.0;
}

std::vector<double> stage_costs(const std::vector<std::pair<int, int>>& ranges,
                                const SplitCosts& costs) {
  std::vector<double> out(ranges.size());
  for (size_t i = 0; i < ranges.size(); ++i) {
    out[i] = double(ranges[i].second - ranges[i].first);
    if (i == 0) out[i] += costs.embedding_layers;
    if (i + 1 == ranges.size()) out[i] += costs.head_layers;
  }
  return out;
}

namespace {

double extra(int stage, int num_stages, const SplitCosts& c) {
  return (stage == 0 ? c.embedding_layers : 0.0) + (stage == num_stages - 1 ? c.head_layers : 0.0);
}

// Fills stages last-to-first with as many layers as fit under `limit`, leaving one per earlier
// stage. Returns false when the layers do not fit; `counts` receives the per-stage layer counts.
bool fill_backwards(int n_layer, int num_stages, double limit, const SplitCosts& c,
                    std::vector<int>* counts) {
  counts->assign(size_t(num_stages), 0);
  int left = n_layer;
  for (int st = num_stages - 1; st >= 0; --st) {
    const int fit = int(limit - extra(st, num_stages, c) + 1e-9);
    const int take = std::min(fit, left - st);  // keep >= 1 layer for each of the st earlier stages
    if (take < 1) return false;
    (*counts)[size_t(st)] = take;
    left -= take;
  }
  return left == 0;
}

}  // namespace

Status split_layers(int n_layer, int num_stages, const std::vector<int>& explicit_split,
                    std::vector<std::pair<int, int>>* ranges, const SplitCosts& costs) {
  if (num_stages < 1)
    return Status::error("pipeline stages must be >= 1, got " + std::to_string(num_stages));
  std::vector<int> counts;
  if (!explicit_split.empty()) {
    if (int(explicit_split.size()) != num_stages) {
      return Status::error(
          "parallel.layer_split has " + std::to_string(explicit_split.size()) +
          " entries but the pipeline has " + std::to_string(num_stages) +
          " stages (parallel.pp x schedule.chunks); give one layer count per stage");
    }
    long sum = 0;
    for (size_t i = 0; i < explicit_split.size(); ++i) {
      if (explicit_split[i] < 1) {
        return Status::error("parallel.layer_split[" + std::to_string(i) +
                             "] = " + std::to_string(explicit_split[i]) +
                             ": every stage needs at least 1 layer");
      }
      sum += explicit_split[i];
    }
    if (sum != n_layer) {
      return Status::error("parallel.layer_split sums to " + std::to_string(sum) +
                           " but model.n_layer = " + std::to_string(n_layer) +
                           "; the counts must add up to the number of layers");
    }
    counts = explicit_split;
  } else {
    if (n_layer < num_stages) {
      return Status::error("parallel.layer_split auto: model.n_layer = " + std::to_string(n_layer) +
                           " is less than the " + std::to_string(num_stages) +
                           " pipeline stages; every stage needs at least 1 layer");
    }
    if (costs.embedding_layers < 0 || costs.head_layers < 0) {
      return Status::error("parallel.layer_split auto: embedding/head costs must be >= 0");
    }
    // Candidate maxima: k layers plus the extras a stage can carry.
    const double offsets[] = {0.0, costs.embedding_layers, costs.head_layers,
                              costs.embedding_layers + costs.head_layers};
    std::vector<double> candidates;
    candidates.reserve(size_t(4 * n_layer));
    for (int k = 1; k <= n_layer; ++k) {
      for (double off : offsets) candidates.push_back(double(k) + off);
    }
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
    size_t lo = 0, hi = candidates.size() - 1;  // the largest candidate always fits
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (fill_backwards(n_layer, num_stages, candidates[mid], costs, &counts)) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    // The optimal maximum T is known; spread the layers evenly under it instead of packing the last
    // stages, rounding up toward the later stages. `capacity[st]` = layers stages 0..st-1 can still
    // take under T.
    const double limit = candidates[lo];
    std::vector<int> fit(static_cast<size_t>(num_stages));
    std::vector<long> capacity(size_t(num_stages) + 1, 0);
    for (int st = 0; st < num_stages; ++st) {
      fit[size_t(st)] = int(limit - extra(st, num_stages, costs) + 1e-9);
      capacity[size_t(st) + 1] = capacity[size_t(st)] + fit[size_t(st)];
    }
    counts.assign(size_t(num_stages), 0);
    int left = n_layer;
    double extras_left = costs.embedding_layers + costs.head_layers;
    for (int st = num_stages - 1; st >= 0; --st) {
      extras_left -= extra(st, num_stages, costs);
      const double average =
          (double(left) + extras_left + extra(st, num_stages, costs)) / double(st + 1);
      int take = int(std::ceil(average - extra(st, num_stages, costs) - 1e-9));
      take = std::min(take, fit[size_t(st)]);
      take = std::max(take, int(left - capacity[size_t(st)]));
      take = std::clamp(take, 1, left - st);
      counts[size_t(st)] = take;
      left -= take;
    }
  }
  ranges->clear();
  int first = 0;
  for (int c : counts) {
    ranges->emplace_back(first, first + c);
    first += c;
  }
  return Status::ok();
}

}  // namespace pt
