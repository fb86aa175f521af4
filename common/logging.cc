#include "common/logging.h"

#include <cstdio>
#include <cstdlib>

#include "common/check.h"

namespace pt {

void log_info(const std::string& message) {
  int rank = reporting_rank();
  static const bool all_ranks = std::getenv("PT_LOG_ALL_RANKS") != nullptr;
  if (rank > 0 && !all_ranks) return;
  std::fprintf(stderr, "%s\n", message.c_str());
}

void log_warn(const std::string& message) {
  std::fprintf(stderr, "[rank %d] warning: %s\n", reporting_rank() < 0 ? 0 : reporting_rank(), message.c_str());
}

}  // namespace pt
