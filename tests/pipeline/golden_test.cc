// Golden timelines: the unit-time simulation (F=1, B=2, free comm) of the builders' lowered
// schedules printed with format_timeline must reproduce, cell for cell, the timelines transcribed
// from algorithms.md (§1.1 GPipe, §1.2 1F1B, §1.3 Megatron interleaved, §6.4 BFPP), i.e. the same
// op order per rank and the same idle slots.
#include <gtest/gtest.h>

#include "tests/pipeline/test_util.h"

namespace pt {
namespace {

std::string timeline_of(const ScheduleSpec& spec, bool case_by_chunk) {
  testing_util::Planned p = testing_util::plan_or_fail(spec);
  GridOptions g;
  g.case_by_chunk = case_by_chunk;
  return format_timeline(p.lowered, p.sim, g);
}

// algorithms.md §1.1, S=4, m=8 (makespan 33, idle 3/11).
TEST(Golden, GPipeS4M8) {
  const std::string doc =
      "GPU0|F0F1F2F3F4F5F6F7 . . . . . . . . .B0B0B1B1B2B2B3B3B4B4B5B5B6B6B7B7\n"
      "GPU1| .F0F1F2F3F4F5F6F7 . . . . . .B0B0B1B1B2B2B3B3B4B4B5B5B6B6B7B7 . .\n"
      "GPU2| . .F0F1F2F3F4F5F6F7 . . .B0B0B1B1B2B2B3B3B4B4B5B5B6B6B7B7 . . . .\n"
      "GPU3| . . .F0F1F2F3F4F5F6F7B0B0B1B1B2B2B3B3B4B4B5B5B6B6B7B7 . . . . . .\n";
  EXPECT_EQ(timeline_of({"gpipe", 4, 1, 8, 0}, false), doc);
}

// algorithms.md §1.2, S=4, m=8 (makespan 33, idle 27.3%).
TEST(Golden, OneFOneBS4M8) {
  const std::string doc =
      "GPU0|F0F1F2F3 . . . . . .B0B0F4B1B1F5B2B2F6B3B3F7B4B4 .B5B5 .B6B6 .B7B7\n"
      "GPU1| .F0F1F2 . . . .B0B0F3B1B1F4B2B2F5B3B3F6B4B4F7B5B5 .B6B6 .B7B7 . .\n"
      "GPU2| . .F0F1 . .B0B0F2B1B1F3B2B2F4B3B3F5B4B4F6B5B5F7B6B6 .B7B7 . . . .\n"
      "GPU3| . . .F0B0B0F1B1B1F2B2B2F3B3B3F4B4B4F5B5B5F6B6B6F7B7B7 . . . . . .\n";
  EXPECT_EQ(timeline_of({"1f1b", 4, 1, 8, 0}, false), doc);
}

// algorithms.md §1.3, S=4, v=2, m=8: lower case = chunk 0 (stages 0-3), upper case = chunk 1
// (stages 4-7).
TEST(Golden, InterleavedS4V2M8) {
  const std::string doc =
      "GPU0|f0f1f2f3F0F1F2F3f4f5f6 . . .B0B0f7B1B1 .F4B2B2F5B3B3F6b0b0F7b1b1b2b2 .b3b3 .B4B4 .B5B5 "
      ".B6B6 .B7B7"
      "b4b4b5b5b6b6b7b7\n"
      "GPU1| .f0f1f2f3F0F1F2F3f4 . .B0B0f5B1B1f6B2B2f7B3B3F4b0b0F5b1b1F6b2b2F7b3b3 .B4B4 .B5B5 "
      ".B6B6 .B7B7"
      "b4b4b5b5b6b6b7b7 . .\n"
      "GPU2| . .f0f1f2f3F0F1F2 .B0B0F3B1B1f4B2B2f5B3B3f6b0b0f7b1b1F4b2b2F5b3b3F6B4B4F7B5B5 .B6B6 "
      ".B7B7"
      "b4b4b5b5b6b6b7b7 . . . .\n"
      "GPU3| . . .f0f1f2f3F0B0B0F1B1B1F2B2B2F3B3B3f4b0b0f5b1b1f6b2b2f7b3b3F4B4B4F5B5B5F6B6B6F7B7B7"
      "b4b4b5b5b6b6b7b7 . . . . . .\n";
  EXPECT_EQ(timeline_of({"interleaved_1f1b", 4, 2, 8, 0}, true), doc);
}

// algorithms.md §6.4, N_PP=4, N_loop=2, m=8 (lower case = loop 0, upper case = loop 1).
TEST(Golden, BfppS4V2M8) {
  const std::string doc =
      "GPU0|f0f1f2f3f4f5f6f7F0F1F2F3F4F5F6F7 . . . . . . . . .B0B0B1B1B2B2B3B3B4B4B5B5B6B6B7B7"
      "b0b0b1b1b2b2b3b3b4b4b5b5b6b6b7b7\n"
      "GPU1| .f0f1f2f3f4f5f6f7F0F1F2F3F4F5F6F7 . . . . . .B0B0B1B1B2B2B3B3B4B4B5B5B6B6B7B7"
      "b0b0b1b1b2b2b3b3b4b4b5b5b6b6b7b7 . .\n"
      "GPU2| . .f0f1f2f3f4f5f6f7F0F1F2F3F4F5F6F7 . . .B0B0B1B1B2B2B3B3B4B4B5B5B6B6B7B7"
      "b0b0b1b1b2b2b3b3b4b4b5b5b6b6b7b7 . . . .\n"
      "GPU3| . . .f0f1f2f3f4f5f6f7F0F1F2F3F4F5F6F7B0B0B1B1B2B2B3B3B4B4B5B5B6B6B7B7"
      "b0b0b1b1b2b2b3b3b4b4b5b5b6b6b7b7 . . . . . .\n";
  EXPECT_EQ(timeline_of({"bfpp", 4, 2, 8, 0}, true), doc);
}

// ZB-H1 has no timeline in the doc; pin the S=4, m=8 shape (F=Bx=Bw=1, W = weight pass) so a change
// to the W placement is a deliberate golden update. Every row idles exactly S-1 = 3 units (§1.6).
TEST(Golden, ZbH1S4M8) {
  const std::string got = timeline_of({"zb_h1", 4, 1, 8, 0}, false);
  for (const char* row : {"GPU0|", "GPU1|", "GPU2|", "GPU3|"}) {
    size_t begin = got.find(row);
    ASSERT_NE(begin, std::string::npos);
    size_t end = got.find('\n', begin);
    const std::string line = got.substr(begin, end - begin);
    int idle = 0;
    for (size_t i = 5; i + 1 < line.size(); i += 2) idle += line.substr(i, 2) == " .";
    EXPECT_EQ(idle, 3) << line;
    EXPECT_EQ(line.size(), 5u + 2u * 27u) << line;  // makespan 3m + S - 1 = 27
  }
  std::cout << got;
}

}  // namespace
}  // namespace pt
