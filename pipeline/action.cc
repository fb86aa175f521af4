// Text form, predicates and the rank x tick listing of the schedule IR (see action.h for the
// conventions). Invariant: parse_action(format_action(a)) == a for every action whose fields are in
// range.
#include "pipeline/action.h"

#include <algorithm>
#include <charconv>
#include <cstdio>

namespace pt {

namespace {

constexpr const char* kKindNames[kNumActionKinds] = {
    "F",        "B",         "Bx",        "Bw",   "SEND_ACT",
    "RECV_ACT", "SEND_GRAD", "RECV_GRAD", "STEP", "ALLREDUCE_GRAD", "AVERAGE"};

// Reads a non-negative decimal at text[*pos]; false when there is no digit.
bool read_int(std::string_view text, size_t* pos, int* value) {
  const char* begin = text.data() + *pos;
  const char* end = text.data() + text.size();
  if (begin == end || *begin < '0' || *begin > '9') return false;
  auto [ptr, ec] = std::from_chars(begin, end, *value);
  if (ec != std::errc()) return false;
  *pos += size_t(ptr - begin);
  return true;
}

}  // namespace

bool operator==(const Action& a, const Action& b) {
  return a.kind == b.kind && a.group == b.group && a.stage == b.stage &&
         a.microbatch == b.microbatch && a.peer_rank == b.peer_rank && a.version == b.version;
}

bool is_compute(ActionKind k) { return k <= ActionKind::Bw; }
bool is_comm(ActionKind k) { return k >= ActionKind::SEND_ACT && k <= ActionKind::RECV_GRAD; }
bool is_send(ActionKind k) { return k == ActionKind::SEND_ACT || k == ActionKind::SEND_GRAD; }
bool is_recv(ActionKind k) { return k == ActionKind::RECV_ACT || k == ActionKind::RECV_GRAD; }
bool is_group_action(ActionKind k) { return k == ActionKind::ALLREDUCE_GRAD || k == ActionKind::AVERAGE; }
bool is_state_action(ActionKind k) { return k == ActionKind::STEP || is_group_action(k); }
const char* action_kind_name(ActionKind k) { return kKindNames[int(k)]; }

std::string format_action(const Action& a) {
  std::string out = std::to_string(a.stage);
  out += kKindNames[int(a.kind)];
  if (a.microbatch >= 0) out += std::to_string(a.microbatch);
  if (is_comm(a.kind) && a.peer_rank >= 0) {
    out += is_send(a.kind) ? "->" : "<-";
    out += std::to_string(a.peer_rank);
  }
  if (a.group != 0) {
    out += ':';
    if (a.group & kGroupData) out += "dp";
    if ((a.group & kGroupData) && (a.group & kGroupReplicas)) out += '+';
    if (a.group & kGroupReplicas) out += "rep";
  }
  if (a.version != 0) {
    out += '@';
    out += std::to_string(a.version);
  }
  return out;
}

Status parse_action(std::string_view text, Action* out) {
  auto fail = [&](const char* why) {
    return Status::error("cannot parse action '" + std::string(text) + "': " + why +
                         " (expected <stage><KIND>[<mb>][->peer|<-peer][:group][@version], e.g. "
                         "2F5, 0SEND_ACT4->1, 3ALLREDUCE_GRAD:dp)");
  };
  Action a;
  size_t pos = 0;
  if (!read_int(text, &pos, &a.stage)) return fail("no stage number at the start");
  size_t kind_begin = pos;
  while (pos < text.size() && ((text[pos] >= 'A' && text[pos] <= 'Z') ||
                               (text[pos] >= 'a' && text[pos] <= 'z') || text[pos] == '_')) {
    ++pos;
  }
  std::string_view kind = text.substr(kind_begin, pos - kind_begin);
  int kind_index = -1;
  for (int k = 0; k < kNumActionKinds; ++k) {
    if (kind == kKindNames[k]) kind_index = k;
  }
  if (kind_index < 0) return fail("unknown action kind");
  a.kind = ActionKind(kind_index);
  a.microbatch = -1;
  read_int(text, &pos, &a.microbatch);  // optional: STEP, ALLREDUCE_GRAD and AVERAGE carry none
  bool needs_mb = !is_state_action(a.kind);
  if (needs_mb && a.microbatch < 0) return fail("missing micro-batch number");
  if (pos + 1 < text.size() && (text.substr(pos, 2) == "->" || text.substr(pos, 2) == "<-")) {
    if (!is_comm(a.kind)) return fail("only SEND_*/RECV_* actions have a peer");
    if ((text[pos] == '-') != is_send(a.kind)) return fail("sends use '->peer', receives '<-peer'");
    pos += 2;
    if (!read_int(text, &pos, &a.peer_rank)) return fail("missing peer rank after the arrow");
  }
  if (pos < text.size() && text[pos] == ':') {
    if (!is_group_action(a.kind)) return fail("only ALLREDUCE_GRAD and AVERAGE have a group suffix");
    ++pos;
    for (bool more = true; more;) {
      const std::string_view rest = text.substr(pos);
      if (rest.rfind("dp", 0) == 0 && !(a.group & kGroupData)) {
        a.group |= kGroupData;
        pos += 2;
      } else if (rest.rfind("rep", 0) == 0 && !(a.group & kGroupReplicas)) {
        a.group |= kGroupReplicas;
        pos += 3;
      } else {
        return fail("group suffix must be ':dp', ':rep' or ':dp+rep'");
      }
      more = pos < text.size() && text[pos] == '+';
      pos += more;
    }
  }
  if (pos < text.size() && text[pos] == '@') {
    ++pos;
    if (!read_int(text, &pos, &a.version)) return fail("missing version after '@'");
  }
  if (pos != text.size()) return fail("trailing characters");
  *out = a;
  return Status::ok();
}

std::vector<int> looping_stage_to_rank(int num_ranks, int chunks) {
  std::vector<int> map(size_t(num_ranks) * size_t(chunks));
  for (size_t s = 0; s < map.size(); ++s) map[s] = int(s % size_t(num_ranks));
  return map;
}

int64_t num_actions(const Schedule& s) {
  int64_t n = 0;
  for (const auto& list : s.per_rank) n += int64_t(list.size());
  return n;
}

std::string format_schedule(const Schedule& s, int mark_rank, int mark_tick) {
  // Window sizes keep an error message readable even for 1024 ranks x 24k ticks.
  constexpr int kMaxRanks = 16;
  constexpr int kMaxTicks = 48;
  const int ranks = int(s.per_rank.size());
  size_t longest = 0;
  for (const auto& list : s.per_rank) longest = std::max(longest, list.size());
  const int ticks = int(longest);
  int r0 = 0, r1 = ranks, t0 = 0, t1 = ticks;
  if (ranks > kMaxRanks) {
    int center = mark_rank >= 0 ? mark_rank : 0;
    r0 = std::clamp(center - kMaxRanks / 2, 0, ranks - kMaxRanks);
    r1 = r0 + kMaxRanks;
  }
  if (ticks > kMaxTicks) {
    int center = mark_tick >= 0 ? mark_tick : 0;
    t0 = std::clamp(center - kMaxTicks / 2, 0, ticks - kMaxTicks);
    t1 = t0 + kMaxTicks;
  }
  // Column width: the longest cell shown, plus the '*' marker.
  size_t width = 6;
  for (int r = r0; r < r1; ++r) {
    for (int t = t0; t < t1 && t < int(s.per_rank[r].size()); ++t) {
      width = std::max(width, format_action(s.per_rank[r][t]).size() + 1);
    }
  }
  std::string out = "schedule '" + s.name + "': " + std::to_string(ranks) + " ranks, " +
                    std::to_string(s.num_stages) + " stages, " + std::to_string(s.microbatches) +
                    " micro-batches";
  if (r0 > 0 || r1 < ranks || t0 > 0 || t1 < ticks) {
    out += " (showing ranks " + std::to_string(r0) + ".." + std::to_string(r1 - 1) + ", ticks " +
           std::to_string(t0) + ".." + std::to_string(t1 - 1) + ")";
  }
  out += "\n";
  auto pad = [&](std::string cell) {
    if (cell.size() < width) cell.insert(cell.begin(), width - cell.size(), ' ');
    return cell;
  };
  out += "        ";
  for (int r = r0; r < r1; ++r) out += pad("Rank " + std::to_string(r));
  out += "\n";
  for (int t = t0; t < t1; ++t) {
    char head[32];
    std::snprintf(head, sizeof(head), "Tick %-3d", t);
    out += head;
    for (int r = r0; r < r1; ++r) {
      std::string cell;
      if (t < int(s.per_rank[r].size())) cell = format_action(s.per_rank[r][t]);
      if (r == mark_rank && t == mark_tick) cell.insert(0, cell.empty() ? "*(end)" : "*");
      out += pad(cell);
    }
    if (t == mark_tick) out += "  <-- ERROR HERE (rank " + std::to_string(mark_rank) + ")";
    out += "\n";
  }
  if (mark_tick >= ticks) {
    out += "Tick " + std::to_string(mark_tick) + " (past the end of rank " +
           std::to_string(mark_rank) + "'s list)  <-- ERROR HERE\n";
  }
  return out;
}

}  // namespace pt
